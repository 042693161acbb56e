"""The copy back of a rollback: marks taken at the switch, and the reverse copy's folders and messages.

A message copied back is recorded twice, in one transaction: in ``reverse_messages`` (central UID → ministry
UID) and as a forward record in ``messages`` (ministry UID → central UID), exactly as if the forward copy had
copied it. The forward copy then knows the pair (a later cut-over copies nothing twice) and so does the next
copy back (a central message the forward records name is never copied back).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from migrate.core.secrets import redact
from migrate.core.store.base import StoreBase
from migrate.core.store.rows import MessageRecord, ReverseFolder, now


class ReverseStore(StoreBase):
    _REV_COLS = ("id, mailbox_id, central_name, ministry_name, folder_id, central_uidvalidity, dest_uidvalidity, "
                 "dest_uidnext, last_copied_at")

    # -- marks ----------------------------------------------------------------------------------------------

    def mark_for_copy_back(self, mailbox_ids: Iterable[int]) -> None:
        """At the switch: each central folder the forward copy writes to, with its UIDNEXT as the forward copy last
        saw it (``folders.dest_uidnext``; else above the highest UID it recorded there). Mail at or above the mark
        arrived after the switch, unless the forward records name it. Replaces the marks of an earlier switch."""
        ids = list(mailbox_ids)
        stamp = now()
        with self.tx() as c:
            c.executemany("DELETE FROM copy_back_marks WHERE mailbox_id = ?", [(i,) for i in ids])
            c.executemany(
                "INSERT INTO copy_back_marks(mailbox_id, dest_name, uidvalidity, uidnext, marked_at) "
                "SELECT f.mailbox_id, f.dest_name, f.dest_uidvalidity, COALESCE(f.dest_uidnext, "
                "(SELECT MAX(m.dest_uid) + 1 FROM messages m WHERE m.folder_id = f.id), 1), ? "
                "FROM folders f WHERE f.mailbox_id = ? "
                "ON CONFLICT (mailbox_id, dest_name) DO NOTHING",
                [(stamp, i) for i in ids])

    def copy_back_marks(self, mailbox_id: int) -> dict[str, tuple[int | None, int]]:
        """Central folder → (UIDVALIDITY, UIDNEXT) when the switch was made."""
        return {r[0]: (r[1], r[2]) for r in self._query(
            "SELECT dest_name, uidvalidity, uidnext FROM copy_back_marks WHERE mailbox_id = ?", (mailbox_id,))}

    def marked(self, mailbox_id: int) -> bool:
        return bool(self._query("SELECT 1 FROM copy_back_marks WHERE mailbox_id = ? LIMIT 1", (mailbox_id,)))

    # -- folders --------------------------------------------------------------------------------------------

    def reverse_folder(self, mailbox_id: int, central_name: str, ministry_name: str,
                       folder_id: int | None) -> ReverseFolder:
        """The reverse copy's record of a central folder (created, or its ministry side brought up to date)."""
        with self.tx() as c:
            c.execute("INSERT INTO reverse_folders(mailbox_id, central_name, ministry_name, folder_id) "
                      "VALUES (?,?,?,?) ON CONFLICT (mailbox_id, central_name) DO UPDATE SET "
                      "ministry_name = excluded.ministry_name, folder_id = excluded.folder_id",
                      (mailbox_id, central_name, ministry_name, folder_id))
            row = c.execute(f"SELECT {self._REV_COLS} FROM reverse_folders WHERE mailbox_id = ? AND central_name = ?",
                            (mailbox_id, central_name)).fetchone()
        return ReverseFolder(*row)

    def reverse_folders(self, mailbox_id: int) -> list[ReverseFolder]:
        return [ReverseFolder(*r) for r in self._query(
            f"SELECT {self._REV_COLS} FROM reverse_folders WHERE mailbox_id = ? ORDER BY central_name", (mailbox_id,))]

    def update_reverse_folder(self, folder_id: int, **fields: Any) -> None:
        allowed = {"central_uidvalidity", "dest_uidvalidity", "dest_uidnext", "last_copied_at", "folder_id"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown reverse folder fields: {unknown}")
        if fields:
            sets = ", ".join(f"{k} = ?" for k in fields)
            with self.tx() as c:
                c.execute(f"UPDATE reverse_folders SET {sets} WHERE id = ?", (*fields.values(), folder_id))

    # -- messages -------------------------------------------------------------------------------------------

    _RMSG_COLS = "src_uid, dest_uid, fingerprint, size, flags, state, dest_uidnext_before, error"

    def reverse_records(self, folder_id: int) -> list[MessageRecord]:
        """What the reverse copy recorded of a folder, as the sync engine's message records (``src_uid``: the
        central UID, ``dest_uid``: the ministry UID)."""
        return [MessageRecord(r[0], None, *r[1:]) for r in self._query(
            f"SELECT {self._RMSG_COLS} FROM reverse_messages WHERE folder_id = ?", (folder_id,))]

    def _put_reverse(self, c: Any, folder_id: int, rows: list[tuple[Any, ...]]) -> None:
        cols = self._RMSG_COLS
        updates = ", ".join(f"{k} = excluded.{k}" for k in cols.split(", ")[1:])
        c.executemany(f"INSERT INTO reverse_messages(folder_id, {cols}) VALUES (?,?,?,?,?,?,?,?,?) "
                      f"ON CONFLICT (folder_id, src_uid) DO UPDATE SET {updates}", [(folder_id, *r) for r in rows])

    def reverse_pending(self, folder_id: int, rows: Iterable[tuple[int, str, int, str]],
                        dest_uidnext_before: int | None) -> None:
        """Before an APPEND to the ministry server: (central UID, fingerprint, size, flags), state pending."""
        with self.tx() as c:
            self._put_reverse(c, folder_id, [(uid, None, fp, size, flags, "pending", dest_uidnext_before, None)
                                             for uid, fp, size, flags in rows])

    def reverse_copied(self, folder_id: int, forward_folder_id: int,
                       rows: Iterable[tuple[int, int, str, int, str]]) -> None:
        """(central UID, ministry UID, fingerprint, size, flags) per message now on the ministry server: recorded
        as copied back, and as the forward copy's pair of the same two messages, in one transaction."""
        rows = list(rows)
        with self.tx() as c:
            self._put_reverse(c, folder_id, [(cu, mu, fp, size, flags, "copied", None, None)
                                             for cu, mu, fp, size, flags in rows])
            c.executemany(
                "INSERT INTO messages(folder_id, src_uid, src_item, dest_uid, fingerprint, size, flags, state, "
                "dest_uidnext_before, error) VALUES (?,?,NULL,?,?,?,?,'copied',NULL,NULL) "
                "ON CONFLICT(folder_id, src_uid) WHERE src_uid IS NOT NULL DO UPDATE SET "
                "dest_uid = excluded.dest_uid, fingerprint = excluded.fingerprint, size = excluded.size, "
                "flags = excluded.flags, state = 'copied', dest_uidnext_before = NULL, error = NULL",
                [(forward_folder_id, mu, cu, fp, size, flags) for cu, mu, fp, size, flags in rows])

    def reverse_failed(self, folder_id: int, central_uid: int, fingerprint: str, size: int, error: str) -> None:
        with self.tx() as c:
            self._put_reverse(c, folder_id, [(central_uid, None, fingerprint, size, "", "failed", None,
                                              redact(error))])

    def delete_reverse_records(self, folder_id: int, central_uids: Iterable[int]) -> None:
        with self.tx() as c:
            c.executemany("DELETE FROM reverse_messages WHERE folder_id = ? AND src_uid = ?",
                          [(folder_id, u) for u in central_uids])

    def carried_back_flags(self, folder_id: int, forward_folder_id: int | None,
                           rows: Iterable[tuple[str, int]]) -> None:
        """(flags, central UID) per message whose flags were carried to the ministry server: both records now say
        the two sides agree on them."""
        rows = list(rows)
        with self.tx() as c:
            c.executemany("UPDATE reverse_messages SET flags = ? WHERE folder_id = ? AND src_uid = ?",
                          [(flags, folder_id, uid) for flags, uid in rows])
            if forward_folder_id is not None:
                c.executemany("UPDATE messages SET flags = ? WHERE folder_id = ? AND dest_uid = ? AND state = 'copied'",
                              [(flags, forward_folder_id, uid) for flags, uid in rows])

    def copied_back(self, mailbox_id: int) -> tuple[int, int, list[tuple[str, int, str]]]:
        """(messages copied back, bytes, [(central folder, central UID, why) not copied back]) of a mailbox."""
        row = self._query("SELECT COUNT(*), COALESCE(SUM(m.size), 0) FROM reverse_messages m JOIN reverse_folders f "
                          "ON f.id = m.folder_id WHERE f.mailbox_id = ? AND m.state = 'copied'", (mailbox_id,))[0]
        failed = [(r[0], r[1], r[2] or "") for r in self._query(
            "SELECT f.central_name, m.src_uid, m.error FROM reverse_messages m JOIN reverse_folders f "
            "ON f.id = m.folder_id WHERE f.mailbox_id = ? AND m.state = 'failed' ORDER BY f.central_name, m.src_uid",
            (mailbox_id,))]
        return row[0], row[1], failed
