"""What the programme report adds to the per-ministry and per-wave counts: its history and its trouble.

* :func:`burn_up`: mailboxes (and bytes) done over time, replayed from the event log (each mailbox's state
  changes; a mailbox counts from the first moment it reached final-synced, cut-over or done, and stops
  counting if a rollback or a failure takes it back), beside the planned line: every wave's mailboxes
  counted at the end of its maintenance window.
* :func:`wave_status`: one word per wave for the timeline: done, in progress, overdue, not approved,
  scheduled, not scheduled.
* :func:`failure_groups`: the failed mailboxes grouped by what went wrong, in plain words, each group with
  what to do next.

Data only, from the store and :mod:`migrate.reports.programme`'s records; rendering is elsewhere.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from migrate.core import lifecycle
from migrate.core.store import Store
from migrate.plans.catalog import MailboxInfo
from migrate.plans.model import PlanWindow
from migrate.reports.programme import FailureLine, ProgrammeReport, WaveLine, local_datetime
from migrate.reports.status import plain_reason

#: How points are timed (local time).
STAMP = "%Y-%m-%d %H:%M:%S"


@dataclass
class Point:
    """Where a burn-up line stands at a moment (local time, :data:`STAMP`): mailboxes and bytes done by then."""

    at: str
    mailboxes: int
    bytes: int


@dataclass
class BurnUp:
    actual: list[Point] = field(default_factory=list)
    planned: list[Point] = field(default_factory=list)
    #: Mailboxes and bytes to migrate in all (the chart's ceiling).
    total_mailboxes: int = 0
    total_bytes: int = 0


def burn_up(store: Store, report: ProgrammeReport, mailboxes: list[MailboxInfo]) -> BurnUp:
    """The actual line from the event log, the planned line from the wave windows (module docstring)."""
    size = {m.email: m.size or 0 for m in mailboxes if m.row.state != lifecycle.SKIPPED}
    result = BurnUp(total_mailboxes=len(size), total_bytes=sum(size.values()))
    done: set[str] = set()
    count = volume = 0
    first_seen: str | None = None
    for event in store.events(obj="mailbox"):
        if event.action != "state":
            continue
        first_seen = first_seen or event.at  # the line starts at 0 when the first mailbox was planned
        match = lifecycle.STATE_EVENT.match(event.detail)
        email = event.object.partition("/")[2]
        if match is None or email not in size:
            continue
        now_done = match.group(2) in lifecycle.MOVED
        if now_done == (email in done):
            continue
        if now_done:
            done.add(email)
            count, volume = count + 1, volume + size[email]
        else:
            done.discard(email)
            count, volume = count - 1, volume - size[email]
        at = local_datetime(event.at).strftime(STAMP)
        if not result.actual:
            result.actual.append(Point(local_datetime(first_seen).strftime(STAMP), 0, 0))
        if len(result.actual) > 1 and result.actual[-1].at == at:  # the start point stays
            result.actual[-1] = Point(at, count, volume)
        else:
            result.actual.append(Point(at, count, volume))
    planned_mailboxes = planned_bytes = 0
    for wave in sorted((w for w in report.waves if w.window_date), key=_window_end):
        planned_mailboxes += wave.counts.to_migrate
        planned_bytes += wave.counts.bytes_total
        result.planned.append(Point(_window_end(wave).strftime(STAMP), planned_mailboxes, planned_bytes))
    return result


def _window_end(wave: WaveLine) -> dt.datetime:
    end = PlanWindow(date=wave.window_date, start=wave.window_start, hours=wave.window_hours).ends()
    assert end is not None  # only waves with a window date are planned
    return end


#: The timeline's words, in the order a legend lists them.
WAVE_STATUSES = ("done", "in progress", "overdue", "not approved", "scheduled", "not scheduled")


def wave_status(wave: WaveLine) -> str:
    """One word for a wave on the timeline (module docstring)."""
    status = wave.completion.status
    if status == "done":
        return "done"
    if status == "overdue":
        return "overdue"
    if wave.counts.in_progress or wave.counts.done or wave.counts.failed:
        return "in progress"
    if wave.approval == "not approved":
        return "not approved"
    return "scheduled" if wave.window_date else "not scheduled"


@dataclass
class FailureGroup:
    #: What went wrong and what to do next, in plain words.
    what: str
    #: The next step for the migration team.
    next_step: str
    failures: list[FailureLine] = field(default_factory=list)


#: What the migration team does next, by the plain reason's first words (else :data:`DEFAULT_NEXT`).
NEXT_STEPS = {
    "The user's new mailbox on the central host is too small": "Raise the quota on the central host, then run "
                                                               "the wave's pass again: it resumes.",
    "The user's new mailbox on the central host does not exist": "Create the mailbox on the central host, then "
                                                                 "run the wave's pass again.",
    "The migration could not log into": "Check the login in the ministry's user list and the migration "
                                        "account on its server (govmigrate check), then run the pass again.",
    "A mail server's security certificate": "Renew or install the server's certificate (or its CA in the "
                                             "project file), then run the pass again.",
    "A mail server could not be reached": "Nothing, if the outage is over: the next run of the pass retries.",
    "Some messages were refused": "See which with govmigrate status USER; raise the central host's message "
                                  "size limit or accept the loss in writing.",
    "Some folders of the mailbox could not be read": "See which with govmigrate status USER and check them "
                                                     "on the ministry's server; the next run retries them.",
}
DEFAULT_NEXT = "Read govmigrate status USER and govmigrate log --object mailbox/USER; the next run of the pass retries."


def failure_groups(failures: list[FailureLine]) -> list[FailureGroup]:
    """The failures grouped by their plain reason, the largest group first."""
    groups: dict[str, FailureGroup] = {}
    for failure in failures:
        what = plain_reason(failure.reason) or "No reason was recorded."
        if what not in groups:
            step = next((s for prefix, s in NEXT_STEPS.items() if what.startswith(prefix)), DEFAULT_NEXT)
            groups[what] = FailureGroup(what, step)
        groups[what].failures.append(failure)
    return sorted(groups.values(), key=lambda g: (-len(g.failures), g.what))
