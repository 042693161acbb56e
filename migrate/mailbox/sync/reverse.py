"""The copy back of a rollback: mail that reached a user's central mailbox after the switch, and the flags users
changed there, carried to the ministry server with the forward copy's guarantees (nothing twice, nothing lost,
resumable after any interruption).

Which central messages are new: in each central folder, those at or above its mark (the folder's UIDNEXT when
the switch was made, taken from the forward copy's records by the cut-over) that the forward records do not name
(the forward copy put those there itself, in the last delta after the switch). A central folder without a mark
(made on the central host after the switch) is new as a whole. Messages below the mark are never copied back:
they were there before the switch. Flags: for every pair the forward records know, what changed on the central
host since the pair was last synced is carried to the ministry's copy (three-way: the ministry's own changes
stay).

The engine's parts do the work: the Copier appends to the ministry server (MULTIAPPEND, one at a time after a
refusal, large messages streamed; each batch recorded pending before its APPEND and copied after), the
Reconciler finds interrupted appends and messages already on the ministry server by fingerprint (mail that
reached it meanwhile is matched, never doubled), and the ChangeCarrier carries flags. Their records go to the
reverse tables through :class:`ReverseRecords`; a message copied back is recorded as a forward pair too, so a
later cut-over copies nothing twice and a second rollback nothing again. The central mailbox is only read
(EXAMINE, BODY.PEEK): nothing is marked read, moved or deleted there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from migrate.core.config import ImapServer, Source
from migrate.core.errors import FolderFailed, RemoteError
from migrate.core.store import FolderState, MailboxRow, MessageRecord, Store, now
from migrate.mailbox.central import Destination, LazyDestination
from migrate.mailbox.folders import SourceFolderInfo
from migrate.mailbox.protocol import CommandFailed, ListedFolder
from migrate.mailbox.source_imap import ImapSourceMailbox
from migrate.mailbox.sync.context import PassContext
from migrate.mailbox.sync.engine import SyncEngine
from migrate.mailbox.sync.folder_sync import FolderSync
from migrate.mailbox.sync.reports import FolderReport, Item, MailboxReport, SyncOptions, record_key

log = logging.getLogger(__package__)


class ReverseRecords:
    """The reverse copy's memory, as the sync engine's parts call a store: every method takes the folder's id,
    here a reverse folder's (:class:`ReverseFolder`). A message copied back is also recorded as a forward pair of
    the folder's forward record (``forward``: reverse folder id → ``folders.id``)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.forward: dict[int, int | None] = {}

    def message_records(self, folder_id: int, **_: Any) -> list[MessageRecord]:
        return self.store.reverse_records(folder_id)

    def record_pending(self, folder_id: int, rows: Iterable[tuple], dest_uidnext_before: int | None, **_: Any) -> None:
        self.store.reverse_pending(folder_id, [(uid, fp, size, flags) for uid, _item, fp, size, flags in rows],
                                   dest_uidnext_before)

    def record_copied(self, folder_id: int, rows: Iterable[tuple], **_: Any) -> None:
        rows = [(uid, dest_uid, fp, size, flags) for uid, _item, dest_uid, fp, size, flags in rows]
        forward = self.forward.get(folder_id)
        if rows:
            assert forward is not None, "a folder copied back has a forward record"
            self.store.reverse_copied(folder_id, forward, rows)

    def record_failed(self, folder_id: int, src_uid: int | None, _src_item: str | None, fingerprint: str, size: int,
                      error: str, **_: Any) -> None:
        assert src_uid is not None
        self.store.reverse_failed(folder_id, src_uid, fingerprint, size, error)

    def delete_message_records(self, folder_id: int, src_uids: Iterable[int] = (), src_items: Iterable[str] = (),
                               **_: Any) -> None:
        self.store.delete_reverse_records(folder_id, src_uids)

    def update_message_flags(self, folder_id: int, rows: Iterable[tuple], **_: Any) -> None:
        self.store.carried_back_flags(folder_id, self.forward.get(folder_id),
                                      [(flags, uid) for flags, uid, _item in rows])

    def update_folder(self, folder_id: int, **fields: Any) -> None:
        self.store.update_reverse_folder(folder_id, **{k: v for k, v in fields.items() if k == "dest_uidvalidity"})

    def forget_folder_messages(self, folder_id: int, **_: Any) -> None:
        self.store.delete_reverse_records(folder_id, [r.src_uid for r in self.store.reverse_records(folder_id)
                                                      if r.src_uid is not None])


def reversed_pair(record: MessageRecord) -> MessageRecord:
    """A forward record (ministry UID → central UID) seen from the central side (central UID → ministry UID)."""
    return MessageRecord(record.dest_uid, None, record.src_uid, record.fingerprint, record.size, record.flags,
                         "copied", None, None)


