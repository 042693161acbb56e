"""The sync engine: copy mailboxes from ministry servers (IMAP or EWS) into the central host.

Per folder it remembers the source UIDVALIDITY and, per message, source UID (or EWS item id) →
destination UID with a content fingerprint. Later passes copy only what is new and carry flag changes.
Every batch is written to the state store as *pending* before its APPEND and as *copied* after it, so
a crash between the two is repaired on the next pass by matching fingerprints on the destination; a lost
state store or a changed UIDVALIDITY is repaired the same way, folder-wide. Nothing is ever duplicated
and mail that reached the destination by other means is never touched.

Mailboxes run in parallel, bounded per source and for the central host; transient faults reconnect and
resume from the last recorded batch. A stop event ends the run at the next batch boundary.
"""

from __future__ import annotations

import imaplib
import logging
import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from migrate.core.config import Project, Source
from migrate.core.crashpoints import crashpoint
from migrate.core.errors import (
    FolderFailed,
    LockHeld,
    MigrateError,
    RemoteError,
    SyncStateInvalid,
    TransientError,
)
from migrate.core.fanout import fanout
from migrate.core.leases import Heartbeat, Slots, mailbox_lock
from migrate.core.progress import ProgressEvent, ProgressSink, no_progress
from migrate.core.ratelimit import RateLimiter
from migrate.core.retry import retrying
from migrate.core.store import FolderState, MailboxRow, MessageRecord, Store, StoreUnavailable
from migrate.mailbox.central import CentralServer, Destination
from migrate.mailbox.fingerprint import PREFIX, fingerprint, stable
from migrate.mailbox.folders import CentralLayout, FolderMapping, SourceFolderInfo, map_folders
from migrate.mailbox.imap import describe_failure
from migrate.mailbox.keywords import for_central
from migrate.mailbox.protocol import Appendable, CommandFailed, ListedFolder
from migrate.mailbox.source_imap import ImapSourceMailbox, MessageMeta
from migrate.mailbox.sources import Sources, folder_list
from migrate.mailbox.unexportable import Unreadable

log = logging.getLogger(__name__)

Key = int | str  # IMAP source UID, or EWS item id
#: SyncFolderItems answers in a row that promise more changes but carry none and keep the same state before
#: the folder is left for the next pass (exchangelib guards the same way).
MAX_SYNC_STALLS = 3

@dataclass
class SyncOptions:
    dry_run: bool = False
    propagate_deletes: bool = False
    #: A batch is fetched with one FETCH and appended with one MULTIAPPEND.
    batch_bytes: int = 2_000_000
    batch_messages: int = 250
    #: Messages larger than this are streamed in chunks instead of held whole in memory.
    stream_threshold: int = 8_000_000
    chunk_size: int = 1_000_000
    #: Parallel mailboxes (default: bounded by the sources' and the central host's connection limits).
    workers: int | None = None
    #: Retries of a mailbox after transient faults before it is recorded as failed.
    attempts: int = 5
    #: A lock directory (the workspace's); None disables per-mailbox locks (library use, tests).
    lock_dir: Any = None

    @classmethod
    def from_project(cls, project: Project, **kwargs: Any) -> SyncOptions:
        tuning = project.config.sync
        return cls(batch_bytes=int(tuning.batch_bytes), batch_messages=tuning.batch_messages,
                   stream_threshold=int(tuning.stream_threshold), workers=tuning.workers, **kwargs)


@dataclass
class FolderReport:
    source: str
    dest: str | None
    note: str | None = None
    created: bool = False
    unchanged: bool = False
    copied: int = 0
    copied_bytes: int = 0
    reconciled: int = 0
    flag_updates: int = 0
    deleted: int = 0
    #: Messages copied or re-flagged whose keywords (Exchange categories) had to be encoded as atoms.
    keywords_encoded: int = 0
    to_copy: int = 0          # dry-run: would copy
    to_copy_bytes: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (message, reason)
    #: Items not migrated by policy (an Exchange contact or note kept in a mail folder): (item, reason).
    not_migrated: list[tuple[str, str]] = field(default_factory=list)
    #: Something people should know that did not fail the folder (e.g. a server whose sync state stalled).
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class MailboxReport:
    email: str
    source_id: str
    ok: bool = True
    error: str | None = None
    folders: list[FolderReport] = field(default_factory=list)
    src_messages: int = 0
    src_bytes: int = 0
    seconds: float = 0.0
    attempts: int = 1
    #: Not synced: another process holds this mailbox's lock (``error`` names it).
    locked: bool = False
    #: Exchange calendars and contacts (migrate.mailbox.groupware.GroupwareReport), one per kind.
    groupware: list = field(default_factory=list)

    @property
    def copied(self) -> int:
        return sum(f.copied for f in self.folders)

    @property
    def copied_bytes(self) -> int:
        return sum(f.copied_bytes for f in self.folders)

    @property
    def failed_messages(self) -> int:
        return sum(len(f.failed) for f in self.folders)

    @property
    def keywords_encoded(self) -> int:
        return sum(f.keywords_encoded for f in self.folders)

    @property
    def folder_errors(self) -> int:
        return sum(1 for f in self.folders if f.error)

    @property
    def complete(self) -> bool:
        """Everything at the source is at the destination (as far as this pass knows)."""
        return self.ok and not self.failed_messages and not self.folder_errors and \
            not any(g.failed or g.error for g in self.groupware)


