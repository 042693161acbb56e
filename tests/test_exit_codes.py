"""Exit codes as the README's table promises them, each driven against the real lab servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from migrate.core.errors import ExitCode
from tests.lab import scenario
from tests.lab.base import free_port
from tests.lab.inspect import read_mailbox

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def own_lab(tmp_path):
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="exits", users=2, messages=40)
    yield lab, ws, boxes
    lab.stop()


def _set_secret(ws: Path, name: str, value: str) -> None:
    path = ws / "secrets" / name
    path.write_text(value + "\n")
    path.chmod(0o600)


def _source_logins(lab, login: str) -> int:
    log = lab.sources["health"].server.log_path
    return log.read_text(errors="replace").count(f"user=<{login}") if log.exists() else 0


def test_refused_central_credentials_exit_5_before_any_source_mailbox_is_read(govmigrate, own_lab):
    lab, ws, boxes = own_lab
    _set_secret(ws, "central-master", "not-the-central-master-password")
    before = _source_logins(lab, boxes[0].login)
    result = govmigrate("-w", ws, "sync", "--all", expect=int(ExitCode.AUTH))
    assert "central host refused the migration account" in result.stderr
    assert "Traceback" not in result.stderr
    assert _source_logins(lab, boxes[0].login) == before, "no source mailbox may be opened"
    assert not any(f.messages for b in boxes for f in read_mailbox(lab.central, b.email).values())


def test_refused_central_credentials_stop_a_wave_run_with_exit_5(govmigrate, own_lab):
    _lab, ws, _boxes = own_lab
    govmigrate("-w", ws, "inventory", "mail")
    govmigrate("-w", ws, "plan", "generate")
    govmigrate("-w", ws, "plan", "approve", "pilot")
    _set_secret(ws, "central-master", "not-the-central-master-password")
    result = govmigrate("-w", ws, "run", "pilot", expect=int(ExitCode.AUTH))
    assert "central host refused" in result.stderr


def test_an_unreachable_central_host_stops_a_wave_run_with_exit_4(govmigrate, own_lab):
    lab, ws, _boxes = own_lab
    govmigrate("-w", ws, "inventory", "mail")
    govmigrate("-w", ws, "plan", "generate")
    govmigrate("-w", ws, "plan", "approve", "pilot")
    text = (ws / "migration.yaml").read_text()
    (ws / "migration.yaml").write_text(text.replace(f"port: {lab.central.tls_port or lab.central.port}",
                                                    f"port: {free_port()}", 1))
    govmigrate("-w", ws, "run", "pilot", expect=int(ExitCode.UNREACHABLE))


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("GOVMIGRATE_WORKSPACE", None)
    return env


def test_a_second_sync_of_a_mailbox_being_synced_exits_7_naming_the_holder(own_lab):
    lab, ws, boxes = own_lab
    box = boxes[0]
    # A bandwidth cap keeps the first sync busy (and between its short store transactions) for a while.
    text = (ws / "migration.yaml").read_text()
    (ws / "migration.yaml").write_text(text.replace("  connections: 4\n", "  connections: 4\n  bandwidth: 300 KB/s\n", 1))
    first = subprocess.Popen([sys.executable, "-m", "migrate", "-w", str(ws), "sync", box.email],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=ROOT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and first.poll() is None:
            if any(f.messages for f in read_mailbox(lab.central, box.email).values()):
                break
            time.sleep(0.02)
        assert first.poll() is None, "the first sync ended before it could be caught holding the mailbox"
        second = subprocess.run([sys.executable, "-m", "migrate", "-w", str(ws), "sync", box.email, "--json"],
                                capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120)
        assert second.returncode == ExitCode.LOCKED, second.stdout + second.stderr
        row = json.loads(second.stdout)[0]
        assert f"pid {first.pid}" in row["result"] and "govmigrate sync" in row["result"], row
        assert "Traceback" not in second.stderr
        assert first.poll() is None, "the first sync was still running: the refusal was the lock's"
    finally:
        _out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    total = sum(len(f.messages) for f in read_mailbox(lab.central, box.email).values())
    assert total == box.messages, "the first sync finished alone, exactly"


def test_warnings_make_a_finished_command_exit_1_the_same_way_everywhere(govmigrate, own_lab):
    _lab, ws, boxes = own_lab
    users = ws / "users" / "health.csv"
    users.write_text(users.read_text() + "not-an-address,someone,Some One,,\n")
    line = len(users.read_text().splitlines())
    for args in (("sync", boxes[0].email), ("inventory", "mail"), ("verify", boxes[0].email)):
        result = govmigrate("-w", ws, *args, expect=int(ExitCode.PARTIAL))
        assert f"health.csv:{line}: email" in result.stderr, args


def test_commands_that_contact_no_server_do_not_warn_about_unset_password_variables(govmigrate, own_lab,
                                                                                   monkeypatch):
    _lab, ws, boxes = own_lab
    text = (ws / "migration.yaml").read_text()
    (ws / "migration.yaml").write_text(text.replace("file:secrets/central-master", "env:GOVLAB_UNSET_PASSWORD"))
    monkeypatch.delenv("GOVLAB_UNSET_PASSWORD", raising=False)
    for args in (("report",), ("status", boxes[0].email), ("log",), ("plan", "show")):
        result = govmigrate("-w", ws, *args, expect=None)
        assert "GOVLAB_UNSET_PASSWORD" not in result.stderr, args
        assert result.exit_code in (0, 2), (args, result.stderr)  # plan show without a plan is a usage error
    check = govmigrate("-w", ws, "check", expect=int(ExitCode.PARTIAL))
    assert "GOVLAB_UNSET_PASSWORD is not set" in check.stderr


def test_a_state_store_held_by_another_process_exits_7_not_internal_error(govmigrate, own_lab, monkeypatch):
    import sqlite3

    import migrate.core.store.base as store_module

    _lab, ws, boxes = own_lab
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 1)
    holder = sqlite3.connect(ws / "state.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")   # another process in the middle of a write
    try:
        result = govmigrate("-w", ws, "sync", boxes[0].email, expect=int(ExitCode.LOCKED))
        assert "locked by another govmigrate process" in result.stderr and "Traceback" not in result.stderr
    finally:
        holder.execute("ROLLBACK")
        holder.close()