class CopyBack(SyncEngine):
    """The copy back over mailboxes: the engine's run (connection limits, the mailbox lock, retries after a lost
    connection, a stop at the next batch), each mailbox's pass read from the central host and written to the
    ministry server. Only IMAP ministry servers with UIDPLUS can be written back exactly."""

    def expected(self, mailboxes: list[MailboxRow]) -> dict[str, tuple[int | None, int | None]]:
        return {m.email: (None, None) for m in mailboxes}

    def check_dav(self, mailboxes: list[MailboxRow]) -> None:
        """Calendars and contacts are not copied back (README, "What the copy back cannot cover")."""

    def _sync_once(self, mailbox: MailboxRow, source: Source, report: MailboxReport, store: Any,
                   lost: threading.Event, options: SyncOptions) -> None:
        if not isinstance(source.server, ImapServer):
            raise RemoteError(f"{source.id} is an Exchange server: govmigrate copies mail back to IMAP ministry "
                              "servers only; the messages that arrived on the central host stay there (listed by "
                              "the rollback)")
        central: ImapSourceMailbox | None = None
        ministry: LazyDestination | None = None
        try:
            central = ImapSourceMailbox(self.central.open(mailbox.email).session)
            ministry = LazyDestination(None, None, mailbox.email,
                                       opener=lambda: self._ministry(source, mailbox))
            ctx = PassContext(store=ReverseRecords(self.store), options=options, mailbox=mailbox,  # type: ignore[arg-type]
                              source=source, src=central, dest=ministry, report=report, progress=self.progress,
                              stop=self.stop, large=self._large, limiter=self._limiters.get(source.id),
                              max_keyword=self.project.config.central.max_keyword_length, lost=lost)
            ReversePass(ctx, self.store).run()
        finally:
            for side in (central, ministry):
                if side is not None:
                    try:
                        side.close()
                    except Exception:
                        pass

    def _ministry(self, source: Source, mailbox: MailboxRow) -> Destination:
        """The user's mailbox on the ministry server, to write to: it must report where each append lands."""
        session = self.sources.session(source, mailbox.email, mailbox.login)
        if not session.has("UIDPLUS"):
            session.close()
            raise RemoteError(f"source {source.id}: the ministry server does not offer UIDPLUS, so govmigrate cannot "
                              "know where a message copied back lands, nor resume exactly: nothing was copied back")
        return Destination(session)

    def _record_in_tx(self, mailbox: MailboxRow, report: MailboxReport, store: Any) -> None:
        detail = (f"copied back {report.copied} message(s) ({report.copied_bytes} bytes) that reached the central "
                  f"host after the switch; {sum(f.reconciled for f in report.folders)} already on the ministry "
                  f"server; flags carried back on {sum(f.flag_updates for f in report.folders)}"
                  + (f"; {report.failed_messages} refused by the ministry server" if report.failed_messages else "")
                  + (f"; {report.folder_errors} folder error(s)" if report.folder_errors else ""))
        store.add_event(f"mailbox/{mailbox.email}", "copy-back" if report.ok else "copy-back-failed",
                             detail if report.ok else (report.error or ""))