def _cols(key: Key) -> tuple[int | None, str | None]:
    return (key, None) if isinstance(key, int) else (None, key)


def _key(record: MessageRecord) -> Key:
    return record.src_uid if record.src_uid is not None else record.src_item  # type: ignore[return-value]


def _flagstr(flags) -> str:
    return " ".join(sorted(flags))


@dataclass
class _Item:
    """One message to copy."""

    key: Key
    size: int
    flags: tuple[str, ...]
    internaldate: datetime | None
    #: Some keyword had to be encoded to be sent (see migrate.mailbox.keywords).
    encoded: bool = False


class _Stopped(Exception):
    pass


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
        self._own_heartbeat = heartbeat is None and store.engine.name != "sqlite"
        if self._own_heartbeat:
            heartbeat = Heartbeat(store, cfg.sync.lease_seconds)
        self.heartbeat = heartbeat
        self._source_slots: dict[str, Any]
        if heartbeat is not None:
            self._source_slots = {s.id: Slots(store, f"source/{s.id}", s.connections, heartbeat) for s in cfg.sources}
            self._central_slots: Any = Slots(store, "central", cfg.central.connections, heartbeat)
        else:
            self._source_slots = {s.id: threading.BoundedSemaphore(s.connections) for s in cfg.sources}
            self._central_slots = threading.BoundedSemaphore(cfg.central.connections)
        self._limiters = {s.id: RateLimiter(s.bandwidth_bps) for s in cfg.sources if s.bandwidth_bps}
        # Only one huge message in flight at a time: memory stays bounded whatever the mailbox holds.
        self._large = threading.Semaphore(1)
        #: Per mailbox, what it is expected to copy (see :meth:`expected`), announced as it starts.
        self._expected: dict[str, tuple[int | None, int | None]] = {}

    # -- connections -----------------------------------------------------------------------------------

    def close(self) -> None:
        self.sources.close()
        if self._own_heartbeat and self.heartbeat is not None:
            self.heartbeat.stop()

    # -- the run ----------------------------------------------------------------------------------------

    def check_central(self, mailboxes: list[MailboxRow]) -> None:
        """Fail the whole command early when nothing could work, before any source mailbox is read: the
        central host's secret does not resolve (exit 2), the host cannot be reached (exit 4), or it refuses
        the migration account (exit 5); see :meth:`migrate.mailbox.central.CentralServer.check_access`."""
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
                                "govmigrate worker" if not self._own_heartbeat and self.heartbeat else
                                "govmigrate sync",
                                ttl=self.project.config.sync.lease_seconds, heartbeat=self.heartbeat)
            try:
                lock.acquire()
            except LockHeld as exc:
                report.ok, report.error, report.locked = False, exc.message, True
                self.progress(ProgressEvent("failed", mailbox.email, detail=exc.message))
                return report
        slots = self._source_slots[source.id]
        try:
            with slots, self._central_slots:
                attempt_no = 0
                for attempt in retrying(f"sync {mailbox.email}", attempts=self.options.attempts, initial=1.0,
                                        maximum=30.0):
                    with attempt:
                        attempt_no += 1
                        if attempt_no > 1:  # what the last attempt found and did not copy is found again
                            self.progress(ProgressEvent("retry", mailbox.email, detail=f"attempt {attempt_no}"))
                        report = MailboxReport(mailbox.email, source.id, attempts=attempt_no)
                        if self.stop.is_set():
                            raise _Stopped()
                        self._sync_once(mailbox, source, report)
        except _Stopped:
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
        dest: Destination | None = None
        src: Any = None
        try:
            src = self.sources.open(source, mailbox.email, mailbox.login)
            folders = folder_list(src)
            dest = self.central.lazy(mailbox.email)
            runner = _MailboxPass(self, mailbox, source, src, dest, report)
            runner.run(folders)
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


