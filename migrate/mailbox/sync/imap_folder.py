"""One folder of an IMAP source: read it in full, or only what changed since the last pass (CONDSTORE), then
reconcile, copy, carry flags and deletions, and record where the folder stands."""

from __future__ import annotations

import logging

from migrate.core.store import FolderState, MessageRecord, now
from migrate.mailbox.folders import SourceFolderInfo
from migrate.mailbox.source_imap import ImapSourceMailbox, MessageMeta
from migrate.mailbox.sync.folder_sync import FolderSync
from migrate.mailbox.sync.reports import FolderReport, Item, Key

log = logging.getLogger(__package__)  # the engine's one logger, migrate.mailbox.sync


class ImapFolderSync(FolderSync):
    def sync(self, src_info: SourceFolderInfo, state: FolderState | None, dest_name: str,
             pre_existing: bool, status: dict[str, int], fr: FolderReport) -> None:
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
            src.examine(src_info.name)
        else:
            dest_available = self.reconciler.unknown_on_dest(state, dest_name, dest_status, records)
        copy_items = [Item(uid, m.size, flags[uid], m.internaldate, uid in encoded) for uid, m in sorted(meta.items())
                      if uid not in records or records[uid].state == "failed"]
        ctx.found(copy_items)
        next_uid = self.copier.copy(state, dest_name, dest_status, copy_items, fr, dest_available)
        self.changes.carry_flags(state, dest_name, records, flags, fr, encoded)
        self.changes.vanished(state, dest_name, records, set(meta), fr)
        if not ctx.dry and state is not None:
            ctx.store.update_folder(state.id, source_uidvalidity=uidvalidity, source_uidnext=status.get("UIDNEXT"),
                                    source_modseq=status.get("HIGHESTMODSEQ"), source_messages=len(meta),
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
                flags[uid], was_encoded = self.ctx.central_flags(source_flags)
                if was_encoded:
                    encoded.add(uid)
        log.debug("%s: %s: CONDSTORE delta: %d changed, %d new%s", self.ctx.mailbox.email, state.source_name,
                  len(changed) - len(new), len(new), "" if present is None else ", UIDs listed")
        return meta, flags, encoded
