"""`report --html` and `report --wave W --html` as files: self-contained (nothing from the network, no script),
every name from outside escaped, the figures the store holds, the default path printed. The same files in a
real browser: tests/test_report_browser.py."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from migrate.core.errors import ExitCode
from migrate.core.store import open_store
from tests.test_plan import MB, generate, make_workspace
from tests.test_report import progress

HOSTILE_NAME = '<script>alert("name")</script>'
HOSTILE_REASON = 'delta pass: <img src=x onerror=alert(1)> connection refused'


def hostile_programme(tmp_path, govmigrate) -> Path:
    ws = make_workspace(tmp_path / "ws", {
        "health": [("p@health.gov.bz", "pilot", 2 * MB), ("a@health.gov.bz", "", 30 * MB, HOSTILE_NAME),
                   ("b@health.gov.bz", "", 10 * MB)],
        "education": [("c@education.gov.bz", "", 4 * MB)],
    })
    generate(govmigrate, ws, "--first-date", "2026-01-05", expect=None)  # windows in the past: overdue
    progress(ws, "p@health.gov.bz", "final-synced", 2 * MB)
    progress(ws, "b@health.gov.bz", "failed", 1 * MB, HOSTILE_REASON)
    return ws


def external_references(html: str) -> list[str]:
    """Every URL the page could load: src/href attributes, CSS url(), @import (namespaces and comments aside)."""
    tags = re.findall(r"<[A-Za-z][^>]*>", html)  # real tags: escaped text starts with &lt;
    found = [u for tag in tags for u in re.findall(r'(?:src|href)\s*=\s*["\']?([^"\'\s>]+)', tag, re.IGNORECASE)]
    found += re.findall(r"url\(\s*['\"]?([^)'\"]+)", html, re.IGNORECASE)
    found += re.findall(r"@import\s+['\"]?([^;'\"]+)", html, re.IGNORECASE)
    return [u for u in found if not u.startswith("#")]


def test_the_programme_report_is_one_self_contained_file_with_every_name_escaped(tmp_path, govmigrate):
    ws = hostile_programme(tmp_path, govmigrate)
    result = govmigrate("-w", ws, "report", "--html")
    path = Path(result.stdout.strip())
    assert path == (ws / "reports" / f"programme-{dt.date.today().isoformat()}.html").resolve()
    html = path.read_text(encoding="utf-8")
    assert "<script" not in html.lower(), "nothing in the file runs"
    assert external_references(html) == []
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert html.count("<svg") >= 3, "two burn-up charts and the timeline, inline"
    assert 'data-metric="mailboxes-done">1<' in html and 'data-metric="failures">1<' in html
    assert 'data-metric="mailboxes-total">4<' in html
    assert "overdue" in html and "@page { size: A4 landscape" in html
    # Failures are grouped by what went wrong, with what to do next.
    assert "A mail server could not be reached" in html and "the next run of the pass retries" in html
    # The footer: when, from which workspace, by whom.
    assert str(ws.resolve()) in html and "Generated " in html


def test_a_wave_record_holds_its_approval_its_mailboxes_and_its_events(tmp_path, govmigrate):
    ws = hostile_programme(tmp_path, govmigrate)
    govmigrate("-w", ws, "plan", "approve", "pilot")
    out = tmp_path / "pilot.html"
    govmigrate("-w", ws, "report", "--wave", "pilot", "--html", out)
    html = out.read_text(encoding="utf-8")
    store = open_store(ws / "state.db")
    try:
        row = store.wave("pilot")
        assert row is not None and row.plan_hash
        assert row.plan_hash in html and f"Approved by {row.approved_by}" in html
        assert 'data-mailbox="p@health.gov.bz"' in html
        assert "approve" in html  # the approval event is among the wave's events
    finally:
        store.close()
    record = govmigrate("-w", ws, "report", "--wave", "pilot", "--json").stdout
    assert '"plan_hash"' in record and "p@health.gov.bz" in record
    hostile = tmp_path / "wave-01.html"
    wave = next(w for w in ("wave-01", "wave-02") if "a@health.gov.bz" in
                govmigrate("-w", ws, "report", "--wave", w, "--json").stdout)
    govmigrate("-w", ws, "report", "--wave", wave, "--html", hostile)
    text = hostile.read_text(encoding="utf-8")
    assert "<script" not in text and "&lt;script&gt;" in text


def test_html_does_not_go_with_json_and_an_unknown_wave_is_named(tmp_path, govmigrate):
    ws = hostile_programme(tmp_path, govmigrate)
    err = govmigrate("-w", ws, "report", "--html", "--json", expect=int(ExitCode.USAGE)).stderr
    assert "--html writes a file" in err
    err = govmigrate("-w", ws, "report", "--wave", "nope", expect=int(ExitCode.USAGE)).stderr
    assert "no wave 'nope'" in err


def test_the_burn_up_replays_the_event_log_and_plans_from_the_windows(tmp_path, govmigrate):
    from migrate.core.config import load_project
    from migrate.plans.catalog import Catalog
    from migrate.reports.history import burn_up
    from migrate.reports.programme import build_report

    ws = hostile_programme(tmp_path, govmigrate)           # p is final-synced: 1 done
    progress(ws, "c@education.gov.bz", "final-synced", 4 * MB)
    progress(ws, "c@education.gov.bz", "failed", 4 * MB, "final pass: a folder failed")  # and not any more
    project, store = load_project(ws / "migration.yaml"), open_store(ws / "state.db")
    try:
        report = build_report(project, store)
        burn = burn_up(store, report, Catalog(project, store).in_sources(), zone=project.zone)
    finally:
        store.close()
    assert burn.actual[0].mailboxes == 0, "the line starts at nothing done"
    assert burn.actual[-1].mailboxes == 1, "c was done, then failed: it no longer counts"
    assert burn.actual[-1].bytes == 2 * MB
    assert burn.planned[-1].mailboxes == burn.total_mailboxes == 4
    assert [p.at for p in burn.planned] == sorted(p.at for p in burn.planned)
