"""PBX extensions and the SIP checks of the hosted platform."""

from __future__ import annotations

import json
from typing import Any

from migrate.core.errors import StoreError
from migrate.core.secrets import redact
from migrate.core.store.base import Row, StoreBase
from migrate.core.store.rows import (
    ExtensionRow,
    KeptSecretRow,
    SipCheckRow,
    now,
)


class PhoneStore(StoreBase):
    _EXT_COLS = ("id, source_id, dial_plan, number, name, tech, transport, callerid, outbound_cid, voicemail_box, "
                 "voicemail_email, pin_present, secret_present, dids, device, origins, extra, mailbox_id, link, "
                 "wave, state, state_reason, prior_state, seen_at, held")

    @staticmethod
    def _extension(row: Row) -> ExtensionRow:
        values = list(row)
        values[11], values[12] = bool(values[11]), bool(values[12])
        for i in (13, 15, 16, 24):
            values[i] = json.loads(values[i])
        return ExtensionRow(*values)

    def upsert_extension(self, ext: Any, *, seen_at: str) -> int:
        """Record an extension as an inventory read it (a ``migrate.voip.model.Extension``); its link, wave and
        lifecycle state are left as they are. Returns its id."""
        with self.tx() as c:
            c.execute(
                "INSERT INTO extensions(source_id, dial_plan, number, name, tech, transport, callerid, outbound_cid, "
                "voicemail_box, voicemail_email, pin_present, secret_present, dids, device, origins, extra, seen_at, "
                "updated_at, held) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(dial_plan, number) DO UPDATE SET "
                "source_id=excluded.source_id, name=excluded.name, tech=excluded.tech, transport=excluded.transport, "
                "callerid=excluded.callerid, outbound_cid=excluded.outbound_cid, voicemail_box=excluded.voicemail_box, "
                "voicemail_email=excluded.voicemail_email, pin_present=excluded.pin_present, "
                "secret_present=excluded.secret_present, dids=excluded.dids, device=excluded.device, "
                "origins=excluded.origins, extra=excluded.extra, seen_at=excluded.seen_at, "
                "updated_at=excluded.updated_at, held=excluded.held",
                (ext.source_id, ext.dial_plan, ext.number, ext.name, ext.tech, ext.transport, ext.callerid,
                 ext.outbound_cid, ext.voicemail_box, ext.voicemail_email, int(ext.voicemail_pin is not None),
                 int(ext.secret is not None), json.dumps(ext.dids), ext.device, json.dumps(ext.origins),
                 json.dumps(ext.extra, sort_keys=True), seen_at, now(), json.dumps(list(ext.held))))
            return c.execute("SELECT id FROM extensions WHERE dial_plan = ? AND number = ?",
                             (ext.dial_plan, ext.number)).fetchone()[0]

    def extensions(self, *, source_id: str | None = None, wave: str | None = None,
                   mailbox_id: int | None = None) -> list[ExtensionRow]:
        sql = f"SELECT {self._EXT_COLS} FROM extensions WHERE 1=1"
        params: list[Any] = []
        for column, value in (("source_id", source_id), ("wave", wave), ("mailbox_id", mailbox_id)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        return [self._extension(r) for r in self._query(sql + " ORDER BY dial_plan, number", params)]

    def extension(self, key: str) -> ExtensionRow | None:
        dial_plan, _, number = key.partition(":")
        rows = self._query(f"SELECT {self._EXT_COLS} FROM extensions WHERE dial_plan = ? AND number = ?",
                           (dial_plan, number))
        return self._extension(rows[0]) if rows else None

    def link_extension(self, extension_id: int, mailbox_id: int | None, link: str | None) -> None:
        with self.tx() as c:
            c.execute("UPDATE extensions SET mailbox_id = ?, link = ?, updated_at = ? WHERE id = ?",
                      (mailbox_id, link, now(), extension_id))

    def set_extension_wave(self, extension_id: int, wave: str | None) -> None:
        with self.tx() as c:
            c.execute("UPDATE extensions SET wave = ?, updated_at = ? WHERE id = ?", (wave, now(), extension_id))

    def set_extension_state(self, extension_id: int, state: str, reason: str | None = None, *,
                            prior_state: str | None = None) -> None:
        """Change an extension's lifecycle state; an event ``extension/<dial plan>:<number>`` records it."""
        reason = redact(reason) if reason else reason
        with self.tx() as c:
            row = c.execute("SELECT dial_plan, number, state FROM extensions WHERE id = ?", (extension_id,)).fetchone()
            if row is None:
                raise StoreError(f"no extension with id {extension_id}")
            c.execute("UPDATE extensions SET state = ?, state_reason = ?, prior_state = ?, updated_at = ? "
                      "WHERE id = ?", (state, reason, prior_state, now(), extension_id))
            if row[2] != state:
                self.add_event(f"extension/{row[0]}:{row[1]}", "state",
                               f"{row[2]} -> {state}" + (f": {reason}" if reason else ""))

    def extension_secret_file(self, extension_id: int) -> str | None:
        """The 0600 file an export made before the secrets were kept (schema 6) wrote its new secret to."""
        rows = self._query("SELECT secret_file FROM extensions WHERE id = ?", (extension_id,))
        return rows[0][0] if rows else None

    # -- kept secrets (sealed) --------------------------------------------------------------------

    def kept_secrets(self, keys: list[str] | None = None) -> dict[str, dict[str, KeptSecretRow]]:
        """extension key → state (pending, current) → its sealed secrets; all extensions' when ``keys`` is None."""
        rows = self._query("SELECT extension, state, generation, sip_secret, pin, key_id, made_at FROM phone_secrets "
                           "ORDER BY extension, state", ())
        wanted = set(keys) if keys is not None else None
        out: dict[str, dict[str, KeptSecretRow]] = {}
        for row in rows:
            if wanted is None or row[0] in wanted:
                out.setdefault(row[0], {})[row[1]] = KeptSecretRow(*row)
        return out

    def keep_pending_secrets(self, rows: list[KeptSecretRow]) -> None:
        """Keep sealed secrets an export made, before its files are written (state pending), in one transaction."""
        with self.tx() as c:
            for r in rows:
                c.execute("INSERT INTO phone_secrets(extension, state, generation, sip_secret, pin, key_id, made_at) "
                          "VALUES (?, 'pending', ?, ?, ?, ?, ?) ON CONFLICT (extension, state) DO UPDATE SET "
                          "generation=excluded.generation, sip_secret=excluded.sip_secret, pin=excluded.pin, "
                          "key_id=excluded.key_id, made_at=excluded.made_at",
                          (r.extension, r.generation, r.sip_secret, r.pin, r.key_id, r.made_at))

    def promote_secrets(self, keys: list[str]) -> None:
        """The export's files are written: each pending set becomes the current one (the one the platform has),
        and the files an export made before secrets were kept are no longer read. One transaction."""
        with self.tx() as c:
            for key in keys:
                pending = c.execute("SELECT 1 FROM phone_secrets WHERE extension = ? AND state = 'pending'",
                                    (key,)).fetchone()
                if pending is not None:
                    c.execute("DELETE FROM phone_secrets WHERE extension = ? AND state = 'current'", (key,))
                    c.execute("UPDATE phone_secrets SET state = 'current' WHERE extension = ? AND state = 'pending'",
                              (key,))
                dial_plan, _, number = key.partition(":")
                c.execute("UPDATE extensions SET secret_file = NULL WHERE dial_plan = ? AND number = ?",
                          (dial_plan, number))

    # -- SIP checks -------------------------------------------------------------------------------

    def record_sip_check(self, *, run_id: int | None, wave: str | None, subject: str, kind: str, result: str,
                         detail: str, data: dict[str, Any] | None = None, event_obj: str | None = None) -> None:
        """Store one check's result, and the event that says it (on ``event_obj``, default ``sip/<subject>``)."""
        detail = redact(detail)
        with self.tx() as c:
            c.execute("INSERT INTO sip_checks(run_id, wave, subject, kind, result, detail, data, checked_at) "
                      "VALUES (?,?,?,?,?,?,?,?)",
                      (run_id, wave, subject, kind, result, detail, json.dumps(data or {}, sort_keys=True), now()))
            self.add_event(event_obj or f"sip/{subject}", f"sip-{kind}", f"{result}: {detail}")

    def sip_checks(self, *, wave: str | None = None, subject: str | None = None,
                   latest: bool = True) -> list[SipCheckRow]:
        """Stored check results, oldest first; ``latest``: only the newest per subject and kind."""
        sql = "SELECT id, run_id, wave, subject, kind, result, detail, data, checked_at FROM sip_checks WHERE 1=1"
        params: list[Any] = []
        for column, value in (("wave", wave), ("subject", subject)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        if latest:
            sql += " AND id IN (SELECT MAX(id) FROM sip_checks GROUP BY subject, kind)"
        rows = self._query(sql + " ORDER BY id", params)
        return [SipCheckRow(*r[:7], json.loads(r[7]), r[8]) for r in rows]

    def forget_extensions(self, source_id: str, *, unseen_since: str) -> list[str]:
        """Drop the source's extensions that the last inventory no longer read and that nothing has happened
        to yet (state new); returns their keys. Extensions already planned or further stay (and are reported)."""
        with self.tx() as c:
            rows = c.execute("SELECT id, dial_plan, number FROM extensions WHERE source_id = ? AND seen_at < ? "
                             "AND state = 'new'", (source_id, unseen_since)).fetchall()
            c.executemany("DELETE FROM extensions WHERE id = ?", [(r[0],) for r in rows])
        return [f"{r[1]}:{r[2]}" for r in rows]
