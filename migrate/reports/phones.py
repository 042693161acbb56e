"""The phone inventory for people, from the store: one row per extension (table, JSON, CSV), and the
per-ministry lists of extensions with no user."""

from __future__ import annotations

from typing import Any

from migrate.core.store import ExtensionRow, Store
from migrate.voip.model import line_kind

CSV_COLUMNS = ("source", "dial_plan", "number", "name", "user", "link", "tech", "transport", "callerid",
               "outbound_cid", "voicemail_box", "voicemail_email", "pin", "secret", "dids", "device", "wave", "state",
               "held", "origin")


def phone_rows(store: Store, source_ids: list[str] | None = None) -> list[dict[str, Any]]:
    email_of = {m.id: m.email for m in store.mailboxes()}
    rows = []
    for e in store.extensions():
        if source_ids and e.source_id not in source_ids:
            continue
        rows.append(row(e, email_of.get(e.mailbox_id) if e.mailbox_id else None))
    return rows


def row(e: ExtensionRow, user: str | None) -> dict[str, Any]:
    return {"source": e.source_id, "dial_plan": e.dial_plan, "number": e.number, "name": e.name, "user": user or "",
            "link": e.link or "", "tech": e.tech or "", "transport": e.transport or "", "callerid": e.callerid or "",
            "outbound_cid": e.outbound_cid or "", "voicemail_box": e.voicemail_box or "", "voicemail_email": e.voicemail_email or "",
            "pin": "yes" if e.pin_present else "no", "secret": "yes" if e.secret_present else "no",
            "dids": list(e.dids), "device": e.device or "", "wave": e.wave or "", "state": e.state,
            "held": "; ".join(e.held), "line": line_kind(e.tech),
            "origin": e.origins[0] if e.origins else "", "origins": list(e.origins)}


def unlinked(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per ministry (source), the extensions that belong to no user: reception, rooms, fax."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if not r["user"]:
            out.setdefault(r["source"], []).append(r)
    return out
