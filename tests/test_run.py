"""Wave runs against the real-server lab: a whole programme (two ministries and a pilot) from inventory to
final passes, with status and report checked against the store and the central host; pre-flight
refusals; and a wave stopped by SIGTERM, raced by a second run, killed by SIGKILL, and finished."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from migrate.core import lifecycle
from migrate.core.errors import ExitCode, UsageError
from migrate.core.store import MailboxRow, open_store
from tests.conftest import shared_state_if
from tests.lab import scenario
from tests.lab.inspect import read_mailbox
from tests.lab.scenario import Lab

ROOT = Path(__file__).resolve().parents[1]
FIRST_DATE = "2099-01-05"   # far ahead, so that no window is ever overdue


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def programme(request, tmp_path_factory):
    """Two ministry servers and a central host private to this module (the tests add mail at a source),
    and one workspace that the flow tests below take step by step, in order: once with the workspace's own
    SQLite store, once with a state store on the lab's PostgreSQL (every command, on both engines)."""
    with shared_state_if(request) as state_url:
        sources = scenario.start_sources(scenario.make_corpora(seed="waves", users=3, messages=30))
        try:
            lab = Lab(sources, scenario.start_central())
        except BaseException:
            for source in sources.values():
                source.server.cleanup()
            raise
        ws = tmp_path_factory.mktemp("programme") / "ws"
        scenario.write_workspace(ws, lab, state_url=state_url)
        yield lab, ws
        lab.stop()


def g(govmigrate, ws: Path, *args: str, expect: int = 0, **kw):
    return govmigrate("-w", ws, *args, expect=expect, **kw)


def run_json(govmigrate, ws: Path, *args: str, expect: int = 0) -> dict:
    return json.loads(g(govmigrate, ws, "run", *args, "--json", expect=expect).stdout)


def states(ws: Path) -> dict[str, str]:
    store = scenario.workspace_store(ws)
    try:
        return {m.email: m.state for m in store.mailboxes()}
    finally:
        store.close()


def wave_members(ws: Path, wave: str) -> list[str]:
    return yaml.safe_load((ws / "plans" / f"{wave}.yaml").read_text())["mailboxes"]


def central_totals(lab: Lab, email: str) -> tuple[int, int]:
    folders = read_mailbox(lab.central, email).values()
    return sum(len(f.messages) for f in folders), sum(len(m.raw) for f in folders for m in f.messages)


def corpus_box(lab: Lab, email: str):
    for source in lab.sources.values():
        for box in source.mailboxes:
            if box.email == email:
                return box
    raise KeyError(email)


def _row(email: str, state: str, prior: str | None = None, flags: frozenset[str] = frozenset()) -> MailboxRow:
    return MailboxRow(1, "health", email, email, "", flags, state, None, "wave-01", None, None, None, None, 0, 0, 0,
                      prior)


def test_each_pass_works_on_the_mailboxes_that_have_not_completed_it():
    rows = [_row("new@x.bz", "planned"), _row("half@x.bz", "prestaging"), _row("pre@x.bz", "prestaged"),
            _row("delta@x.bz", "delta-synced"), _row("final@x.bz", "final-synced"),
            _row("f1@x.bz", "failed", "prestaging"), _row("f2@x.bz", "failed", "prestaged"),
            _row("skip@x.bz", "planned", flags=frozenset({"skip"}))]

    def work(pass_name: str, again: bool = False) -> list[str]:
        return [m.email.split("@")[0] for m in lifecycle.eligibility(rows, pass_name, again=again).work]

    assert work("prestage") == ["new", "half", "f1"]
    assert work("delta") == ["pre", "f2"]
    assert work("final") == ["pre", "delta", "f2"], "the delta pass may be skipped"
    assert work("final", again=True) == ["pre", "delta", "final", "f2"]
    blocked = dict((m.email.split("@")[0], why) for m, why in lifecycle.eligibility(rows, "final").blocked)
    assert set(blocked) == {"new", "half", "f1", "skip"} and "not prestaged yet" in blocked["new"]
    assert "flagged skip" in blocked["skip"]
    assert lifecycle.next_pass(rows) == "prestage"
    # A failed pass is retried by the next run of the same pass, a failed repeat (--again) too.
    assert lifecycle.retry_state("delta", "prestaged") == "prestaged"
    assert lifecycle.retry_state("final", "final-synced") == "delta-synced"
    assert lifecycle.retry_state("prestage", "planned") == "prestaging"
    assert lifecycle.next_pass([_row("d@x.bz", "final-synced")]) is None


