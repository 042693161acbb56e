"""One folder of an Exchange source: SyncFolderItems from the stored sync state until nothing more follows (or
the server's state stalls), with items an IMAP folder cannot hold recorded as not migrated."""

from __future__ import annotations

import logging

from migrate.core.errors import SyncStateInvalid
from migrate.core.store import FolderState, MessageRecord, now
from migrate.mailbox.folders import SourceFolderInfo
from migrate.mailbox.sync.folder_sync import FolderSync
from migrate.mailbox.sync.reports import FolderReport, Item, Key, record_key

log = logging.getLogger(__package__)  # the engine's one logger, migrate.mailbox.sync

#: SyncFolderItems answers in a row that promise more changes but carry none and keep the same state before
#: the folder is left for the next pass (exchangelib guards the same way).
MAX_SYNC_STALLS = 3


class EwsFolderSync(FolderSync):
    def sync(self, src_info: SourceFolderInfo, state: FolderState | None, dest_name: str,
             pre_existing: bool, status: dict[str, int], fr: FolderReport) -> None:
        # status is not needed: SyncFolderItems says what changed.
        ctx = self.ctx
        dest_status = ctx.dest_status(dest_name)
        records = self.reconciler.records(state, dest_status)
        records = self.reconciler.reconcile_pending(state, dest_name, records, fr)
        sync_state = state.sync_state if state is not None and records else None
        if not records and pre_existing and dest_status.get("MESSAGES"):
            dest_available = self.reconciler.dest_multiset(dest_name, set())
        else:
            dest_available = self.reconciler.unknown_on_dest(state, dest_name, dest_status, records)
        ctx.report.src_messages += src_info.messages or 0
        present: dict[Key, tuple[str, ...]] = {}
        encoded: set[Key] = set()
        next_uid = dest_status.get("UIDNEXT") or 1
        stalls = 0
        while True:
            ctx.check_stop()
            try:
                changes = ctx.src.sync(src_info.folder_id, sync_state)
            except SyncStateInvalid:
                if sync_state is None:
                    raise
                # The server forgot our place: start the folder over; records keep it from copying twice.
                log.warning("%s: %s: the server refused the stored sync state; reading the folder again",
                            ctx.mailbox.email, src_info.name)
                sync_state = None
                continue
            items = []
            kept = self._not_migrated(state, records, changes.creates + changes.updates, fr)
            for item in kept:
                flags, was_encoded = ctx.central_flags(item.flags)
                present[item.item_id] = flags
                if was_encoded:
                    encoded.add(item.item_id)
                if item.item_id not in records or records[item.item_id].state == "failed":
                    items.append(Item(item.item_id, item.size, flags, item.received, was_encoded))
            ctx.found(items)
            next_uid = max(next_uid, self.copier.copy(state, dest_name, dest_status, items, fr, dest_available))
            if state is not None and not ctx.dry:
                records = {record_key(r): r for r in ctx.store.message_records(state.id)}
            self.changes.carry_flags(state, dest_name, records, {k: v for k, v in present.items() if k in records},
                                     fr, encoded)
            if changes.deletes:
                gone = [d for d in changes.deletes if d in records]
                self.changes.delete(state, dest_name, records, gone, fr)
            stalled = (changes.more and changes.state == sync_state and not changes.creates and not changes.updates
                       and not changes.deletes)
            sync_state = changes.state
            if not ctx.dry and state is not None:
                ctx.store.update_folder(state.id, sync_state=sync_state, last_synced_at=now(),
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
                                "in %d answers; the folder is left for the next pass", ctx.mailbox.email,
                                src_info.name, stalls)
                    fr.warnings.append(f"the server's sync state stopped advancing after {stalls} answers; the "
                                       "next pass continues from there")
                    break
            else:
                stalls = 0
        if src_info.size is not None:
            ctx.report.src_bytes += src_info.size
        elif state is not None:
            ctx.report.src_bytes += sum(r.size for r in ctx.store.message_records(state.id))

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
            described = self.ctx.src.describe_items([i.item_id for i in skip])
            rows = [(i.item_id, i.size, f"{described.get(i.item_id, i.item_class)}: {i.not_migrated}") for i in skip]
            fr.not_migrated.extend((described.get(i.item_id, i.item_class), i.not_migrated) for i in skip)
            if not self.ctx.dry and state is not None:
                self.ctx.store.record_not_migrated(state.id, rows)
        return keep
