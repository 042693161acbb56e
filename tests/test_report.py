"""The programme report without servers: counts per ministry and wave, estimated completion, JSON and CSV.

States and sync counts are written into the store as a wave run would write them, so each test sets up
exactly the programme it describes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest

from migrate.core.config import load_project
from migrate.reports.programme import build_report
from tests.conftest import shared_state_if
from tests.lab import scenario
from tests.test_plan import MB, generate, make_workspace, plan_doc

#: The programme's zone in these tests: UTC-06:00 all year (no daylight saving).
BELIZE = "America/Belize"


@pytest.fixture(autouse=True, params=["sqlite", "postgresql"])
def engine(request):
    """Every test here runs on the workspace's own SQLite store and on a state store on the lab's PostgreSQL."""
    with shared_state_if(request) as url, scenario.engine_state(url):
        yield request.param

def programme(tmp_path, govmigrate, *first_date: str):
    ws = make_workspace(tmp_path / "ws", {
        "health": [("p@health.gov.bz", "pilot", 2 * MB), ("a@health.gov.bz", "", 30 * MB),
                   ("b@health.gov.bz", "", 10 * MB)],
        "education": [("c@education.gov.bz", "", 4 * MB), ("d@education.gov.bz", "", "login refused")],
    }, timezone=BELIZE)
    generate(govmigrate, ws, *first_date, expect=1)
    return ws


def progress(ws, email: str, state: str, copied_bytes: int = 0, reason: str | None = None) -> None:
    store = scenario.workspace_store(ws)
    try:
        m = store.mailbox(email)
        inventory = {row.email: row for row in store.inventory()}[email]
        store.record_mailbox_sync(m.id, result="ok", src_messages=inventory.messages, src_bytes=inventory.bytes,
                                  copied_messages=inventory.messages if copied_bytes else 0,
                                  copied_bytes=copied_bytes, failed_messages=0)
        store.set_mailbox_state(m.id, state, reason, prior_state="prestaged" if state == "failed" else None)
    finally:
        store.close()


def report(ws, today: dt.datetime):
    project = load_project(ws / "migration.yaml")
    store = scenario.workspace_store(ws)
    try:
        return build_report(project, store, today=today)
    finally:
        store.close()


def test_counts_per_ministry_and_wave_follow_the_lifecycle(tmp_path, govmigrate):
    ws = programme(tmp_path, govmigrate, "--first-date", "2030-06-01")
    progress(ws, "p@health.gov.bz", "final-synced", 2 * MB)
    progress(ws, "a@health.gov.bz", "prestaged", 30 * MB)
    progress(ws, "b@health.gov.bz", "failed", 1 * MB, "delta pass: source health: connection refused")
    r = report(ws, dt.datetime(2030, 5, 1))
    health = next(m for m in r.ministries if m.source_id == "health")
    assert (health.counts.mailboxes, health.counts.done, health.counts.in_progress, health.counts.failed) == (3, 1, 1, 1)
    assert health.counts.bytes_moved == 33 * MB and health.counts.bytes_total == 42 * MB
    education = next(m for m in r.ministries if m.source_id == "education")
    assert (education.counts.planned, education.counts.unplanned) == (1, 1), "d failed inventory: in no wave"
    assert education.completion.status == "partly planned" and "in no wave" in education.completion.note
    assert education.completion.at == "2030-06-16T04:00-06:00"
    pilot = next(w for w in r.waves if w.id == "pilot")
    assert pilot.counts.done == 1 and pilot.completion.status == "done"
    assert [(f.email, f.wave) for f in r.failures] == [("b@health.gov.bz", "wave-01")]
    assert "connection refused" in r.failures[0].reason


def test_completion_is_the_last_window_with_work_left(tmp_path, govmigrate):
    ws = programme(tmp_path, govmigrate, "--first-date", "2030-06-01", "--days-between", "7")
    r = report(ws, dt.datetime(2030, 5, 1))
    ends = {w.id: w.completion.at for w in r.waves}
    assert ends == {"pilot": "2030-06-02T04:00-06:00", "wave-01": "2030-06-09T04:00-06:00",
                    "wave-02": "2030-06-16T04:00-06:00"}
    health = next(m for m in r.ministries if m.source_id == "health")
    assert health.completion.at == "2030-06-09T04:00-06:00"
    # A passed window with work left is overdue, and so is the programme's estimate.
    late = report(ws, dt.datetime(2030, 6, 12))
    statuses = {w.id: w.completion.status for w in late.waves}
    assert statuses == {"pilot": "overdue", "wave-01": "overdue", "wave-02": "scheduled"}
    assert late.completion.at is None and late.completion.status == "overdue"


def test_a_wave_without_a_date_has_no_completion(tmp_path, govmigrate):
    ws = programme(tmp_path, govmigrate)
    r = report(ws, dt.datetime(2030, 5, 1))
    assert {w.completion.status for w in r.waves} == {"not scheduled"}
    assert r.completion.at is None


def test_copy_longer_than_the_window_pushes_the_completion(tmp_path, govmigrate):
    ws = make_workspace(tmp_path / "ws", {"health": [("big@health.gov.bz", "", 90_000 * MB)]},
                        waves={"default_rate_mb_s": 1, "window": {"hours": 6}, "pilot": {"count": 0}}, timezone=BELIZE)
    generate(govmigrate, ws, "--first-date", "2030-06-01", expect=1)  # it warns: the copy outlasts the window
    assert plan_doc(ws, "wave-01")["window"]["hours"] == 6
    wave = report(ws, dt.datetime(2030, 5, 1)).waves[0]
    assert wave.remaining_hours == 25.0
    assert wave.completion.at == "2030-06-02T23:00-06:00" and "longer than the window" in wave.completion.note


def test_json_and_csv_for_spreadsheets(tmp_path, govmigrate):
    ws = programme(tmp_path, govmigrate, "--first-date", "2099-06-01")
    progress(ws, "p@health.gov.bz", "final-synced", 2 * MB)
    doc = json.loads(govmigrate("-w", ws, "report", "--json").stdout)
    assert doc["totals"]["done"] == 1 and doc["totals"]["gb_moved"] == 0.002
    assert [w["id"] for w in doc["waves"]] == ["pilot", "wave-01", "wave-02"]
    rows = list(csv.DictReader(io.StringIO(govmigrate("-w", ws, "report", "--csv").stdout)))
    assert [(r["level"], r["id"]) for r in rows] == [("programme", ""), ("ministry", "health"),
                                                     ("ministry", "education"), ("wave", "pilot"),
                                                     ("wave", "wave-01"), ("wave", "wave-02")]
    assert rows[3]["done"] == "1" and rows[3]["mailboxes"] == "1" and rows[3]["window"] == "2099-06-01T22:00-06:00 6h"
    text = govmigrate("-w", ws, "report").stdout
    assert "1 of 5 mailboxes done" in text and "per ministry" in text and "per wave" in text
