"""Matching by fingerprint: what the store knows of a folder's copies, and the messages already on the central
host that it does not know (an interrupted batch, a lost or restored store, a recreated folder)."""

from __future__ import annotations

import logging
from collections import defaultdict

from migrate.core.store import FolderState, MessageRecord
from migrate.mailbox.source_imap import MessageMeta
from migrate.mailbox.sync.context import PassContext
from migrate.mailbox.sync.reports import FolderReport, Key, flagstr, record_key, split_keys

log = logging.getLogger(__package__)  # the engine's one logger, migrate.mailbox.sync


class Reconciler:
    def __init__(self, ctx: PassContext) -> None:
        self.ctx = ctx

    def records(self, state: FolderState | None, dest_status: dict[str, int]) -> dict[Key, MessageRecord]:
        """What the store knows of a folder's copies; nothing when the destination folder was recreated."""
        ctx = self.ctx
        if state is None:
            return {}
        if state.dest_uidvalidity is not None and dest_status.get("UIDVALIDITY") not in (None, 0) \
                and state.dest_uidvalidity != dest_status["UIDVALIDITY"]:
            # The destination folder was recreated: every record of it is void; reconcile from scratch.
            log.warning("%s: destination folder %s changed UIDVALIDITY; reconciling", ctx.mailbox.email,
                        state.dest_name)
            if not ctx.dry:
                ctx.store.forget_folder_messages(state.id)
            return {}
        return {record_key(r): r for r in ctx.store.message_records(state.id)}

    def dest_multiset(self, dest_name: str, exclude: set[int], since: int = 1) -> dict[str, list[tuple[int, tuple]]]:
        available: dict[str, list[tuple[int, tuple[str, ...]]]] = defaultdict(list)
        for uid, (fp, _size, flags) in sorted(self.ctx.dest.fingerprints(dest_name, since,
                                                                         self.ctx.fingerprint).items()):
            if uid not in exclude:
                available[fp].append((uid, flags))
        return available

    def unknown_on_dest(self, state: FolderState | None, dest_name: str, dest_status: dict[str, int],
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
        available = self.dest_multiset(dest_name, known, since)
        unknown = sum(len(v) for v in available.values())
        if unknown:
            log.info("%s: %s: %d message(s) on the central host that the state store does not know; matching "
                     "them by fingerprint before copying", self.ctx.mailbox.email, dest_name, unknown)
        return available

    def reconcile_pending(self, state: FolderState | None, dest_name: str, records: dict[Key, MessageRecord],
                          fr: FolderReport) -> dict[Key, MessageRecord]:
        """A crash between APPEND (or MOVE) and its record left rows pending: find where they landed, if they did.
        A pending move found in its new folder completes as :class:`migrate.mailbox.sync.moves.Mover` would
        have: what is left of the copy where it was (a COPY whose expunge never came) is expunged, and the record
        of it goes in the same transaction as the new one."""
        ctx = self.ctx
        pending = [r for r in records.values() if r.state == "pending"]
        if not pending or state is None:
            return records
        since = min(r.dest_uidnext_before or 1 for r in pending)
        mapped = {r.dest_uid for r in records.values() if r.state == "copied" and r.dest_uid}
        available = self.dest_multiset(dest_name, mapped, since)
        found, moved, missing = [], [], []
        for r in sorted(pending, key=lambda r: (str(type(record_key(r))), record_key(r))):
            slot = available.get(r.fingerprint)
            if slot:
                uid, _flags = slot.pop(0)
                (moved if r.moved_from_folder is not None else found).append(
                    (r, (r.src_uid, r.src_item, uid, r.fingerprint, r.size, r.flags)))
            else:
                missing.append(r)
        fr.resumed += len(found) + len(moved)
        fr.moved += len(moved)
        if not ctx.dry:
            ctx.store.record_copied(state.id, [row for _r, row in found])
            self._complete_moves(state, moved)
            ctx.store.delete_message_records(state.id, *split_keys(record_key(r) for r in missing))
        log.info("%s: %s: %d interrupted copies found on the destination, %d to copy again",
                 ctx.mailbox.email, dest_name, len(found) + len(moved), len(missing))
        return {record_key(r): r for r in ctx.store.message_records(state.id)} if not ctx.dry else {
            k: r for k, r in records.items() if r.state != "pending"}

    def _complete_moves(self, state: FolderState, moved: list[tuple[MessageRecord, tuple]]) -> None:
        ctx = self.ctx
        folders = {f.id: f for f in ctx.store.folders(ctx.mailbox.id)} if moved else {}
        by_origin: dict[int, list[tuple[MessageRecord, tuple]]] = defaultdict(list)
        for r, row in moved:
            by_origin[r.moved_from_folder].append((r, row))  # type: ignore[index]
        for origin_id, rows in by_origin.items():
            origin = folders.get(origin_id)
            keys = [_origin_key(r.moved_from_key, ctx.is_ews) for r, _row in rows]
            if origin is not None and origin.dest_name in ctx.dest.folders():
                left = {record_key(o): o.dest_uid for o in ctx.store.message_records(origin_id)}
                uids = [left[k] for k in keys if left.get(k)]
                if uids:
                    ctx.hold()
                    ctx.dest.expunge(origin.dest_name, uids)   # a UID already moved away is not there: no-op
            ctx.store.record_moved(state.id, [row for _r, row in rows], origin_id, keys)

    def reconcile_folder(self, state: FolderState | None, dest_name: str, records: dict[Key, MessageRecord],
                         src_fps: dict[int, tuple[str, int]], meta: dict[int, MessageMeta],
                         fr: FolderReport) -> dict[Key, MessageRecord]:
        ctx = self.ctx
        available = self.dest_multiset(dest_name, set())
        matched = []
        for uid in sorted(src_fps):
            fp, size = src_fps[uid]
            slot = available.get(fp)
            if slot and uid in meta:
                dest_uid, dest_flags = slot.pop(0)
                matched.append((uid, None, dest_uid, fp, size, flagstr(dest_flags)))
        fr.reconciled += len(matched)
        if ctx.dry:
            return {m[0]: MessageRecord(m[0], None, m[2], m[3], m[4], m[5], "copied", None, None) for m in matched}
        assert state is not None
        ctx.store.record_copied(state.id, matched)
        log.info("%s: %s: %d messages already on the destination matched by fingerprint",
                 ctx.mailbox.email, dest_name, len(matched))
        return {record_key(r): r for r in ctx.store.message_records(state.id)}


def _origin_key(text: str | None, ews: bool) -> Key:
    """A pending move's origin key as stored (text) → the source key it was: an EWS item id, or an IMAP UID."""
    return (text or "") if ews else int(text or 0)