class ReversePass(FolderSync):
    """One mailbox's copy back: each central folder to its ministry folder."""

    def __init__(self, ctx: PassContext, store: Store) -> None:
        super().__init__(ctx)
        self.store = store
        self.records: ReverseRecords = ctx.store  # type: ignore[assignment]

    def run(self) -> None:
        ctx = self.ctx
        central: ImapSourceMailbox = ctx.src
        forward = {f.dest_name: f for f in self.store.folders(ctx.mailbox.id)}
        marks = self.store.copy_back_marks(ctx.mailbox.id)
        for info, listed in central.folders():
            ctx.check_stop()
            fr = FolderReport(info.name, None)
            ctx.report.folders.append(fr)
            try:
                self.folder(info, listed, forward.get(info.name), marks.get(info.name), forward, fr)
            except (FolderFailed, CommandFailed) as exc:
                fr.error = exc.message if isinstance(exc, FolderFailed) else exc.text
                log.warning("%s: copy back of %s: %s", ctx.mailbox.email, info.name, fr.error)
            except RemoteError as exc:
                if exc.transient:
                    raise
                fr.error = exc.message

    def folder(self, info: SourceFolderInfo, listed: ListedFolder, fwd: FolderState | None,
               mark: tuple[int | None, int] | None, forward: dict[str, FolderState], fr: FolderReport) -> None:
        ctx = self.ctx
        central: ImapSourceMailbox = ctx.src
        validity = (listed.status or {}).get("UIDVALIDITY")
        # Mail at or above the mark arrived after the switch; a folder without one (or recreated since) is all new.
        since = mark[1] if mark is not None and mark[0] in (None, validity) else 1
        pairs_hold = fwd is not None and fwd.dest_uidvalidity in (None, validity)
        pairs = {r.dest_uid: reversed_pair(r) for r in self.store.message_records(fwd.id)
                 if r.state == "copied" and r.dest_uid and r.src_uid is not None} if pairs_hold and fwd else {}
        central.examine(info.name)
        meta = central.metadata()
        flags = {uid: tuple(f for f in m.flags if f != "\\Recent") for uid, m in meta.items()}
        rev = self.store.reverse_folders(ctx.mailbox.id)
        state = next((r for r in rev if r.central_name == info.name), None)
        records: dict[int, MessageRecord] = dict(pairs)
        if state is not None:
            records.update({r.src_uid: r for r in self.store.reverse_records(state.id) if r.src_uid is not None})
        new = [uid for uid in sorted(meta) if uid >= since and (uid not in records or records[uid].state == "failed")]
        carried = {uid: r for uid, r in records.items() if r.state == "copied" and uid in meta
                   and set(flags[uid]) != set(r.flags.split())}
        if not new and not carried and not any(r.state == "pending" for r in records.values()):
            fr.unchanged = True
            return
        ministry_name = fwd.source_name if fwd is not None else self.ministry_name(info, forward)
        fr.dest = ministry_name
        if ctx.dry:
            fr.to_copy, fr.to_copy_bytes = len(new), sum(meta[u].size for u in new)
            fr.flag_updates = len(carried)
            return
        fr.created = ctx.dest.ensure_folder(ministry_name, info.subscribed)
        if fwd is None:  # a folder made on the central host: the forward copy maps it back to where it came from
            fwd = self.store.ensure_folder(ctx.mailbox.id, ministry_name, info.name, subscribed=info.subscribed,
                                           note="made on the central host after the switch; copied back")
            self.store.update_folder(fwd.id, dest_uidvalidity=validity)
        state = self.store.reverse_folder(ctx.mailbox.id, info.name, ministry_name, fwd.id)
        self.records.forward[state.id] = fwd.id
        dest_status = ctx.dest.status(ministry_name)
        if fwd.source_uidvalidity not in (None, dest_status.get("UIDVALIDITY")):
            # The ministry folder was recreated: the forward pairs name UIDs that are gone there.
            log.warning("%s: ministry folder %s changed UIDVALIDITY; copying back by fingerprint only",
                        ctx.mailbox.email, ministry_name)
            records = {r.src_uid: r for r in self.store.reverse_records(state.id) if r.src_uid is not None}
            carried = {}
        pending = self.reconciler.reconcile_pending(state, ministry_name,  # type: ignore[arg-type]
                                                    {k: r for k, r in records.items() if r.state == "pending"}, fr)
        records.update({record_key(r): r for r in pending.values()})  # type: ignore[misc]
        new = [uid for uid in new if uid not in records or records[uid].state == "failed"]
        known = {r.dest_uid for r in records.values() if r.dest_uid}
        # Messages on the ministry server the records do not pair (mail that reached it meanwhile, an append whose
        # record was lost) are matched by fingerprint before anything is appended.
        match_from = min(max(known, default=0) + 1, fwd.source_uidnext or 1, state.dest_uidnext or 1 << 62)
        available = {}
        if new and (dest_status.get("UIDNEXT") or 0) > match_from:
            available = self.reconciler.dest_multiset(ministry_name, known, match_from)
        items = [Item(uid, meta[uid].size, flags[uid], meta[uid].internaldate) for uid in new]
        ctx.found(items)
        next_uid = self.copier.copy(state, ministry_name, dest_status, items, fr, available)  # type: ignore[arg-type]
        self.changes.carry_flags(state, ministry_name, carried, flags, fr)  # type: ignore[arg-type]
        self.store.update_reverse_folder(state.id, central_uidvalidity=validity, dest_uidnext=next_uid,
                                         last_copied_at=now())

    def ministry_name(self, info: SourceFolderInfo, forward: dict[str, FolderState]) -> str:
        """Where a central folder the forward copy does not know goes on the ministry server: the ministry's folder
        of the same special use, else the same path in the ministry's separator and namespace (a name the forward
        copy already maps elsewhere gets " (central)")."""
        dest = self.ctx.dest
        if info.special_use:
            for name, folder in dest.folders().items():
                if folder.special_use == info.special_use:
                    return name
        if info.path == ("INBOX",):
            return "INBOX"
        layout = dest.layout()
        sep = layout.separator or "/"
        name = layout.prefix + sep.join(part.replace(sep, "_") for part in info.path)
        taken = {f.source_name for f in forward.values() if f.dest_name != info.name}
        return f"{name} (central)" if name in taken else name

