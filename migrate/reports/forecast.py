"""The forecast: when each wave and the programme will be done, from what the runs measured, beside the plan.

For each wave with work left, in the order of its window:

* **windows it needs**: the copy still to do (its remaining bytes at the throughput measured so far,
  :mod:`migrate.plans.estimate`) over the window's length, rounded up (at least one); plus one more window
  when mailboxes of it are failed now, or when the failure rate so far, applied to its mailboxes not yet
  failed, expects at least half a mailbox to fail: failed mailboxes are run again, once what failed them is
  fixed, in a window after the wave's own (the forecast errs late rather than early);
* **when**: its own window if that is still ahead (or under way); a window that has passed with work left is
  replaced by the next free night from now (at the window's start time). Further windows take the following
  free nights; a night that holds another wave's window is not free.
* the **failure rate so far** is the share of the mailboxes attempted (a pass worked on them: copying, copied
  or failed) that are failed now.

A wave's forecast end is the end of its last window; a done wave's is when its last run finished. The
programme's forecast is the latest wave's, and it is *on schedule* when that is no later than the end of the
last planned window, else behind by the days between. A wave is *failing* when mailboxes of it are failed now,
*overdue* when its window passed with work left, *at risk* when its forecast ends after its window does.
Waves without a window date have no forecast, and then neither has the programme.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from migrate.core.timezones import Zone, iso
from migrate.reports.words import plural

#: The words of a wave's schedule status, in the order a legend lists them (most urgent first after done).
WAVE_STATUSES = ("done", "failing", "overdue", "at risk", "in progress", "not approved", "scheduled",
                 "not scheduled", "nothing planned")
#: Expected failures from this many mailboxes on get a retry window of their own.
RETRY_THRESHOLD = 0.5


@dataclass
class WaveInput:
    """What the forecast needs of one wave (the programme report builds these)."""

    id: str
    to_migrate: int
    done: int
    failed: int
    in_progress: int
    #: The copy still to do, in hours at the measured rate.
    copy_hours: float
    window_start: dt.datetime | None
    window_hours: float
    approved: bool
    #: When its last successful run finished (done waves).
    finished_at: dt.datetime | None = None


@dataclass
class WaveForecast:
    status: str
    planned_end: str | None = None
    forecast_end: str | None = None
    #: Windows the forecast gives the work left (0 when done or not scheduled).
    windows: int = 0
    #: Whole days the forecast ends after the planned window (0: on time).
    days_late: int = 0
    #: Why it is failing, overdue or at risk, in plain words.
    reasons: list[str] = field(default_factory=list)


@dataclass
class ProgrammeForecast:
    #: on schedule | behind | done | not scheduled | nothing planned
    verdict: str
    planned_end: str | None = None
    forecast_end: str | None = None
    days_late: int = 0
    #: Failed now of attempted (None: nothing attempted yet).
    failure_rate: float | None = None
    attempted: int = 0
    failed: int = 0
    #: One sentence saying what the forecast rests on.
    basis: str = ""

    @property
    def headline(self) -> str:
        if self.verdict == "behind":
            return f"{self.days_late} day{'s' if self.days_late != 1 else ''} behind the plan"
        return self.verdict


def _days_late(forecast: dt.datetime, planned: dt.datetime) -> int:
    late = (forecast - planned).total_seconds()
    return math.ceil(late / 86400) if late > 0 else 0


def _start_on(day: dt.date, like: dt.datetime, zone: Zone) -> dt.datetime:
    return zone.wall(dt.datetime.combine(day, like.replace(tzinfo=None).time()))


def forecast(waves: list[WaveInput], *, failure_rate: float | None, now: dt.datetime, zone: Zone) -> dict[str, WaveForecast]:
    """Each wave's forecast (module docstring), by wave id."""
    rate = failure_rate or 0.0
    open_ = [w for w in waves if w.to_migrate and w.done < w.to_migrate and w.window_start is not None]
    booked = {w.id: w.window_start.date() for w in open_ if w.window_start and w.window_start > now}
    taken: set[dt.date] = set()
    out: dict[str, WaveForecast] = {}
    for w in sorted(waves, key=lambda w: (w.window_start is None, w.window_start or now, w.id)):
        if not w.to_migrate:
            out[w.id] = WaveForecast("nothing planned")
            continue
        planned_end = w.window_start + dt.timedelta(hours=w.window_hours) if w.window_start else None
        if w.done >= w.to_migrate:
            out[w.id] = WaveForecast("done", iso(planned_end), iso(w.finished_at))
            continue
        if w.window_start is None or planned_end is None:
            out[w.id] = WaveForecast("not scheduled", reasons=["it has no window date"])
            continue
        reasons = []
        windows = max(1, math.ceil(w.copy_hours / w.window_hours - 1e-9)) if w.copy_hours else 1
        if w.copy_hours > w.window_hours:
            reasons.append(f"the copy left (about {w.copy_hours:.1f} h) needs {windows} windows of "
                           f"{w.window_hours:g} h")
        expected = (w.to_migrate - w.done - w.failed) * rate
        if w.failed:
            reasons.append(f"{w.failed:,} of its {plural(w.to_migrate, 'mailbox')} failed: they are run again, once "
                           "what failed them is fixed, in a window after its own")
        elif expected >= RETRY_THRESHOLD:
            reasons.append(f"at the failure rate so far ({rate:.0%}), about {plural(max(1, round(expected)), 'mailbox')}"
                           " of it will fail and need another window")
        if w.failed or expected >= RETRY_THRESHOLD:
            windows += 1
        others = {d for i, d in booked.items() if i != w.id}
        if planned_end > now:
            first = w.window_start
        else:
            reasons.append(f"its window ({w.window_start:%Y-%m-%d}) has passed with "
                           f"{plural(w.to_migrate - w.done, 'mailbox')} not done")
            first = _next_free(now.date(), w.window_start, now, others | taken, zone)
        nights = [first]
        while len(nights) < windows:
            nights.append(_next_free(nights[-1].date() + dt.timedelta(days=1), w.window_start, now,
                                     others | taken, zone))
        taken.update(n.date() for n in nights)
        end = nights[-1] + dt.timedelta(hours=w.window_hours)
        late = _days_late(end, planned_end)
        if w.failed:
            status = "failing"
        elif planned_end <= now:
            status = "overdue"
        elif late:
            status = "at risk"
        elif w.done or w.in_progress:
            status = "in progress"
        elif not w.approved:
            status = "not approved"
        else:
            status = "scheduled"
        out[w.id] = WaveForecast(status, iso(planned_end), iso(end), windows, late, reasons)
    return out


