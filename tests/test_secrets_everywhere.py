"""Secrets on every failure path, in every encoding: each server has its own secret, and after wrong
passwords, refused logins, unreachable hosts, EWS 401s, non-ASCII passwords, ``-vvv`` and ``--log-json``, no
secret (nor a base64 form of it, nor a character of it quoted by an encoding error) is in stdout, stderr, the
state store or any other file of the workspace."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from spnego._ntlm_raw.crypto import ntowfv1

from migrate.core.errors import ExitCode
from tests.lab import corpus, scenario
from tests.lab.base import free_port
from tests.lab.proxy import RecordingProxy

PARTIAL, AUTH = int(ExitCode.PARTIAL), int(ExitCode.AUTH)
NON_ASCII = "Пароль-Жук-Ñandú-2026"
NTLM_AUTHENTICATE_B64 = base64.b64encode(b"NTLMSSP\x00\x03\x00\x00\x00").decode()[:12]   # "TlRMTVNTUAAD"        # Cyrillic and Latin-1: LOGIN cannot carry it, PLAIN can


def _forms(user: str | None, secret: str) -> list[bytes]:
    """The secret as it could leak: itself, the Basic-auth header's base64 in the encodings clients use, and
    the NT hash NTLM derives from it (hex)."""
    out = [secret.encode(), ntowfv1(secret).hex().encode(), ntowfv1(secret).hex().upper().encode()]
    if user:
        for encoding in ("latin-1", "utf-8"):
            try:
                out.append(base64.b64encode(f"{user}:{secret}".encode(encoding)))
            except UnicodeEncodeError:
                pass
    return out


def assert_nowhere(ws: Path, outputs: list[str], secrets: list[tuple[str | None, str]]) -> None:
    blobs = [o.encode() for o in outputs]
    for path in ws.rglob("*"):
        if path.is_file() and "secrets" not in path.parts and path.suffix != ".crt":
            blobs.append(path.read_bytes())
    for user, secret in secrets:
        for form in _forms(user, secret):
            for blob in blobs:
                assert form not in blob, f"{form[:12]!r}… of a secret leaked"
    for blob in blobs:
        assert b"in position" not in blob, "an encoding error quoted part of a secret"


def _write_secret(ws: Path, name: str, value: str) -> None:
    path = ws / "secrets" / name
    path.write_text(value + "\n")
    path.chmod(0o600)


def _outputs(result) -> list[str]:
    return [result.stdout, result.stderr]


def test_imap_failure_paths_leak_no_secret(govmigrate, tmp_path):
    ws = tmp_path / "ws"
    lab, _boxes = scenario.small_lab(ws, seed="leaks", users=2, messages=12)
    source, central = lab.sources["health"].server, lab.central
    right = [(None, source.config.master_password), (None, central.config.master_password)]
    assert len({s for _, s in right}) == 2, "each server has its own secret"
    wrong_source, wrong_central = "wrong-source-Жук-secret", "wrong-central-secret-2026"
    outputs: list[str] = []
    try:
        for flags in ((), ("-vvv",), ("-vvv", "--log-json")):
            outputs += _outputs(govmigrate("-w", ws, *flags, "sync", "--all"))
            outputs += _outputs(govmigrate("-w", ws, *flags, "verify", "--all"))
        # A wrong (and non-ASCII) source password: every mailbox fails with a reason, the wave goes on.
        _write_secret(ws, "health-master", wrong_source)
        for flags in ((), ("-vvv", "--log-json")):
            result = govmigrate("-w", ws, *flags, "sync", "--all", "--json", expect=PARTIAL)
            rows = json.loads(result.stdout)
            assert all("login refused" in r["result"] for r in rows), rows
            outputs += _outputs(result)
            outputs += _outputs(govmigrate("-w", ws, *flags, "inventory", "mail", expect=PARTIAL))
            outputs += _outputs(govmigrate("-w", ws, *flags, "verify", "--all", expect=PARTIAL))
        _write_secret(ws, "health-master", source.config.master_password)
        # A wrong central password: exit 5 before anything is read.
        _write_secret(ws, "central-master", wrong_central)
        outputs += _outputs(govmigrate("-w", ws, "-vvv", "--log-json", "sync", "--all", expect=AUTH))
        _write_secret(ws, "central-master", central.config.master_password)
        # An unreachable source host.
        text = (ws / "migration.yaml").read_text()
        (ws / "migration.yaml").write_text(text.replace(f"port: {source.tls_port}", f"port: {free_port()}"))
        outputs += _outputs(govmigrate("-w", ws, "-vvv", "--log-json", "sync", "--all", expect=PARTIAL))
        outputs += _outputs(govmigrate("-w", ws, "--log-json", "report", "--csv"))
        outputs += _outputs(govmigrate("-w", ws, "log", "--json"))
        assert_nowhere(ws, outputs, [*right, (None, wrong_source), (None, wrong_central)])
    finally:
        lab.stop()


@pytest.mark.parametrize(("auth", "password", "wrong"), [
    (("basic",), "Contraseña-Ñandú-2026", "Wrong-Contraseña-2026"),            # Latin-1, not ASCII
    (("negotiate", "ntlm"), "Пароль-Ω-ntlm-2026", "Wrong-Ω-ntlm-2026"),       # not Latin-1: NTLM only
])
def test_ews_failure_paths_leak_no_secret_not_even_as_a_basic_header(govmigrate, tmp_path, auth, password, wrong):
    boxes = corpus.ministry(seed="ews-leaks", domain="finance.gov.bz", users=1, messages=8, login_style="email",
                            edge_cases=False)
    ws = tmp_path / "ws"
    lab = scenario.ews_lab(ws, boxes, service_password=password, auth=auth)
    responder = lab.extra[0]
    user = responder.service_user
    outputs: list[str] = []
    try:
        for flags in (("-vvv",), ("-vvv", "--log-json")):
            outputs += _outputs(govmigrate("-w", ws, *flags, "sync", "--all"))
            outputs += _outputs(govmigrate("-w", ws, *flags, "inventory", "mail"))
        assert any("Authorization" in o for o in outputs), "exchangelib's -vvv request log was not exercised"
        _write_secret(ws, "finance-ews", wrong)
        for flags in (("-vvv",), ("-vvv", "--log-json")):
            result = govmigrate("-w", ws, *flags, "sync", "--all", "--json", expect=PARTIAL)
            assert "HTTP 401" in json.loads(result.stdout)[0]["result"]
            outputs += _outputs(result)
            outputs += _outputs(govmigrate("-w", ws, *flags, "inventory", "mail", expect=PARTIAL))
        assert_nowhere(ws, outputs, [(user, password), (user, wrong), (None, lab.central.config.master_password)])
        # NTLM's authenticate message answers the challenge with a hash of the password (crackable offline)
        assert not any(NTLM_AUTHENTICATE_B64 in o for o in outputs), "an NTLM authenticate message was logged"
    finally:
        lab.stop()


def _user_password_lab(ws: Path, *, via: RecordingProxy | None = None):
    box = corpus.ministry(seed="plain", domain=scenario.MODERN_DOMAIN, users=1, messages=6, edge_cases=False)[0]
    box = dataclasses.replace(box, password=NON_ASCII)
    lab, _ = scenario.small_lab(ws, seed="plain", boxes=[box])
    (ws / "users" / "health.csv").write_text(corpus.user_list_csv([box], with_passwords=True))
    doc = yaml.safe_load((ws / "migration.yaml").read_text())
    doc["sources"][0]["server"]["login"] = {"method": "user_password"}
    return lab, box, doc


def test_a_non_ascii_password_logs_in_with_authenticate_plain(govmigrate, tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    lab, box, doc = _user_password_lab(ws)
    try:
        (ws / "migration.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
        for name, value in corpus.password_env([box]).items():
            monkeypatch.setenv(name, value)
        rows = json.loads(govmigrate("-w", ws, "sync", box.email, "--json").stdout)
        assert rows[0]["result"] == "ok" and rows[0]["copied"] == box.messages
        log = lab.sources["health"].server.log_path.read_text()
        assert f"user=<{box.login}>, method=PLAIN" in log
    finally:
        lab.stop()


def test_a_non_ascii_password_is_never_sent_with_login_and_the_reason_says_why(govmigrate, tmp_path,
                                                                               monkeypatch):
    """Where the server does not offer AUTH=PLAIN (hidden here in transit), the login is refused by govmigrate
    with a clear reason, nothing of the password is sent, and no character of it is quoted anywhere."""
    ws = tmp_path / "ws"
    lab, box, doc = _user_password_lab(ws)
    proxy = RecordingProxy(lab.sources["health"].server.port, rewrite={b" AUTH=PLAIN": b""})
    try:
        doc["sources"][0]["server"].update(port=proxy.port, tls="none", allow_cleartext=True)
        doc["sources"][0]["server"].pop("ca_file", None)
        (ws / "migration.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
        for name, value in corpus.password_env([box]).items():
            monkeypatch.setenv(name, value)
        result = govmigrate("-w", ws, "sync", box.email, "--json", expect=PARTIAL)
        reason = json.loads(result.stdout)[0]["result"]
        assert "non-ASCII" in reason and "AUTHENTICATE PLAIN" in reason, reason
        assert proxy.sent, "the proxy saw the session"
        assert b"LOGIN" not in bytes(proxy.sent).upper() and NON_ASCII.encode() not in bytes(proxy.sent)
        check = govmigrate("-w", ws, "check")
        assert "AUTHENTICATE PLAIN" in check.stderr and "note:" in check.stderr
        assert_nowhere(ws, [result.stdout, result.stderr, check.stdout, check.stderr], [(None, NON_ASCII)])
    finally:
        proxy.close()
        lab.stop()


@pytest.mark.parametrize("login", ["jane\r\nA1 DELETE INBOX", "jane*evil"])
def test_a_login_name_that_could_become_a_command_is_never_sent(tmp_path, login):
    from migrate.core.errors import LoginFailed
    from migrate.core.secrets import Secret
    from migrate.mailbox.imap import Credentials, Endpoint, open_session

    server = scenario.start_central()
    proxy = RecordingProxy(server.port)
    try:
        endpoint = Endpoint("127.0.0.1", proxy.port, "none", None, True, 10, "source health")
        creds = Credentials("master_user", "migrator", Secret(server.config.master_password))
        with pytest.raises(LoginFailed, match="refusing to log in"):
            open_session(endpoint, creds, login)
        assert b"LOGIN" not in bytes(proxy.sent).upper()
    finally:
        proxy.close()
        server.cleanup()
