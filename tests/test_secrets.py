"""Secrets: references only, masked values, one redaction point, and never a leak to disk or logs."""

from __future__ import annotations

import json
import logging

import pytest

from migrate.core.errors import SecretError
from migrate.core.logs import setup_logging
from migrate.core.secrets import Secret, SecretRef, parse_ref, resolve


def test_secret_repr_is_masked():
    secret = Secret("correct horse battery", "env:X")
    assert "correct" not in repr(secret) and "correct" not in str(secret)
    assert f"{secret}" == str(secret)
    assert secret.reveal() == "correct horse battery"


def test_plain_passwords_are_not_references():
    with pytest.raises(ValueError):
        parse_ref("hunter2")
    assert parse_ref("env:HOME").kind == "env"


def test_unset_variable_names_the_variable(monkeypatch):
    monkeypatch.delenv("GOVMIGRATE_TEST_UNSET", raising=False)
    with pytest.raises(SecretError, match="GOVMIGRATE_TEST_UNSET is not set"):
        resolve(SecretRef("env:GOVMIGRATE_TEST_UNSET"))


def test_group_readable_secret_file_is_refused(tmp_path):
    path = tmp_path / "pw"
    path.write_text("value-in-file")
    path.chmod(0o640)
    with pytest.raises(SecretError, match="readable by group or others"):
        resolve(SecretRef(f"file:{path}"))
    path.chmod(0o600)
    assert resolve(SecretRef(f"file:{path}")).reveal() == "value-in-file"


def test_prompt_without_a_terminal_is_refused():
    with pytest.raises(SecretError, match="no terminal"):
        resolve(SecretRef("prompt"))


@pytest.mark.parametrize("log_json", [False, True])
def test_logged_secrets_are_redacted(capsys, log_json):
    secret = Secret("Sup3r-Secret-Value-42", "env:X")
    handler = setup_logging(verbose=2, log_json=log_json)
    try:
        logging.getLogger("migrate.test").warning("login with %s failed", secret.reveal())
        try:
            raise RuntimeError(f"server echoed {secret.reveal()}")
        except RuntimeError:
            logging.getLogger("migrate.test").exception("boom")
    finally:
        logging.getLogger().removeHandler(handler)
    err = capsys.readouterr().err
    assert "Sup3r-Secret-Value-42" not in err
    assert "***" in err
    if log_json:
        for line in err.strip().splitlines():
            json.loads(line)


def test_check_never_writes_secret_values(govmigrate, example_workspace, monkeypatch):
    value = "Central-Pa55word-Never-Shown"
    monkeypatch.setenv("GOVMIGRATE_CENTRAL_PASSWORD", value)
    result = govmigrate("-w", example_workspace, "--log-json", "-vv", "check", expect=None)
    assert value not in result.stdout + result.stderr
    for path in example_workspace.rglob("*"):
        if path.is_file():
            assert value.encode() not in path.read_bytes(), path
