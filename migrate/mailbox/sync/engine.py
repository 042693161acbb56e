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
from migrate.core.errors import LockHeld, MigrateError, TransientError
from migrate.core.fanout import fanout
from migrate.core.leases import Heartbeat, mailbox_lock
from migrate.core.limits import ConnectionLimits
from migrate.core.progress import ProgressEvent, ProgressSink, no_progress
from migrate.core.ratelimit import RateLimiter
from migrate.core.retry import retrying
from migrate.core.store import MailboxRow, Store, StoreUnavailable
from migrate.mailbox.central import CentralServer, LazyDestination
from migrate.mailbox.sources import Sources, folder_list
from migrate.mailbox.sync.context import PassContext
from migrate.mailbox.sync.mailbox_pass import MailboxPass
from migrate.mailbox.sync.reports import MailboxReport, Stopped, SyncOptions

log = logging.getLogger(__package__)  # the engine's one logger, migrate.mailbox.sync


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

    def sync_mailbox(self, mailbox: MailboxRow) -> MailboxReport:
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
        if self.options.lock_dir is not None and not self.options.dry_run:
            lock = mailbox_lock(self.store, self.options.lock_dir, mailbox.email,
                                "govmigrate worker" if self._worker else
                                "govmigrate sync",
                                ttl=self.project.config.sync.lease_seconds, heartbeat=self.heartbeat)
            try:
                lock.acquire()
            except LockHeld as exc:
                report.ok, report.error, report.locked = False, exc.message, True
                self.progress(ProgressEvent("failed", mailbox.email, detail=exc.message))
                return report
        slots = self.limits.source(source.id)
        try:
            with slots, self.limits.central():
                attempt_no = 0
                for attempt in retrying(f"sync {mailbox.email}", attempts=self.options.attempts, initial=1.0,
                                        maximum=30.0):
                    with attempt:
                        attempt_no += 1
                        if attempt_no > 1:  # what the last attempt found and did not copy is found again
                            self.progress(ProgressEvent("retry", mailbox.email, detail=f"attempt {attempt_no}"))
                        report = MailboxReport(mailbox.email, source.id, attempts=attempt_no)
                        if self.stop.is_set():
                            raise Stopped()
                        self._sync_once(mailbox, source, report)
        except Stopped:
            report.ok, report.error = False, "stopped before finishing; run again to resume"
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
        if not self.options.dry_run:
            self._record(mailbox, report)
        if report.ok:
            self.progress(ProgressEvent("done", mailbox.email))
        else:
            self.progress(ProgressEvent("failed", mailbox.email, detail=report.error or ""))
        return report

    def _record(self, mailbox: MailboxRow, report: MailboxReport) -> None:
        # One transaction for the mailbox's summary and its event (one commit, not two, per mailbox of a
        # nightly pass); a pass that found every folder unchanged changed no record, so the totals stand.
        with self.store.tx():
            self._record_in_tx(mailbox, report)

    def _record_in_tx(self, mailbox: MailboxRow, report: MailboxReport) -> None:
        if report.ok and report.folders and all(f.unchanged for f in report.folders) and not report.failed_messages:
            copied, failed = (mailbox.copied_messages, mailbox.copied_bytes), mailbox.failed_messages
        else:
            copied = self.store.copied_totals(mailbox.id)
            failed = len(self.store.failed_messages(mailbox.id))
        result = ("ok" if report.complete else "partial") if report.ok else f"failed: {report.error}"
        self.store.record_mailbox_sync(
            mailbox.id, result=result,
            src_messages=report.src_messages if report.ok else (mailbox.src_messages or 0),
            src_bytes=report.src_bytes if report.ok else (mailbox.src_bytes or 0),
            copied_messages=copied[0], copied_bytes=copied[1], failed_messages=failed)
        if report.copied and report.seconds > 0:
            self.store.record_throughput(mailbox.source_id, report.copied, report.copied_bytes, report.seconds)
        detail = (f"copied {report.copied} messages ({report.copied_bytes} bytes)"
                  + (f", {report.failed_messages} refused" if report.failed_messages else "")
                  + (f", {report.keywords_encoded} with keywords encoded as IMAP atoms"
                     if report.keywords_encoded else "")
                  + (f", {report.folder_errors} folder errors" if report.folder_errors else ""))
        self.store.add_event(f"mailbox/{mailbox.email}", "sync" if report.ok else "sync-failed",
                             detail if report.ok else (report.error or ""))

    # -- one pass over one mailbox ------------------------------------------------------------------------

    def _sync_once(self, mailbox: MailboxRow, source: Source, report: MailboxReport) -> None:
        dest: LazyDestination | None = None
        src: Any = None
        try:
            src = self.sources.open(source, mailbox.email, mailbox.login)
            folders = folder_list(src)
            dest = self.central.lazy(mailbox.email)
            ctx = PassContext(store=self.store, options=self.options, mailbox=mailbox, source=source, src=src,
                              dest=dest, report=report, progress=self.progress, stop=self.stop, large=self._large,
                              limiter=self._limiters.get(source.id),
                              max_keyword=self.project.config.central.max_keyword_length)
            MailboxPass(ctx, self.project.config.central.folders).run(folders)
            if source.server.type == "ews" and not self.options.dry_run:
                self._groupware(mailbox, src, report)
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

    def _groupware(self, mailbox: MailboxRow, src: Any, report: MailboxReport) -> None:
        """Calendars and contacts of an Exchange mailbox (migrate.mailbox.groupware), after its mail."""
        from migrate.mailbox.groupware import GroupwarePass

        target = self._dav_target()   # one client per mailbox: HTTP sessions are not shared between threads
        try:
            report.groupware = GroupwarePass(self.store, mailbox, src, target, self.project.base_dir).run()
        finally:
            if target is not None:
                target.close()
