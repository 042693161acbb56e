"""One folder of an IMAP source: read it in full, or only what changed since the last pass (CONDSTORE), reconcile
and mark what left it; then copy (or move) what is new, carry flags, and record where the folder stands."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from migrate.core.store import FolderState, MessageRecord, now
from migrate.mailbox.folders import SourceFolderInfo
from migrate.mailbox.source_imap import ImapSourceMailbox, MessageMeta
from migrate.mailbox.sync.folder_sync import FolderSync
from migrate.mailbox.sync.moves import MovePool
from migrate.mailbox.sync.reports import FolderReport, Item, Key, record_key

log = logging.getLogger(__package__)  # the engine's one logger, migrate.mailbox.sync


@dataclass
class ImapWork:
    """One IMAP folder as read, for :meth:`ImapFolderSync.apply`."""

    src_info: SourceFolderInfo
    state: FolderState | None
    dest_name: str
    status: dict[str, int]
    fr: FolderReport
    dest_status: dict[str, int]
    records: dict[Key, MessageRecord]
    dest_available: dict[str, list[tuple[int, tuple[str, ...]]]]
    uidvalidity: int | None
    meta: dict[int, MessageMeta]
    flags: dict[Key, tuple[str, ...]]
    encoded: set[Key]


class ImapFolderSync(FolderSync):
    def read(self, src_info: SourceFolderInfo, state: FolderState | None, dest_name: str,
             pre_existing: bool, status: dict[str, int], fr: FolderReport) -> ImapWork:
        ctx = self.ctx
        src: ImapSourceMailbox = ctx.src
        info = src.examine(src_info.name)
        uidvalidity = info.get(b"UIDVALIDITY")
        dest_status = ctx.dest_status(dest_name)
        records = self.reconciler.records(state, dest_status)
        if state is not None and records and state.source_uidvalidity not in (None, uidvalidity):
            log.warning("%s: source folder %s changed UIDVALIDITY; reconciling by fingerprint",
                        ctx.mailbox.email, src_info.name)
            if not ctx.dry:
                ctx.store.forget_folder_messages(state.id)
            records = {}
        delta = self.delta(src, state, records, info, status)
        if delta is not None:
            meta, flags, encoded = delta
        else:
            meta = src.metadata()
            flags, encoded = {}, set()
            for uid, m in meta.items():
                flags[uid], was_encoded = ctx.central_flags(m.flags)
                if was_encoded:
                    encoded.add(uid)
        ctx.report.src_messages += len(meta)
        ctx.report.src_bytes += sum(m.size for m in meta.values())
        records = self.reconciler.reconcile_pending(state, dest_name, records, fr)
        dest_available: dict[str, list[tuple[int, tuple[str, ...]]]] = {}
        if not records and pre_existing and dest_status.get("MESSAGES"):
            # No record of this folder but the destination already has mail in it: state lost, UIDVALIDITY
            # changed, or mail that arrived by other means. Match by fingerprint before copying anything.
            records = self.reconciler.reconcile_folder(state, dest_name, records, src.fingerprints(), meta, fr)
        else:
            dest_available = self.reconciler.unknown_on_dest(state, dest_name, dest_status, records)
        self.changes.vanished(state, records, set(meta))
        return ImapWork(src_info, state, dest_name, status, fr, dest_status, records, dest_available, uidvalidity,
                        meta, flags, encoded)

    def apply(self, work: ImapWork, pool: MovePool | None = None) -> None:
        ctx = self.ctx
        w = work
        state, records, meta = w.state, w.records, w.meta
        copy_items = [Item(uid, m.size, w.flags[uid], m.internaldate, uid in w.encoded)
                      for uid, m in sorted(meta.items()) if uid not in records or records[uid].state == "failed"]
        ctx.found(copy_items)
        if copy_items and not ctx.dry:
            ctx.src.reopen(w.src_info.name)   # other folders may have been read since
        moved_before = w.fr.moved
        next_uid = self.copier.copy(state, w.dest_name, w.dest_status, copy_items, w.fr, w.dest_available, pool)
        if w.fr.moved != moved_before and state is not None:
            records = {record_key(r): r for r in ctx.store.message_records(state.id)}   # the copies moved here
        flags = self.changes.carry_flags(state, w.dest_name, records, w.flags, w.fr, w.encoded, record=False)
        if not ctx.dry and state is not None:
            # The flags carried and the folder's new state in one transaction (one commit per changed folder).
            with ctx.store.tx():
                if flags:
                    ctx.store.update_message_flags(state.id, flags)
                ctx.store.update_folder(state.id, source_uidvalidity=w.uidvalidity,
                                        source_uidnext=w.status.get("UIDNEXT"),
                                        source_modseq=w.status.get("HIGHESTMODSEQ"), source_messages=len(meta),
                                        source_bytes=sum(m.size for m in meta.values()), last_synced_at=now(),
                                        dest_uidnext=next_uid)

    def delta(self, src: ImapSourceMailbox, state: FolderState | None, records: dict[Key, MessageRecord],
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
        below = [uid for uid, r in records.items() if uid < uidnext and r.vanished_at is None]
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
                flags[uid], was_encoded = self.ctx.central_flags(source_flags)
                if was_encoded:
                    encoded.add(uid)
        log.debug("%s: %s: CONDSTORE delta: %d changed, %d new%s", self.ctx.mailbox.email, state.source_name,
                  len(changed) - len(new), len(new), "" if present is None else ", UIDs listed")
        return meta, flags, encoded