def test_cut_over_and_done_follow_the_final_pass_only(tmp_path):
    store = open_store(tmp_path / "state.db", create=True)
    try:
        store.upsert_source("health", "Ministry of Health", "imap", ["x.bz"])
        store.upsert_mailbox("health", "a@x.bz", "a", "A", [])
        row = store.mailbox("a@x.bz")
        with pytest.raises(UsageError, match="only a final-synced mailbox can be cut over"):
            lifecycle.mark_cut_over(store, row)
        store.set_mailbox_state(row.id, "final-synced")
        lifecycle.mark_cut_over(store, store.mailbox("a@x.bz"), "MX of x.bz now points at the central host")
        lifecycle.mark_done(store, store.mailbox("a@x.bz"))
        assert store.mailbox("a@x.bz").state == "done"
        assert [e.detail.split(":")[0] for e in store.events(obj="mailbox/a@x.bz")][-2:] == \
            ["final-synced -> cut-over", "cut-over -> done"]
    finally:
        store.close()


# -- the programme, step by step ----------------------------------------------------------------------------


def test_1_inventory_and_plan_a_pilot_and_two_ministries(govmigrate, programme):
    lab, ws = programme
    g(govmigrate, ws, "inventory", "mail")
    plan = json.loads(g(govmigrate, ws, "plan", "generate", "--first-date", FIRST_DATE, "--json").stdout)
    assert [w["wave"] for w in plan["waves"]] == ["pilot", "wave-01", "wave-02"]
    pilots = sorted(b.email for s in lab.sources.values() for b in s.mailboxes if "pilot" in b.user_flags)
    assert sorted(wave_members(ws, "pilot")) == pilots
    health = {b.email for b in lab.sources["health"].mailboxes} - set(pilots)
    assert set(wave_members(ws, "wave-01")) == health
    assert plan["waves"][1]["cutover_domains"] == ["health.gov.bz"] and plan["waves"][1]["white_glove"]
    assert plan["excluded"] == []
    g(govmigrate, ws, "plan", "validate")


def test_2_the_pilot_prestage_copies_everything_once_approved(govmigrate, programme):
    lab, ws = programme
    g(govmigrate, ws, "run", "pilot", expect=int(ExitCode.NOT_APPROVED))
    early = g(govmigrate, ws, "run", "pilot", "--dry-run", expect=1)  # helps the review before approval; warns
    assert "not approved (a dry run goes ahead" in early.stderr
    g(govmigrate, ws, "plan", "approve", "pilot", env={"GOVMIGRATE_ACTOR": "it.director"})
    dry = run_json(govmigrate, ws, "pilot", "--dry-run")
    assert all(o["would_copy"] == corpus_box(lab, o["email"]).messages for o in dry["mailboxes"])
    assert all(central_totals(lab, e)[0] == 0 for e in wave_members(ws, "pilot")), "a dry run copies nothing"
    result = run_json(govmigrate, ws, "pilot", "--pass", "prestage")
    assert result["pass"] == "prestage" and result["exit_code"] == 0
    assert result["preflight"]["findings"] == []
    for o in result["mailboxes"]:
        assert (o["before"], o["after"], o["ok"]) == ("planned", "prestaged", True)
        box = corpus_box(lab, o["email"])
        assert o["copied"] == box.messages
        assert central_totals(lab, o["email"]) == (box.messages, box.size)
    assert {states(ws)[e] for e in wave_members(ws, "pilot")} == {"prestaged"}
    assert states(ws)[next(iter(wave_members(ws, "wave-01")))] == "planned"


