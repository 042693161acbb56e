"""The sync engine: runs mailboxes in parallel within the connection limits (per source, for the central
host), each under its lock and with retries after transient faults, and records each mailbox's summary."""

from __future__ import annotations

import imaplib
import logging
import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from migrate.core.config import Project, Source
from migrate.core.errors import ClaimLost, LockHeld, MigrateError, TransientError
from migrate.core.fanout import fanout
from migrate.core.leases import Heartbeat, StoreLock, mailbox_lock
from migrate.core.limits import ConnectionLimits
from migrate.core.progress import ProgressEvent, ProgressSink, no_progress
from migrate.core.ratelimit import RateLimiter
from migrate.core.retry import retrying
from migrate.core.store import Fence, FencedStore, MailboxRow, Store, StoreUnavailable
from migrate.mailbox.central import CentralServer, LazyDestination
from migrate.mailbox.sources import Sources, folder_list
from migrate.mailbox.sync.context import PassContext
from migrate.mailbox.sync.mailbox_pass import MailboxPass
from migrate.mailbox.sync.orphans import settle_orphans
from migrate.mailbox.sync.reports import MailboxReport, Stopped, SyncOptions

log = logging.getLogger(__package__)  # the engine's one logger, migrate.mailbox.sync

#: How long a host that lost a mailbox waits to settle what it appended meanwhile (or for its holder to).
HAND_BACK_WAIT_S = 600.0


