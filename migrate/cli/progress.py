"""Rich live progress on stderr for a stream of library progress events.

One overall bar (messages, bytes, rate, ETA) and one line per active subject; failures are printed as
they happen. Shown only when stderr is a terminal and neither --quiet nor --log-json is given; otherwise
events are only logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from migrate.cli.app import App
from migrate.cli.output import plain
from migrate.core.progress import ProgressEvent, ProgressSink

log = logging.getLogger("migrate.progress")


class LiveProgress:
    """A ProgressSink that draws bars. ``unit`` is "bytes" (sync) or "items" (inventory)."""

    def __init__(self, app: App, title: str, unit: str = "bytes", max_lines: int = 8) -> None:
        self.app = app
        self.unit = unit
        self.max_lines = max_lines
        self._lock = threading.Lock()
        # Descriptions are mailbox addresses and source ids: shown as they are, never read as markup.
        columns = [TextColumn("{task.description}", markup=False), BarColumn(bar_width=30)]
        if unit == "bytes":
            columns += [DownloadColumn(binary_units=False), TransferSpeedColumn(),
                        TextColumn("{task.fields[msgs]}", markup=False)]
        else:
            columns += [MofNCompleteColumn()]
        columns.append(TimeRemainingColumn())
        self.progress = Progress(*columns, console=app.err, transient=False, refresh_per_second=4)
        self.overall: TaskID = self.progress.add_task(title, total=None, msgs="")
        self.tasks: dict[str, TaskID] = {}
        self.messages_done = 0
        self.messages_total: int | None = None

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            self._handle(event)

    def _handle(self, e: ProgressEvent) -> None:
        p = self.progress
        if e.kind == "plan":
            self.messages_total = e.total_messages
            total = e.total_bytes if self.unit == "bytes" else e.total_messages
            p.update(self.overall, total=total)
        elif e.kind == "start":
            if len(self.tasks) < self.max_lines:
                total = e.total_bytes if self.unit == "bytes" else e.total_messages
                self.tasks[e.subject] = p.add_task(f"  {e.subject}", total=total or None, msgs="")
        elif e.kind == "advance":
            amount = e.bytes if self.unit == "bytes" else e.messages
            self.messages_done += e.messages
            msgs = f"{self.messages_done}" + (f"/{self.messages_total}" if self.messages_total else "") + " msgs"
            p.update(self.overall, advance=amount, msgs=msgs)
            if e.subject in self.tasks:
                p.update(self.tasks[e.subject], advance=amount)
        elif e.kind in ("done", "failed"):
            task = self.tasks.pop(e.subject, None)
            if task is not None:
                p.remove_task(task)
            if self.unit != "bytes" and e.kind in ("done", "failed") and e.subject:
                p.update(self.overall, advance=1)
            if e.kind == "failed":
                # The reason is often the server's own words: a "[/x]" in it must neither vanish nor end the run.
                p.console.print(Text.assemble(plain("failed", style="red"), " ", plain(f"{e.subject}: {e.detail}")))
        elif e.kind == "note":
            p.console.print(plain(e.detail))


@contextmanager
def progress_for(app: App, title: str, unit: str = "bytes") -> Iterator[ProgressSink]:
    """Yields a sink: live bars at a terminal, log lines otherwise."""
    if app.show_progress:
        live = LiveProgress(app, title, unit)
        with live.progress:
            yield live
    else:
        yield _log_sink


def _log_sink(event: ProgressEvent) -> None:
    if event.kind == "failed":
        log.warning("%s failed: %s", event.subject, event.detail)
    elif event.kind == "done":
        log.info("%s done", event.subject)
    elif event.kind == "note":
        log.info("%s", event.detail)