def test_3_delta_carries_mail_that_arrived_since_the_prestage(govmigrate, programme):
    lab, ws = programme
    pilot = lab.sources["health"].mailboxes[0]
    assert "pilot" in pilot.user_flags
    src = lab.sources["health"].server.connect(pilot.login)
    src.append("INBOX", "(\\Seen)", '"02-Jan-2027 09:00:00 +0000"', b"Subject: after prestage\r\n\r\nnew mail\r\n")
    src.logout()
    result = run_json(govmigrate, ws, "pilot", "--pass", "delta")
    copied = {o["email"]: o["copied"] for o in result["mailboxes"]}
    assert copied[pilot.email] == 1 and sum(copied.values()) == 1
    assert {states(ws)[e] for e in wave_members(ws, "pilot")} == {"delta-synced"}
    assert central_totals(lab, pilot.email)[0] == pilot.messages + 1


def test_4_the_final_pass_is_the_default_next_and_a_rerun_has_nothing_left(govmigrate, programme):
    _lab, ws = programme
    result = run_json(govmigrate, ws, "pilot")
    assert result["pass"] == "final"
    assert {o["after"] for o in result["mailboxes"]} == {"final-synced"}
    again = g(govmigrate, ws, "run", "pilot")
    assert "nothing left to do" in again.stderr
    repeat = run_json(govmigrate, ws, "pilot", "--pass", "final", "--again")
    assert [(o["after"], o["copied"]) for o in repeat["mailboxes"]] == [("final-synced", 0)] * 2
    verify = json.loads(g(govmigrate, ws, "verify", *wave_members(ws, "pilot"), "--json").stdout)
    assert all(r["matches"] and r["missing"] == 0 and r["duplicates"] == 0 for r in verify)


def test_5_a_ministry_wave_through_prestage_delta_and_final(govmigrate, programme):
    lab, ws = programme
    g(govmigrate, ws, "plan", "approve", "wave-01")
    for pass_name, state in (("prestage", "prestaged"), ("delta", "delta-synced"), ("final", "final-synced")):
        result = run_json(govmigrate, ws, "wave-01", "--pass", pass_name)
        assert [o["after"] for o in result["mailboxes"]] == [state] * len(wave_members(ws, "wave-01"))
    verify = json.loads(g(govmigrate, ws, "verify", *wave_members(ws, "wave-01"), "--json", "--deep").stdout)
    assert all(r["matches"] for r in verify)
    for email in wave_members(ws, "wave-01"):
        box = corpus_box(lab, email)
        assert central_totals(lab, email) == (box.messages, box.size)


def test_6_every_state_change_and_run_is_in_the_log(govmigrate, programme):
    _lab, ws = programme
    email = wave_members(ws, "wave-01")[0]
    log = json.loads(g(govmigrate, ws, "log", "--object", f"mailbox/{email}", "--json").stdout)
    changes = [e["detail"] for e in log if e["action"] == "state"]
    assert changes == ["new -> planned: in wave wave-01", "planned -> prestaging", "prestaging -> prestaged",
                       "prestaged -> delta-synced", "delta-synced -> final-synced"]
    wave_log = json.loads(g(govmigrate, ws, "log", "--object", "wave/pilot", "--json").stdout)
    actions = [e["action"] for e in wave_log]
    assert actions[0] == "approve" and wave_log[0]["actor"] == "it.director"
    assert actions.count("run-start") == 4 and actions.count("run-finish") == 4