class SyncEngine:
    def __init__(self, project: Project, store: Store, *, options: SyncOptions | None = None,
                 progress: ProgressSink = no_progress, stop: threading.Event | None = None,
                 heartbeat: Heartbeat | None = None) -> None:
        """``heartbeat``: this process works a queue shared by several hosts (``govmigrate worker``). With it,
        or with a store several hosts share (PostgreSQL), the connection limits hold across every process
        (slot leases in the store, renewed by the heartbeat) and mailbox locks are leases; with a workspace's
        own SQLite store and no heartbeat they are this process's semaphores and ``flock`` files, as on one
        host they need be."""
        self.project = project
        self.store = store
        self.options = options or SyncOptions()
        self.progress = progress
        self.stop = stop or threading.Event()
        cfg = project.config
        self.central = CentralServer(project)
        self._dav_password: Any = None
        self.sources = Sources(project)
        self._lock = threading.Lock()
        #: The connection limits (across hosts with a shared store or a worker's heartbeat); a shared store's own
        #: heartbeat also renews the mailbox locks of this process.
        self.limits = ConnectionLimits(project, store, heartbeat=heartbeat)
        self._worker = heartbeat is not None
        self.heartbeat = self.limits.heartbeat
        self._limiters = {s.id: RateLimiter(s.bandwidth_bps) for s in cfg.sources if s.bandwidth_bps}
        # Only one huge message in flight at a time: memory stays bounded whatever the mailbox holds.
        self._large = threading.Semaphore(1)
        #: Per mailbox, what it is expected to copy (see :meth:`expected`), announced as it starts.
        self._expected: dict[str, tuple[int | None, int | None]] = {}

    # -- connections -----------------------------------------------------------------------------------

    def close(self) -> None:
        self.sources.close()
        self.limits.close()

    # -- the run ----------------------------------------------------------------------------------------

    def check_central(self, mailboxes: list[MailboxRow]) -> None:
        """Fail the whole command early when nothing could work, before any source mailbox is read: the
        central host's secret does not resolve (exit 2), the host cannot be reached (exit 4), or it refuses
        the migration account (exit 5); see :meth:`migrate.mailbox.central.CentralServer.check_access`."""
        with self.limits.central():
            self.central.check_access([] if self.options.dry_run else [m.email for m in mailboxes])

    def check_dav(self, mailboxes: list[MailboxRow]) -> None:
        """With ``central.dav`` and an Exchange mailbox to sync: the DAV server must answer (exit 4) and accept
        the migration account (exit 5) before anything is read, as the central host must."""
        if self.options.dry_run or self.project.config.central.dav is None:
            return
        if not any(self.project.source(m.source_id).server.type == "ews" for m in mailboxes):
            return
        target = self._dav_target()
        try:
            target.check_access()
        finally:
            target.close()

    def _dav_target(self) -> Any:
        """A new client of the central DAV server (None without ``central.dav``); its password is resolved once."""
        from migrate.core.secrets import SecretRef, resolve
        from migrate.mailbox.dav import DavTarget

        cfg = self.project.config.central.dav
        if cfg is None:
            return None
        with self._lock:
            if self._dav_password is None:
                self._dav_password = resolve(SecretRef(cfg.password), base_dir=self.project.base_dir,
                                             label="central DAV password")
        return DavTarget(cfg, self._dav_password, base_dir=self.project.base_dir)

    def run(self, mailboxes: list[MailboxRow], *, on_start: Callable[[MailboxRow], None] | None = None,
            on_report: Callable[[MailboxRow, MailboxReport], None] | None = None) -> list[MailboxReport]:
        """Sync ``mailboxes`` in parallel. ``on_start``/``on_report`` are called as each mailbox starts and
        ends (a wave run records its lifecycle there). A stop (Ctrl-C, SIGTERM, ``stop``) lets the batches in
        flight finish and ends with Interrupted."""
        cfg = self.project.config
        self.check_central(mailboxes)
        self.check_dav(mailboxes)
        if self.heartbeat is not None:
            self.heartbeat.start()
        self._expected = self.expected(mailboxes)
        known = [e for e in self._expected.values() if e[1] is not None]
        self.progress(ProgressEvent("plan", total_messages=sum(e[0] or 0 for e in known) if known else None,
                                    total_bytes=sum(e[1] or 0 for e in known) if known else None,
                                    total_subjects=len(mailboxes)))
        per_source = defaultdict(int)
        for m in mailboxes:
            per_source[m.source_id] += 1
        limit = sum(min(n, self.project.source(s).connections) for s, n in per_source.items())
        workers = self.options.workers or max(1, min(limit, cfg.central.connections, len(mailboxes)))

        def one(mailbox: MailboxRow) -> MailboxReport:
            if on_start is not None:
                on_start(mailbox)
            report = self.sync_mailbox(mailbox)
            if on_report is not None:
                on_report(mailbox, report)
            return report

        try:
            return fanout(mailboxes, one, workers=workers, name="sync", stop=self.stop)
        finally:
            self.close()

    def expected(self, mailboxes: list[MailboxRow]) -> dict[str, tuple[int | None, int | None]]:
        """What each mailbox is expected to copy, (messages, bytes), for progress only: for a mailbox never
        synced that the inventory measured, what it measured less what was copied (the catalog's remaining
        size); otherwise (None, None): a later pass copies only what changed, which nobody knows before the
        folders are read, and the engine reports it folder by folder (``grow`` events)."""
        inventory = {r.email.lower(): {"messages": r.messages, "bytes": r.bytes} for r in self.store.inventory()}
        out: dict[str, tuple[int | None, int | None]] = {}
        for m in mailboxes:
            doc = inventory.get(m.email.lower()) or {}
            if m.last_sync_at is None and doc.get("bytes") is not None:
                out[m.email] = (max(0, (doc.get("messages") or 0) - m.copied_messages),
                                max(0, doc["bytes"] - m.copied_bytes))
            else:
                out[m.email] = (None, None)
        return out

    def sync_mailbox(self, mailbox: MailboxRow, options: SyncOptions | None = None) -> MailboxReport:
        """Sync one mailbox (``options``: this mailbox's, where they differ from the run's: a worker's claims
        belong to different passes)."""
        options = options or self.options
        source = self.project.source(mailbox.source_id)
        report = MailboxReport(mailbox.email, source.id)
        started = time.monotonic()
        if self.stop.is_set():
            report.ok, report.error = False, "not started: the run was stopped"
            return report
        expected_messages, expected_bytes = self._expected.get(mailbox.email, (None, None))
        self.progress(ProgressEvent("start", mailbox.email, total_messages=expected_messages,
                                    total_bytes=expected_bytes))
        lock = None
        if options.lock_dir is not None and not options.dry_run:
            lock = self._mailbox_lock(mailbox)
            try:
                lock.acquire()
            except LockHeld as exc:
                report.ok, report.error, report.locked = False, exc.message, True
                self.progress(ProgressEvent("failed", mailbox.email, detail=exc.message))
                return report
        store: Any = self.store
        lost = getattr(lock, "lost", None) or threading.Event()
        slots = self.limits.source(source.id)
        try:
            if isinstance(lock, StoreLock):
                # Several hosts: a new token for the mailbox fences every write of this sync (a host that lost the
                # mailbox to this one can write nothing more for it). A flock beside a SQLite store dies with its
                # process and cannot be lost to another host, so a sync on one host needs none.
                store = self.store.fenced(self._fence(mailbox, lock))
            with slots, self.limits.central():
                attempt_no = 0
                for attempt in retrying(f"sync {mailbox.email}", attempts=options.attempts, initial=1.0,
                                        maximum=30.0):
                    with attempt:
                        attempt_no += 1
                        if attempt_no > 1:  # what the last attempt found and did not copy is found again
                            self.progress(ProgressEvent("retry", mailbox.email, detail=f"attempt {attempt_no}"))
                        report = MailboxReport(mailbox.email, source.id, attempts=attempt_no)
                        if self.stop.is_set():
                            raise Stopped()
                        self._sync_once(mailbox, source, report, store, lost, options)
            if not options.dry_run:
                report.seconds = time.monotonic() - started
                self._record(mailbox, report, store)
        except Stopped:
            report.ok, report.error = False, "stopped before finishing; run again to resume"
        except ClaimLost as exc:
            report.ok, report.error, report.given_up, report.appended = False, exc.message, True, exc.appended
            log.warning("%s: %s", mailbox.email, exc.message)
        except StoreUnavailable:
            raise  # the shared store is away: no mailbox failed, the whole process waits or stops
        except MigrateError as exc:
            report.ok, report.error = False, exc.message
        except Exception as exc:  # a server doing something unexpected must not take the wave down
            log.exception("sync of %s failed unexpectedly", mailbox.email)
            report.ok, report.error = False, f"unexpected error: {type(exc).__name__}: {exc}"
        finally:
            if lock is not None:
                lock.release()
        report.seconds = time.monotonic() - started
        if not options.dry_run and not report.ok and not report.given_up:
            try:
                self._record(mailbox, report, store)
            except ClaimLost as exc:
                report.given_up, report.error = True, exc.message
        if report.given_up and report.appended:
            self._hand_back(mailbox, report)
        if report.ok:
            self.progress(ProgressEvent("done", mailbox.email))
        else:
            self.progress(ProgressEvent("failed", mailbox.email, detail=report.error or ""))
        return report

    def _mailbox_lock(self, mailbox: MailboxRow) -> Any:
        return mailbox_lock(self.store, self.options.lock_dir, mailbox.email,
                            "govmigrate worker" if self._worker else "govmigrate sync",
                            ttl=self.project.config.sync.lease_seconds, heartbeat=self.heartbeat)

    def _fence(self, mailbox: MailboxRow, lock: StoreLock) -> Fence:
        """A new token for ``mailbox``, and the lease each batch extends by a margin: the lease's time to live
        and the longest an APPEND may take."""
        return Fence(mailbox.id, self.store.take_fence(mailbox.id), lock.name, lock.holder,
                     margin=self.project.config.sync.lease_seconds + self.append_budget)

    @property
    def append_budget(self) -> float:
        """The longest one APPEND may take: the central host's socket timeout, twice (sending, then the reply)."""
        return 2.0 * float(self.project.config.central.imap.timeout)

    def _hand_back(self, mailbox: MailboxRow, report: MailboxReport) -> None:
        """A batch this host appended after it lost the mailbox: recorded as orphans, then settled by this host
        as soon as it holds the mailbox again, unless its holder settles them first
        (:mod:`migrate.mailbox.sync.orphans`)."""
        assert report.appended is not None
        folder_id, _dest_name, rows = report.appended
        holder = self.heartbeat.holder if self.heartbeat is not None else "this host"
        self.store.record_orphans(mailbox.id, folder_id, holder, rows)
        log.warning("%s: %d message(s) appended after this host lost the mailbox are left for its holder to "
                    "settle (recorded as orphans)", mailbox.email, len(rows))
        deadline = time.monotonic() + HAND_BACK_WAIT_S
        while time.monotonic() < deadline and not self.stop.is_set():
            if not self.store.orphans(mailbox.id):
                return  # the mailbox's holder settled them
            lock = self._mailbox_lock(mailbox)   # a lease: only a sync on several hosts loses its mailbox
            try:
                lock.acquire()
            except LockHeld:
                self.stop.wait(1.0)
                continue
            try:
                with self.limits.central():
                    dest = self.central.open(mailbox.email)
                    try:
                        settle_orphans(self.store.fenced(self._fence(mailbox, lock)), dest, mailbox)
                    finally:
                        dest.close()
            except (MigrateError, OSError) as exc:
                log.warning("%s: the orphans were not settled (%s); the mailbox's next sync settles them",
                            mailbox.email, getattr(exc, "message", exc))
            finally:
                lock.release()
            return

    def _record(self, mailbox: MailboxRow, report: MailboxReport, store: Any) -> None:
        # One transaction for the mailbox's summary and its event (one commit, not two, per mailbox of a
        # nightly pass); a pass that found every folder unchanged changed no record, so the totals stand.
        with store.tx():
            self._record_in_tx(mailbox, report, store)

    def _record_in_tx(self, mailbox: MailboxRow, report: MailboxReport, store: Any) -> None:
        if report.ok and report.folders and all(f.unchanged for f in report.folders) and not report.failed_messages:
            copied, failed = (mailbox.copied_messages, mailbox.copied_bytes), mailbox.failed_messages
        else:
            copied = store.copied_totals(mailbox.id)
            failed = len(store.failed_messages(mailbox.id))
        result = ("ok" if report.complete else "partial") if report.ok else f"failed: {report.error}"
        store.record_mailbox_sync(
            mailbox.id, result=result,
            src_messages=report.src_messages if report.ok else (mailbox.src_messages or 0),
            src_bytes=report.src_bytes if report.ok else (mailbox.src_bytes or 0),
            copied_messages=copied[0], copied_bytes=copied[1], failed_messages=failed,
            central_quota=report.central_quota if report.ok else None)
        if report.copied and report.seconds > 0:
            store.record_throughput(mailbox.source_id, report.copied, report.copied_bytes, report.seconds)
        detail = (f"copied {report.copied} messages ({report.copied_bytes} bytes)"
                  + (f", moved {report.moved} between folders" if report.moved else "")
                  + (f", {report.failed_messages} refused" if report.failed_messages else "")
                  + (f", {report.keywords_encoded} with keywords encoded as IMAP atoms"
                     if report.keywords_encoded else "")
                  + (f", {report.folder_errors} folder errors" if report.folder_errors else ""))
        store.add_event(f"mailbox/{mailbox.email}", "sync" if report.ok else "sync-failed",
                             detail if report.ok else (report.error or ""))

    # -- one pass over one mailbox ------------------------------------------------------------------------

    def _sync_once(self, mailbox: MailboxRow, source: Source, report: MailboxReport, store: Any,
                   lost: threading.Event, options: SyncOptions) -> None:
        """One attempt at the mailbox; ``store`` is fenced for it (a real pass), ``lost`` set when this host is
        found to have lost the mailbox."""
        dest: LazyDestination | None = None
        src: Any = None
        try:
            src = self.sources.open(source, mailbox.email, mailbox.login)
            folders = folder_list(src)
            dest = self.central.lazy(mailbox.email)
            ctx = PassContext(store=store, options=options, mailbox=mailbox, source=source, src=src,
                              dest=dest, report=report, progress=self.progress, stop=self.stop, large=self._large,
                              limiter=self._limiters.get(source.id),
                              max_keyword=self.project.config.central.max_keyword_length, lost=lost,
                              append_budget=self.append_budget)
            MailboxPass(ctx, self.project.config.central.folders).run(folders)
            if isinstance(store, FencedStore):
                ctx.check_stop()
                settle_orphans(store, dest, mailbox)
            if source.server.type == "ews" and not options.dry_run:
                self._groupware(mailbox, src, report, store)
            if not self.options.dry_run:
                if options.settings_due(mailbox.settings_read_at, time.time()):
                    self._settings(mailbox, source, src, dest, report, store, folders)
                # Where this pass logged in at the central host anyway: the quota it leaves, so that the next
                # pass's pre-flight need not log in there to check it.
                report.central_quota = dest.quota_read()
        except (imaplib.IMAP4.abort, ConnectionError, TimeoutError, EOFError, ssl.SSLError) as exc:
            # A connection failure that slipped past the per-call translation (e.g. inside a generator):
            # still a lost connection, still worth a reconnect and a resume.
            raise TransientError(f"connection lost: {exc}") from exc
        finally:
            for side in (src, dest):
                close = getattr(side, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception:
                        pass

    def _settings(self, mailbox: MailboxRow, source: Source, src: Any, dest: Any, report: MailboxReport,
                  store: Any, folders: list | None = None) -> None:
        """Mail rules, out-of-office, shared folders and delegates (migrate.mailbox.settings), after the mail;
        ``folders``: the source's folders as this pass listed them (not listed again for their access lists)."""
        from migrate.mailbox.settings import settings_pass

        report.settings = settings_pass(self.project, self.sources, self.central, store, mailbox, source, src, dest,
                                        folders=folders)

    def _groupware(self, mailbox: MailboxRow, src: Any, report: MailboxReport, store: Any) -> None:
        """Calendars and contacts of an Exchange mailbox (migrate.mailbox.groupware), after its mail."""
        from migrate.mailbox.groupware import GroupwarePass

        target = self._dav_target()   # one client per mailbox: HTTP sessions are not shared between threads
        try:
            report.groupware = GroupwarePass(store, mailbox, src, target, self.project.base_dir).run()
        finally:
            if target is not None:
                target.close()
