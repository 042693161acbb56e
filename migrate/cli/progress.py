"""Progress on stderr for a stream of library progress events, and the one summary line a command ends with.

At a terminal (and without --quiet or --log-json), :class:`LiveProgress` draws one overall bar and one line per
active subject; failures are printed as they happen. Elsewhere (cron, a pipe, a log file), :class:`LogProgress`
writes log lines instead: the plan, each mailbox as it ends, and every minute where the run stands.

For a sync (``unit="bytes"``) the bar's total is what the library knows (``migrate.core.progress.ProgressTotals``):
the inventory's estimate where there is one, otherwise learned folder by folder as the engine reads them, so it
grows while the run goes on; a total that may still grow is shown with a "+" ("48.0 MB+") and a time left based
on it as "at least". The time left appears only once the rate is steady (:class:`RateMeter`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from migrate.cli.app import App
from migrate.cli.output import human_bytes, plain
from migrate.core.printable import printable
from migrate.core.progress import ProgressEvent, ProgressSink, ProgressTotals

log = logging.getLogger("migrate.progress")

Clock = Callable[[], float]


# -- numbers for people ----------------------------------------------------------------------------------------

def human_duration(seconds: float) -> str:
    """``3.6 s``, ``42 s``, ``3 min 12 s``, ``1 h 4 min``."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, secs = divmod(whole, 60)
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, rest = divmod(whole, 3600)
    minutes = rest // 60
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def amount_text(done: int, total: int, growing: bool, fmt: Callable[[int], str], unit: str = "") -> str:
    """``done of total`` as people read it: "12.3 MB of 186.3 MB"; a total that may still grow gets a "+"
    ("12.3 MB of 48.0 MB+", "5 of 9+ msgs"); with nothing known yet, only what is done ("12.3 MB")."""
    suffix = f" {unit}" if unit else ""
    if total <= 0 and growing:
        return f"{fmt(done)}{suffix}"
    return f"{fmt(done)} of {fmt(total)}{'+' if growing else ''}{suffix}"


def _count(n: int) -> str:
    return f"{n:,}"


def eta_text(eta: tuple[float, bool] | None) -> str:
    """"about 3 min 12 s left", or "at least ..." while the total is still being learned; "" when unknown."""
    if eta is None:
        return ""
    seconds, at_least = eta
    return f"{'at least' if at_least else 'about'} {human_duration(seconds)} left"


# -- the rate, and when it is steady enough to promise a time left ---------------------------------------------

