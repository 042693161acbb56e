"""Sources, mailboxes, what the inventory measured of them, and what their last verification found."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from migrate.core.errors import StoreError
from migrate.core.secrets import redact
from migrate.core.store.base import Row, StoreBase
from migrate.core.store.rows import (
    InventoryFolderRow,
    InventoryRow,
    MailboxRow,
    ProbeRow,
    SourceRow,
    VerificationRow,
    host,
    now,
)


class MailboxStore(StoreBase):
    def upsert_source(self, source_id: str, ministry: str, kind: str, domains: list[str]) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT INTO sources(id, ministry, kind, domains, updated_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET ministry=excluded.ministry, kind=excluded.kind, "
                "domains=excluded.domains, updated_at=excluded.updated_at",
                (source_id, ministry, kind, json.dumps(domains), now()))

    def sources(self) -> list[SourceRow]:
        return [SourceRow(r[0], r[1], r[2], json.loads(r[3]))
                for r in self._query("SELECT id, ministry, kind, domains FROM sources ORDER BY id")]

    def upsert_mailbox(self, source_id: str, email: str, login: str, display_name: str,
                       flags: Iterable[str]) -> int:
        """Record a user-list entry; returns the mailbox id. Sync and plan state are left alone."""
        flag_text = " ".join(sorted(flags))
        with self.tx() as c:
            c.execute(
                "INSERT INTO mailboxes(source_id, email, login, display_name, flags, updated_at) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(email) DO UPDATE SET source_id=excluded.source_id, "
                "login=excluded.login, display_name=excluded.display_name, flags=excluded.flags, "
                "updated_at=excluded.updated_at",
                (source_id, email, login, display_name, flag_text, now()))
            return c.execute("SELECT id FROM mailboxes WHERE email = ?", (email,)).fetchone()[0]

    _MAILBOX_COLS = ("id, source_id, email, login, display_name, flags, state, state_reason, wave, "
                     "last_sync_at, last_sync_result, src_messages, src_bytes, copied_messages, "
                     "copied_bytes, failed_messages, prior_state, last_sync_host, settings_read_at, "
                     "central_quota_used, central_quota_limit, central_quota_at")

    @staticmethod
    def _mailbox(row: Row) -> MailboxRow:
        values = list(row)
        values[5] = frozenset(values[5].split())
        return MailboxRow(*values)

    def mailbox(self, email: str) -> MailboxRow | None:
        rows = self._query(f"SELECT {self._MAILBOX_COLS} FROM mailboxes WHERE email = ?", (email,))
        return self._mailbox(rows[0]) if rows else None

    def mailbox_by_id(self, mailbox_id: int) -> MailboxRow | None:
        rows = self._query(f"SELECT {self._MAILBOX_COLS} FROM mailboxes WHERE id = ?", (mailbox_id,))
        return self._mailbox(rows[0]) if rows else None

    def mailboxes(self, *, source_id: str | None = None, wave: str | None = None) -> list[MailboxRow]:
        sql = f"SELECT {self._MAILBOX_COLS} FROM mailboxes WHERE 1=1"
        params: list[Any] = []
        if source_id:
            sql += " AND source_id = ?"
            params.append(source_id)
        if wave:
            sql += " AND wave = ?"
            params.append(wave)
        return [self._mailbox(r) for r in self._query(sql + " ORDER BY source_id, email", params)]

    def find_mailboxes(self, text: str) -> list[MailboxRow]:
        """Helpdesk lookup: exact email or login first, else part of a display name or address."""
        exact = self._query(f"SELECT {self._MAILBOX_COLS} FROM mailboxes WHERE email = ? OR login = ? "
                            "ORDER BY email", (text, text))
        if exact:
            return [self._mailbox(r) for r in exact]
        like = f"%{text}%"
        return [self._mailbox(r) for r in self._query(
            f"SELECT {self._MAILBOX_COLS} FROM mailboxes WHERE display_name LIKE ? OR email LIKE ? "
            "ORDER BY email", (like, like))]

    def set_mailbox_state(self, mailbox_id: int, state: str, reason: str | None = None, *,
                          prior_state: str | None = None) -> None:
        """Change a mailbox's lifecycle state (an event records the change); ``prior_state`` goes with
        ``failed``: the state reached before, from which a retry resumes."""
        reason = redact(reason) if reason else reason
        with self.tx() as c:
            row = c.execute("SELECT email, state FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise StoreError(f"no mailbox with id {mailbox_id}")
            c.execute("UPDATE mailboxes SET state = ?, state_reason = ?, prior_state = ?, updated_at = ? "
                      "WHERE id = ?", (state, reason, prior_state, now(), mailbox_id))
            if row[1] != state:
                detail = f"{row[1]} -> {state}" + (f": {reason}" if reason else "")
                self.add_event(f"mailbox/{row[0]}", "state", detail)

    def set_mailbox_wave(self, mailbox_id: int, wave: str | None) -> None:
        with self.tx() as c:
            c.execute("UPDATE mailboxes SET wave = ?, updated_at = ? WHERE id = ?", (wave, now(), mailbox_id))

    def record_mailbox_sync(self, mailbox_id: int, *, result: str, src_messages: int, src_bytes: int,
                            copied_messages: int, copied_bytes: int, failed_messages: int,
                            central_quota: tuple[int | None, int | None] | None = None) -> None:
        """``central_quota``: (bytes used, limit) on the central host as this sync left it ((None, None): no
        storage limit), where it logged in there; None leaves the last one read."""
        stamp = now()
        with self.tx() as c:
            c.execute(
                "UPDATE mailboxes SET last_sync_at=?, last_sync_result=?, src_messages=?, src_bytes=?, "
                "copied_messages=?, copied_bytes=?, failed_messages=?, last_sync_host=?, updated_at=? WHERE id=?",
                (stamp, redact(result), src_messages, src_bytes, copied_messages, copied_bytes, failed_messages,
                 host(), stamp, mailbox_id))
            if central_quota is not None:
                c.execute("UPDATE mailboxes SET central_quota_used=?, central_quota_limit=?, central_quota_at=? "
                          "WHERE id=?", (central_quota[0], central_quota[1], stamp, mailbox_id))

    # -- inventory --------------------------------------------------------------------------------

    def record_probe(self, source_id: str, ok: bool, error: str | None, detail: dict[str, Any]) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT INTO probes(source_id, ok, error, detail, probed_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(source_id) DO UPDATE SET ok=excluded.ok, error=excluded.error, "
                "detail=excluded.detail, probed_at=excluded.probed_at",
                (source_id, int(ok), redact(error) if error else None, redact(json.dumps(detail)), now()))

    def probe(self, source_id: str) -> ProbeRow | None:
        rows = self._query("SELECT ok, error, detail, probed_at FROM probes WHERE source_id = ?", (source_id,))
        if not rows:
            return None
        ok, error, detail, at = rows[0]
        return ProbeRow(bool(ok), error, json.loads(detail), at)

    def record_inventory(self, mailbox_id: int, *, ok: bool, error: str | None = None,
                         messages: int | None = None, bytes_: int | None = None, largest: int | None = None,
                         oldest: str | None = None, newest: str | None = None,
                         quota_used: int | None = None, quota_limit: int | None = None,
                         folders: Iterable[dict[str, Any]] = ()) -> None:
        """Replace a mailbox's measurement (a re-run updates, never duplicates)."""
        folders = list(folders)
        folder_errors = sum(1 for f in folders if f.get("error"))
        with self.tx() as c:
            c.execute(
                "INSERT INTO inventory(mailbox_id, ok, error, messages, bytes, largest, oldest, newest, "
                "quota_used, quota_limit, folder_errors, measured_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(mailbox_id) DO UPDATE SET ok=excluded.ok, error=excluded.error, "
                "messages=excluded.messages, bytes=excluded.bytes, largest=excluded.largest, "
                "oldest=excluded.oldest, newest=excluded.newest, quota_used=excluded.quota_used, "
                "quota_limit=excluded.quota_limit, folder_errors=excluded.folder_errors, "
                "measured_at=excluded.measured_at",
                (mailbox_id, int(ok), redact(error) if error else None, messages, bytes_, largest, oldest,
                 newest, quota_used, quota_limit, folder_errors, now()))
            c.execute("DELETE FROM inventory_folders WHERE mailbox_id = ?", (mailbox_id,))
            c.executemany(
                "INSERT INTO inventory_folders(mailbox_id, name, special_use, messages, bytes, error, kind) "
                "VALUES (?,?,?,?,?,?,?) ON CONFLICT(mailbox_id, name) DO UPDATE SET special_use = excluded.special_use, "
                "messages = excluded.messages, bytes = excluded.bytes, error = excluded.error, kind = excluded.kind",
                [(mailbox_id, f["name"], f.get("special_use"), f.get("messages"), f.get("bytes"),
                  redact(f["error"]) if f.get("error") else None, f.get("kind") or "mail") for f in folders])

    def inventory(self, *, source_id: str | None = None) -> list[InventoryRow]:
        """Every mailbox with its latest measurement (None fields where not measured)."""
        sql = ("SELECT m.id, m.source_id, m.email, m.login, m.display_name, m.flags, i.ok, i.error, "
               "i.messages, i.bytes, i.largest, i.oldest, i.newest, i.quota_used, i.quota_limit, "
               "i.folder_errors, i.measured_at FROM mailboxes m LEFT JOIN inventory i ON i.mailbox_id = m.id")
        params: list[Any] = []
        if source_id:
            sql += " WHERE m.source_id = ?"
            params.append(source_id)
        return [InventoryRow(*r[:5], r[5].split(), None if r[6] is None else bool(r[6]), *r[7:])
                for r in self._query(sql + " ORDER BY m.source_id, m.email", params)]

    def inventory_folders(self, mailbox_id: int) -> list[InventoryFolderRow]:
        return [InventoryFolderRow(*r)
                for r in self._query("SELECT name, special_use, messages, bytes, error, kind FROM inventory_folders "
                                     "WHERE mailbox_id = ? ORDER BY kind != 'mail', name", (mailbox_id,))]

    # -- verification -----------------------------------------------------------------------------

    _VERIFY_COLS = ("mailbox_id, verified_at, deep, matches, source_messages, dest_messages, missing, duplicates, "
                    "flag_mismatches, date_mismatches, content_mismatches, folder_problems, error")

    def record_verification(self, mailbox_id: int, *, deep: bool, matches: bool, counts: dict[str, int],
                            error: str | None = None) -> None:
        """A mailbox's verification: it replaces the one before. ``counts``: source_messages, dest_messages,
        missing, duplicates, flag_mismatches, date_mismatches, content_mismatches, folder_problems."""
        keys = ("source_messages", "dest_messages", "missing", "duplicates", "flag_mismatches", "date_mismatches",
                "content_mismatches", "folder_problems")
        values = (mailbox_id, now(), int(deep), int(matches), *(int(counts.get(k, 0)) for k in keys),
                  redact(error) if error else None)
        updates = ", ".join(f"{c.strip()}=excluded.{c.strip()}" for c in self._VERIFY_COLS.split(",")[1:])
        with self.tx() as c:
            c.execute(f"INSERT INTO verifications({self._VERIFY_COLS}) VALUES ({','.join('?' * len(values))}) "
                      f"ON CONFLICT(mailbox_id) DO UPDATE SET {updates}", values)

    def verifications(self) -> dict[int, VerificationRow]:
        """Each verified mailbox's last verification, by mailbox id."""
        rows = self._query(f"SELECT {self._VERIFY_COLS} FROM verifications")
        return {r[0]: VerificationRow(r[0], r[1], bool(r[2]), bool(r[3]), *r[4:]) for r in rows}
