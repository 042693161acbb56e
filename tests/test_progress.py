"""Live progress, the sysadmin's view: totals known from the inventory or learned folder by folder as the engine
reads them, a time left only once the rate is steady, and one summary line at the end of `sync` and `run`.

The lab tests run the CLI in-process against the real Dovecot servers (stderr is not a terminal there, so
progress is log lines); the display's rules are tested with a fake clock and a rich console writing to a buffer.
No test measures wall-clock time: durations in the summary line are matched as "some duration".
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from migrate.cli.app import App
from migrate.cli.output import human_bytes
from migrate.cli.progress import (
    LiveProgress,
    LogProgress,
    RateMeter,
    amount_text,
    eta_text,
    human_duration,
    summary_line,
)
from migrate.core.config import load_project
from migrate.core.errors import ExitCode
from migrate.core.progress import ProgressEvent, ProgressTotals
from migrate.core.registry import register_users
from migrate.core.store import open_store
from migrate.mailbox.sync import SyncEngine, SyncOptions
from migrate.plans.catalog import Catalog
from tests.lab import corpus, scenario
from tests.lab.inspect import read_mailbox
from tests.lab.scenario import Lab

MB = 1_000_000
DURATION = r"\d[\d.]* (?:s|min(?: \d+ s)?|h(?: \d+ min)?)"


def summary_pattern(what: str, mailboxes: int, messages: int, nbytes: int, failed: int, rest: str = "") -> str:
    """The summary line with any duration in it (never a measured one)."""
    boxes = f"{mailboxes} mailbox" + ("" if mailboxes == 1 else "es")
    msgs = f"{messages:,} message" + ("" if messages == 1 else "s")
    return (rf"^{re.escape(what)}: {boxes}, {re.escape(msgs)}, {re.escape(human_bytes(nbytes) or '0 B')} "
            rf"in {DURATION}; {failed} failed{re.escape(rest)}$")


def last_line(text: str) -> str:
    return text.rstrip("\n").splitlines()[-1]


def central_totals(lab: Lab, emails) -> tuple[int, int]:
    messages = nbytes = 0
    for email in emails:
        for folder in read_mailbox(lab.central, email).values():
            messages += len(folder.messages)
            nbytes += sum(len(m.raw) for m in folder.messages)
    return messages, nbytes


def sync_with_events(ws: Path) -> tuple[list[ProgressEvent], list]:
    """`sync --all` through the library, every progress event kept."""
    project = load_project(ws / "migration.yaml")
    store = open_store(ws / "state.db")
    events: list[ProgressEvent] = []
    try:
        register_users(project, store)
        reports = SyncEngine(project, store, options=SyncOptions(), progress=events.append).run(store.mailboxes())
    finally:
        store.close()
    return events, reports


# -- against the lab ---------------------------------------------------------------------------------------


def test_sync_all_without_an_inventory_learns_its_total_and_ends_with_a_summary_of_what_was_copied(
        govmigrate, lab: Lab, workspace: Path):
    result = govmigrate("-w", workspace, "-v", "sync", "--all", "--json")
    rows = json.loads(result.stdout)  # stdout is the JSON and nothing else
    messages, nbytes = sum(r["copied"] for r in rows), sum(r["copied_bytes"] for r in rows)
    emails = [b.email for s in lab.sources.values() for b in s.mailboxes]
    assert len(rows) == len(emails) == 6 and messages > 0
    assert central_totals(lab, emails) == (messages, nbytes), "the JSON says what reached the central host"
    assert re.match(summary_pattern("sync", 6, messages, nbytes, 0), last_line(result.stderr)), result.stderr
    # Not a terminal: progress is log lines (shown with -v); without an inventory the total is learned.
    assert "sync: 6 mailboxes; what there is to copy is learned as their folders are read" in result.stderr
    quiet = govmigrate("-w", workspace, "-q", "sync", "--all", "--json")
    assert quiet.stderr == "" and [r["copied"] for r in json.loads(quiet.stdout)] == [0] * 6


def test_the_engine_reports_what_each_folder_holds_to_copy_and_the_total_grows_to_what_was_copied(
        lab: Lab, workspace: Path):
    events, reports = sync_with_events(workspace)
    plan = [e for e in events if e.kind == "plan"]
    assert len(plan) == 1 and plan[0].total_bytes is None and plan[0].total_subjects == 6
    grown = sum(e.bytes for e in events if e.kind == "grow")
    copied = sum(r.copied_bytes for r in reports)
    assert grown == copied > 0, "every byte copied was announced as found first"
    for r in reports:
        mine = [e for e in events if e.subject == r.email]
        kinds = [e.kind for e in mine]
        assert kinds[0] == "start" and kinds[-1] == "done"
        assert kinds.index("grow") < kinds.index("advance"), "a folder's size is known before it is copied"
        assert sum(e.messages for e in mine if e.kind == "grow") == r.copied == r.src_messages
    totals = ProgressTotals()
    for e in events:
        totals(e)
    assert (totals.total_bytes, totals.bytes, totals.growing) == (copied, copied, False)
    # A second pass copies only what changed: nothing here, so nothing is found and the total stays 0.
    again, _ = sync_with_events(workspace)
    assert not [e for e in again if e.kind in ("grow", "advance")]


def test_with_an_inventory_the_total_is_its_remaining_size_known_up_front(govmigrate, lab: Lab, workspace: Path):
    govmigrate("-w", workspace, "inventory", "mail")
    project = load_project(workspace / "migration.yaml")
    store = open_store(workspace / "state.db")
    try:
        catalog = Catalog(project, store)
        remaining = {m.email: catalog.get(m.email).remaining_bytes for m in store.mailboxes()}
    finally:
        store.close()
    assert all(remaining.values())
    events, reports = sync_with_events(workspace)
    plan = next(e for e in events if e.kind == "plan")
    assert plan.total_bytes == sum(remaining.values())
    assert {e.subject: e.total_bytes for e in events if e.kind == "start"} == remaining
    totals = ProgressTotals()
    for e in events[:2]:  # the plan and the first start: the whole total is known before anything is read
        totals(e)
    assert (totals.total_bytes, totals.growing) == (sum(remaining.values()), False)
    assert sum(r.copied_bytes for r in reports) == sum(remaining.values()), "the estimate was right"
    # The CLI says the same in its log lines; a later pass learns what changed (nothing here).
    later = govmigrate("-w", workspace, "-v", "sync", "--all")
    assert "sync: 6 mailboxes; what there is to copy is learned" in later.stderr
    assert re.match(summary_pattern("sync", 6, 0, 0, 0), last_line(later.stderr)), later.stderr


def test_the_inventory_total_shows_in_the_log_lines_of_a_first_sync(govmigrate, lab: Lab, workspace: Path):
    govmigrate("-w", workspace, "inventory", "mail")
    inventory = json.loads(govmigrate("-w", workspace, "inventory", "show", "--json").stdout)
    nbytes = sum(s["totals"]["bytes"] for s in inventory["sources"])
    messages = sum(s["totals"]["messages"] for s in inventory["sources"])
    result = govmigrate("-w", workspace, "-v", "sync", "--all")
    assert (f"sync: 6 mailboxes; {human_bytes(nbytes)} ({messages:,} messages) to copy, as the inventory "
            "measured it") in result.stderr


def test_a_retry_after_a_dropped_connection_forgets_what_it_will_find_again(tmp_path):
    from tests.lab.proxy import FlakyProxy

    ws = tmp_path / "ws"
    lab, (box,) = scenario.small_lab(ws, seed="progress-flaky")
    proxy = FlakyProxy(lab.sources["health"].server.tls_port, cut_after=3_000_000, cuts=1).start()
    try:
        text = (ws / "migration.yaml").read_text()
        (ws / "migration.yaml").write_text(text.replace(f"port: {lab.sources['health'].server.tls_port}",
                                                        f"port: {proxy.port}"))
        events, (report,) = sync_with_events(ws)
    finally:
        proxy.stop()
        lab.stop()
    assert proxy.cuts_done == 1 and report.ok and report.attempts == 2
    kinds = [e.kind for e in events]
    assert "retry" in kinds and kinds.index("advance") < kinds.index("retry"), "copied some, then lost the link"
    found = sum(e.bytes for e in events if e.kind == "grow")
    copied = sum(e.bytes for e in events if e.kind == "advance")
    assert found > copied == box.size, "the second attempt found again what the first had not copied"
    totals = ProgressTotals()
    for e in events[:-1]:  # everything before "done": the learned total is already what the mailbox copies
        totals(e)
    assert events[-1].kind == "done" and totals.subject_totals(box.email) == (box.messages, box.size)


@pytest.fixture
def password_lab(tmp_path, monkeypatch):
    """Two mailboxes whose users' own passwords (from the user list) log in at the source; both in one wave."""
    ws = tmp_path / "ws"
    boxes = corpus.ministry(seed="progress", domain=scenario.MODERN_DOMAIN, users=2, messages=12,
                            edge_cases=False, pilot=0, vip=0)
    lab, _ = scenario.small_lab(ws, seed="progress", boxes=boxes)
    (ws / "users" / "health.csv").write_text(corpus.user_list_csv(boxes, with_passwords=True))
    doc = yaml.safe_load((ws / "migration.yaml").read_text())
    doc["sources"][0]["server"]["login"] = {"method": "user_password"}
    (ws / "migration.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    for name, value in corpus.password_env(boxes).items():
        monkeypatch.setenv(name, value)
    yield lab, ws, boxes
    lab.stop()


def wrong_password(monkeypatch, box) -> None:
    (name, _right), = corpus.password_env([box]).items()
    monkeypatch.setenv(name, "not-" + box.password)


def test_a_mailbox_whose_password_is_wrong_is_counted_as_failed(govmigrate, password_lab, monkeypatch):
    lab, ws, (good, bad) = password_lab
    wrong_password(monkeypatch, bad)
    result = govmigrate("-w", ws, "sync", "--all", "--json", expect=int(ExitCode.PARTIAL))
    rows = {r["mailbox"]: r for r in json.loads(result.stdout)}
    assert rows[bad.email]["result"].startswith("failed") and rows[good.email]["copied"] == good.messages
    assert re.match(summary_pattern("sync", 2, good.messages, good.size, 1), last_line(result.stderr)), \
        result.stderr
    assert central_totals(lab, [good.email]) == (good.messages, good.size)


def test_a_wave_run_ends_with_the_summary_line_failures_included(govmigrate, password_lab, monkeypatch):
    lab, ws, (good, bad) = password_lab
    govmigrate("-w", ws, "inventory", "mail")
    # Nobody is flagged pilot: the pilot wave takes the two smallest mailboxes, both of them (a warning: exit 1).
    plan = json.loads(govmigrate("-w", ws, "plan", "generate", "--first-date", "2099-01-05", "--json",
                                 expect=1).stdout)
    wave = plan["waves"][0]["wave"]
    assert sorted(yaml.safe_load((ws / "plans" / f"{wave}.yaml").read_text())["mailboxes"]) == \
        sorted([good.email, bad.email])
    govmigrate("-w", ws, "plan", "approve", wave)
    wrong_password(monkeypatch, bad)
    result = govmigrate("-w", ws, "run", wave, "--pass", "prestage", "--force", expect=int(ExitCode.PARTIAL))
    assert re.match(summary_pattern(f"wave {wave}: prestage pass", 2, good.messages, good.size, 1,
                                    ", 1 now prestaged"), last_line(result.stderr)), result.stderr
    # Once the password is right, the retry's summary counts only what it copied.
    monkeypatch.setenv(*next(iter(corpus.password_env([bad]).items())))
    retry = govmigrate("-w", ws, "run", wave, "--pass", "prestage", "--json")
    assert [o["email"] for o in json.loads(retry.stdout)["mailboxes"]] == [bad.email]
    assert re.match(summary_pattern(f"wave {wave}: prestage pass", 1, bad.messages, bad.size, 0,
                                    ", 1 now prestaged"), last_line(retry.stderr)), retry.stderr
    assert central_totals(lab, [good.email, bad.email]) == (good.messages + bad.messages, good.size + bad.size)


# -- the display's rules, with a fake clock ----------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def live_progress(tmp_path, clock) -> tuple[LiveProgress, io.StringIO]:
    buf = io.StringIO()
    app = App(tmp_path, err=Console(file=buf, force_terminal=True, width=200, no_color=True))
    return LiveProgress(app, "sync", clock=clock), buf


def test_the_total_grows_as_folders_are_read(tmp_path):
    live, _ = live_progress(tmp_path, FakeClock())
    overall = live.progress.tasks[0]
    live(ProgressEvent("plan", total_subjects=2))
    assert live.overall_total() == (0, True) and overall.total is None
    live(ProgressEvent("start", "a@x.bz"))
    live(ProgressEvent("grow", "a@x.bz", messages=10, bytes=100 * MB))
    assert live.overall_total() == (100 * MB, True) and overall.total == 100 * MB
    live(ProgressEvent("grow", "a@x.bz", messages=5, bytes=50 * MB))
    live(ProgressEvent("start", "b@x.bz"))
    live(ProgressEvent("grow", "b@x.bz", messages=3, bytes=30 * MB))
    assert live.overall_total() == (180 * MB, True) and overall.total == 180 * MB
    assert overall.fields["size"] == "0 B of 180.0 MB+"
    assert overall.fields["msgs"] == "0 of 18+ msgs, 0 of 2 mailboxes"
    live(ProgressEvent("advance", "a@x.bz", messages=15, bytes=150 * MB))
    live(ProgressEvent("done", "a@x.bz"))
    live(ProgressEvent("advance", "b@x.bz", messages=3, bytes=30 * MB))
    live(ProgressEvent("done", "b@x.bz"))
    assert live.overall_total() == (180 * MB, False), "every mailbox done: the total is what was done"
    assert (overall.completed, overall.total) == (180 * MB, 180 * MB)
    assert overall.fields["size"] == "180.0 MB of 180.0 MB"


def test_an_estimate_up_front_holds_until_more_is_found_and_a_mailbox_ends_at_what_it_did():
    t = ProgressTotals()
    t(ProgressEvent("plan", total_bytes=600, total_messages=6, total_subjects=2))  # b: not in the inventory
    assert (t.total_bytes, t.growing) == (600, False)
    t(ProgressEvent("start", "a", total_bytes=600, total_messages=6))
    t(ProgressEvent("grow", "a", messages=3, bytes=300))
    assert (t.total_bytes, t.growing) == (600, False), "found less than the estimate so far: the estimate holds"
    t(ProgressEvent("grow", "a", messages=4, bytes=400))
    assert (t.total_bytes, t.total_messages) == (700, 7), "more than estimated: the total grows"
    t(ProgressEvent("advance", "a", messages=6, bytes=650))
    t(ProgressEvent("failed", "a", detail="connection lost"))
    assert t.total_bytes == 650 and (t.finished, t.failed) == (1, 1), "a mailbox that ended is what it did"
    t(ProgressEvent("start", "b"))
    assert t.growing, "b has no estimate: its total is learned"
    t(ProgressEvent("grow", "b", messages=2, bytes=100))
    t(ProgressEvent("advance", "b", messages=1, bytes=40))
    t(ProgressEvent("retry", "b"))  # starts over: what it found and did not copy will be found again
    assert t.subject_totals("b") == (1, 40)
    t(ProgressEvent("grow", "b", messages=1, bytes=60))
    assert t.subject_totals("b") == (2, 100) and t.total_bytes == 650 + 100
    t(ProgressEvent("done", "b"))
    assert not t.growing


def test_the_running_totals_agree_with_the_rule_whatever_the_order_of_events():
    import random

    rng = random.Random(7)
    names = [f"u{i}@x.bz" for i in range(6)]
    estimates = {n: (rng.randrange(50), rng.randrange(5000)) if rng.random() < 0.5 else (None, None) for n in names}
    known = [e for e in estimates.values() if e[1] is not None]
    t = ProgressTotals()
    t(ProgressEvent("plan", total_messages=sum(e[0] for e in known), total_bytes=sum(e[1] for e in known),
                    total_subjects=len(names)))
    started, ended = [], set()
    for _ in range(400):
        name = rng.choice(names)
        if name not in started:
            started.append(name)
            t(ProgressEvent("start", name, total_messages=estimates[name][0], total_bytes=estimates[name][1]))
            continue
        kind = "advance" if name in ended else rng.choice(["grow", "grow", "advance", "advance", "retry", "done",
                                                             "failed"])
        if kind in ("done", "failed"):
            ended.add(name)
        t(ProgressEvent(kind, name, messages=rng.randrange(5), bytes=rng.randrange(300)))
        subjects = t.subjects.values()
        assert t.total_bytes == max(0, sum(e[1] for e in known) - sum(s.estimate_bytes or 0 for s in subjects)) \
            + sum(s.total_bytes for s in subjects)
        assert t.total_messages == max(0, sum(e[0] for e in known) - sum(s.estimate_messages or 0 for s in subjects)) \
            + sum(s.total_messages for s in subjects)
        assert t.growing == (any(not s.finished and s.estimate_bytes is None for s in subjects)
                             or (not known and len(started) < len(names)))
    assert ended and t.bytes == sum(s.done_bytes for s in t.subjects.values())


def test_no_time_left_before_the_rate_is_steady_then_the_right_one(tmp_path):
    clock = FakeClock()
    live, _ = live_progress(tmp_path, clock)
    live(ProgressEvent("plan", total_bytes=100 * MB, total_messages=100, total_subjects=1))
    live(ProgressEvent("start", "a@x.bz", total_bytes=100 * MB, total_messages=100))
    start = clock.now
    shown = []
    for second in range(1, 31):  # a steady 1 MB/s, one batch a second
        clock.now = start + second
        live(ProgressEvent("advance", "a@x.bz", messages=1, bytes=MB))
        shown.append(live.eta())
    # The first batch starts the clock of the rate; ten seconds later the rate is steady.
    assert shown[:10] == [None] * 10
    assert all(s is not None for s in shown[10:])
    seconds, at_least = shown[-1]
    assert seconds == pytest.approx(70.0) and not at_least, "70 MB left at 1 MB/s"
    assert live._eta_column(live.progress.tasks[0]) == "about 1 min 10 s left"
    assert live._rate_column(live.progress.tasks[0]) == "1.0 MB/s"
    clock.now += 4  # between batches the count goes down
    assert live.eta()[0] == pytest.approx(66.0)


def test_a_change_of_rate_hides_the_time_left_until_the_new_rate_settles():
    meter = RateMeter()
    done, shown = 0, {}
    for second in range(1, 161):  # 1 MB/s for a minute, then 0.1 MB/s (a busy source)
        done += MB if second <= 60 else MB // 10
        meter.observe(done, float(second))
        shown[second] = meter.eta(500 * MB - done, float(second))
    assert shown[60] == pytest.approx((500 - 60) / 1.0)
    assert all(shown[s] is None for s in range(72, 100)), "the rate is falling: no promise"
    assert shown[160] is not None and shown[160] == pytest.approx((500 * MB - done) / (MB / 10), rel=0.05)


def test_a_stalled_copy_shows_no_time_left():
    meter = RateMeter()
    for second in range(1, 21):
        meter.observe(second * MB, float(second))
    assert meter.eta(10 * MB, 20.0) == pytest.approx(10.0)
    assert meter.eta(10 * MB, 35.0) is None, "nothing for 15 s: stalled, no promise"


def test_sparse_batches_on_a_slow_link_still_get_a_time_left():
    meter = RateMeter()
    meter.observe(2 * MB, 12.0)  # 2 MB every 12 s: about 167 KB/s
    meter.observe(4 * MB, 24.0)
    assert meter.eta(12 * MB, 24.0) is None, "past the warm-up, but one interval is not yet a steady rate"
    meter.observe(6 * MB, 36.0)
    assert meter.eta(12 * MB, 36.0) == pytest.approx(72.0)
    for i in range(4, 12):
        meter.observe(i * 2 * MB, i * 12.0)
    assert meter.eta(12 * MB, 11 * 12.0) == pytest.approx(72.0)
    assert meter.eta(12 * MB, 11 * 12.0 + 6) == pytest.approx(66.0), "the count goes down between batches"


def test_a_total_still_being_learned_gives_a_lower_bound(tmp_path):
    clock = FakeClock()
    live, _ = live_progress(tmp_path, clock)
    live(ProgressEvent("plan", total_subjects=3))
    live(ProgressEvent("start", "a@x.bz"))
    live(ProgressEvent("grow", "a@x.bz", messages=40, bytes=40 * MB))
    start = clock.now
    for second in range(1, 21):
        clock.now = start + second
        live(ProgressEvent("advance", "a@x.bz", messages=1, bytes=MB))
    seconds, at_least = live.eta()
    assert seconds == pytest.approx(20.0) and at_least
    assert eta_text(live.eta()) == "at least 20 s left"


def test_log_lines_say_where_the_run_stands_every_minute(caplog):
    clock = FakeClock()
    sink = LogProgress("sync", clock=clock)
    caplog.set_level("INFO", logger="migrate.progress")
    sink(ProgressEvent("plan", total_bytes=120 * MB, total_messages=1200, total_subjects=2))
    sink(ProgressEvent("start", "a@x.bz", total_bytes=60 * MB, total_messages=600))
    start = clock.now
    for second in range(1, 61):
        clock.now = start + second
        sink(ProgressEvent("advance", "a@x.bz", messages=10, bytes=MB))
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "sync: 2 mailboxes; 120.0 MB (1,200 messages) to copy, as the inventory measured it"
    assert lines[1:] == ["sync: 60.0 MB of 120.0 MB, 600 of 1,200 msgs, 0 of 2 mailboxes done, 1.0 MB/s, "
                         "about 1 min left"]


def test_numbers_for_people():
    assert [human_duration(s) for s in (3.64, 42.4, 192, 180, 3840, 7200)] == \
        ["3.6 s", "42 s", "3 min 12 s", "3 min", "1 h 4 min", "2 h"]
    assert amount_text(5, 0, True, str) == "5" and amount_text(5, 9, True, str) == "5 of 9+"
    assert amount_text(5, 9, False, str, "msgs") == "5 of 9 msgs"
    assert summary_line("sync", mailboxes=12, messages=4512, nbytes=186_300_000, seconds=192, failed=1) == \
        "sync: 12 mailboxes, 4,512 messages, 186.3 MB in 3 min 12 s; 1 failed"
    assert summary_line("sync", mailboxes=1, messages=1, nbytes=0, seconds=0.2, failed=0) == \
        "sync: 1 mailbox, 1 message, 0 B in 0.2 s; 0 failed"
    assert summary_line("sync (dry run)", mailboxes=2, messages=10, nbytes=1_000_000, seconds=41, failed=0,
                        dry_run=True, more=["1 incomplete"]) == \
        "sync (dry run): 2 mailboxes, 10 messages, 1.0 MB to copy (read in 41 s); 0 failed, 1 incomplete"


def test_the_summary_is_a_log_record_with_log_json_and_nothing_with_quiet(tmp_path, caplog):
    from migrate.cli.progress import print_summary

    caplog.set_level("INFO", logger="migrate.summary")
    buf = io.StringIO()
    print_summary(App(tmp_path, err=Console(file=buf), log_json=True), "sync: 1 mailbox")
    assert [(r.name, r.getMessage()) for r in caplog.records] == [("migrate.summary", "sync: 1 mailbox")]
    print_summary(App(tmp_path, err=Console(file=buf), quiet=True), "sync: 2 mailboxes")
    assert buf.getvalue() == "" and len(caplog.records) == 1
    print_summary(App(tmp_path, err=Console(file=buf)), "sync: 3 mailboxes")
    assert buf.getvalue() == "sync: 3 mailboxes\n"
