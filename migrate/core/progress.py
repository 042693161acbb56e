"""Progress leaves the library as events; the CLI turns them into rich progress bars.

A long operation (an inventory, a sync, a wave run) calls its ``progress`` callback with
:class:`ProgressEvent` records. ``subject`` names the unit of work (a mailbox address, a source id);
the overall totals are announced with ``kind="plan"``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    #: plan: overall totals are known | start: a subject begins | advance: work done on it |
    #: done: it finished | failed: it failed (``detail`` says why) | note: a message worth showing
    kind: str
    subject: str = ""
    messages: int = 0
    bytes: int = 0
    total_messages: int | None = None
    total_bytes: int | None = None
    detail: str = ""


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
