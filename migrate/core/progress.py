"""Progress leaves the library as events; the CLI turns them into rich progress bars.

A long operation (an inventory, a sync, a wave run) calls its ``progress`` callback with
:class:`ProgressEvent` records. ``subject`` names the unit of work (a mailbox address, a source id);
the overall totals are announced with ``kind="plan"``.

Totals known and totals learned. A sync knows what it will copy only in part before it starts: a mailbox
the inventory measured and that was never synced has an estimate (``plan`` and ``start`` carry it); any
other mailbox (a first sync without an inventory, a delta or final pass that copies only what changed)
has none. The engine then reports, folder by folder as it reads each one, how much there is to copy
(``grow``); a sink adds that to the total, which grows as it is learned. :class:`ProgressTotals` is that
arithmetic, written once for every sink.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    #: plan: overall totals known up front (``total_*``; None: learned as the work goes) and how many
    #: subjects there are (``total_subjects``) | start: a subject begins (``total_*``: its estimate, or None) |
    #: grow: more work was found for the subject (``messages``/``bytes``: by how much its total grew; a sync
    #: reports what a folder holds to copy once it has read the folder) | advance: work done on it |
    #: retry: the subject starts over after a transient fault (what was found for it and not yet done will be
    #: found again) | done: it finished | failed: it failed (``detail`` says why) | note: a message worth showing
    kind: str
    subject: str = ""
    messages: int = 0
    bytes: int = 0
    total_messages: int | None = None
    total_bytes: int | None = None
    detail: str = ""
    total_subjects: int | None = None


ProgressSink = Callable[[ProgressEvent], None]


def no_progress(event: ProgressEvent) -> None:
    """The default sink: progress goes nowhere (library callers that do not care)."""


class Tally:
    """Thread-safe running totals of what a progress stream reported, for summaries and tests."""

    def __init__(self, forward: ProgressSink | None = None) -> None:
        self._lock = threading.Lock()
        self.forward = forward
        self.messages = 0
        self.bytes = 0
        self.done: list[str] = []
        self.failed: dict[str, str] = {}
        self.notes: list[str] = []

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if event.kind == "advance":
                self.messages += event.messages
                self.bytes += event.bytes
            elif event.kind == "done":
                self.done.append(event.subject)
            elif event.kind == "failed":
                self.failed[event.subject] = event.detail
            elif event.kind == "note":
                self.notes.append(event.detail)
        if self.forward is not None:
            self.forward(event)


@dataclass
class _Subject:
    estimate_messages: int | None = None
    estimate_bytes: int | None = None
    found_messages: int = 0
    found_bytes: int = 0
    done_messages: int = 0
    done_bytes: int = 0
    finished: bool = False

    @property
    def total_messages(self) -> int:
        if self.finished:
            return self.done_messages
        return max(self.estimate_messages or 0, self.found_messages, self.done_messages)

    @property
    def total_bytes(self) -> int:
        if self.finished:
            return self.done_bytes
        return max(self.estimate_bytes or 0, self.found_bytes, self.done_bytes)


class ProgressTotals:
    """The totals a progress stream implies: what is done, and the total, known up front or learned.

    Per subject, the total is the larger of its estimate (``start``), what was found for it (the sum of its
    ``grow`` events since its last ``retry``) and what is done; once the subject is done or failed it is
    exactly what was done, so a run that ends has done all of its total. The overall total is the plan's
    total, in which each subject's estimate is replaced by the subject's own total as it starts. Each event
    costs the same whatever the number of subjects. Not thread-safe: a sink calls it under its own lock.
    """

    def __init__(self) -> None:
        self.planned_messages: int | None = None
        self.planned_bytes: int | None = None
        self.planned_subjects: int | None = None
        self.subjects: dict[str, _Subject] = {}
        self.messages = 0
        self.bytes = 0
        self.finished = 0
        self.failed = 0
        # Running sums over the subjects that reported: their estimates, their totals, and how many are at work
        # without an estimate (their totals are still being learned).
        self._estimates = [0, 0]
        self._totals = [0, 0]
        self._learning = 0

    def __call__(self, e: ProgressEvent) -> None:
        if e.kind == "plan":
            self.planned_messages, self.planned_bytes = e.total_messages, e.total_bytes
            self.planned_subjects = e.total_subjects
            return
        if not e.subject or e.kind not in ("start", "grow", "retry", "advance", "done", "failed"):
            return
        s = self.subjects.get(e.subject)
        if s is None:
            s = self.subjects[e.subject] = _Subject()
            self._learning += 1
        before = (s.estimate_messages or 0, s.estimate_bytes or 0, s.total_messages, s.total_bytes,
                  not s.finished and s.estimate_bytes is None)
        if e.kind == "start":
            s.estimate_messages, s.estimate_bytes = e.total_messages, e.total_bytes
        elif e.kind == "grow":
            s.found_messages += e.messages
            s.found_bytes += e.bytes
        elif e.kind == "retry":
            s.found_messages, s.found_bytes = s.done_messages, s.done_bytes
        elif e.kind == "advance":
            s.done_messages += e.messages
            s.done_bytes += e.bytes
            self.messages += e.messages
            self.bytes += e.bytes
        elif not s.finished:  # done or failed
            s.finished = True
            self.finished += 1
            self.failed += e.kind == "failed"
        self._estimates[0] += (s.estimate_messages or 0) - before[0]
        self._estimates[1] += (s.estimate_bytes or 0) - before[1]
        self._totals[0] += s.total_messages - before[2]
        self._totals[1] += s.total_bytes - before[3]
        self._learning += (not s.finished and s.estimate_bytes is None) - before[4]

    @property
    def total_bytes(self) -> int:
        return max(0, (self.planned_bytes or 0) - self._estimates[1]) + self._totals[1]

    @property
    def total_messages(self) -> int:
        return max(0, (self.planned_messages or 0) - self._estimates[0]) + self._totals[0]

    @property
    def growing(self) -> bool:
        """True while the total may still grow: a subject at work has no estimate, or subjects that have not
        started are not covered by a total announced up front."""
        if self._learning:
            return True
        if self.planned_bytes is None:
            return self.planned_subjects is None or len(self.subjects) < self.planned_subjects
        return False

    def subject_totals(self, subject: str) -> tuple[int, int] | None:
        """(messages, bytes) of one subject's total, None if it never reported."""
        s = self.subjects.get(subject)
        return None if s is None else (s.total_messages, s.total_bytes)