def _next_free(day: dt.date, like: dt.datetime, now: dt.datetime, busy: set[dt.date], zone: Zone) -> dt.datetime:
    """The first night from ``day`` on whose window (at ``like``'s start time) is still ahead and not busy."""
    while True:
        start = _start_on(day, like, zone)
        if start > now and day not in busy:
            return start
        day += dt.timedelta(days=1)


def programme_forecast(waves: dict[str, WaveForecast], *, attempted: int, failed: int, unplanned: int,
                       basis: str) -> ProgrammeForecast:
    """The programme's forecast from its waves' (module docstring)."""
    rate = failed / attempted if attempted else None
    result = ProgrammeForecast("nothing planned", failure_rate=rate, attempted=attempted, failed=failed, basis=basis)
    counted = [f for f in waves.values() if f.status != "nothing planned"]
    if not counted:
        result.verdict = "not scheduled" if unplanned else "nothing planned"
        return result
    if any(f.status == "not scheduled" for f in counted):
        result.verdict = "not scheduled"
        return result
    planned = [dt.datetime.fromisoformat(f.planned_end) for f in counted if f.planned_end]
    ends = [dt.datetime.fromisoformat(f.forecast_end) for f in counted if f.forecast_end]
    result.planned_end = iso(max(planned)) if planned else None
    result.forecast_end = iso(max(ends)) if ends else None
    if all(f.status == "done" for f in counted):
        result.verdict = "done" if not unplanned else "not scheduled"
        return result
    if planned and ends:
        result.days_late = _days_late(max(ends), max(planned))
    result.verdict = "behind" if result.days_late else "on schedule"
    return result
