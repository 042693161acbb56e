"""Crash safety: a sync killed with SIGKILL anywhere, re-run, leaves no missing and no extra message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from migrate.core.store import open_store
from tests.lab import corpus, scenario
from tests.lab.inspect import read_mailbox
from tests.lab.scenario import Lab

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def crash_lab(tmp_path):
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="crash", users=2, messages=120)
    # Small batches so that a kill lands between batches of one folder; streaming for the big messages.
    text = (ws / "migration.yaml").read_text()
    (ws / "migration.yaml").write_text(text + "sync:\n  batch_messages: 7\n  stream_threshold: 500000\n")
    yield lab, ws, boxes
    lab.stop()


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(extra or {}))
    env.pop("GOVMIGRATE_WORKSPACE", None)
    return env


def govmigrate(ws: Path, *args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "migrate", "-w", str(ws), *args], capture_output=True, text=True,
                          env=_env(env_extra), timeout=300, cwd=ROOT)


def start_govmigrate(ws: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "migrate", "-w", str(ws), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(), cwd=ROOT, text=True)


def wait_until_landed(proc: subprocess.Popen, lab: Lab, boxes: list[corpus.CorpusMailbox], count: int) -> bool:
    """Wait until ``count`` messages of ``boxes`` are on the central host; False if the run ended first."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if sum(len(f.messages) for b in boxes for f in read_mailbox(lab.central, b.email).values()) >= count:
            return True
        time.sleep(0.01)
    return False


def assert_records_complete(ws: Path, boxes: list[corpus.CorpusMailbox]) -> None:
    """After a resume the store is whole: nothing left pending, every copy knows where it landed."""
    store = open_store(ws / "state.db")
    try:
        records = [r for m in store.mailboxes() for f in store.folders(m.id) for r in store.message_records(f.id)]
    finally:
        store.close()
    assert not [r for r in records if r.state == "pending"], "interrupted copies left pending"
    copied = [r for r in records if r.state == "copied"]
    assert len(copied) == sum(b.messages for b in boxes)
    assert all(r.dest_uid for r in copied), "a copy without its destination UID"


def assert_exact(ws: Path, lab: Lab, boxes: list[corpus.CorpusMailbox]) -> None:
    assert_records_complete(ws, boxes)
    result = govmigrate(ws, "verify", "--all", "--deep", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    for row in json.loads(result.stdout):
        assert row["matches"] and row["missing"] == 0 and row["duplicates"] == 0, row
    for box in boxes:
        total = sum(len(f.messages) for f in read_mailbox(lab.central, box.email).values())
        assert total == box.messages, f"{box.email}: {total} on the central host, {box.messages} at the source"


@pytest.mark.parametrize("point", ["before-append:3", "after-append:1", "after-append:4", "mid-stream:1"])
def test_resume_after_sigkill_copies_no_duplicates(crash_lab, point):
    lab, ws, boxes = crash_lab
    killed = govmigrate(ws, "sync", "--all", env_extra={"GOVMIGRATE_CRASH_AT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    landed = sum(len(f.messages) for box in boxes for f in read_mailbox(lab.central, box.email).values())
    assert 0 < landed < sum(b.messages for b in boxes) or point.startswith("before-append")
    resumed = govmigrate(ws, "sync", "--all", "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    if point.startswith("after-append"):
        # The batch appended and never recorded is found through its pending records (where they say it
        # landed), not by the folder-wide search for messages the store does not know.
        rows = json.loads(resumed.stdout)
        assert sum(r["resumed"] for r in rows) >= 1 and sum(r["reconciled"] for r in rows) == 0, rows
    assert_exact(ws, lab, boxes)


def test_resume_after_sigkill_and_a_lost_state_store(crash_lab):
    lab, ws, boxes = crash_lab
    killed = govmigrate(ws, "sync", "--all", env_extra={"GOVMIGRATE_CRASH_AT": "after-append:5"})
    assert killed.returncode == -signal.SIGKILL
    for suffix in ("", "-wal", "-shm"):
        (ws / f"state.db{suffix}").unlink(missing_ok=True)
    open_store(ws / "state.db", create=True).close()
    resumed = govmigrate(ws, "sync", "--all")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_exact(ws, lab, boxes)


def test_sigkill_at_random_moments_never_duplicates(crash_lab):
    """Kills from outside at moments the engine does not choose, several times in a row."""
    lab, ws, boxes = crash_lab
    total = sum(b.messages for b in boxes)
    # A bandwidth cap keeps the copy slow enough that every kill lands while messages are still moving.
    doc = yaml.safe_load((ws / "migration.yaml").read_text())
    doc["sources"][0]["bandwidth"] = "4 MB/s"
    (ws / "migration.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    for threshold in (total // 5, total // 2, (3 * total) // 4):
        proc = start_govmigrate(ws, "sync", "--all")
        assert wait_until_landed(proc, lab, boxes, threshold), "the sync ended before the kill: it proved nothing"
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        landed = sum(len(f.messages) for b in boxes for f in read_mailbox(lab.central, b.email).values())
        assert threshold <= landed < total, "the kill must land in the middle of the copy"
    resumed = govmigrate(ws, "sync", "--all")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_exact(ws, lab, boxes)


def test_sigterm_stops_cleanly_with_exit_130_and_resumes(crash_lab):
    lab, ws, boxes = crash_lab
    proc = start_govmigrate(ws, "sync", "--all")
    assert wait_until_landed(proc, lab, boxes, sum(b.messages for b in boxes) // 4)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run again to resume" in err or "run the same command again" in err
    assert "Traceback" not in err
    # Stopped at a batch boundary: nothing is left pending in the store.
    store = open_store(ws / "state.db")
    try:
        assert not any(r.state == "pending" for m in store.mailboxes() for f in store.folders(m.id)
                       for r in store.message_records(f.id))
    finally:
        store.close()
    resumed = govmigrate(ws, "sync", "--all")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_exact(ws, lab, boxes)


def test_a_server_bye_mid_sync_reconnects_and_finishes_exactly(crash_lab):
    """The source says BYE to every session of the user (doveadm kick) while the copy runs."""
    lab, ws, boxes = crash_lab
    box = boxes[0]
    proc = start_govmigrate(ws, "sync", box.email, "--json")
    kicked = wait_until_landed(proc, lab, [box], box.messages // 4) and lab.sources["health"].server.kick(box.login)
    out, err = proc.communicate(timeout=120)
    assert kicked, "the sync ended before the server could say BYE; the test proved nothing"
    assert proc.returncode == 0, err
    assert "retry 1 of" in err, err  # the BYE was met and the mailbox was retried
    row = json.loads(out)[0]
    assert row["result"] == "ok"
    result = govmigrate(ws, "verify", box.email, "--deep", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)[0]["matches"], result.stdout