def test_7_status_tells_the_helpdesk_where_a_user_is(govmigrate, programme):
    lab, ws = programme
    pilot = lab.sources["health"].mailboxes[0]
    view = json.loads(g(govmigrate, ws, "status", pilot.email, "--json").stdout)
    store = scenario.workspace_store(ws)
    try:
        row = store.mailbox(pilot.email)
    finally:
        store.close()
    assert view["state"] == "final-synced" and view["wave"]["id"] == "pilot"
    assert view["wave"]["window_date"] == FIRST_DATE
    assert view["messages_copied"] == row.copied_messages == central_totals(lab, pilot.email)[0]
    assert view["messages_total"] == pilot.messages + 1
    assert view["bytes_copied"] == central_totals(lab, pilot.email)[1]
    assert view["last_sync_at"] == row.last_sync_at
    assert any("health.gov.bz switches to the central host after wave wave-01" in s for s in view["next_steps"])
    # By login, and by part of a display name, as the helpdesk types it.
    assert pilot.email in g(govmigrate, ws, "status", pilot.login).stdout
    text = g(govmigrate, ws, "status", pilot.display_name.split()[-1]).stdout
    assert pilot.email in text
    waiting = lab.sources["education"].mailboxes[2]
    text = g(govmigrate, ws, "status", waiting.email).stdout
    assert "planned" in text and "wave-02" in text and "not approved yet" in text
    assert "0 of 36 messages" in text


def test_8_the_report_agrees_with_the_store_and_the_central_host(govmigrate, programme):
    lab, ws = programme
    report = json.loads(g(govmigrate, ws, "report", "--json").stdout)
    migrated = wave_members(ws, "pilot") + wave_members(ws, "wave-01")
    on_central = [central_totals(lab, e) for e in migrated]
    totals = report["totals"]
    assert (totals["mailboxes"], totals["done"], totals["planned"]) == (6, 4, 2)
    assert totals["messages_moved"] == sum(n for n, _ in on_central)
    assert totals["bytes_moved"] == sum(b for _, b in on_central)
    waves = {w["id"]: w for w in report["waves"]}
    assert waves["wave-01"]["counts"]["done"] == 2 and waves["wave-02"]["counts"]["done"] == 0
    # The end of wave-02's window, a wall-clock time in the programme's zone (the host's: the lab names none).
    end = dt.datetime(2099, 1, 20, 4, 0)
    completion = waves["wave-02"]["completion"]
    assert (completion["status"], completion["note"]) == ("scheduled", "")
    assert dt.datetime.fromisoformat(completion["at"]).replace(tzinfo=None) == end
    assert report["completion"]["at"] == completion["at"]
    ministries = {m["source_id"]: m for m in report["ministries"]}
    health = [b for b in lab.sources["health"].mailboxes]
    assert ministries["health"]["counts"]["done"] == 3
    assert ministries["health"]["counts"]["bytes_moved"] == sum(central_totals(lab, b.email)[1] for b in health)
    assert ministries["education"]["counts"]["done"] == 1
    rows = g(govmigrate, ws, "report", "--csv").stdout.splitlines()
    assert rows[0].startswith("level,id,name,mailboxes,done")
    assert [r.split(",")[0] for r in rows[1:]] == ["programme", "ministry", "ministry", "wave", "wave", "wave"]
    text = g(govmigrate, ws, "report").stdout
    assert "4 of 6 mailboxes done" in text


def test_9_a_pass_cannot_skip_the_prestage(govmigrate, programme):
    _lab, ws = programme
    g(govmigrate, ws, "plan", "approve", "wave-02")
    result = run_json(govmigrate, ws, "wave-02", "--pass", "final", expect=int(ExitCode.PARTIAL))
    assert result["mailboxes"] == [] and len(result["skipped"]) == 2
    assert all("not prestaged yet" in s["why"] for s in result["skipped"])
    assert {states(ws)[e] for e in wave_members(ws, "wave-02")} == {"planned"}


def test_10_secrets_reach_no_plan_report_log_or_store(govmigrate, programme):
    lab, ws = programme
    secrets = [lab.central.config.master_password]
    secrets += [s.server.config.master_password for s in lab.sources.values()]
    outputs = [g(govmigrate, ws, *args).stdout for args in (("report", "--json"), ("log", "--json"),
                                                           ("plan", "show", "--json"), ("status", "maria"))]
    files = [p.read_bytes().decode("latin-1") for p in ws.rglob("*") if p.is_file() and "secrets" not in p.parts]
    for secret in secrets:
        assert all(secret not in blob for blob in outputs + files)


