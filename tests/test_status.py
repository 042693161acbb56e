"""The helpdesk's `status` view without servers: finding a user, wave and window, plain-language problems,
and what happens next, for each point of the lifecycle."""

from __future__ import annotations

import json

import pytest

from migrate.core.errors import ExitCode
from migrate.reports.status import plain_reason
from tests.conftest import shared_state_if
from tests.lab import scenario
from tests.test_plan import MB, generate, make_workspace


@pytest.fixture(autouse=True, params=["sqlite", "postgresql"])
def engine(request):
    """Every test here runs on the workspace's own SQLite store and on a state store on the lab's PostgreSQL."""
    with shared_state_if(request) as url, scenario.engine_state(url):
        yield request.param

def workspace(tmp_path, govmigrate):
    ws = make_workspace(tmp_path / "ws", {
        "health": [("jane.doe@health.gov.bz", "pilot", 2 * MB, "Jane Doe"),
                   ("john.roe@health.gov.bz", "vip", 3 * MB, "John Roe"),
                   ("janet.poe@health.gov.bz", "skip", 1 * MB, "Janet Poe"),
                   ("lost@health.gov.bz", "", "source health (127.0.0.1:9): login refused: unknown user", "Lost")]})
    generate(govmigrate, ws, "--first-date", "2030-06-01", expect=int(ExitCode.PARTIAL))
    return ws


def status(govmigrate, ws, user: str, expect: int = 0) -> dict:
    return json.loads(govmigrate("-w", ws, "status", user, "--json", expect=expect).stdout)


def test_a_planned_user_sees_the_wave_window_and_what_comes_next(tmp_path, govmigrate):
    ws = workspace(tmp_path, govmigrate)
    view = status(govmigrate, ws, "jane.doe@health.gov.bz")
    assert view["state"] == "planned" and view["wave"]["id"] == "pilot"
    assert view["wave"]["window_date"] == "2030-06-01" and view["wave"]["approved"] is False
    assert view["messages_copied"] == 0 and view["messages_total"] == 40
    steps = " ".join(view["next_steps"])
    assert "needs the project team's approval" in steps and "copied in advance" in steps
    assert "health.gov.bz switches to the central host after wave wave-01" in steps
    text = govmigrate("-w", ws, "status", "Jane Doe").stdout
    assert "pilot: Pilot (not approved yet)" in text and "2030-06-01 from 22:00 for 6 h" in text


def test_a_vip_is_told_about_white_glove_handling(tmp_path, govmigrate):
    ws = workspace(tmp_path, govmigrate)
    view = status(govmigrate, ws, "John Roe")
    assert view["wave"]["white_glove"] is True
    assert any("White-glove" in s for s in view["next_steps"])


def test_failed_skipped_and_unplanned_users_get_plain_reasons(tmp_path, govmigrate):
    ws = workspace(tmp_path, govmigrate)
    store = scenario.workspace_store(ws)
    try:
        store.set_mailbox_state(store.mailbox("jane.doe@health.gov.bz").id, "failed",
                                "prestage pass: source health (127.0.0.1:9): connection refused (nothing listening)",
                                prior_state="prestaging")
    finally:
        store.close()
    failed = status(govmigrate, ws, "jane.doe@health.gov.bz")
    assert failed["reason_text"] == "A mail server could not be reached. The next run tries again."
    assert "connection refused" in failed["reason"]
    assert any("tries again automatically" in s for s in failed["next_steps"])
    skipped = status(govmigrate, ws, "janet.poe@health.gov.bz")
    assert skipped["state"] == "skipped" and "flag skip" in skipped["reason_text"]
    lost = status(govmigrate, ws, "lost@health.gov.bz")
    assert lost["state"] == "new" and lost["wave"] is None
    assert lost["reason_text"].startswith("The inventory could not measure this mailbox, so it is in no wave yet.")
    assert "could not log into the user's mailbox on the ministry's mail server" in lost["reason_text"]


def test_several_matches_are_listed_and_none_is_a_clear_error(tmp_path, govmigrate):
    ws = workspace(tmp_path, govmigrate)
    many = status(govmigrate, ws, "jan")
    assert sorted(m["email"] for m in many["matches"]) == ["jane.doe@health.gov.bz", "janet.poe@health.gov.bz"]
    result = govmigrate("-w", ws, "status", "nobody-like-this", expect=int(ExitCode.USAGE))
    assert "no mailbox matches 'nobody-like-this'" in result.stderr and "Traceback" not in result.stderr


def test_plain_reasons_for_what_the_engine_records():
    assert "raise its quota" in plain_reason("pre-flight: central quota too small: 8 MB still to copy")
    assert "does not exist yet" in plain_reason("pre-flight: no usable mailbox on the central host: the migration "
                                                 "login for x was refused")
    assert "ministry's mail server" in plain_reason("prestage pass: source health (h:993): login refused: NO")
    assert "certificate" in plain_reason("central host (h:993): TLS certificate refused: expired")
    assert "larger than it accepts" in plain_reason("final pass: 2 message(s) could not be copied (central host "
                                                    "refused it: too big)")
    assert plain_reason("something new entirely") == "something new entirely"
    assert plain_reason(None) is None


def test_copied_is_never_shown_beyond_what_the_source_holds(tmp_path, govmigrate):
    """A source that shrank since the copies were counted (a restored backup, a pass that was cut off before it
    could record its deletions): the helpdesk sees at most "copied N of N", never more copied than there is."""
    ws = workspace(tmp_path, govmigrate)
    store = scenario.workspace_store(ws)
    try:
        store.record_mailbox_sync(store.mailbox("jane.doe@health.gov.bz").id, result="ok", src_messages=21,
                                  src_bytes=21_000, copied_messages=27, copied_bytes=27_000, failed_messages=0)
    finally:
        store.close()
    view = status(govmigrate, ws, "jane.doe@health.gov.bz")
    assert (view["messages_copied"], view["messages_total"]) == (21, 21)
