"""Several migration hosts working one plan: a pass's mailboxes queued in the shared store, claimed by workers.

``govmigrate run WAVE --workers`` does what a run always does (approval, the wave's lock, pre-flight, the run
record) and then, instead of copying, queues the pass's mailboxes (:func:`queue_pass`) and follows the queue
live until every mailbox is done or failed. ``govmigrate worker``, started on any number of hosts with the same
project file, claims one mailbox at a time (:func:`work`) and syncs it with the same engine and the same
lifecycle (:class:`migrate.waves.steps.PassLifecycle`) a run on one host uses.

What holds across hosts: a mailbox is copied by one host at a time (its claim, and its lease
``mailbox/<email>``); each source's and the central host's ``connections`` limit counts every host's sessions
(slot leases, :class:`migrate.core.leases.Slots`); a worker renews its claims and slots by heartbeat, so one
that dies (SIGKILL, power) loses them within ``sync.lease_seconds`` and another worker finishes its mailboxes.
Whatever the dead worker appended and did not record is recognised by fingerprint, never copied twice.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from migrate.core.config import Project
from migrate.core.errors import Interrupted, MigrateError, UsageError
from migrate.core.leases import Heartbeat
from migrate.core.progress import ProgressEvent, ProgressSink, no_progress
from migrate.core.store import Claim, Store, StoreUnavailable, host

if TYPE_CHECKING:
    from migrate.waves.runner import Outcome, WaveRun, WaveRunResult

log = logging.getLogger(__name__)

#: How often `run --workers` reads the queue, and an idle worker asks it for work.
POLL_S = 1.0
#: How often a worker writes what a mailbox has copied so far (the live progress of `run --workers`).
PROGRESS_S = 2.0


def queue_pass(run: WaveRun, result: WaveRunResult, work: list, progress: ProgressSink, stop: threading.Event,
               *, poll: float = POLL_S) -> None:
    """Queue ``work`` for the workers as run ``result.run_id`` and follow it until nothing is queued or claimed;
    each mailbox's outcome, as its worker recorded it, goes into ``result``. A stop takes what is still queued
    off the queue (claimed mailboxes finish on their workers) and ends the run as interrupted."""
    from migrate.waves.runner import Outcome

    store, run_id = run.store, result.run_id
    assert run_id is not None and result.pass_name is not None
    count = store.enqueue(run_id, run.wave_id, result.pass_name, [(m.id, m.source_id) for m in work])
    store.add_event(f"wave/{run.wave_id}", "queued",
                    f"{count} mailbox(es) of the {result.pass_name} pass queued for workers (run {run_id})")
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
    names = {f.name for f in dataclasses.fields(Outcome)}
    for item in items:
        if item.state in ("done", "failed"):
            doc = {k: v for k, v in item.outcome.items() if k in names}
            result.outcomes.append(Outcome(**doc))
    if withdrawn:
        raise Interrupted(f"wave {run.wave_id}: stopped; queued mailboxes were withdrawn")


@dataclass
class WorkerResult:
    outcomes: list[Outcome] = field(default_factory=list)
    #: Claims taken over from a worker that stopped renewing them.
    taken_over: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    #: Why the worker stopped by itself: the state store unreachable past the reconnect window (exit 4), or
    #: refusing it (a dropped database, a revoked login).
    error: MigrateError | None = None

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


@dataclass
class _Copying:
    """A mailbox a worker is copying: its claim, and what it has copied so far (as last written to the queue)."""

    claim_id: int
    messages: int = 0
    bytes: int = 0
    written_at: float = 0.0


class Worker:
    """One worker process: ``threads`` mailboxes at a time, claimed from the shared queue."""

    def __init__(self, project: Project, store: Store, *, locks_dir: Path, sources: tuple[str, ...] = (),
                 threads: int = 4, drain: bool = False, progress: ProgressSink = no_progress,
                 stop: threading.Event | None = None, poll: float = POLL_S) -> None:
        from migrate.mailbox.sync import SyncEngine, SyncOptions

        for source_id in sources:
            project.source(source_id)  # an unknown id is a usage error now, not an idle worker
        self.project = project
        self.store = store
        self.sources = sources
        self.threads = threads
        self.drain = drain
        self.progress = progress
        self.stop = stop or threading.Event()
        self.poll = poll
        self.ttl = project.config.sync.lease_seconds
        self.heartbeat = Heartbeat(store, self.ttl)
        self.engine = SyncEngine(project, store, options=SyncOptions.from_project(project, lock_dir=locks_dir),
                                 progress=self._progress, stop=self.stop, heartbeat=self.heartbeat)
        self.result = WorkerResult()
        self._lock = threading.Lock()
        #: Per mailbox being copied: its claim and what was copied so far, written to the queue every few seconds.
        self._copying: dict[str, _Copying] = {}

    @property
    def holder(self) -> str:
        return self.heartbeat.holder

    def _progress(self, event: ProgressEvent) -> None:
        """The engine's progress: shown here, and what each claim has copied so far written to the queue
        (at most every PROGRESS_S per mailbox) for `run --workers` to show live."""
        self.progress(event)
        if event.kind != "advance":
            return
        with self._lock:
            entry = self._copying.get(event.subject)
            if entry is None:
                return
            entry.messages += event.messages
            entry.bytes += event.bytes
            if time.monotonic() - entry.written_at < PROGRESS_S:
                return
            entry.written_at = time.monotonic()
            claim_id, messages, nbytes = entry.claim_id, entry.messages, entry.bytes
        try:
            self.store.claim_progress(claim_id, self.holder, messages, nbytes)
        except StoreUnavailable:
            pass  # progress only: the next write, or the result, says it

    def run(self) -> WorkerResult:
        self.engine.check_central([])  # the central host answers and takes the login (exit 4, 5), or no work
        presence = f"worker/{self.holder}"
        what = f"{self.threads} mailbox(es) at a time" + (f", sources {', '.join(self.sources)}" if self.sources else "")
        self.store.take_lease(presence, holder=self.holder, purpose=what, ttl=self.ttl)
        self.heartbeat.start()
        self.store.add_event(presence, "start", what)
        threads = [threading.Thread(target=self._loop, name=f"worker-{i}", daemon=True) for i in range(self.threads)]
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=0.5)
        except KeyboardInterrupt:
            self.stop.set()
            self.result.interrupted = True
            for t in threads:
                t.join()
        finally:
            self.heartbeat.stop()
            self.engine.close()
            try:
                self.store.release_lease(presence, self.holder)
                self.store.add_event(presence, "stop",
                                     f"{len(self.result.outcomes)} mailbox(es), {len(self.result.failed)} failed")
            except MigrateError:  # the store is gone: the lease lapses by itself
                pass
        return self.result

    def _loop(self) -> None:
        while not self.stop.is_set():
            claim = None
            try:
                claim = self.store.claim(self.holder, ttl=self.ttl, sources=self.sources)
                if claim is None:
                    if self.drain and not self._work_left():
                        return
                    self.stop.wait(self.poll)
                    continue
                self._one(claim)
            except StoreUnavailable as exc:
                # The store went away in the middle of a step (a restart, a network cut): the mailbox goes back
                # to the queue as soon as the store answers again (each call waits for it up to RECONNECT_S),
                # and its next sync redoes the step exactly (what was appended and not recorded is found by
                # fingerprint). A store still away after that ends the worker (exit 4): its claims lapse, and a
                # service manager starts it again.
                log.warning("%s", exc.message)
                try:
                    if claim is not None:
                        self.store.return_claim(claim.id, self.holder)
                    else:
                        _ = self.store.schema_version   # waits for the store as any call does
                except StoreUnavailable as still:
                    self._fail(still)
            except MigrateError as exc:  # the store refused us (a dropped database, a revoked login)
                self._fail(exc)

    def _fail(self, exc: MigrateError) -> None:
        """Something every mailbox would meet: the worker stops (its claims lapse) and exits with its code."""
        with self._lock:
            if self.result.error is None:
                self.result.error = exc
        self.stop.set()

    def _work_left(self) -> bool:
        return self.store.work_left(self.sources) > 0

    def _one(self, claim: Claim) -> None:
        from migrate.waves.steps import PassLifecycle

        mailbox = self.store.mailbox_by_id(claim.mailbox_id)
        if mailbox is None:
            self.store.finish_claim(claim.id, self.holder, "failed", {"error": "no longer in the state store"})
            return
        if claim.lapsed_from:
            self.store.add_event(f"mailbox/{mailbox.email}", "taken-over",
                                 f"{claim.pass_name} pass: {claim.lapsed_from} stopped renewing its claim; "
                                 f"{self.holder} finishes it")
            with self._lock:
                self.result.taken_over.append((mailbox.email, claim.lapsed_from))
        lifecycle_of = PassLifecycle(self.store, claim.pass_name, [mailbox], dry_run=False, stop=self.stop)
        lifecycle_of.start(mailbox)
        with self._lock:
            self._copying[mailbox.email] = _Copying(claim.id, written_at=time.monotonic())
        try:
            report = self.engine.sync_mailbox(mailbox)
        finally:
            with self._lock:
                self._copying.pop(mailbox.email, None)
        if report.locked:  # another host still copies it (its claim lapsed, its process did not): later
            self.store.return_claim(claim.id, self.holder)
            self.stop.wait(self.poll)
            return
        outcome = lifecycle_of.end(mailbox, report)
        if outcome.stopped:
            self.store.return_claim(claim.id, self.holder)
            return
        outcome.host = host()
        doc = dataclasses.asdict(outcome)
        if not self.store.finish_claim(claim.id, self.holder, "done" if outcome.ok else "failed", doc):
            log.warning("%s: the claim lapsed while it was copied and another worker took it over", mailbox.email)
        with self._lock:
            self.result.outcomes.append(outcome)


def check_threads(threads: int | None, project: Project) -> int:
    """``--max-mailboxes``: how many mailboxes this worker copies at once (default: the central host's limit,
    at most 8); the connection limits still hold across every worker."""
    if threads is None:
        return max(1, min(8, project.config.central.connections))
    if threads < 1:
        raise UsageError("--max-mailboxes must be at least 1")
    return threads
