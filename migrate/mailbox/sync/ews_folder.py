"""One folder of an Exchange source: SyncFolderItems from the stored sync state until nothing more follows (or
the server's state stalls), with items an IMAP folder cannot hold recorded as not migrated.

A folder the store has records of is read to the end first (:meth:`EwsFolderSync.read`), so that what left it
(a Delete, or, after the server refused the stored state, an item missing from the full listing that follows)
is known before anything arrives in another folder; its changes are then applied and the new state stored. A
folder without records has nothing that could leave it: it is read and copied a page at a time, the state
stored after each page. Items not copied in an earlier pass (refused, or that the server could not export) are
asked for again on each pass, so they stay counted until they are copied or someone decides about them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from migrate.core.errors import SyncStateInvalid
from migrate.core.store import FolderState, MessageRecord, now
from migrate.mailbox.folders import SourceFolderInfo
from migrate.mailbox.sync.folder_sync import FolderSync
from migrate.mailbox.sync.moves import MovePool
from migrate.mailbox.sync.reports import FolderReport, Item, Key, record_key

log = logging.getLogger(__package__)  # the engine's one logger, migrate.mailbox.sync

#: SyncFolderItems answers in a row that promise more changes but carry none and keep the same state before
#: the folder is left for the next pass (exchangelib guards the same way).
MAX_SYNC_STALLS = 3


@dataclass
class EwsWork:
    """One Exchange folder as read, for :meth:`EwsFolderSync.apply`."""

    src_info: SourceFolderInfo
    state: FolderState | None
    dest_name: str
    fr: FolderReport
    dest_status: dict[str, int]
    records: dict[Key, MessageRecord]
    dest_available: dict[str, list[tuple[int, tuple[str, ...]]]]
    sync_state: str | None
    #: Read to the end already (a folder with records): every item created or changed, in order, and the state
    #: reached. None: read a page at a time in :meth:`EwsFolderSync.apply`.
    collected: list | None = None
    #: Item ids this pass saw (to tell which earlier failures it has not asked for yet).
    seen: set[str] = field(default_factory=set)


class _Stalls:
    """Exchange sometimes answers "more to come" with the same state and no change: asking again would loop for
    ever. After MAX_SYNC_STALLS such answers in a row the folder is left for the next pass, with a warning."""

    def __init__(self, ctx, src_info: SourceFolderInfo, fr: FolderReport) -> None:
        self.ctx, self.src_info, self.fr, self.count = ctx, src_info, fr, 0

    def stop(self, changes, sync_state: str | None) -> bool:
        if not changes.more:
            return True
        if changes.state == sync_state and not changes.creates and not changes.updates and not changes.deletes:
            self.count += 1
            if self.count >= MAX_SYNC_STALLS:
                log.warning("%s: %s: the server says more changes follow but its sync state has not moved in %d "
                            "answers; the folder is left for the next pass", self.ctx.mailbox.email,
                            self.src_info.name, self.count)
                self.fr.warnings.append(f"the server's sync state stopped advancing after {self.count} answers; the "
                                        "next pass continues from there")
                return True
        else:
            self.count = 0
        return False


class EwsFolderSync(FolderSync):
    def read(self, src_info: SourceFolderInfo, state: FolderState | None, dest_name: str,
             pre_existing: bool, status: dict[str, int], fr: FolderReport) -> EwsWork:
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
        work = EwsWork(src_info, state, dest_name, fr, dest_status, records, dest_available, sync_state)
        if state is not None and records:
            self._read_to_the_end(work)
        return work

    def _read_to_the_end(self, w: EwsWork) -> None:
        """Every change since the stored state, collected; what left the folder marked. When the server refuses
        the stored state the folder is listed again from the start, and the records of items missing from that
        listing are what left it (Exchange sends no Delete across a new start)."""
        ctx = self.ctx
        collected: list = []
        deleted: set[str] = set()
        listing: set[str] | None = None      # the full listing, when this read started from no state
        sync_state = w.sync_state
        stalls = _Stalls(ctx, w.src_info, w.fr)
        while True:
            ctx.check_stop()
            try:
                changes = ctx.src.sync(w.src_info.folder_id, sync_state)
            except SyncStateInvalid:
                if sync_state is None:
                    raise
                log.warning("%s: %s: the server refused the stored sync state; reading the folder again",
                            ctx.mailbox.email, w.src_info.name)
                sync_state, collected, deleted, listing = None, [], set(), set()
                stalls = _Stalls(ctx, w.src_info, w.fr)
                continue
            if sync_state is None and listing is None:
                listing = set()
            collected.extend(changes.creates + changes.updates)
            deleted.update(changes.deletes)
            if listing is not None:
                listing.update(i.item_id for i in changes.creates + changes.updates)
            done = stalls.stop(changes, sync_state)
            complete = not changes.more
            sync_state = changes.state
            if done:
                break
        w.collected, w.sync_state = collected, sync_state
        # A full listing (read from no state, to the end) says what is there; otherwise the Deletes say what is
        # not (and what left the folder in an earlier pass stays gone: no Delete is sent twice).
        full = listing is not None and complete
        self.changes.vanished(w.state, w.records, listing if full else {
            k for k, r in w.records.items() if k not in deleted and r.vanished_at is None})

    def apply(self, work: EwsWork, pool: MovePool | None = None) -> None:
        ctx = self.ctx
        w = work
        if w.collected is not None:
            self._take(w, w.collected, pool)
            self._retry_failed(w, pool)
            self._record_state(w)
        else:
            stalls = _Stalls(ctx, w.src_info, w.fr)
            while True:
                ctx.check_stop()
                changes = ctx.src.sync(w.src_info.folder_id, w.sync_state)
                self._take(w, changes.creates + changes.updates, pool)
                left = [d for d in changes.deletes if d in w.records]
                if left:   # copied earlier in this very pass, and deleted since
                    self.changes.vanished(w.state, {k: w.records[k] for k in left}, set())
                done = stalls.stop(changes, w.sync_state)
                w.sync_state = changes.state
                self._record_state(w)
                if done:
                    break
            self._retry_failed(w, pool)
        if w.src_info.size is not None:
            ctx.report.src_bytes += w.src_info.size
        elif w.state is not None:
            ctx.report.src_bytes += sum(r.size for r in ctx.store.message_records(w.state.id))

    def _record_state(self, w: EwsWork) -> None:
        if not self.ctx.dry and w.state is not None:
            self.ctx.store.update_folder(w.state.id, sync_state=w.sync_state, last_synced_at=now(),
                                         dest_uidnext=w.dest_status.get("UIDNEXT"))

    def _take(self, w: EwsWork, changed: list, pool: MovePool | None) -> None:
        """Items created or changed: copy (or move) those not on the central host, carry the others' flags."""
        ctx = self.ctx
        present: dict[Key, tuple[str, ...]] = {}
        encoded: set[Key] = set()
        items = []
        for item in self._not_migrated(w.state, w.records, changed, w.fr):
            flags, was_encoded = ctx.central_flags(item.flags)
            present[item.item_id] = flags
            w.seen.add(item.item_id)
            if was_encoded:
                encoded.add(item.item_id)
            if item.item_id not in w.records or w.records[item.item_id].state == "failed":
                items.append(Item(item.item_id, item.size, flags, item.received, was_encoded))
        w.seen.update(i.item_id for i in changed)
        ctx.found(items)
        next_uid = self.copier.copy(w.state, w.dest_name, w.dest_status, items, w.fr, w.dest_available, pool)
        w.dest_status = {**w.dest_status, "UIDNEXT": max(next_uid, w.dest_status.get("UIDNEXT") or 1)}
        if w.state is not None and not ctx.dry:
            w.records = {record_key(r): r for r in ctx.store.message_records(w.state.id)}
        self.changes.carry_flags(w.state, w.dest_name, w.records, {k: v for k, v in present.items() if k in w.records},
                                 w.fr, encoded)

    def _retry_failed(self, w: EwsWork, pool: MovePool | None) -> None:
        """Items an earlier pass could not copy and this pass's changes did not name: asked for again (the server
        may export them now, the central host take them); those gone from the source are no longer owed."""
        ctx = self.ctx
        owed = [k for k, r in w.records.items() if r.state == "failed" and k not in w.seen and isinstance(k, str)]
        if not owed or ctx.dry:
            return
        found = ctx.src.items_by_id(owed)
        gone = set(owed) - {i.item_id for i in found}
        if gone:
            self.changes.vanished(w.state, {k: w.records[k] for k in gone}, set())
        if found:
            self._take(w, found, pool)

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