# -- pre-flight ------------------------------------------------------------------------------------------------


def test_preflight_lists_every_problem_before_copying_and_force_runs_the_rest(govmigrate, programme, tmp_path):
    lab, _ = programme
    health = lab.sources["health"]
    pilot, vip, plain = health.mailboxes       # 7.3 MB, 8.2 MB and 5.9 MB
    central = scenario.start_central(quota_bytes=7_500_000, quick_auth_failures=True)
    try:
        ws = tmp_path / "ws"
        scenario.write_workspace(ws, Lab({"health": health}, central), sources=["health"])
        central.users.pop(plain.email)          # the central mail team has not created this one yet
        central._write_users()
        g(govmigrate, ws, "inventory", "mail")
        g(govmigrate, ws, "plan", "generate", "--json")
        g(govmigrate, ws, "plan", "move", pilot.email, "--to", "wave-01")
        g(govmigrate, ws, "plan", "approve", "wave-01")
        refused = g(govmigrate, ws, "run", "wave-01", expect=int(ExitCode.PREFLIGHT))
        err = refused.stderr
        assert f"{vip.email}: central quota too small" in err
        assert f"{plain.email}: no usable mailbox on the central host" in err
        assert "--force" in err and "nothing was copied" in err
        assert all(central_totals(Lab({}, central), b.email)[0] == 0 for b in (pilot, vip))
        assert set(states(ws).values()) <= {"planned", "new"}
        forced = run_json(govmigrate, ws, "wave-01", "--force", expect=int(ExitCode.PARTIAL))
        assert [o["email"] for o in forced["mailboxes"]] == [pilot.email]
        assert {e["email"] for e in forced["left_out_by_preflight"]} == {vip.email, plain.email}
        now = states(ws)
        assert (now[pilot.email], now[vip.email], now[plain.email]) == ("prestaged", "failed", "failed")
        view = json.loads(g(govmigrate, ws, "status", vip.email, "--json").stdout)
        assert "raise its quota" in view["reason_text"] and view["reason"].startswith("pre-flight: central quota")
        assert any("tries again" in s for s in view["next_steps"])
        report = json.loads(g(govmigrate, ws, "report", "--json").stdout)
        assert {f["email"] for f in report["failures"]} == {vip.email, plain.email}
        # Once the account exists, the next run retries the failed mailbox from where it was.
        central.add_user(plain.email, "central-pw")
        time.sleep(1.1)  # Dovecot looks at a changed passwd-file at most once a second
        retry = run_json(govmigrate, ws, "wave-01", "--pass", "prestage", "--force", expect=int(ExitCode.PARTIAL))
        assert [(o["email"], o["after"]) for o in retry["mailboxes"]] == [(plain.email, "prestaged")]
    finally:
        central.cleanup()