class _MailboxPass:
    """One pass over one mailbox: map folders, then sync each folder."""

    def __init__(self, engine: SyncEngine, mailbox: MailboxRow, source: Source, src: Any, dest: Destination,
                 report: MailboxReport) -> None:
        self.engine = engine
        self.store = engine.store
        self.options = engine.options
        self.mailbox = mailbox
        self.source = source
        self.src = src
        self.dest = dest
        self.report = report
        self.dry = engine.options.dry_run
        self.limiter = engine._limiters.get(source.id)
        self.is_ews = not isinstance(src, ImapSourceMailbox)
        #: Exchange builds an item's MIME again on every read: its copies are matched by the fingerprint that
        #: leaves out the header fields it rebuilds (migrate.mailbox.fingerprint.stable).
        self.fingerprint = stable if self.is_ews else fingerprint
        self.max_keyword = engine.project.config.central.max_keyword_length
        #: Keywords shortened to the central host's limit in this pass → the names they stand for.
        self.long_names: dict[str, str] = {}

    def central_flags(self, flags) -> tuple[tuple[str, ...], bool]:
        return for_central(flags, self.max_keyword, self.long_names)

    def progress(self, messages: int, nbytes: int) -> None:
        self.engine.progress(ProgressEvent("advance", self.mailbox.email, messages=messages, bytes=nbytes))

    def found(self, items: list[_Item]) -> None:
        """A folder (or a chunk of an Exchange folder) was read: this much is to be copied from it."""
        if items:
            self.engine.progress(ProgressEvent("grow", self.mailbox.email, messages=len(items),
                                               bytes=sum(i.size for i in items)))

    def check_stop(self) -> None:
        if self.engine.stop.is_set():
            raise _Stopped()

    def run(self, folders: list[tuple[SourceFolderInfo, ListedFolder | None]]) -> None:
        recorded = {f.source_name: f for f in self.store.folders(self.mailbox.id)}
        # The central host's layout only matters for folders not mapped before; a pass where nothing is new
        # need not even log in there.
        unmapped = any(info.name not in recorded for info, _ in folders)
        layout: CentralLayout = self.dest.layout() if unmapped else CentralLayout()
        policy_rules = list(self.source.folders.rules) + list(self.engine.project.config.central.folders.rules)
        prefix = self.source.folders.prefix or self.engine.project.config.central.folders.prefix
        mappings = map_folders([info for info, _ in folders], central=layout, rules=policy_rules, prefix=prefix,
                               recorded={name: (f.dest_name, f.note) for name, f in recorded.items()})
        listed = {info.name: lf for info, lf in folders}
        attention = self.store.folders_needing_attention(self.mailbox.id)
        if self.options.propagate_deletes:
            attention |= self.store.folders_with_vanished(self.mailbox.id)
        for mapping in mappings:
            self.check_stop()
            folder_report = FolderReport(mapping.source.name, mapping.dest, mapping.note)
            self.report.folders.append(folder_report)
            if mapping.dest is None:
                continue
            try:
                self._folder(mapping, recorded.get(mapping.source.name), listed.get(mapping.source.name),
                             attention, folder_report)
                if self.long_names and not self.dry:
                    self.store.record_keyword_names(self.long_names)
                    self.long_names.clear()
            except (FolderFailed, CommandFailed) as exc:
                folder_report.error = exc.message if isinstance(exc, FolderFailed) else exc.text
                log.warning("%s: folder %s: %s", self.mailbox.email, mapping.source.name, folder_report.error)
            except RemoteError as exc:
                if exc.transient:
                    raise
                folder_report.error = exc.message

    # -- per folder --------------------------------------------------------------------------------------

    def _folder(self, mapping: FolderMapping, state: FolderState | None, listed: ListedFolder | None,
                attention: set[int], fr: FolderReport) -> None:
        src_info = mapping.source
        dest_name = mapping.dest
        assert dest_name is not None
        status = listed.status if listed is not None else {}
        if listed is not None and listed.selectable and not status:
            raise FolderFailed(f"the source server cannot report the status of {src_info.name!r}")
        if (state is not None and status and not self.is_ews
                and state.dest_name == dest_name and state.subscribed == src_info.subscribed
                and state.id not in attention
                and state.source_uidvalidity == status.get("UIDVALIDITY")
                and state.source_uidnext == status.get("UIDNEXT")
                and state.source_messages == status.get("MESSAGES")
                and "HIGHESTMODSEQ" in status and state.source_modseq == status.get("HIGHESTMODSEQ")):
            fr.unchanged = True
            self.report.src_messages += state.source_messages or 0
            self.report.src_bytes += state.source_bytes or 0
            return
        pre_existing = dest_name in self.dest.folders()
        if not self.dry:
            fr.created = self.dest.ensure_folder(dest_name, src_info.subscribed)
            if state is None or state.dest_name != dest_name or state.subscribed != src_info.subscribed \
                    or state.note != mapping.note:
                state = self.store.ensure_folder(self.mailbox.id, src_info.name, dest_name,
                                                 subscribed=src_info.subscribed, note=mapping.note)
        else:
            fr.created = not pre_existing
        if self.is_ews:
            self._ews_folder(src_info, state, dest_name, pre_existing, fr)
        else:
            self._imap_folder(src_info, state, dest_name, pre_existing, status, fr)

    def _dest_status(self, dest_name: str) -> dict[str, int]:
        if self.dry and dest_name not in self.dest.folders():
            return {"UIDNEXT": 1, "UIDVALIDITY": 0, "MESSAGES": 0}
        return self.dest.status(dest_name)

    def _records(self, state: FolderState | None, dest_status: dict[str, int]) -> dict[Key, MessageRecord]:
        if state is None:
            return {}
        if state.dest_uidvalidity is not None and dest_status.get("UIDVALIDITY") not in (None, 0) \
                and state.dest_uidvalidity != dest_status["UIDVALIDITY"]:
            # The destination folder was recreated: every record of it is void; reconcile from scratch.
            log.warning("%s: destination folder %s changed UIDVALIDITY; reconciling", self.mailbox.email,
                        state.dest_name)
            if not self.dry:
                self.store.forget_folder_messages(state.id)
            return {}
        return {_key(r): r for r in self.store.message_records(state.id)}

    def _imap_folder(self, src_info: SourceFolderInfo, state: FolderState | None, dest_name: str,
                     pre_existing: bool, status: dict[str, int], fr: FolderReport) -> None:
        src: ImapSourceMailbox = self.src
        info = src.examine(src_info.name)
        uidvalidity = info.get(b"UIDVALIDITY")
        dest_status = self._dest_status(dest_name)
        records = self._records(state, dest_status)
        if state is not None and records and state.source_uidvalidity not in (None, uidvalidity):
            log.warning("%s: source folder %s changed UIDVALIDITY; reconciling by fingerprint",
                        self.mailbox.email, src_info.name)
            if not self.dry:
                self.store.forget_folder_messages(state.id)
            records = {}
        delta = self._imap_delta(src, state, records, info, status)
        if delta is not None:
            meta, flags, encoded = delta
        else:
            meta = src.metadata()
            flags, encoded = {}, set()
            for uid, m in meta.items():
                flags[uid], was_encoded = self.central_flags(m.flags)
                if was_encoded:
                    encoded.add(uid)
        self.report.src_messages += len(meta)
        self.report.src_bytes += sum(m.size for m in meta.values())
        records = self._reconcile_pending(state, dest_name, records)
        dest_available: dict[str, list[tuple[int, tuple[str, ...]]]] = {}
        if not records and pre_existing and dest_status.get("MESSAGES"):
            # No record of this folder but the destination already has mail in it: state lost, UIDVALIDITY
            # changed, or mail that arrived by other means. Match by fingerprint before copying anything.
            records = self._reconcile_folder(state, dest_name, records, src.fingerprints(), meta, fr)
            src.examine(src_info.name)
        else:
            dest_available = self._unknown_on_dest(state, dest_name, dest_status, records)
        copy_items = [_Item(uid, m.size, flags[uid], m.internaldate, uid in encoded) for uid, m in sorted(meta.items())
                      if uid not in records or records[uid].state == "failed"]
        self.found(copy_items)
        next_uid = self._copy(state, dest_name, dest_status, copy_items, fr, dest_available)
        self._carry_flags(state, dest_name, records, flags, fr, encoded)
        self._vanished(state, dest_name, records, set(meta), fr)
        if not self.dry and state is not None:
            self.store.update_folder(state.id, source_uidvalidity=uidvalidity, source_uidnext=status.get("UIDNEXT"),
                                     source_modseq=status.get("HIGHESTMODSEQ"), source_messages=len(meta),
                                     source_bytes=sum(m.size for m in meta.values()), last_synced_at=_now(),
                                     dest_uidnext=next_uid)

    def _imap_delta(self, src: ImapSourceMailbox, state: FolderState | None, records: dict[Key, MessageRecord],
                    info: dict, status: dict[str, int]
                    ) -> tuple[dict[int, MessageMeta], dict[Key, tuple[str, ...]], set[Key]] | None:
        """A folder read before, on a server with CONDSTORE (RFC 7162): only what changed since the last pass.

        One ``UID FETCH 1:* (FLAGS) (CHANGEDSINCE <modseq of the last pass>)`` names the messages whose flags
        changed and those that arrived; only the new ones are read in full. UIDs below the last UIDNEXT never
        appear again, so a folder whose EXISTS is what the records and the new messages add up to lost
        nothing; otherwise one UID SEARCH ALL says what vanished. The messages that did not change keep the
        flags recorded when they were last carried. Returns (metadata, central flags, encoded) as the full read
        would, sizes of unchanged messages from the records; None when the full read is needed: no usable
        mod-sequence, a different UIDVALIDITY, or a record pending or refused (their metadata is read again).
        """
        if (state is None or not records or not state.source_modseq or not state.source_uidnext
                or "HIGHESTMODSEQ" not in status or not src.session.has("CONDSTORE")
                or state.source_uidvalidity != info.get(b"UIDVALIDITY")
                or any(r.state != "copied" or r.src_uid is None for r in records.values())):
            return None
        uidnext = state.source_uidnext
        changed = src.flags_changed_since(state.source_modseq)
        if any(uid < uidnext and uid not in records for uid in changed):
            return None                              # a message the records do not know: read everything
        new = src.metadata(uidnext) if any(uid >= uidnext for uid in changed) else {}
        below = [uid for uid in records if uid < uidnext]
        present: set[int] | None = None
        if info.get(b"EXISTS") != len(below) + len(new):
            present = src.uids()
            if any(uid < uidnext and uid not in records for uid in present):
                return None
        meta: dict[int, MessageMeta] = dict(new)
        flags: dict[Key, tuple[str, ...]] = {}
        encoded: set[Key] = set()
        for uid in below:
            if present is not None and uid not in present:
                continue                             # vanished at the source
            rec = records[uid]
            meta[uid] = MessageMeta(uid, rec.size, (), None)
            if uid not in changed:
                flags[uid] = tuple(rec.flags.split())
        for uid in meta:
            if uid not in flags:
                source_flags = changed[uid] if uid in changed else meta[uid].flags
                flags[uid], was_encoded = self.central_flags(source_flags)
                if was_encoded:
                    encoded.add(uid)
        log.debug("%s: %s: CONDSTORE delta: %d changed, %d new%s", self.mailbox.email, state.source_name,
                  len(changed) - len(new), len(new), "" if present is None else ", UIDs listed")
        return meta, flags, encoded

    def _ews_folder(self, src_info: SourceFolderInfo, state: FolderState | None, dest_name: str, pre_existing: bool,
                    fr: FolderReport) -> None:
        dest_status = self._dest_status(dest_name)
        records = self._records(state, dest_status)
        records = self._reconcile_pending(state, dest_name, records)
        sync_state = state.sync_state if state is not None and records else None
        if not records and pre_existing and dest_status.get("MESSAGES"):
            dest_available = self._dest_multiset(dest_name, set())
        else:
            dest_available = self._unknown_on_dest(state, dest_name, dest_status, records)
        self.report.src_messages += src_info.messages or 0
        present: dict[Key, tuple[str, ...]] = {}
        encoded: set[Key] = set()
        next_uid = dest_status.get("UIDNEXT") or 1
        stalls = 0
        while True:
            self.check_stop()
            try:
                changes = self.src.sync(src_info.folder_id, sync_state)
            except SyncStateInvalid:
                if sync_state is None:
                    raise
                # The server forgot our place: start the folder over; records keep it from copying twice.
                log.warning("%s: %s: the server refused the stored sync state; reading the folder again",
                            self.mailbox.email, src_info.name)
                sync_state = None
                continue
            items = []
            kept = self._not_migrated(state, records, changes.creates + changes.updates, fr)
            for item in kept:
                flags, was_encoded = self.central_flags(item.flags)
                present[item.item_id] = flags
                if was_encoded:
                    encoded.add(item.item_id)
                if item.item_id not in records or records[item.item_id].state == "failed":
                    items.append(_Item(item.item_id, item.size, flags, item.received, was_encoded))
            self.found(items)
            next_uid = max(next_uid, self._copy(state, dest_name, dest_status, items, fr, dest_available))
            if state is not None and not self.dry:
                records = {_key(r): r for r in self.store.message_records(state.id)}
            self._carry_flags(state, dest_name, records, {k: v for k, v in present.items() if k in records}, fr,
                              encoded)
            if changes.deletes:
                gone = [d for d in changes.deletes if d in records]
                self._delete(state, dest_name, records, gone, fr)
            stalled = (changes.more and changes.state == sync_state and not changes.creates and not changes.updates
                       and not changes.deletes)
            sync_state = changes.state
            if not self.dry and state is not None:
                self.store.update_folder(state.id, sync_state=sync_state, last_synced_at=_now(),
                                         dest_uidnext=next_uid)
            present.clear()
            if not changes.more:
                break
            if stalled:
                # Exchange sometimes answers "more to come" with the same state and no change: asking again
                # would loop for ever. What was copied is recorded; the next pass asks from this state again.
                stalls += 1
                if stalls >= MAX_SYNC_STALLS:
                    log.warning("%s: %s: the server says more changes follow but its sync state has not moved "
                                "in %d answers; the folder is left for the next pass", self.mailbox.email,
                                src_info.name, stalls)
                    fr.warnings.append(f"the server's sync state stopped advancing after {stalls} answers; the "
                                       "next pass continues from there")
                    break
            else:
                stalls = 0
        if src_info.size is not None:
            self.report.src_bytes += src_info.size
        elif state is not None:
            self.report.src_bytes += sum(r.size for r in self.store.message_records(state.id))

    # -- reconciliation ----------------------------------------------------------------------------------

    def _dest_multiset(self, dest_name: str, exclude: set[int], since: int = 1) -> dict[str, list[tuple[int, tuple]]]:
        available: dict[str, list[tuple[int, tuple[str, ...]]]] = defaultdict(list)
        for uid, (fp, _size, flags) in sorted(self.dest.fingerprints(dest_name, since, self.fingerprint).items()):
            if uid not in exclude:
                available[fp].append((uid, flags))
        return available

    def _unknown_on_dest(self, state: FolderState | None, dest_name: str, dest_status: dict[str, int],
                         records: dict[Key, MessageRecord]) -> dict[str, list[tuple[int, tuple]]]:
        """Destination messages the store does not know about, by fingerprint, to be matched before anything
        is appended: the store went back in time (restored from a backup, a power cut) while the central
        host kept what was copied since; or mail arrived there by other means. Looked for above the highest
        UID the store recorded and above the UIDNEXT it last saw, only when the destination moved past it."""
        if state is None or not records:
            return {}
        dest_next = dest_status.get("UIDNEXT") or 0
        known = {r.dest_uid for r in records.values() if r.dest_uid}
        highest = max(known, default=0)
        since = highest + 1
        if state.dest_uidnext:
            since = min(since, state.dest_uidnext)
        if dest_next <= since:
            return {}
        available = self._dest_multiset(dest_name, known, since)
        unknown = sum(len(v) for v in available.values())
        if unknown:
            log.info("%s: %s: %d message(s) on the central host that the state store does not know; matching "
                     "them by fingerprint before copying", self.mailbox.email, dest_name, unknown)
        return available

    def _reconcile_pending(self, state: FolderState | None, dest_name: str,
                           records: dict[Key, MessageRecord]) -> dict[Key, MessageRecord]:
        """A crash between APPEND and its record left rows pending: find where they landed, if they did."""
        pending = [r for r in records.values() if r.state == "pending"]
        if not pending or state is None:
            return records
        since = min(r.dest_uidnext_before or 1 for r in pending)
        mapped = {r.dest_uid for r in records.values() if r.state == "copied" and r.dest_uid}
        available = self._dest_multiset(dest_name, mapped, since)
        found, missing = [], []
        for r in sorted(pending, key=lambda r: (str(type(_key(r))), _key(r))):
            slot = available.get(r.fingerprint)
            if slot:
                uid, _flags = slot.pop(0)
                found.append((r.src_uid, r.src_item, uid, r.fingerprint, r.size, r.flags))
            else:
                missing.append(r)
        if not self.dry:
            self.store.record_copied(state.id, found)
            self.store.delete_message_records(state.id, [r.src_uid for r in missing if r.src_uid is not None],
                                              [r.src_item for r in missing if r.src_item is not None])
        log.info("%s: %s: %d interrupted copies found on the destination, %d to copy again",
                 self.mailbox.email, dest_name, len(found), len(missing))
        return {_key(r): r for r in self.store.message_records(state.id)} if not self.dry else {
            k: r for k, r in records.items() if r.state != "pending"}

    def _reconcile_folder(self, state: FolderState | None, dest_name: str, records: dict[Key, MessageRecord],
                          src_fps: dict[int, tuple[str, int]], meta: dict[int, MessageMeta],
                          fr: FolderReport) -> dict[Key, MessageRecord]:
        available = self._dest_multiset(dest_name, set())
        matched = []
        for uid in sorted(src_fps):
            fp, size = src_fps[uid]
            slot = available.get(fp)
            if slot and uid in meta:
                dest_uid, dest_flags = slot.pop(0)
                matched.append((uid, None, dest_uid, fp, size, _flagstr(dest_flags)))
        fr.reconciled += len(matched)
        if self.dry:
            return {m[0]: MessageRecord(m[0], None, m[2], m[3], m[4], m[5], "copied", None, None) for m in matched}
        assert state is not None
        self.store.record_copied(state.id, matched)
        log.info("%s: %s: %d messages already on the destination matched by fingerprint",
                 self.mailbox.email, dest_name, len(matched))
        return {_key(r): r for r in self.store.message_records(state.id)}

    # -- copying -------------------------------------------------------------------------------------------

    def _batches(self, items: list[_Item]) -> Iterator[list[_Item]]:
        batch: list[_Item] = []
        size = 0
        for item in items:
            if item.size > self.options.stream_threshold:
                if batch:
                    yield batch
                    batch, size = [], 0
                yield [item]
                continue
            if batch and (size + item.size > self.options.batch_bytes or len(batch) >= self.options.batch_messages):
                yield batch
                batch, size = [], 0
            batch.append(item)
            size += item.size
        if batch:
            yield batch

    def _not_migrated(self, state: FolderState | None, records: dict[Key, MessageRecord], items: list,
                      fr: FolderReport) -> list:
        """The items of an Exchange folder to copy; those whose class is not migrated by policy (a contact or a
        note kept in a mail folder) are recorded once with the reason, listed, and never copied."""
        keep, skip = [], []
        for item in items:
            if item.not_migrated is None:
                keep.append(item)
            elif item.item_id not in records:
                skip.append(item)
        if skip:
            described = self.src.describe_items([i.item_id for i in skip])
            rows = [(i.item_id, i.size, f"{described.get(i.item_id, i.item_class)}: {i.not_migrated}") for i in skip]
            fr.not_migrated.extend((described.get(i.item_id, i.item_class), i.not_migrated) for i in skip)
            if not self.dry and state is not None:
                self.store.record_not_migrated(state.id, rows)
        return keep

    def _copy(self, state: FolderState | None, dest_name: str, dest_status: dict[str, int], items: list[_Item],
              fr: FolderReport, dest_available: dict[str, list[tuple[int, tuple]]]) -> int:
        """Copy ``items`` in batches; returns the destination's UIDNEXT as far as this pass knows it."""
        next_uid = dest_status.get("UIDNEXT") or 1
        if not items:
            return next_uid
        if self.dry:
            fr.to_copy += len(items)
            fr.to_copy_bytes += sum(i.size for i in items)
            return next_uid
        assert state is not None
        if state.dest_uidvalidity != dest_status.get("UIDVALIDITY"):
            self.store.update_folder(state.id, dest_uidvalidity=dest_status.get("UIDVALIDITY"))
        for batch in self._batches(items):
            self.check_stop()
            if len(batch) == 1 and batch[0].size > self.options.stream_threshold and not self.is_ews:
                next_uid = self._copy_streamed(state, dest_name, batch[0], next_uid, fr)
                continue
            bodies = self._fetch(batch)
            for item in batch:
                answer = bodies.get(item.key)
                if isinstance(answer, Unreadable):
                    # The source cannot give this item at all (an EWS item Exchange cannot convert): recorded
                    # as failed with its reason, and the folder goes on (its sync state then advances).
                    del bodies[item.key]
                    reason = f"{answer.described}: {answer.reason}"
                    self.store.record_failed(state.id, *_cols(item.key), "", item.size, reason)
                    fr.failed.append((answer.described, answer.reason))
            fetched = sum(len(b) for b in bodies.values())
            if self.limiter:
                self.limiter.consume(fetched)
            ready: list[tuple[_Item, bytes, str]] = []
            matched = []
            for item in batch:
                raw = bodies.get(item.key)
                if raw is None:
                    continue  # expunged at the source since the listing: nothing to copy
                fp = self.fingerprint(len(raw), raw[:PREFIX])
                slot = dest_available.get(fp)
                if slot:
                    uid, dest_flags = slot.pop(0)
                    matched.append((*_cols(item.key), uid, fp, len(raw), _flagstr(dest_flags)))
                    continue
                ready.append((item, raw, fp))
            if matched:
                self.store.record_copied(state.id, matched)
                fr.reconciled += len(matched)
            if not ready:
                continue
            self.store.record_pending(state.id, [(*_cols(i.key), fp, len(raw), _flagstr(i.flags))
                                                 for i, raw, fp in ready], next_uid)
            landed = self._append(state, dest_name, ready, fr)
            if landed:
                self.store.record_copied(state.id, [(*_cols(i.key), uid, fp, len(raw), _flagstr(i.flags))
                                                    for (i, raw, fp), uid in landed])
                next_uid = max(next_uid, max(uid for _, uid in landed) + 1)
                copied_bytes = sum(len(raw) for (_, raw, _), _ in landed)
                fr.copied += len(landed)
                fr.copied_bytes += copied_bytes
                fr.keywords_encoded += sum(1 for (i, _, _), _ in landed if i.encoded)
                self.progress(len(landed), copied_bytes)
        return next_uid

    def _append(self, state: FolderState, dest_name: str, ready: list[tuple[_Item, bytes, str]],
                fr: FolderReport) -> list[tuple[tuple[_Item, bytes, str], int]]:
        """Append a batch: one MULTIAPPEND where the central host has it, else one message at a time. A
        refused MULTIAPPEND appended nothing (RFC 3502); the batch is then appended one by one, carefully
        (synchronizing literals, so a refusal leaves the session usable), to find and record the refused
        message(s). Returns each landed entry with its destination UID."""
        messages = [Appendable(raw, i.flags, i.internaldate) for i, raw, _ in ready]
        crashpoint("before-append")
        careful = False
        if len(messages) > 1 and self.dest.multiappend_ok:
            try:
                result = self.dest.append_batch(dest_name, messages)
                crashpoint("after-append")
                if result.uidvalidity and result.uidvalidity != state.dest_uidvalidity:
                    self.store.update_folder(state.id, dest_uidvalidity=result.uidvalidity)
                return list(zip(ready, result.uids, strict=True))
            except CommandFailed as exc:
                log.info("%s: batch refused (%s); appending one by one", self.mailbox.email, exc.text)
                careful = True
        landed = []
        for entry, msg in zip(ready, messages, strict=True):
            try:
                one = self.dest.append_one(dest_name, msg, careful=careful)
                crashpoint("after-append")
                landed.append((entry, one.uids[0]))
            except CommandFailed as single:
                item, raw, fp = entry
                reason = f"central host refused it: {single.text}"
                self.store.record_failed(state.id, *_cols(item.key), fp, len(raw), reason)
                fr.failed.append((_describe(item, raw), reason))
                careful = True
        return landed

    def _fetch(self, batch: list[_Item]) -> dict[Key, bytes | Unreadable]:
        if self.is_ews:
            return dict(self.src.mime([str(i.key) for i in batch]))
        return self.src.bodies([int(i.key) for i in batch])  # type: ignore[misc]

    def _copy_streamed(self, state: FolderState, dest_name: str, item: _Item, next_uid: int,
                       fr: FolderReport) -> int:
        src: ImapSourceMailbox = self.src
        with self.engine._large:
            chunks = src.chunks(int(item.key), item.size, self.options.chunk_size)
            try:
                first = next(chunks)
            except StopIteration:
                return next_uid
            fp = fingerprint(item.size, first[:PREFIX])
            self.store.record_pending(state.id, [(*_cols(item.key), fp, item.size, _flagstr(item.flags))], next_uid)

            def stream() -> Iterator[bytes]:
                if self.limiter:
                    self.limiter.consume(len(first))
                yield first
                crashpoint("mid-stream")
                for piece in chunks:
                    if self.limiter:
                        self.limiter.consume(len(piece))
                    yield piece

            try:
                result = self.dest.append_streamed(dest_name, item.flags, item.internaldate, item.size, stream())
            except CommandFailed as exc:
                reason = f"central host refused it: {exc.text}"
                self.store.record_failed(state.id, *_cols(item.key), fp, item.size, reason)
                fr.failed.append((f"UID {item.key} ({item.size} bytes)", reason))
                return next_uid
            self.store.record_copied(state.id, [(*_cols(item.key), result.uids[0], fp, item.size,
                                                 _flagstr(item.flags))])
            fr.copied += 1
            fr.copied_bytes += item.size
            fr.keywords_encoded += int(item.encoded)
            self.progress(1, item.size)
            return max(next_uid, result.uids[0] + 1)

    # -- flags and deletions -------------------------------------------------------------------------------

    def _carry_flags(self, state: FolderState | None, dest_name: str, records: dict[Key, MessageRecord],
                     current: dict[Key, tuple[str, ...]], fr: FolderReport, encoded: set[Key] = frozenset()) -> None:
        """Three-way: only what changed at the source since the last pass is applied to the destination,
        so flags the user changed on the central host are left alone."""
        add: dict[frozenset[str], list[int]] = defaultdict(list)
        remove: dict[frozenset[str], list[int]] = defaultdict(list)
        updates = []
        for key, flags in current.items():
            rec = records.get(key)
            if rec is None or rec.state != "copied" or rec.dest_uid is None:
                continue
            now_flags = set(flags)
            before = set(rec.flags.split())
            if now_flags == before:
                continue
            if now_flags - before:
                add[frozenset(now_flags - before)].append(rec.dest_uid)
            if before - now_flags:
                remove[frozenset(before - now_flags)].append(rec.dest_uid)
            updates.append((_flagstr(now_flags), *_cols(key)))
        if not updates:
            return
        fr.flag_updates += len(updates)
        fr.keywords_encoded += sum(1 for u in updates if (u[1] if u[1] is not None else u[2]) in encoded)
        if self.dry or state is None:
            return
        self.dest.change_flags(dest_name, add, remove)
        self.store.update_message_flags(state.id, updates)

    def _vanished(self, state: FolderState | None, dest_name: str, records: dict[Key, MessageRecord],
                  present: set[Key], fr: FolderReport) -> None:
        gone = [k for k, r in records.items() if r.state == "copied" and k not in present]
        self._delete(state, dest_name, records, gone, fr)

    def _delete(self, state: FolderState | None, dest_name: str, records: dict[Key, MessageRecord],
                gone: list[Key], fr: FolderReport) -> None:
        if not gone or not self.options.propagate_deletes:
            return
        # Only messages this engine copied (they have a record) are ever removed.
        dest_uids = [records[k].dest_uid for k in gone if records[k].dest_uid]
        fr.deleted += len(gone)
        if self.dry or state is None:
            return
        if dest_uids:
            self.dest.expunge(dest_name, dest_uids)  # type: ignore[arg-type]
        self.store.delete_message_records(state.id, [k for k in gone if isinstance(k, int)],
                                          [k for k in gone if isinstance(k, str)])


