"""The event log: append-only, who did what to which object and when."""

from __future__ import annotations

from typing import Any

from migrate.core.secrets import redact
from migrate.core.store.base import StoreBase
from migrate.core.store.rows import (
    Event,
    actor,
    now,
)


class EventStore(StoreBase):
    def add_event(self, obj: str, action: str, detail: str = "", *, who: str | None = None) -> None:
        with self.tx() as c:
            c.execute("INSERT INTO events(at, actor, object, action, detail) VALUES (?,?,?,?,?)",
                      (now(), who or actor(), obj, action, redact(detail)))

    def events(self, *, obj: str | None = None, since: str | None = None, limit: int | None = None,
               newest_first: bool = False) -> list[Event]:
        sql = "SELECT id, at, actor, object, action, detail FROM events WHERE 1=1"
        params: list[Any] = []
        if obj:
            sql += " AND (object = ? OR object LIKE ?)"
            params += [obj, f"{obj}/%"]
        if since:
            sql += " AND at >= ?"
            params.append(since)
        sql += " ORDER BY id DESC" if newest_first or limit else " ORDER BY id"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        rows = [Event(*r) for r in self._query(sql, params)]
        if limit and not newest_first:
            rows.reverse()
        return rows
