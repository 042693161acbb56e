"""`govmigrate init`, `check` and `log`: the workspace, the project file and its validation."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
from pathlib import Path

from migrate.core.errors import ExitCode


def test_init_creates_a_workspace_that_passes_check(govmigrate, example_workspace: Path):
    for part in ("migration.yaml", "plans", "reports", "state.db", "users/health.csv"):
        assert (example_workspace / part).exists(), part
    text = (example_workspace / "migration.yaml").read_text()
    assert text.count("#") > 40, "the example project file should be fully commented"
    result = govmigrate("-w", example_workspace, "check", expect=int(ExitCode.PARTIAL))
    assert "ok" in result.stdout
    # Unset secret variables are warnings, not errors, in check: it finishes, with exit 1.
    assert "GOVMIGRATE_CENTRAL_PASSWORD is not set" in result.stderr


def test_init_refuses_an_existing_workspace(govmigrate, example_workspace: Path):
    before = (example_workspace / "migration.yaml").read_text()
    result = govmigrate("init", example_workspace, expect=int(ExitCode.WORKSPACE))
    assert "already a govmigrate workspace" in result.stderr
    assert (example_workspace / "migration.yaml").read_text() == before


def test_state_store_is_private(example_workspace: Path):
    mode = stat.S_IMODE((example_workspace / "state.db").stat().st_mode)
    assert mode == 0o600


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(needle)


def test_check_names_every_problem_by_line(govmigrate, example_workspace: Path):
    project = example_workspace / "migration.yaml"
    _edit(project, "    tls: implicit              # implicit (IMAPS)", "    tsl: implicit")
    _edit(project, "    port: 993\n", "    port: 99999\n")
    _edit(project, "    ministry: Ministry of Health\n", "")
    typo_line = _line_of(project, "tsl: implicit")
    port_line = _line_of(project, "port: 99999")
    result = govmigrate("-w", example_workspace, "check", expect=int(ExitCode.USAGE))
    err = result.stderr
    assert f"migration.yaml:{typo_line}: central.imap.tsl: unknown key" in err
    assert f"migration.yaml:{port_line}: central.imap.port:" in err
    assert re.search(r"migration\.yaml:\d+: sources\[0\]\.ministry: required field is missing", err)
    assert "3 problems found" in err
    assert "Traceback" not in err


def test_check_reports_yaml_syntax_errors_with_line(govmigrate, example_workspace: Path):
    project = example_workspace / "migration.yaml"
    project.write_text(project.read_text() + "\nbroken: [unclosed\n")
    result = govmigrate("-w", example_workspace, "check", expect=2)
    assert "YAML syntax error" in result.stderr
    assert re.search(r"migration\.yaml:\d+:", result.stderr)


def test_check_refuses_duplicate_keys(govmigrate, example_workspace: Path):
    project = example_workspace / "migration.yaml"
    _edit(project, "name: National e-Government mail consolidation\n",
          "name: National e-Government mail consolidation\nname: again\n")
    result = govmigrate("-w", example_workspace, "check", expect=2)
    assert "name: duplicate key" in result.stderr


def test_check_refuses_a_password_written_in_the_file(govmigrate, example_workspace: Path):
    project = example_workspace / "migration.yaml"
    _edit(project, "password: env:GOVMIGRATE_CENTRAL_PASSWORD", "password: hunter2hunter2")
    result = govmigrate("-w", example_workspace, "check", expect=2)
    assert "central.login.password: must be a secret reference" in result.stderr
    assert "hunter2hunter2" not in result.stderr


def test_check_validates_user_lists_by_line(govmigrate, example_workspace: Path):
    users = example_workspace / "users" / "health.csv"
    users.write_text(users.read_text()
                     + "not-an-address,x,X,,\n"
                     + "jane@finance.gov.bz,jane,Jane,,\n"
                     + "john.smith@health.gov.bz,js2,John Again,,\n"
                     + "ok@health.gov.bz,ok,Ok,,superuser\n"
                     + "short@health.gov.bz,short\n")
    result = govmigrate("-w", example_workspace, "check", expect=2)
    err = result.stderr
    assert "health.csv:7: email: 'not-an-address' is not an email address" in err
    assert "health.csv:8: email: domain of jane@finance.gov.bz is not one of this source's domains" in err
    assert "health.csv:9: email: john.smith@health.gov.bz is already listed on line 5" in err
    assert "health.csv:10: flags: unknown flag 'superuser'" in err
    assert "health.csv:11: expected 5 columns" in err


def test_check_refuses_a_secret_file_others_can_read(govmigrate, example_workspace: Path):
    secret = example_workspace / "central.secret"
    secret.write_text("s3cret-value\n")
    secret.chmod(0o644)
    project = example_workspace / "migration.yaml"
    _edit(project, "password: env:GOVMIGRATE_CENTRAL_PASSWORD", f"password: file:{secret}")
    result = govmigrate("-w", example_workspace, "check", expect=int(ExitCode.PARTIAL))
    assert "readable by group or others" in result.stderr
    assert "chmod 600" in result.stderr


def test_log_lists_events_as_json(govmigrate, example_workspace: Path):
    events = json.loads(govmigrate("-w", example_workspace, "log", "--json").stdout)
    assert events[0]["object"] == "workspace" and events[0]["action"] == "init"


def test_event_log_is_append_only(example_workspace: Path):
    conn = sqlite3.connect(example_workspace / "state.db")
    try:
        conn.execute("UPDATE events SET detail = 'forged'")
        raise AssertionError("the event log accepted an update")
    except sqlite3.DatabaseError as exc:
        assert "append-only" in str(exc)
    finally:
        conn.close()


def test_a_bad_shared_state_section_names_the_file_line_and_field(govmigrate, example_workspace: Path):
    project = example_workspace / "migration.yaml"
    base = project.read_text()
    cases = [
        ("state:\n  url: postgresql://govmigrate:Hunter2-Secret@db.gov.bz/govmigrate\n  user: govmigrate\n",
         "state.url: must not hold a user name or password"),
        ("state:\n  url: postgresql://db.gov.bz/govmigrate?sslmode=require&password=Hunter2-Secret\n  user: x\n",
         "state.url: must not hold password= in its query"),
        ("state:\n  url: postgresql://db.gov.bz/govmigrate?PassFile=/root/Hunter2-Secret\n  user: x\n",
         "state.url: must not hold PassFile= in its query"),
        ("state:\n  url: mysql://db.gov.bz/govmigrate\n  user: govmigrate\n",
         "state.url: must be a postgresql://HOST[:PORT]/DATABASE URL"),
        ("state:\n  url: postgresql://db.gov.bz/govmigrate\n", "state.user: required field is missing"),
        ("state:\n  url: postgresql://db.gov.bz/govmigrate\n  user: govmigrate\n  ca_file: /nonexistent/ca.pem\n",
         "state.ca_file: CA file /nonexistent/ca.pem does not exist"),
    ]
    for section, message in cases:
        project.write_text(base + "\n" + section)
        field = message.split(":")[0].split(".")[-1]
        lines = section.splitlines()
        at = next((i for i, text in enumerate(lines) if text.startswith(f"  {field}:")), 0)  # else the section
        line = len((base + "\n").splitlines()) + 1 + at
        result = govmigrate("-w", example_workspace, "check", expect=int(ExitCode.USAGE))
        assert f"migration.yaml:{line}: {message}" in result.stderr, result.stderr
        assert "Hunter2-Secret" not in result.stderr and "Traceback" not in result.stderr
        for command in (("log",), ("report",), ("status", "ana")):  # commands that need no server name it too
            other = govmigrate("-w", example_workspace, *command, expect=None)
            assert other.exit_code != 0 and "Hunter2-Secret" not in other.stdout + other.stderr, other.stderr
            assert "Traceback" not in other.stderr
