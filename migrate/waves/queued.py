"""A sync pass queued for workers on several hosts (``govmigrate run WAVE --pass P --workers``).

The run does what a run always does (approval, the wave's lock, pre-flight, the run record); the step, instead
of copying, queues the pass's mailboxes in the shared store and follows the queue live until every mailbox is
done or failed. ``govmigrate worker`` processes (:mod:`migrate.waves.workers`), on any number of hosts with the
same project file, claim and copy them.
"""

from __future__ import annotations

import threading
import time

from migrate.core.errors import Interrupted
from migrate.core.progress import ProgressEvent, ProgressSink
from migrate.core.store import MailboxRow
from migrate.waves.context import WaveRun
from migrate.waves.results import Outcome, StepResult
from migrate.waves.step import StepOptions
from migrate.waves.sync_pass import SyncPass

#: How often `run --workers` reads the queue.
POLL_S = 1.0


class QueuedPass(SyncPass):
    """A sync pass whose mailboxes go to the shared queue for ``govmigrate worker`` processes on any host."""

    def execute(self, run: WaveRun, result: StepResult, work: list[MailboxRow], options: StepOptions,
                progress: ProgressSink, stop: threading.Event) -> None:
        queue_pass(run, result, work, progress, stop)


def queue_pass(run: WaveRun, result: StepResult, work: list[MailboxRow], progress: ProgressSink, stop: threading.Event,
               *, poll: float = POLL_S) -> None:
    """Queue ``work`` for the workers as run ``result.run_id`` and follow it until nothing is queued or claimed;
    each mailbox's outcome, as its worker recorded it, goes into ``result``. A stop takes what is still queued
    off the queue (claimed mailboxes finish on their workers) and ends the run as interrupted."""
    store, run_id = run.store, result.run_id
    assert run_id is not None and result.step is not None
    count = store.enqueue(run_id, run.wave_id, result.step, [(m.id, m.source_id) for m in work])
    store.add_event(f"wave/{run.wave_id}", "queued",
                    f"{count} mailbox(es) of the {result.step} pass queued for workers (run {run_id})")
    progress(ProgressEvent("plan", total_subjects=count))
    progress(ProgressEvent("note", detail=f"{count} mailbox(es) queued; waiting for workers "
                                          "(govmigrate worker, on any host with this project file)"))
    seen: dict[int, tuple[str, str | None]] = {}
    started: set[int] = set()
    #: Per queued mailbox, the (messages, bytes) already shown as copied.
    shown: dict[int, tuple[int, int]] = {}
    workers_seen: frozenset[str] = frozenset()
    withdrawn = False
    while True:
        alive = frozenset(lease.holder for lease in store.leases("worker/") if lease.remaining > 0)
        if alive != workers_seen:
            workers_seen = alive
            progress(ProgressEvent("note", detail=f"workers: {', '.join(sorted(alive))}" if alive else
                                   "no worker is running: start govmigrate worker on a host with this project file"))
        items = store.work_items(run_id=run_id)
        for item in items:
            if item.state in ("claimed", "done", "failed") and item.id not in started:
                started.add(item.id)
                progress(ProgressEvent("start", item.email))
            done_m, done_b = shown.get(item.id, (0, 0))
            now_m, now_b = ((item.outcome.get("copied", 0), item.outcome.get("copied_bytes", 0))
                            if item.state == "done" else (item.messages, item.bytes))
            if now_m > done_m or now_b > done_b:
                progress(ProgressEvent("advance", item.email, messages=max(0, now_m - done_m),
                                       bytes=max(0, now_b - done_b)))
                shown[item.id] = (max(now_m, done_m), max(now_b, done_b))
            before = seen.get(item.id)
            now = (item.state, item.worker)
            if before == now:
                continue
            seen[item.id] = now
            if item.state == "claimed":
                if before is not None and before[0] == "claimed":
                    progress(ProgressEvent("note", item.email, detail=f"{item.email}: {item.worker} took it over "
                                                                      f"from {before[1]}, which stopped renewing it"))
            elif item.state == "done":
                progress(ProgressEvent("done", item.email))
            elif item.state == "failed":
                progress(ProgressEvent("failed", item.email, detail=str(item.outcome.get("error") or "failed")))
        if not any(item.state in ("queued", "claimed") for item in items):
            break
        if stop.is_set() and not withdrawn:
            store.withdraw_work(run_id)
            withdrawn = True
            progress(ProgressEvent("note", detail="stopping: queued mailboxes withdrawn; claimed ones finish on "
                                                  "their workers"))
        try:
            time.sleep(poll)
        except KeyboardInterrupt:
            stop.set()
    for item in items:
        if item.state in ("done", "failed"):
            result.outcomes.append(Outcome.from_dict(item.outcome))
    if withdrawn:
        raise Interrupted(f"wave {run.wave_id}: stopped; queued mailboxes were withdrawn")
