"""Several migration hosts working one plan: ``govmigrate worker`` claims the mailboxes a queued pass
(:mod:`migrate.waves.queued`) put in the shared store, and copies them.

A worker, started on any number of hosts with the same project file, claims one mailbox at a time and syncs it
with the same engine and the same lifecycle (:class:`migrate.waves.sync_pass.PassLifecycle`) a run on one host
uses.

What holds across hosts: a mailbox is copied by one host at a time (its claim, and its lease
``mailbox/<email>``); each source's and the central host's ``connections`` limit counts every host's sessions
(slot leases, :class:`migrate.core.leases.Slots`); a worker renews its claims and slots by heartbeat, so one
that dies (SIGKILL, power) loses them within ``sync.lease_seconds`` and another worker finishes its mailboxes.
Whatever the dead worker appended and did not record is recognised by fingerprint, never copied twice.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from migrate.core.config import Project
from migrate.core.errors import MigrateError, UsageError
from migrate.core.leases import Heartbeat
from migrate.core.progress import ProgressEvent, ProgressSink, no_progress
from migrate.core.store import Claim, Store, StoreUnavailable, host
from migrate.mailbox.sync import SyncEngine, SyncOptions
from migrate.waves.results import Outcome
from migrate.waves.sync_pass import PassLifecycle

log = logging.getLogger(__name__)

#: How often an idle worker asks the queue for work.
POLL_S = 1.0
#: How often a worker writes what a mailbox has copied so far (the live progress of `run --workers`).
PROGRESS_S = 2.0


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
        return [o for o in self.outcomes if not o.ok and not o.given_up]

    @property
    def given_up(self) -> list[Outcome]:
        """Mailboxes this worker lost to another (its lease lapsed: a pause, a lost database)."""
        return [o for o in self.outcomes if o.given_up]


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
                # Another worker's lapsed claim is taken over only once this one has been connected to the store
                # for a lease's length: after the database was away for everyone, every holder gets that long to
                # renew before anybody calls it dead.
                claim = self.store.claim(self.holder, ttl=self.ttl, sources=self.sources,
                                         take_over=self.store.connected_for() >= self.ttl)
                if claim is None:
                    if self.drain and not self._work_left():
                        return
                    self.stop.wait(self.poll)
                    continue
                self._one(claim)
            except StoreUnavailable as exc:
                # The store went away in the middle of a step (a restart, a network cut): the mailbox goes back
                # to the queue as soon as the store answers again (each call waits for it up to RECONNECT_S),
                # unless another worker took it over meanwhile; either way this worker gives it up, and the next
                # sync of it redoes the step exactly (what was appended and not recorded is found through its
                # pending records). A store still away after that ends the worker (exit 4): its claims lapse, and
                # a service manager starts it again.
                log.warning("%s", exc.message)
                try:
                    if claim is not None:
                        self.store.return_claim(claim.id, self.holder)
                        self._gave_up(claim, f"the state store was away: {exc.message}")
                    else:
                        _ = self.store.schema_version   # waits for the store as any call does
                except MigrateError as still:  # still away (exit 4), or refusing us now (a dropped database)
                    self._fail(still)
            except MigrateError as exc:  # the store refused us (a dropped database, a revoked login)
                self._fail(exc)

    def _gave_up(self, claim: Claim, why: str) -> None:
        mailbox = self.store.mailbox_by_id(claim.mailbox_id)
        if mailbox is not None:
            with self._lock:
                self.result.outcomes.append(Outcome(mailbox.email, mailbox.state, mailbox.state, False, error=why,
                                                    given_up=True, host=host()))

    def _fail(self, exc: MigrateError) -> None:
        """Something every mailbox would meet: the worker stops (its claims lapse) and exits with its code."""
        with self._lock:
            if self.result.error is None:
                self.result.error = exc
        self.stop.set()

    def _work_left(self) -> bool:
        return self.store.work_left(self.sources) > 0

    def _one(self, claim: Claim) -> None:
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
        lifecycle_of = PassLifecycle(self.store, claim.pass_name, [mailbox], dry_run=False, stop=self.stop,
                                     bad_item_limit=self.project.config.sync.bad_item_limit)
        lifecycle_of.start(mailbox)
        with self._lock:
            self._copying[mailbox.email] = _Copying(claim.id, written_at=time.monotonic())
        try:
            report = self.engine.sync_mailbox(mailbox, SyncOptions.for_pass(
                self.project, claim.pass_name, lock_dir=self.engine.options.lock_dir))
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
        if outcome.given_up:  # another worker took the mailbox over: its outcome is the mailbox's, not this one
            log.warning("%s: given up: %s", mailbox.email, outcome.error)
            with self._lock:
                self.result.outcomes.append(outcome)
            return
        outcome.host = host()
        doc = outcome.as_dict()
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