def test_preflight_of_a_later_pass_logs_in_only_where_no_recent_sync_did(govmigrate, tmp_path):
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="proven", users=2, messages=6)
    try:
        source = lab.sources["health"].server
        g(govmigrate, ws, "inventory", "mail")
        g(govmigrate, ws, "plan", "generate", expect=None)
        g(govmigrate, ws, "plan", "move", boxes[1].email, "--to", "pilot")   # both in one wave
        wave = "pilot"
        g(govmigrate, ws, "plan", "approve", wave)
        g(govmigrate, ws, "run", wave, "--pass", "prestage")
        gone = next(b for b in boxes if b.email in wave_members(ws, wave))
        source.users.pop(gone.login)            # the account is closed at the ministry after the prestage
        source._write_users()
        time.sleep(1.1)                         # Dovecot looks at a changed passwd-file at most once a second
        # Its prestage logged in minutes ago: the pre-flight does not log in again; the pass fails the mailbox
        # with the source's reason, and the others go on.
        delta = run_json(govmigrate, ws, wave, "--pass", "delta", expect=int(ExitCode.PARTIAL))
        after = {o["email"]: o["after"] for o in delta["mailboxes"]}
        assert after == {gone.email: "failed", next(b.email for b in boxes if b is not gone): "delta-synced"}
        assert "login" in json.loads(g(govmigrate, ws, "status", gone.email, "--json").stdout)["reason"]
        # A last login long ago (or stamped in the future) proves nothing: the pre-flight logs in, and refuses.
        for stamp in ("2020-01-01T00:00:00Z", "2999-01-01T00:00:00Z"):
            _set(ws, gone.email, last_sync_at=stamp, last_sync_result="ok")
            refused = g(govmigrate, ws, "run", wave, "--pass", "delta", "--again",
                        expect=int(ExitCode.PREFLIGHT))
            assert f"{gone.email}: login at the source failed" in refused.stderr
    finally:
        lab.stop()


def test_preflight_of_a_later_pass_checks_the_quota_its_last_sync_left_on_the_central_host(govmigrate, tmp_path):
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="quota", users=1, messages=6,
                                    central_kw={"quota_bytes": 51_200_000})   # 50,000 KiB
    try:
        box = boxes[0]
        g(govmigrate, ws, "inventory", "mail")
        g(govmigrate, ws, "plan", "generate", expect=None)
        wave = next(p.stem for p in sorted((ws / "plans").glob("*.yaml"))
                    if box.email in (yaml.safe_load(p.read_text()) or {}).get("mailboxes", []))
        g(govmigrate, ws, "plan", "approve", wave)
        g(govmigrate, ws, "run", wave, "--pass", "prestage")
        [row] = [m for m in _store_rows(ws) if m.email == box.email]
        assert row.central_quota_limit == 51_200_000 and 0 < row.central_quota_used < 51_200_000
        assert row.central_quota_at == row.last_sync_at
        # The central copy over its quota, as the prestage left it: the delta's pre-flight refuses from that figure,
        # without logging in (the central host itself has room).
        _set(ws, box.email, central_quota_used=51_200_001)
        refused = g(govmigrate, ws, "run", wave, "--pass", "delta", expect=int(ExitCode.PREFLIGHT))
        assert f"{box.email}: central quota too small" in refused.stderr
        # A figure read long ago (or stamped in the future) is not used: the pre-flight logs in and reads it.
        _set(ws, box.email, central_quota_at="2020-01-01T00:00:00Z")
        g(govmigrate, ws, "run", wave, "--pass", "delta")
        _set(ws, box.email, central_quota_at="2999-01-01T00:00:00Z")
        g(govmigrate, ws, "run", wave, "--pass", "delta", "--again")
    finally:
        lab.stop()


def _store_rows(ws: Path) -> list[MailboxRow]:
    store = scenario.workspace_store(ws)
    try:
        return store.mailboxes()
    finally:
        store.close()


def _set(ws: Path, email: str, **columns) -> None:
    """Change a mailbox's row as a restored backup or another host's clock would have left it."""
    store = scenario.workspace_store(ws)
    try:
        with store.tx() as c:
            for column, value in columns.items():
                c.execute(f"UPDATE mailboxes SET {column} = ? WHERE email = ?", (value, email))
    finally:
        store.close()


