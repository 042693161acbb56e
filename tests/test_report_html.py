"""`report --html` and `report --wave W --html` as files: self-contained (nothing from the network, no script),
every name from outside escaped, the figures the store holds, the default path printed. The same files in a
real browser: tests/test_report_browser.py."""

from __future__ import annotations

import datetime as dt
import json
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


def _times(html: str) -> list[tuple[str, str]]:
    """(UTC moment, shown text) of every recorded time in a report."""
    return [(stamp, re.sub(r"<[^>]+>", "", shown)) for stamp, shown in re.findall(r'<time datetime="([^"]+)">(.*?)</time>',
                                                                                  html)]


def test_every_time_is_shown_in_the_programmes_zone_whatever_the_hosts(tmp_path, govmigrate, monkeypatch):
    import time

    ws = make_workspace(tmp_path / "ws", {"health": [("p@health.gov.bz", "pilot", 2 * MB)]}, timezone="America/Belize")
    generate(govmigrate, ws, "--first-date", "2030-06-01", expect=None)
    govmigrate("-w", ws, "plan", "approve", "pilot")
    pages = []
    for host_zone in ("Asia/Tokyo", "UTC"):
        monkeypatch.setenv("TZ", host_zone)
        time.tzset()
        out = tmp_path / f"pilot-{host_zone.replace('/', '-')}.html"
        govmigrate("-w", ws, "report", "--wave", "pilot", "--html", out)
        pages.append(out.read_text(encoding="utf-8"))
    monkeypatch.delenv("TZ")
    time.tzset()
    for page in pages:   # the approval and its event, and when the page was made: each at UTC-06:00, named
        assert len(_times(page)) >= 3
        for stamp, shown in _times(page):
            when = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ") - dt.timedelta(hours=6)
            assert shown == f"{when:%Y-%m-%d %H:%M} CST", "the host's zone changes nothing"
    assert "Times are America/Belize (UTC-06:00)" in pages[0]
    assert "2030-06-01 22:00 CST to 2030-06-02 04:00 CST (6 h)" in pages[0], "the window, labelled"


def test_without_a_zone_the_report_says_it_used_the_hosts(tmp_path, govmigrate):
    ws = hostile_programme(tmp_path, govmigrate)
    html = Path(govmigrate("-w", ws, "report", "--html").stdout.strip()).read_text(encoding="utf-8")
    assert "this host&#39;s zone: the project file names none" in html


def test_an_unknown_time_zone_is_named_with_its_file_and_line(tmp_path, govmigrate):
    ws = make_workspace(tmp_path / "ws", {"health": [("p@health.gov.bz", "pilot", 2 * MB)]}, timezone="America/Belize")
    project = ws / "migration.yaml"
    project.write_text(project.read_text().replace("America/Belize", "Belize/Nowhere"))
    err = govmigrate("-w", ws, "check", expect=int(ExitCode.USAGE)).stderr
    line = next(i for i, text in enumerate((ws / "migration.yaml").read_text().splitlines(), 1)
                if text.startswith("timezone:"))
    assert f"migration.yaml:{line}: timezone:" in err and "'Belize/Nowhere' is not a time zone name" in err
    assert "Traceback" not in err


def test_regenerating_a_plan_lapses_its_approvals_with_what_changed(tmp_path, govmigrate):
    ws = hostile_programme(tmp_path, govmigrate)        # windows from 2026-01-05, a week apart; wave-02 not started
    govmigrate("-w", ws, "plan", "approve", "wave-02")
    govmigrate("-w", ws, "plan", "generate", "--replace", "--first-date", "2026-03-02", expect=None)
    record = json.loads(govmigrate("-w", ws, "report", "--wave", "wave-02", "--json").stdout)
    (approval,) = record["approvals"]
    assert record["approval_state"] == "lapsed" and approval["status"] == "lapsed"
    assert approval["end_reason"].startswith("the plan was generated again: window date 2026-01-")
    assert "→ 2026-03-0" in approval["end_reason"]
    assert approval["covered"]["mailboxes"] >= 1 and approval["covered"]["window_date"].startswith("2026-01-")
    wave = {w["id"]: w for w in json.loads(govmigrate("-w", ws, "report", "--json").stdout)["waves"]}["wave-02"]
    assert wave["approval_state"] == "lapsed" and wave["approval"] == "approval lapsed"
    assert dt.datetime.fromisoformat(wave["approval_lapsed_at"]).utcoffset() is not None, "a time with its offset"
    out = tmp_path / "wave-02.html"
    govmigrate("-w", ws, "report", "--wave", "wave-02", "--html", out)
    html = out.read_text(encoding="utf-8")
    assert "<strong>Approval lapsed</strong>" in html and "Not approved" not in html
    assert 'data-status="lapsed"' in html and "window date 2026-01-" in html


def test_a_killed_runs_copy_is_explained_and_a_wave_without_runs_says_none_yet(tmp_path, govmigrate):
    ws = hostile_programme(tmp_path, govmigrate)        # p@health: final-synced, 2 MB copied
    store = open_store(ws / "state.db")
    try:
        killed = store.start_run("pilot", "prestage")
        assert store.abandon_runs("pilot") == [killed]
        finished = store.start_run("pilot", "delta")
        store.finish_run(finished, result="ok", mailboxes=1, messages=0, bytes_=0, seconds=1)
        copied = store.mailbox("p@health.gov.bz").copied_messages
    finally:
        store.close()
    record = json.loads(govmigrate("-w", ws, "report", "--wave", "pilot", "--json").stdout)
    assert record["runs_copied"] == [0, 0] and record["mailboxes_copied"][0] == copied > 0
    out = tmp_path / "pilot.html"
    govmigrate("-w", ws, "report", "--wave", "pilot", "--html", out)
    html = out.read_text(encoding="utf-8")
    assert "not recorded (killed)" in html
    assert re.search(rf"The {copied:,} messages? \([^)]*\) between the two were copied by the 1 run that was killed",
                     html)
    govmigrate("-w", ws, "report", "--wave", "wave-02", "--html", out)
    empty = out.read_text(encoding="utf-8")
    assert 'id="runs"' not in empty and "No run yet." in empty and "No check refused the wave" in empty


def test_numbers_carry_thousands_separators_and_counts_their_nouns():
    from migrate.cli.html import num, size
    from migrate.reports.words import MAILBOX_STATES, extension_text, plural, word

    assert (num(5000), size(1_234_567_890_123), size(999)) == ("5,000", "1.2 TB", "999 B")
    assert (plural(1, "mailbox"), plural(5000, "mailbox"), plural(2, "day")) == ("1 mailbox", "5,000 mailboxes", "2 days")
    assert extension_text("gov:2002") == "2002 (dial plan gov)"
    assert word(MAILBOX_STATES, "final-synced") == "final copy done, waiting for the switch"
    assert word(MAILBOX_STATES, "some-new-state") == "some new state"