class RateMeter:
    """A smoothed rate of progress (bytes per second), and whether it is steady enough to show a time left.

    **Rate.** Each observation (``observe(now, done)``) gives the instantaneous rate since the one before,
    ``(done - done_before) / dt``. The rate is their exponentially weighted moving average, weighted by time:
    ``raw ← raw·e^(−dt/τ) + (1 − e^(−dt/τ))·instantaneous`` with time constant ``tau`` (15 s), divided by
    ``1 − e^(−(now − start)/τ)`` so that it is not biased towards zero at the start. The start is the first
    observation with anything done (connecting and listing folders are not copying). A steady stream therefore
    reads its exact rate from its second observation on, whatever the spacing of the observations; a burst of
    batches finishing together moves it by about ``batch / (rate·τ)``.

    **Steady** (``steady(now)``), all of:

    1. ``warmup`` (10 s) have passed since the start;
    2. the rates computed at the observations of the last ``window`` seconds, at least two of them, differ by
       at most ``steady_within`` (20 %) of the current rate; once steady, the rate stays steady until they differ
       by more than ``unsteady_beyond`` (40 %), so the time left does not flicker on and off;
    3. hence a stalled copy (no observation within the window) shows no time left.

    The window is ``window`` (10 s) or, where observations are sparse (a slow link, big batches), two and a half
    times their mean spacing, so that it always holds a few of them.

    **Time left** (``eta(remaining, now)``): ``remaining / rate`` less the time since the last observation (the
    count goes down between batches), never below zero; None while the rate is not steady.

    ``clock`` is only a default for ``now``; every method takes ``now`` so tests drive time themselves.
    Thread-safe (a leaf lock: it never calls out while holding it).
    """

    def __init__(self, *, tau: float = 15.0, warmup: float = 10.0, window: float = 10.0,
                 steady_within: float = 0.2, unsteady_beyond: float = 0.4, clock: Clock = time.monotonic) -> None:
        self.tau, self.warmup, self.window = tau, warmup, window
        self.steady_within, self.unsteady_beyond = steady_within, unsteady_beyond
        self.clock = clock
        self._lock = threading.Lock()
        self._start: float | None = None
        self._last_t = 0.0
        self._last_done = 0
        self._raw = 0.0
        self._rate: float | None = None
        self._samples: deque[tuple[float, float]] = deque()
        self._gaps: deque[float] = deque(maxlen=8)
        self._steady = False

    def observe(self, done: int, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        with self._lock:
            if self._start is None:
                if done > 0:
                    self._start, self._last_t, self._last_done = now, now, done
                return
            dt = now - self._last_t
            if dt <= 0:
                return  # counted at the next observation, over the time it really took
            decay = math.exp(-dt / self.tau)
            self._raw = self._raw * decay + (1 - decay) * (done - self._last_done) / dt
            self._last_t, self._last_done = now, done
            self._gaps.append(dt)
            self._rate = self._raw / (1 - math.exp(-(now - self._start) / self.tau))
            self._samples.append((now, self._rate))
            horizon = now - 4 * max(self.window, self._span())
            while self._samples and self._samples[0][0] < horizon:
                self._samples.popleft()

    def _span(self) -> float:
        if not self._gaps:
            return self.window
        return max(self.window, 2.5 * sum(self._gaps) / len(self._gaps))

    def rate(self) -> float | None:
        """The smoothed rate as of the last observation (None before two observations)."""
        with self._lock:
            return self._rate

    def steady(self, now: float | None = None) -> bool:
        now = self.clock() if now is None else now
        with self._lock:
            self._steady = self._judge(now)
            return self._steady

    def _judge(self, now: float) -> bool:
        rate = self._rate
        if self._start is None or rate is None or rate <= 0 or now - self._start < self.warmup:
            return False
        span = self._span()
        recent = [r for t, r in self._samples if t >= now - span]
        if len(recent) < 2:
            return False
        variation = (max(recent) - min(recent)) / rate
        return variation <= (self.unsteady_beyond if self._steady else self.steady_within)

    def eta(self, remaining: int, now: float | None = None) -> float | None:
        now = self.clock() if now is None else now
        if not self.steady(now):
            return None
        with self._lock:
            assert self._rate is not None
            return max(0.0, max(0, remaining) / self._rate - (now - self._last_t))


class _Overall:
    """What both sinks share for a byte-counting run: the totals the events imply, and the rate."""

    def __init__(self, title: str, clock: Clock) -> None:
        self.title = title
        self.clock = clock
        self.totals = ProgressTotals()
        self.meter = RateMeter(clock=clock)

    def add(self, event: ProgressEvent) -> None:
        self.totals(event)
        if event.kind == "advance":
            self.meter.observe(self.totals.bytes, self.clock())

    def size_text(self) -> str:
        t = self.totals
        return amount_text(t.bytes, t.total_bytes, t.growing, lambda n: human_bytes(n) or "0 B")

    def messages_text(self) -> str:
        t = self.totals
        return amount_text(t.messages, t.total_messages, t.growing, _count, "msgs")

    def subjects_text(self) -> str:
        t = self.totals
        if t.planned_subjects is None:
            return _plural(t.finished, "mailbox", "mailboxes")
        return f"{t.finished:,} of {_plural(t.planned_subjects, 'mailbox', 'mailboxes')}"

    def rate_text(self) -> str:
        rate = self.meter.rate()
        return f"{human_bytes(round(rate))}/s" if rate else ""

    def eta(self, now: float | None = None) -> tuple[float, bool] | None:
        """(seconds left, whether that is a lower bound because the total may still grow), or None."""
        t = self.totals
        seconds = self.meter.eta(t.total_bytes - t.bytes, self.clock() if now is None else now)
        return None if seconds is None else (seconds, t.growing)


# -- at a terminal -------------------------------------------------------------------------------------------

class _Computed(ProgressColumn):
    """A column whose text is computed when the display refreshes (the time left moves between events)."""

    def __init__(self, text: Callable[[Task], str]) -> None:
        super().__init__()
        self.text = text

    def render(self, task: Task) -> Text:
        return Text(self.text(task), no_wrap=True)


class LiveProgress:
    """A ProgressSink that draws bars. ``unit`` is "bytes" (sync) or "items" (inventory, checks).

    ``clock`` is injectable for tests (the rate and the time left are computed from it).
    """

    def __init__(self, app: App, title: str, unit: str = "bytes", max_lines: int = 8,
                 clock: Clock = time.monotonic) -> None:
        self.app = app
        self.unit = unit
        self.max_lines = max_lines
        self.clock = clock
        self._lock = threading.Lock()
        self.state = _Overall(title, clock)
        # Descriptions are mailbox addresses and source ids: shown as they are, never read as markup.
        columns: list[ProgressColumn] = [TextColumn("{task.description}", markup=False), BarColumn(bar_width=30)]
        if unit == "bytes":
            # The columns read only task fields and the rate meter (its own leaf lock), never self._lock: the
            # display refreshes in rich's thread while an event may be printing a failure under self._lock.
            columns += [TextColumn("{task.fields[size]}", markup=False), _Computed(self._rate_column),
                        TextColumn("{task.fields[msgs]}", markup=False), _Computed(self._eta_column)]
        else:
            columns += [MofNCompleteColumn(), TimeRemainingColumn()]
        self.progress = Progress(*columns, console=app.err, transient=False, refresh_per_second=4)
        self.overall: TaskID = self.progress.add_task(printable(title), total=None, msgs="", size="")
        self.tasks: dict[str, TaskID] = {}
        self.messages_done = 0
        self.messages_total: int | None = None

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if self.unit == "bytes":
                self._handle_bytes(event)
            else:
                self._handle_items(event)

    # -- what the display shows (also what tests read) --

    def overall_total(self) -> tuple[int, bool]:
        """(bytes, whether that total may still grow)."""
        t = self.state.totals
        return t.total_bytes, t.growing

    def eta(self, now: float | None = None) -> tuple[float, bool] | None:
        return self.state.eta(now)

    def _rate_column(self, task: Task) -> str:
        return self.state.rate_text() if task.id == self.overall else ""

    def _eta_column(self, task: Task) -> str:
        return eta_text(self.state.eta()) if task.id == self.overall else ""

    # -- events --

    def _handle_bytes(self, e: ProgressEvent) -> None:
        p = self.progress
        state = self.state
        state.add(e)
        if e.kind == "start" and e.subject not in self.tasks and len(self.tasks) < self.max_lines:
            self.tasks[e.subject] = p.add_task(printable(f"  {e.subject}"), total=None, msgs="", size="")
        if e.kind in ("done", "failed"):
            task = self.tasks.pop(e.subject, None)
            if task is not None:
                p.remove_task(task)
            if e.kind == "failed":
                # The reason is often the server's own words: a "[/x]" in it must neither vanish nor end the run.
                p.console.print(Text.assemble(plain("failed", style="red"), " ", plain(f"{e.subject}: {e.detail}")))
        elif e.kind == "note":
            p.console.print(plain(e.detail))
        elif e.subject in self.tasks:
            sub = state.totals.subjects[e.subject]
            growing = sub.estimate_bytes is None
            p.update(self.tasks[e.subject], total=sub.total_bytes or None, completed=sub.done_bytes,
                     size=amount_text(sub.done_bytes, sub.total_bytes, growing, lambda n: human_bytes(n) or "0 B"))
        t = state.totals
        total = t.total_bytes
        p.update(self.overall, total=total if total > 0 else None, completed=t.bytes, size=state.size_text(),
                 msgs=f"{state.messages_text()}, {state.subjects_text()}")

    def _handle_items(self, e: ProgressEvent) -> None:
        p = self.progress
        if e.kind == "plan":
            self.messages_total = e.total_messages
            p.update(self.overall, total=e.total_messages)
        elif e.kind == "start":
            if len(self.tasks) < self.max_lines:
                self.tasks[e.subject] = p.add_task(printable(f"  {e.subject}"), total=e.total_messages or None, msgs="",
                                                   size="")
        elif e.kind == "advance":
            self.messages_done += e.messages
            p.update(self.overall, advance=e.messages)
            if e.subject in self.tasks:
                p.update(self.tasks[e.subject], advance=e.messages)
        elif e.kind in ("done", "failed"):
            task = self.tasks.pop(e.subject, None)
            if task is not None:
                p.remove_task(task)
            if e.subject:
                p.update(self.overall, advance=1)
            if e.kind == "failed":
                p.console.print(Text.assemble(plain("failed", style="red"), " ", plain(f"{e.subject}: {e.detail}")))
        elif e.kind == "note":
            p.console.print(plain(e.detail))


# -- elsewhere: log lines ------------------------------------------------------------------------------------

class LogProgress:
    """A ProgressSink for stderr that is not a terminal: log lines (shown with -v, or as JSON with --log-json).

    For a sync: the plan (what is to be copied, or that it is learned as folders are read), each mailbox as it
    ends, a failure as a warning, and at most every ``every`` seconds (``clock``, injectable) a line saying
    where the run stands, with the time left once the rate is steady.
    """

    def __init__(self, title: str, unit: str = "bytes", *, clock: Clock = time.monotonic, every: float = 60.0) -> None:
        self.title = title
        self.unit = unit
        self.clock = clock
        self.every = every
        self._lock = threading.Lock()
        self.state = _Overall(title, clock)
        self._next = clock() + every

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if self.unit == "bytes":
                self.state.add(event)
            if event.kind == "failed":
                log.warning("%s failed: %s", event.subject, event.detail)
            elif event.kind == "done":
                log.info("%s done", event.subject)
            elif event.kind == "note":
                log.info("%s", event.detail)
            elif event.kind == "plan" and self.unit == "bytes":
                log.info("%s", self.plan_line())
            elif event.kind == "advance" and self.unit == "bytes" and self.clock() >= self._next:
                self._next = self.clock() + self.every
                log.info("%s", self.status_line())

    def plan_line(self) -> str:
        t = self.state.totals
        who = _plural(t.planned_subjects, "mailbox", "mailboxes") if t.planned_subjects is not None else "mailboxes"
        if t.planned_bytes is None:
            return f"{self.title}: {who}; what there is to copy is learned as their folders are read"
        return (f"{self.title}: {who}; {human_bytes(t.planned_bytes) or '0 B'} "
                f"({_plural(t.planned_messages or 0, 'message')}) to copy, as the inventory measured it"
                + ("; more is learned as folders are read" if t.growing else ""))

    def status_line(self) -> str:
        s = self.state
        parts = [s.size_text(), s.messages_text(), f"{s.subjects_text()} done"]
        rate = s.rate_text()
        if rate:
            parts.append(rate)
        left = eta_text(s.eta())
        if left:
            parts.append(left)
        return f"{self.title}: " + ", ".join(parts)


@contextmanager
def progress_for(app: App, title: str, unit: str = "bytes") -> Iterator[ProgressSink]:
    """Yields a sink: live bars at a terminal, log lines otherwise."""
    if app.show_progress:
        live = LiveProgress(app, title, unit)
        with live.progress:
            yield live
    else:
        yield LogProgress(title, unit)


# -- the summary line --------------------------------------------------------------------------------------

def summary_line(what: str, *, mailboxes: int, messages: int, nbytes: int, seconds: float, failed: int,
                 dry_run: bool = False, more: list[str] | None = None) -> str:
    """The one line a sync or a wave run ends with, in plain words:
    ``sync: 12 mailboxes, 4,512 messages, 186.3 MB in 3 min 12 s; 1 failed``; a dry run says what it would copy:
    ``sync (dry run): 12 mailboxes, 4,512 messages, 186.3 MB to copy (read in 41 s); 0 failed``."""
    size = human_bytes(nbytes) or "0 B"
    took = human_duration(seconds)
    amount = f"{size} to copy (read in {took})" if dry_run else f"{size} in {took}"
    line = (f"{what}: {_plural(mailboxes, 'mailbox', 'mailboxes')}, {_plural(messages, 'message')}, {amount}; "
            f"{failed:,} failed")
    return line + "".join(f", {m}" for m in more or [])


def print_summary(app: App, line: str) -> None:
    """On stderr, also when it is not a terminal; a log record with --log-json; nothing with --quiet."""
    if app.quiet:
        return
    if app.log_json:
        logging.getLogger("migrate.summary").info(line)
    else:
        app.err.print(line, markup=False, highlight=False)
