"""The sync engine's memory: folders, message records, keyword names, calendars and contacts, throughput."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from migrate.core.secrets import redact
from migrate.core.store.base import StoreBase
from migrate.core.store.rows import (
    FolderState,
    GroupwareRecord,
    GroupwareSummaryRow,
    MessageRecord,
    NotCopiedRow,
    now,
)


class SyncStore(StoreBase):
    _FOLDER_COLS = ("id, mailbox_id, source_name, dest_name, source_uidvalidity, dest_uidvalidity, "
                    "source_uidnext, source_modseq, source_messages, source_bytes, sync_state, subscribed, note, "
                    "last_synced_at, dest_uidnext, source_key")

    def folders(self, mailbox_id: int) -> list[FolderState]:
        return [FolderState(*r[:11], bool(r[11]), *r[12:]) for r in self._query(
            f"SELECT {self._FOLDER_COLS} FROM folders WHERE mailbox_id = ? ORDER BY source_name", (mailbox_id,))]

    def ensure_folder(self, mailbox_id: int, source_name: str, dest_name: str, *, subscribed: bool,
                      note: str | None = None, source_key: str | None = None) -> FolderState:
        """The folder's record, made or brought up to date; ``source_key``: the source's own id of it (EWS)."""
        with self.tx() as c:
            c.execute(
                "INSERT INTO folders(mailbox_id, source_name, dest_name, subscribed, note, source_key) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(mailbox_id, source_name) DO UPDATE SET "
                "dest_name=excluded.dest_name, subscribed=excluded.subscribed, note=excluded.note, "
                "source_key=COALESCE(excluded.source_key, folders.source_key)",
                (mailbox_id, source_name, dest_name, int(subscribed), note, source_key))
            row = c.execute(f"SELECT {self._FOLDER_COLS} FROM folders WHERE mailbox_id = ? AND source_name = ?",
                            (mailbox_id, source_name)).fetchone()
        return FolderState(*row[:11], bool(row[11]), *row[12:])

    def update_folder(self, folder_id: int, **fields: Any) -> None:
        allowed = {"source_uidvalidity", "dest_uidvalidity", "source_uidnext", "source_modseq",
                   "source_messages", "source_bytes", "sync_state", "last_synced_at", "dest_name", "note",
                   "subscribed", "dest_uidnext", "source_name", "source_key"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown folder fields: {unknown}")
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.tx() as c:
            c.execute(f"UPDATE folders SET {sets} WHERE id = ?", (*fields.values(), folder_id))

    def forget_folder_messages(self, folder_id: int) -> None:
        """Drop a folder's message records (its UIDVALIDITY changed); reconciliation rebuilds them."""
        with self.tx() as c:
            c.execute("DELETE FROM messages WHERE folder_id = ?", (folder_id,))

    def delete_folder(self, folder_id: int) -> None:
        with self.tx() as c:
            c.execute("DELETE FROM messages WHERE folder_id = ?", (folder_id,))
            c.execute("DELETE FROM folders WHERE id = ?", (folder_id,))

    def rename_dest_folders(self, mailbox_id: int, old: str, new: str, separator: str) -> None:
        """The central host renamed ``old`` to ``new`` (and every folder below it): the records follow."""
        with self.tx() as c:
            rows = c.execute("SELECT id, dest_name FROM folders WHERE mailbox_id = ?", (mailbox_id,)).fetchall()
            below = old + separator
            c.executemany("UPDATE folders SET dest_name = ? WHERE id = ?",
                          [(new + name[len(old):], fid) for fid, name in rows
                           if name == old or (separator and name.startswith(below))])

    _MSG_COLS = ("src_uid, src_item, dest_uid, fingerprint, size, flags, state, dest_uidnext_before, error, "
                 "vanished_at, moved_from_folder, moved_from_key, accepted")

    def message_records(self, folder_id: int) -> list[MessageRecord]:
        return [MessageRecord(*r) for r in self._query(
            f"SELECT {self._MSG_COLS} FROM messages WHERE folder_id = ?", (folder_id,))]

    def record_pending(self, folder_id: int, rows: Iterable[tuple[int | None, str | None, str, int, str]],
                       dest_uidnext_before: int | None,
                       moved_from: Iterable[tuple[int, str]] | None = None) -> None:
        """Before an APPEND: (src_uid, src_item, fingerprint, size, flags) per message, state pending. Before a
        move on the central host, ``moved_from`` gives per row the folder record and source key (as text) of the
        copy being moved; :meth:`record_moved` completes it."""
        rows = list(rows)
        origins = list(moved_from) if moved_from is not None else [(None, None)] * len(rows)
        self._put_messages(folder_id, [(uid, item, None, fp, size, flags, "pending", dest_uidnext_before, None,
                                        None, origin, origin_key, None)
                                       for (uid, item, fp, size, flags), (origin, origin_key)
                                       in zip(rows, origins, strict=True)])

    def record_copied(self, folder_id: int, rows: Iterable[tuple[int | None, str | None, int | None, str,
                                                                   int, str]]) -> None:
        """(src_uid, src_item, dest_uid, fingerprint, size, flags) per message now on the destination."""
        self._put_messages(folder_id, [(uid, item, dest_uid, fp, size, flags, "copied", None, None)
                                       for uid, item, dest_uid, fp, size, flags in rows])

    def record_moved(self, folder_id: int, rows: Iterable[tuple[int | None, str | None, int | None, str, int,
                                                                  str]],
                     origin_folder_id: int, origin_keys: Iterable[int | str]) -> None:
        """A move on the central host, in one transaction: the copies now in ``folder_id`` (rows as
        :meth:`record_copied`) and the records of where they were (``origin_keys`` of ``origin_folder_id``)
        gone."""
        with self.tx():
            origin = list(origin_keys)
            self.delete_message_records(origin_folder_id, [k for k in origin if isinstance(k, int)],
                                        [k for k in origin if isinstance(k, str)])
            self.record_copied(folder_id, rows)

    def record_failed(self, folder_id: int, src_uid: int | None, src_item: str | None, fingerprint: str,
                      size: int, error: str) -> None:
        self._put_messages(folder_id, [(src_uid, src_item, None, fingerprint, size, "", "failed", None,
                                        redact(error))])

    def record_not_migrated(self, folder_id: int, rows: Iterable[tuple[str, int, str]]) -> None:
        """(src_item, size, reason) per source item that is not migrated by policy (an Exchange contact or
        note in a mail folder): recorded once, so later passes neither copy nor count it again."""
        self._put_messages(folder_id, [(None, item, None, "", size, "", "skipped", None, redact(why))
                                       for item, size, why in rows])

    def _put_messages(self, folder_id: int, rows: list[tuple[Any, ...]]) -> None:
        """Store whole message records (src_uid, src_item, dest_uid, fingerprint, size, flags, state,
        dest_uidnext_before, error[, vanished_at, moved_from_folder, moved_from_key, accepted]), each replacing
        the record of the same source UID or item id (what is left out is cleared)."""
        columns = self._MSG_COLS
        width = len(columns.split(", "))
        rows = [tuple(r) + (None,) * (width - len(r)) for r in rows]
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns.split(", "))
        marks = ",".join("?" * (width + 1))
        with self.tx() as c:
            for key, keyed in (("src_uid", [r for r in rows if r[0] is not None]),
                               ("src_item", [r for r in rows if r[0] is None])):
                c.executemany(
                    f"INSERT INTO messages(folder_id, {columns}) VALUES ({marks}) "
                    f"ON CONFLICT(folder_id, {key}) WHERE {key} IS NOT NULL DO UPDATE SET {updates}",
                    [(folder_id, *r) for r in keyed])

    def update_message_flags(self, folder_id: int, rows: Iterable[tuple[str, int | None, str | None]]) -> None:
        """(flags, src_uid, src_item) per message whose flags were carried over."""
        with self.tx() as c:
            c.executemany("UPDATE messages SET flags = ? WHERE folder_id = ? AND "
                          "(src_uid = ? OR src_item = ?)",
                          [(flags, folder_id, uid, item) for flags, uid, item in rows])

    def delete_message_records(self, folder_id: int, src_uids: Iterable[int] = (),
                               src_items: Iterable[str] = ()) -> None:
        with self.tx() as c:
            c.executemany("DELETE FROM messages WHERE folder_id = ? AND src_uid = ?",
                          [(folder_id, u) for u in src_uids])
            c.executemany("DELETE FROM messages WHERE folder_id = ? AND src_item = ?",
                          [(folder_id, i) for i in src_items])

    def mark_vanished(self, folder_id: int, src_uids: Iterable[int] = (), src_items: Iterable[str] = (), *,
                      vanished: bool = True) -> None:
        """The source messages of these records left their folder (``vanished``), or are back (False)."""
        stamp = now() if vanished else None
        test = "vanished_at IS NULL" if vanished else "vanished_at IS NOT NULL"
        with self.tx() as c:
            c.executemany(f"UPDATE messages SET vanished_at = ? WHERE folder_id = ? AND src_uid = ? AND {test}",
                          [(stamp, folder_id, u) for u in src_uids])
            c.executemany(f"UPDATE messages SET vanished_at = ? WHERE folder_id = ? AND src_item = ? AND {test}",
                          [(stamp, folder_id, i) for i in src_items])

    def vanished_records(self, mailbox_id: int) -> list[tuple[int, MessageRecord]]:
        """(folder id, record) of every copy on the central host whose source message left its folder."""
        cols = ", ".join(f"m.{c}" for c in self._MSG_COLS.split(", "))
        return [(r[0], MessageRecord(*r[1:])) for r in self._query(
            f"SELECT m.folder_id, {cols} FROM messages m JOIN folders f ON f.id = m.folder_id "
            "WHERE f.mailbox_id = ? AND m.vanished_at IS NOT NULL AND m.state = 'copied' "
            "ORDER BY m.folder_id, m.dest_uid", (mailbox_id,))]

    def accept_not_copied(self, mailbox_id: int, reason: str) -> int:
        """Someone decided the mailbox's messages not copied (still outstanding) may stay behind, for ``reason``;
        returns how many."""
        with self.tx() as c:
            return c.execute("UPDATE messages SET accepted = ? WHERE state = 'failed' AND accepted IS NULL AND "
                             "folder_id IN (SELECT id FROM folders WHERE mailbox_id = ?)",
                             (redact(reason), mailbox_id)).rowcount

    def record_keyword_names(self, names: dict[str, str]) -> None:
        """Keywords shortened to the central host's limit → the category or keyword each stands for."""
        if names:
            with self.tx() as c:
                c.executemany("INSERT INTO keyword_names(keyword, name) VALUES (?,?) ON CONFLICT(keyword) DO NOTHING",
                              names.items())

    def keyword_names(self) -> dict[str, str]:
        return dict(self._query("SELECT keyword, name FROM keyword_names ORDER BY keyword"))

    def folders_needing_attention(self, mailbox_id: int) -> set[int]:
        """Folders with interrupted (pending) or refused (failed) copies: never skipped as unchanged."""
        return {r[0] for r in self._query(
            "SELECT DISTINCT m.folder_id FROM messages m JOIN folders f ON f.id = m.folder_id "
            "WHERE f.mailbox_id = ? AND m.state IN ('pending', 'failed')", (mailbox_id,))}

    def folders_with_vanished(self, mailbox_id: int) -> set[int]:
        """Folders holding records of more copied messages than the source had at the last pass: messages
        were deleted at the source since they were copied."""
        return {r[0] for r in self._query(
            "SELECT f.id FROM folders f JOIN messages m ON m.folder_id = f.id AND m.state = 'copied' "
            "WHERE f.mailbox_id = ? GROUP BY f.id HAVING COUNT(*) > COALESCE(f.source_messages, 0)",
            (mailbox_id,))}

    def copied_totals(self, mailbox_id: int, *, stale: bool = False) -> tuple[int, int]:
        """(messages, bytes) copied whose source message is where the copy is; ``stale``: instead, the copies
        still on the central host of messages that left their folder at the source (deleted, or moved and not
        yet carried)."""
        row = self._query("SELECT COUNT(*), COALESCE(SUM(m.size), 0) FROM messages m JOIN folders f "
                          "ON f.id = m.folder_id WHERE f.mailbox_id = ? AND m.state = 'copied' AND "
                          f"m.vanished_at IS {'NOT ' if stale else ''}NULL", (mailbox_id,))[0]
        # PostgreSQL's SUM of a BIGINT is a NUMERIC (a Decimal in Python): numbers leave the store typed.
        return int(row[0]), int(row[1])

    def failed_messages(self, mailbox_id: int, state: str = "failed") -> list[NotCopiedRow]:
        """Messages not copied, with why: ``failed`` (refused or unexportable) or ``skipped`` (not migrated by
        policy)."""
        return [NotCopiedRow(*r) for r in self._query(
            "SELECT f.source_name, m.src_uid, m.src_item, m.size, m.error, m.accepted FROM messages m "
            "JOIN folders f ON f.id = m.folder_id WHERE f.mailbox_id = ? AND m.state = ? "
            "ORDER BY f.source_name, m.src_uid, m.src_item", (mailbox_id, state))]

    # -- calendars and contacts ------------------------------------------------------------------------

    def groupware_records(self, mailbox_id: int, kind: str) -> dict[str, GroupwareRecord]:
        """UID → what was last copied of the mailbox's calendar items or contacts."""
        rows = self._query("SELECT kind, uid, src_item, change_key, href, etag, state, error FROM groupware_items "
                           "WHERE mailbox_id = ? AND kind = ?", (mailbox_id, kind))
        return {r[1]: GroupwareRecord(*r) for r in rows}

    def record_groupware_items(self, mailbox_id: int, rows: Iterable[GroupwareRecord]) -> None:
        """Store copied (or refused) items, replacing what was kept for the same UID."""
        stamp = now()
        rows = list(rows)
        with self.tx() as c:
            # An item refused before (kept under "ews:<item id>") and copied now is no longer a failure.
            c.executemany("DELETE FROM groupware_items WHERE mailbox_id = ? AND kind = ? AND uid = ?",
                          [(mailbox_id, r.kind, f"ews:{r.src_item}") for r in rows if r.state == "copied"])
            c.executemany(
                "INSERT INTO groupware_items(mailbox_id, kind, uid, src_item, change_key, href, etag, state, error, "
                "updated_at) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(mailbox_id, kind, uid) DO UPDATE SET "
                "src_item = excluded.src_item, change_key = excluded.change_key, href = excluded.href, "
                "etag = excluded.etag, state = excluded.state, error = excluded.error, "
                "updated_at = excluded.updated_at",
                [(mailbox_id, r.kind, r.uid, r.src_item, r.change_key, r.href, r.etag, r.state,
                  redact(r.error) if r.error else None, stamp) for r in rows])

    def record_groupware_pass(self, mailbox_id: int, kind: str, *, location: str, source_items: int) -> None:
        with self.tx() as c:
            c.execute("INSERT INTO groupware(mailbox_id, kind, location, source_items, last_sync_at) "
                      "VALUES (?,?,?,?,?) ON CONFLICT(mailbox_id, kind) DO UPDATE SET location = excluded.location, "
                      "source_items = excluded.source_items, last_sync_at = excluded.last_sync_at",
                      (mailbox_id, kind, location, source_items, now()))

    def groupware_summary(self, mailbox_id: int | None = None) -> list[GroupwareSummaryRow]:
        """Per mailbox and kind: where its items went, how many the source held, copied and failed."""
        sql = ("SELECT g.mailbox_id, m.email, g.kind, g.location, g.source_items, g.last_sync_at, "
               "(SELECT COUNT(*) FROM groupware_items i WHERE i.mailbox_id = g.mailbox_id AND i.kind = g.kind "
               " AND i.state = 'copied'), "
               "(SELECT COUNT(*) FROM groupware_items i WHERE i.mailbox_id = g.mailbox_id AND i.kind = g.kind "
               " AND i.state = 'failed') "
               "FROM groupware g JOIN mailboxes m ON m.id = g.mailbox_id")
        params: tuple = ()
        if mailbox_id is not None:
            sql += " WHERE g.mailbox_id = ?"
            params = (mailbox_id,)
        return [GroupwareSummaryRow(*r) for r in self._query(sql + " ORDER BY m.email, g.kind", params)]

    def record_throughput(self, source_id: str, messages: int, bytes_: int, seconds: float) -> None:
        with self.tx() as c:
            c.execute("INSERT INTO throughput(source_id, measured_at, messages, bytes, seconds) VALUES (?,?,?,?,?)",
                      (source_id, now(), messages, bytes_, seconds))

    def throughput(self, source_id: str | None = None) -> tuple[int, int, float]:
        """Total (messages, bytes, seconds) measured, for rate estimates."""
        sql = "SELECT COALESCE(SUM(messages),0), COALESCE(SUM(bytes),0), COALESCE(SUM(seconds),0) FROM throughput"
        rows = self._query(sql + (" WHERE source_id = ?" if source_id else ""), (source_id,) if source_id else ())
        return int(rows[0][0]), int(rows[0][1]), float(rows[0][2])