def _describe(item: _Item, raw: bytes) -> str:
    subject = ""
    head = raw[:PREFIX].split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"subject:"):
            subject = line[8:].strip().decode("utf-8", "replace")[:60]
            break
    ref = f"UID {item.key}" if isinstance(item.key, int) else f"item {str(item.key)[:16]}…"
    return f"{ref} ({len(raw)} bytes){': ' + subject if subject else ''}"


def _now() -> str:
    from migrate.core.store import now

    return now()


def selected_mailboxes(store: Store, *, users: list[str] = (), source_id: str | None = None,
                       everything: bool = False) -> tuple[list[MailboxRow], list[str]]:
    """Resolve a command line's selection to mailboxes; returns (found, unknown names)."""
    if everything:
        return store.mailboxes(), []
    if source_id:
        return store.mailboxes(source_id=source_id), []
    found, unknown = [], []
    for user in users:
        matches = store.find_mailboxes(user)
        exact = [m for m in matches if m.email.lower() == user.lower() or m.login == user]
        chosen = exact or (matches if len(matches) == 1 else [])
        if chosen:
            found.extend(c for c in chosen if c not in found)
        else:
            unknown.append(user)
    return found, unknown


SyncCallback = Callable[[MailboxReport], None]
__all__ = ["FolderReport", "MailboxReport", "SyncEngine", "SyncOptions", "TransientError", "describe_failure",
           "selected_mailboxes"]