def test_a_wave_from_an_exchange_source_runs_like_any_other(govmigrate, tmp_path):
    from tests.lab import corpus

    boxes = corpus.ministry(seed="ewswave", domain="finance.gov.bz", users=2, messages=20, login_style="email",
                            pilot=0)
    ws = tmp_path / "ws"
    lab = scenario.ews_lab(ws, boxes, waves={"pilot": {"count": 0}})
    try:
        g(govmigrate, ws, "inventory", "mail")
        g(govmigrate, ws, "plan", "generate")
        emails = sorted(b.email for b in boxes)
        assert sorted(wave_members(ws, "wave-01")) == emails
        g(govmigrate, ws, "plan", "approve", "wave-01")
        for pass_name in ("prestage", "final"):     # the delta pass may be skipped
            result = run_json(govmigrate, ws, "wave-01", "--pass", pass_name)
            assert all(o["ok"] for o in result["mailboxes"]) and len(result["mailboxes"]) == 2
        assert {states(ws)[e] for e in emails} == {"final-synced"}
        verify = json.loads(g(govmigrate, ws, "verify", *emails, "--json").stdout)
        assert all(r["matches"] for r in verify)
        for box in boxes:
            assert central_totals(lab, box.email)[0] == box.messages
    finally:
        lab.stop()


# -- stop, race, kill, resume ----------------------------------------------------------------------------------


def cli(ws: Path, *args: str, env_extra: dict[str, str] | None = None, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env_extra or {}))
    env.pop("GOVMIGRATE_WORKSPACE", None)
    return subprocess.run([sys.executable, "-m", "migrate", "-w", str(ws), *args], capture_output=True, text=True,
                          env=env, timeout=300, cwd=ROOT, **kw)


def test_a_wave_stopped_raced_and_killed_finishes_exactly_once(tmp_path):
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="wavecrash", users=3, messages=60)
    try:
        project = ws / "migration.yaml"
        original = project.read_text()
        # Slow the source link so that the run is still copying when the test acts; small batches so that
        # a stop or a kill falls between batches of one folder.
        project.write_text(original.replace("  connections: 4\n", "  connections: 4\n  bandwidth: 2 MB/s\n", 1)
                           + "sync:\n  batch_messages: 5\n")
        assert cli(ws, "inventory", "mail").returncode == 0
        assert cli(ws, "plan", "generate").returncode == 0
        assert cli(ws, "plan", "approve", "wave-01").returncode == 0
        members = wave_members(ws, "wave-01")
        assert len(members) == 2

        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("GOVMIGRATE_WORKSPACE", None)
        first = subprocess.Popen([sys.executable, "-m", "migrate", "-w", str(ws), "run", "wave-01"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            if sum(central_totals(lab, e)[0] for e in members) >= 5:
                break
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the test could race it"
        second = cli(ws, "run", "wave-01")
        assert second.returncode == ExitCode.LOCKED, second.stderr
        assert f"wave wave-01 is locked by govmigrate run wave-01 --pass prestage (pid {first.pid}" in second.stderr
        first.send_signal(signal.SIGTERM)
        _out, err = first.communicate(timeout=120)
        assert first.returncode == ExitCode.INTERRUPTED, err
        assert "run the same command again to resume" in err and "Traceback" not in err
        now = states(ws)
        assert "failed" not in {now[e] for e in members}, "a stop is not a failure"
        assert "prestaging" in {now[e] for e in members}

        project.write_text(original + "sync:\n  batch_messages: 5\n")   # full speed from here on
        killed = cli(ws, "run", "wave-01", env_extra={"GOVMIGRATE_CRASH_AT": "after-append:2"})
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        resumed = cli(ws, "run", "wave-01", "--json")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert {o["after"] for o in json.loads(resumed.stdout)["mailboxes"]} == {"prestaged"}

        verify = cli(ws, "verify", *members, "--deep", "--json")
        assert verify.returncode == 0, verify.stdout
        for row in json.loads(verify.stdout):
            assert row["matches"] and row["missing"] == 0 and row["duplicates"] == 0, row
        for box in boxes:
            if box.email in members:
                assert central_totals(lab, box.email) == (box.messages, box.size)
        store = open_store(ws / "state.db")
        try:
            results = [r.result for r in store.runs("wave-01")]
            events = [e.action for e in store.events(obj="wave/wave-01")]
        finally:
            store.close()
        assert results == ["interrupted", "killed", "ok"]
        assert "run-killed" in events and "run-interrupted" in events
    finally:
        lab.stop()
