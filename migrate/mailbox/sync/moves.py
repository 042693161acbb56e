"""Moves: a message the user moved to another folder at the source since the last pass is moved on the central
host too (UID MOVE, or COPY and expunge), never appended again and deleted.

A move is recognised by fingerprint: the pass's folder reads mark every record whose source message left its
folder (``vanished_at``); those copies, and every copy in a folder deleted at the source, make the mailbox's
:class:`MovePool`. A message new in a folder whose fingerprint is in the pool is that copy, moved. What nothing
claims by the end of the pass was deleted at the source (:meth:`migrate.mailbox.sync.changes.ChangeCarrier.settle`).

Crash safety: before the MOVE, the message's record in its new folder is written *pending* with the record it
comes from (``moved_from_*``); after it, one transaction records the copy where it landed and drops the record
of where it was. A kill in between is settled by the next pass (:meth:`migrate.mailbox.sync.reconcile.Reconciler.
reconcile_pending`): the copy is found in its new folder by fingerprint, what is left of it in the old one (a COPY
not yet expunged) is expunged, and the records are completed the same way.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

from migrate.core.crashpoints import crashpoint
from migrate.core.errors import RemoteError
from migrate.core.store import FolderState, MessageRecord
from migrate.mailbox.protocol import CommandFailed
from migrate.mailbox.sync.context import PassContext
from migrate.mailbox.sync.reports import FolderReport, Item, cols, record_key, split_keys

log = logging.getLogger(__package__)  # the engine's one logger, migrate.mailbox.sync


@dataclass(frozen=True)
class Vanished:
    """A copy on the central host (``record``, in ``folder``) whose source message left its folder."""

    folder: FolderState
    record: MessageRecord


@dataclass(frozen=True)
class Move:
    """A message new in a folder that is a copy already on the central host (``origin``), moved there."""

    item: Item
    fingerprint: str
    size: int
    origin: Vanished


class MovePool:
    """The mailbox's copies whose source message left its folder, by fingerprint, for this pass to claim."""

    def __init__(self, entries: list[Vanished] = ()) -> None:
        self._by_fp: dict[str, list[Vanished]] = defaultdict(list)
        self._left = 0
        for entry in entries:
            self._by_fp[entry.record.fingerprint].append(entry)
            self._left += 1

    @classmethod
    def load(cls, ctx: PassContext, folders: dict[int, FolderState]) -> MovePool:
        """The mailbox's pool, from the store (``folders``: the mailbox's folder records by id)."""
        return cls([Vanished(folders[folder_id], record) for folder_id, record
                    in ctx.store.vanished_records(ctx.mailbox.id) if folder_id in folders and record.dest_uid])

    def __bool__(self) -> bool:
        return self._left > 0

    def take(self, fp: str) -> Vanished | None:
        """The copy with this fingerprint, claimed (None: no such copy)."""
        entries = self._by_fp.get(fp)
        if not entries:
            return None
        self._left -= 1
        return entries.pop(0)

    def left(self) -> list[Vanished]:
        """What nothing claimed: messages deleted at the source."""
        return [e for entries in self._by_fp.values() for e in entries]


class Mover:
    def __init__(self, ctx: PassContext) -> None:
        self.ctx = ctx

    def move(self, state: FolderState, dest_name: str, moves: list[Move], next_uid: int,
             fr: FolderReport) -> tuple[list[Move], int]:
        """Move the copies of ``moves`` into ``dest_name``; returns those that could not be (their copy is no
        longer where the records said: to be copied again) and the destination's UIDNEXT as far as known."""
        ctx = self.ctx
        store = ctx.store
        by_origin: dict[int, list[Move]] = defaultdict(list)
        for m in moves:
            by_origin[m.origin.folder.id].append(m)
        lost: list[Move] = []
        for origin_id, group in by_origin.items():
            origin = group[0].origin.folder
            if origin_id == state.id:
                # It left the folder and came back under a new UID or item id (restored, or re-filed): the copy
                # stays where it is; only its record changes key.
                store.record_moved(state.id, [self._row(m, m.origin.record.dest_uid) for m in group], origin_id,
                                   [record_key(m.origin.record) for m in group])
                continue
            store.record_pending(state.id, [(*cols(m.item.key), m.fingerprint, m.size, m.origin.record.flags)
                                            for m in group], next_uid,
                                 moved_from=[(origin_id, str(record_key(m.origin.record))) for m in group])
            ctx.before_append()
            try:
                placed = ctx.dest.move(origin.dest_name, [m.origin.record.dest_uid for m in group], dest_name)
            except (CommandFailed, RemoteError) as exc:
                if isinstance(exc, RemoteError) and exc.transient:
                    raise        # the connection, not the move: the mailbox is retried and finds it pending
                log.warning("%s: moving %d message(s) from %s to %s was refused (%s); they are copied again",
                            ctx.mailbox.email, len(group), origin.dest_name, dest_name,
                            exc.text if isinstance(exc, CommandFailed) else exc.message)
                placed = {}
            crashpoint("after-move")
            moved = [m for m in group if m.origin.record.dest_uid in placed]
            gone = [m for m in group if m.origin.record.dest_uid not in placed]
            with store.tx():
                if moved:
                    store.record_moved(state.id, [self._row(m, placed[m.origin.record.dest_uid]) for m in moved],
                                       origin_id, [record_key(m.origin.record) for m in moved])
                if gone:
                    # Their copy is no longer on the central host (removed there since): nothing to move; the
                    # records of it go and the messages are copied afresh.
                    self._forget(state.id, [m.item.key for m in gone])
                    self._forget(origin_id, [record_key(m.origin.record) for m in gone])
            if moved:
                log.info("%s: %d message(s) moved from %s to %s on the central host", ctx.mailbox.email, len(moved),
                         origin.dest_name, dest_name)
                next_uid = max(next_uid, max(placed.values()) + 1)
            fr.moved += len(moved)
            lost.extend(gone)
        return lost, next_uid

    @staticmethod
    def _row(m: Move, dest_uid: int | None) -> tuple:
        return (*cols(m.item.key), dest_uid, m.fingerprint, m.size, m.origin.record.flags)

    def _forget(self, folder_id: int, keys: list) -> None:
        self.ctx.store.delete_message_records(folder_id, *split_keys(keys))
