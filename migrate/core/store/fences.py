"""Fencing: the store refuses the writes of a host that no longer holds the mailbox it writes for.

Every sync of a mailbox takes a new token (:meth:`FenceStore.take_fence`, ``mailboxes.fence`` + 1) once it holds
the mailbox's lock. Its writes go through :class:`FencedStore`, which checks in the same transaction that the
token is still the mailbox's (the row locked until the transaction ends, so a successor's token cannot slip in
between) and, for the batch about to be appended, extends the holder's lease by the fence's margin. A host
paused past its lease, or cut from the database, finds on its next write that another host took the mailbox
(and a new token): :class:`~migrate.core.errors.ClaimLost`, and it writes nothing more for it.

What such a host appended and could not record is kept as an *orphan* (:meth:`FenceStore.record_orphans`), a
fact about the central host that needs no token; the mailbox's holder settles it (``migrate.mailbox.sync.
orphans``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from migrate.core.errors import ClaimLost
from migrate.core.store.base import StoreBase
from migrate.core.store.rows import Fence, OrphanRow, now


class FenceStore(StoreBase):
    def take_fence(self, mailbox_id: int) -> int:
        """A new token for the mailbox: every earlier holder's writes are refused from now on."""
        with self.tx() as c:
            return int(c.execute("UPDATE mailboxes SET fence = fence + 1 WHERE id = ? RETURNING fence",
                                 (mailbox_id,)).fetchone()[0])

    def hold_fence(self, fence: Fence, *, extend: float | None = None) -> None:
        """Inside a transaction: raise ClaimLost unless ``fence`` still holds the mailbox; ``extend``: and its
        lease lasts at least that many seconds more (on the database's clock)."""
        with self.tx() as c:
            row = c.execute(f"SELECT fence FROM mailboxes WHERE id = ?{self.engine.for_update}",
                            (fence.mailbox_id,)).fetchone()
            if row is None or int(row[0]) != fence.token:
                raise ClaimLost("another host took this mailbox over (its sync holds a newer token); nothing more "
                                "is written for it here")
            if extend is not None and fence.lease is not None:
                clock = self.engine.clock
                held = c.execute(f"UPDATE leases SET expires = CASE WHEN expires > {clock} + ? THEN expires "
                                 f"ELSE {clock} + ? END WHERE name = ? AND holder = ?",
                                 (extend, extend, fence.lease, fence.holder)).rowcount
                if held != 1:
                    raise ClaimLost(f"the lease {fence.lease} is no longer this host's: another host took the "
                                    "mailbox over")

    def fenced(self, fence: Fence) -> FencedStore:
        return FencedStore(self, fence)

    # -- orphans ------------------------------------------------------------------------------------------

    def record_orphans(self, mailbox_id: int, folder_id: int, holder: str,
                       rows: Iterable[tuple[int | None, str | None, int, str, int, str]]) -> None:
        """(src_uid, src_item, dest_uid, fingerprint, size, flags) appended by ``holder`` and not recorded."""
        stamp = now()
        with self.tx() as c:
            c.executemany("INSERT INTO orphans(mailbox_id, folder_id, dest_uid, src_uid, src_item, fingerprint, "
                          "size, flags, holder, recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                          [(mailbox_id, folder_id, dest_uid, uid, item, fp, size, flags, holder, stamp)
                           for uid, item, dest_uid, fp, size, flags in rows])

    def orphans(self, mailbox_id: int) -> list[OrphanRow]:
        return [OrphanRow(*r) for r in self._query(
            "SELECT id, mailbox_id, folder_id, dest_uid, src_uid, src_item, fingerprint, size, flags, holder "
            "FROM orphans WHERE mailbox_id = ? ORDER BY id", (mailbox_id,))]

    def forget_orphans(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        if ids:
            with self.tx() as c:
                c.executemany("DELETE FROM orphans WHERE id = ?", [(i,) for i in ids])


class FencedStore:
    """The store as one sync of one mailbox writes to it: each write checks, in its own transaction, that the
    sync's fence still holds the mailbox (module docstring); ``record_pending`` also extends the lease by the
    fence's margin and sets :attr:`deadline`. Reads, and everything else, pass through."""

    #: The writes a sync makes for its mailbox.
    WRITES = frozenset({
        "ensure_folder", "update_folder", "forget_folder_messages", "delete_folder", "record_pending",
        "record_copied", "record_failed", "record_not_migrated", "update_message_flags", "delete_message_records",
        "record_keyword_names", "record_groupware_items", "record_groupware_pass", "record_throughput",
        "record_mailbox_sync", "set_mailbox_state", "add_event", "forget_orphans", "record_settings",
        # What users did between passes: moves, renames and deletions carried, messages accepted left behind.
        "record_moved", "mark_vanished", "rename_dest_folders", "accept_not_copied",
    })

    def __init__(self, store: FenceStore, fence: Fence) -> None:
        self._store = store
        self.fence = fence
        #: time.monotonic() after which this host may no longer hold the lease it extended last (None: no lease).
        self.deadline: float | None = None

    def hold(self, *, extend: bool = False) -> None:
        """Check the fence now (and extend the lease): before a write to the central host, say."""
        started = time.monotonic()
        self._store.hold_fence(self.fence, extend=self.fence.margin if extend else None)
        if extend and self.fence.lease is not None:
            # What the database granted, on this host's clock, less what the round trip may have taken.
            self.deadline = started + self.fence.margin

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in self.WRITES:
            return attr

        def fenced(*args: Any, **kwargs: Any) -> Any:
            with self._store.tx():
                self.hold(extend=name == "record_pending")
                return attr(*args, **kwargs)

        fenced.__name__ = name
        return fenced
