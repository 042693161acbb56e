"""Mail rules, out-of-office replies, shared folders and delegates: what the inventory found of them and what
each sync did with them (one row each, :class:`~migrate.core.store.rows.SettingRow`)."""

from __future__ import annotations

from collections.abc import Iterable

from migrate.core.secrets import redact
from migrate.core.store.base import StoreBase
from migrate.core.store.rows import SettingRow, now

PHASES = ("inventory", "sync")
KINDS = ("rule", "vacation", "sharing", "delegate")


class SettingsStore(StoreBase):
    def record_settings(self, mailbox_id: int, phase: str, kinds: Iterable[str], rows: Iterable[SettingRow], *,
                        complete: bool = False) -> None:
        """Replace what is kept of ``kinds`` for the mailbox in ``phase`` with ``rows`` (one transaction): a
        rule deleted at the source since the last pass is gone from the record too. A sync says whether it read
        and carried every kind without a failure (``complete``): the mailbox's ``settings_read_at`` is then now,
        otherwise cleared, so the next pass reads them again whatever the interval."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        kinds, rows = list(kinds), list(rows)
        stamp = now()
        with self.tx() as c:
            c.executemany("DELETE FROM mailbox_settings WHERE mailbox_id = ? AND phase = ? AND kind = ?",
                          [(mailbox_id, phase, kind) for kind in kinds])
            c.executemany(
                "INSERT INTO mailbox_settings(mailbox_id, phase, kind, name, state, reason, target, digest, "
                "updated_at) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(mailbox_id, phase, kind, name) DO UPDATE SET "
                "state = excluded.state, reason = excluded.reason, target = excluded.target, "
                "digest = excluded.digest, updated_at = excluded.updated_at",
                [(mailbox_id, phase, r.kind, r.name, r.state, redact(r.reason), r.target, r.digest, stamp)
                 for r in rows])
            if phase == "sync":
                c.execute("UPDATE mailboxes SET settings_read_at = ? WHERE id = ?",
                          (stamp if complete else None, mailbox_id))

    def settings(self, mailbox_id: int | None = None, phase: str | None = None) -> list[SettingRow]:
        """The rows kept, by mailbox, phase, kind and name (all mailboxes without ``mailbox_id``)."""
        sql = ("SELECT mailbox_id, phase, kind, name, state, reason, target, digest, updated_at FROM mailbox_settings "
               "WHERE 1=1")
        params: list = []
        if mailbox_id is not None:
            sql += " AND mailbox_id = ?"
            params.append(mailbox_id)
        if phase is not None:
            sql += " AND phase = ?"
            params.append(phase)
        return [SettingRow(*r) for r in self._query(sql + " ORDER BY mailbox_id, phase, kind, name", params)]
