"""What the programme report adds to the per-ministry and per-wave counts: its history and its trouble.

* :func:`burn_up`: mailboxes (and bytes) done over time, replayed from the event log (each mailbox's state
  changes; a mailbox counts from the first moment it reached final-synced, cut-over or done, and stops
  counting if a rollback or a failure takes it back), beside the planned line (every wave's mailboxes
  counted at the end of its maintenance window) and the forecast line (from now, each wave's mailboxes
  left counted at its forecast end: :mod:`migrate.reports.forecast`).
* :func:`wave_status`: one word per wave for the timeline and the tables: the forecast's (done, failing,
  overdue, at risk, in progress, not approved, scheduled, not scheduled).
* :func:`failure_groups`: the failed mailboxes grouped by what went wrong, in plain words, each group with
  what to do next.

Data only, from the store and :mod:`migrate.reports.programme`'s records; rendering is elsewhere.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from migrate.core import lifecycle
from migrate.core.store import Store
from migrate.core.timezones import Zone
from migrate.plans.catalog import MailboxInfo
from migrate.reports.forecast import WAVE_STATUSES
from migrate.reports.programme import FailureLine, ProgrammeReport, WaveLine
from migrate.reports.status import plain_reason

__all__ = ["WAVE_STATUSES", "BurnUp", "FailureGroup", "Point", "burn_up", "failure_groups", "wave_status"]


@dataclass
class Point:
    """Where a burn-up line stands at a moment (an aware time in the programme's zone): mailboxes and bytes
    done by then."""

    at: dt.datetime
    mailboxes: int
    bytes: int


@dataclass
class BurnUp:
    actual: list[Point] = field(default_factory=list)
    planned: list[Point] = field(default_factory=list)
    forecast: list[Point] = field(default_factory=list)
    #: Mailboxes and bytes to migrate in all (the chart's ceiling).
    total_mailboxes: int = 0
    total_bytes: int = 0
    #: The moment the report is made ("today" on the chart).
    now: dt.datetime | None = None


def burn_up(store: Store, report: ProgrammeReport, mailboxes: list[MailboxInfo], *, zone: Zone,
            now: dt.datetime | None = None) -> BurnUp:
    """The actual line from the event log, the planned line from the wave windows, the forecast from the
    waves' forecasts (module docstring)."""
    now = now or zone.now()
    size = {m.email: m.size or 0 for m in mailboxes if m.row.state != lifecycle.SKIPPED}
    result = BurnUp(total_mailboxes=len(size), total_bytes=sum(size.values()), now=now)
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
        at = zone.from_store(event.at)
        if not result.actual:
            result.actual.append(Point(zone.from_store(first_seen), 0, 0))
        if len(result.actual) > 1 and result.actual[-1].at == at:  # the start point stays
            result.actual[-1] = Point(at, count, volume)
        else:
            result.actual.append(Point(at, count, volume))
    if result.actual:  # the line goes on to today
        result.actual.append(Point(max(now, result.actual[-1].at), count, volume))
    dated = sorted((w for w in report.waves if w.window_starts), key=lambda w: _window_end(w, zone))
    if dated:
        start = result.actual[0].at if result.actual else None
        first_end = _window_end(dated[0], zone)
        result.planned.append(Point(min(start or first_end, first_end - dt.timedelta(days=1)), 0, 0))
    planned_mailboxes = planned_bytes = 0
    for wave in dated:
        planned_mailboxes += wave.counts.to_migrate
        planned_bytes += wave.counts.bytes_total
        result.planned.append(Point(_window_end(wave, zone), planned_mailboxes, planned_bytes))
    left: dict[str, list[int]] = {}
    for m in mailboxes:
        if m.email in size and m.email not in done and m.row.wave:
            acc = left.setdefault(m.row.wave, [0, 0])
            acc[0] += 1
            acc[1] += size[m.email]
    result.forecast = _forecast_line(report, left, count, volume, now, zone)
    return result


def _forecast_line(report: ProgrammeReport, left: dict[str, list[int]], count: int, volume: int,
                   now: dt.datetime, zone: Zone) -> list[Point]:
    """From what is done now, each wave's mailboxes left added at its forecast end."""
    ends = sorted((_in(w.forecast.forecast_end, zone), w.id) for w in report.waves
                  if w.forecast.forecast_end and w.id in left and w.forecast.status != "done")
    if not ends:
        return []
    line = [Point(now, count, volume)]
    for end, wave_id in ends:
        count, volume = count + left[wave_id][0], volume + left[wave_id][1]
        line.append(Point(end, count, volume))
    return line


def _in(iso_text: str | None, zone: Zone) -> dt.datetime:
    assert iso_text is not None
    return dt.datetime.fromisoformat(iso_text).astimezone(zone.tz)


def _window_end(wave: WaveLine, zone: Zone) -> dt.datetime:
    # only waves with a window date are planned
    return _in(wave.window_starts, zone) + dt.timedelta(hours=wave.window_hours)


def wave_status(wave: WaveLine) -> str:
    """One word for a wave (module docstring)."""
    return wave.forecast.status


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
