"""The inventory as people read it: per-ministry sections with probe findings, mailbox rows and totals.

Built from the state store only (never from the servers), so ``inventory show`` and the end of
``inventory mail`` print the same thing. Rendering to a terminal table is the CLI's job; this module
gives it rows, totals, probe summary lines, and the JSON and CSV shapes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from migrate.core.store import MIGRATED_KINDS, InventoryFolderRow, InventoryRow, ProbeRow, Store

#: CSV columns, one row per mailbox (``--folders``: one row per folder, with FOLDER_CSV_COLUMNS).
CSV_COLUMNS = ("source", "ministry", "email", "login", "display_name", "flags", "status", "error", "folders",
               "folder_errors", "messages", "bytes", "largest", "oldest", "newest", "quota_used",
               "quota_limit", "archive_items", "calendar_items", "contacts", "tasks", "not_migrated_items",
               "measured_at")
FOLDER_CSV_COLUMNS = ("source", "email", "folder", "kind", "special_use", "messages", "bytes", "error")
#: What the inventory counts per Exchange mailbox besides mail: folder kind → the figure it adds to.
KIND_FIGURES = {"archive": "archive_items", "calendar": "calendar_items", "contacts": "contacts", "tasks": "tasks", "system": "not_migrated_items",
                "other": "not_migrated_items"}
#: The capabilities a sysadmin looks for first, in the words the issue uses.
KEY_CAPABILITIES = ("IMAP4REV1", "IMAP4REV2", "UIDPLUS", "LITERAL+", "MULTIAPPEND", "SPECIAL-USE", "NAMESPACE",
                    "STATUS=SIZE", "QUOTA", "ID", "CONDSTORE", "QRESYNC", "COMPRESS=DEFLATE")


@dataclass
class MailboxLine:
    """One mailbox's latest measurement; ``status`` is ok, failed, incomplete or not measured."""

    email: str
    login: str
    display_name: str
    flags: list[str]
    status: str
    error: str | None
    folders: int | None
    folder_errors: int
    messages: int | None
    bytes: int | None
    largest: int | None
    oldest: str | None
    newest: str | None
    quota_used: int | None
    quota_limit: int | None
    measured_at: str | None
    folder_list: list[InventoryFolderRow] = field(default_factory=list)
    #: Exchange only: items in calendars, contacts and tasks folders, and in folders not migrated (Outbox,
    #: Sync Issues, RSS Feeds, Recoverable Items); 0 for IMAP sources.
    archive_items: int = 0          # in the archive mailbox; moved with the mail (counted in messages too)
    calendar_items: int = 0
    contacts: int = 0
    tasks: int = 0
    not_migrated_items: int = 0

    def as_dict(self, *, with_folders: bool = True) -> dict[str, Any]:
        doc = {k: getattr(self, k) for k in ("email", "login", "display_name", "flags", "status", "error",
                                             "folders", "folder_errors", "messages", "bytes", "largest", "oldest",
                                             "newest", "quota_used", "quota_limit", "archive_items",
                                             "calendar_items", "contacts",
                                             "tasks", "not_migrated_items", "measured_at")}
        if with_folders:
            doc["folder_list"] = [asdict(f) for f in self.folder_list]
        return doc


@dataclass
class Totals:
    mailboxes: int = 0
    measured: int = 0
    failed: int = 0
    folders: int = 0
    messages: int = 0
    bytes: int = 0
    largest: int | None = None
    oldest: str | None = None
    newest: str | None = None
    quota_used: int = 0
    archive_items: int = 0
    calendar_items: int = 0
    contacts: int = 0
    tasks: int = 0
    not_migrated_items: int = 0

    def add(self, line: MailboxLine) -> None:
        self.mailboxes += 1
        if line.status == "ok":
            self.measured += 1
        elif line.status in ("failed", "incomplete"):
            self.failed += 1
        self.folders += line.folders or 0
        self.messages += line.messages or 0
        self.bytes += line.bytes or 0
        self.quota_used += line.quota_used or 0
        for figure in set(KIND_FIGURES.values()):
            setattr(self, figure, getattr(self, figure) + getattr(line, figure))
        if line.largest is not None and (self.largest is None or line.largest > self.largest):
            self.largest = line.largest
        # ISO 8601 UTC text sorts as time does.
        if line.oldest and (self.oldest is None or line.oldest < self.oldest):
            self.oldest = line.oldest
        if line.newest and (self.newest is None or line.newest > self.newest):
            self.newest = line.newest

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SourceSection:
    """One ministry: its server probe, its mailboxes and their totals."""

    id: str
    ministry: str
    kind: str
    probe: ProbeRow | None
    mailboxes: list[MailboxLine]
    totals: Totals

    def as_dict(self, *, with_folders: bool = True) -> dict[str, Any]:
        return {"id": self.id, "ministry": self.ministry, "kind": self.kind,
                "probe": asdict(self.probe) if self.probe is not None else None,
                "mailboxes": [m.as_dict(with_folders=with_folders) for m in self.mailboxes],
                "totals": self.totals.as_dict()}


def _status(row: InventoryRow) -> str:
    if row.ok is None:
        return "not measured"
    if row.ok:
        return "ok"
    if row.messages is not None:
        return "incomplete"  # measured, but some folders failed
    return "failed"


def load_inventory(store: Store, source_ids: list[str] | None = None) -> list[SourceSection]:
    """Every source the store knows (or those named), with the latest probe and measurements."""
    sections = []
    for src in store.sources():
        if source_ids and src.id not in source_ids:
            continue
        lines = []
        totals = Totals()
        for row in store.inventory(source_id=src.id):
            folder_list = store.inventory_folders(row.mailbox_id) if row.ok is not None else []
            mail = [f for f in folder_list if f.kind in MIGRATED_KINDS]
            line = MailboxLine(
                email=row.email, login=row.login, display_name=row.display_name, flags=row.flags,
                status=_status(row), error=row.error,
                folders=len(mail) if row.ok is not None and mail else None,
                folder_errors=row.folder_errors or 0, messages=row.messages, bytes=row.bytes,
                largest=row.largest, oldest=row.oldest, newest=row.newest, quota_used=row.quota_used,
                quota_limit=row.quota_limit, measured_at=row.measured_at, folder_list=folder_list)
            for f in folder_list:
                if f.kind in KIND_FIGURES and not f.error:
                    figure = KIND_FIGURES[f.kind]
                    setattr(line, figure, getattr(line, figure) + (f.messages or 0))
            lines.append(line)
            totals.add(line)
        sections.append(SourceSection(src.id, src.ministry, src.kind, store.probe(src.id), lines, totals))
    return sections


def grand_totals(sections: list[SourceSection]) -> Totals:
    totals = Totals()
    for section in sections:
        for line in section.mailboxes:
            totals.add(line)
    return totals


def as_json(sections: list[SourceSection], *, with_folders: bool = True) -> dict[str, Any]:
    return {"sources": [s.as_dict(with_folders=with_folders) for s in sections],
            "totals": grand_totals(sections).as_dict()}


def csv_rows(sections: list[SourceSection]) -> list[dict[str, Any]]:
    rows = []
    for section in sections:
        for line in section.mailboxes:
            row = line.as_dict(with_folders=False)
            row.update(source=section.id, ministry=section.ministry)
            rows.append(row)
    return rows


def folder_csv_rows(sections: list[SourceSection]) -> list[dict[str, Any]]:
    rows = []
    for section in sections:
        for line in section.mailboxes:
            for folder in line.folder_list:
                rows.append({"source": section.id, "email": line.email, "folder": folder.name,
                             "kind": folder.kind, "special_use": folder.special_use, "messages": folder.messages,
                             "bytes": folder.bytes, "error": folder.error})
    return rows


def probe_lines(probe: ProbeRow | None) -> list[str]:
    """The probe's findings as short lines for a person: server, TLS, software, capabilities, login."""
    if probe is None:
        return ["not probed yet: run govmigrate inventory mail"]
    d = probe.detail or {}
    lines = []
    where = d.get("endpoint") or "?"
    if d.get("kind") == "imap":
        where += f" (IMAP, TLS {d.get('tls_mode', '?')})"
    elif d.get("kind") == "ews":
        where += " (EWS)"
    reach = d.get("reachable")
    lines.append(f"server: {where}: " + ("reachable" if reach else "unreachable" if reach is False else "?")
                 + (f", probed {probe.probed_at}" if probe.probed_at else ""))
    tls = d.get("tls")
    if isinstance(tls, dict):
        lines.append(_tls_line(tls, d))
    if d.get("software"):
        lines.append(f"software: {d['software']}")
    if d.get("version"):
        lines.append(f"server version: {d['version']}")
    caps = d.get("migration_capabilities")
    if caps:
        have = [c for c in KEY_CAPABILITIES if caps.get(c)]
        missing = [c for c in KEY_CAPABILITIES if c in caps and not caps.get(c)]
        lines.append("capabilities: " + (" ".join(have) or "none of note")
                     + (f"; missing: {' '.join(missing)}" if missing else ""))
    elif d.get("capabilities_before_login"):
        lines.append("capabilities (before login): " + " ".join(
            c for c in d["capabilities_before_login"] if c in KEY_CAPABILITIES or c.startswith("AUTH=")))
    if "separator" in d:
        lines.append(f"folders: hierarchy separator {d['separator']!r}, personal namespace prefix "
                     f"{d.get('prefix', '')!r}")
    login = d.get("login")
    if isinstance(login, dict):
        lines.append(_login_line(login))
    if not probe.ok and probe.error:
        lines.append(f"problem: {probe.error}")
    return lines


def _tls_line(tls: dict[str, Any], detail: dict[str, Any]) -> str:
    if tls.get("tls") is False:
        return "TLS: none (credentials travel in clear text)"
    if tls.get("tls") is None:
        return f"TLS: {tls.get('error') or tls.get('verify_error') or 'failed'}"
    parts = [f"TLS: {tls.get('version', '?')}"]
    if tls.get("subject"):
        parts.append(f"certificate {tls['subject']} issued by {tls.get('issuer', '?')}"
                     + (" (self-signed)" if tls.get("self_signed") else ""))
    if tls.get("not_after"):
        days = tls.get("days_left")
        parts.append(f"expires {tls['not_after'][:10]}"
                     + (f" (expired {-days} days ago)" if isinstance(days, int) and days < 0
                        else f" ({days} days left)" if isinstance(days, int) else ""))
    if "name_match" in tls:
        parts.append("name matches" if tls["name_match"] else "name does NOT match the host")
    if tls.get("verified"):
        parts.append("verified")
    elif tls.get("verify_error"):
        verdict = tls["verify_error"]
        parts.append(f"refused: {verdict}" if detail.get("verify_certificate", True)
                     else f"not verified (verify_certificate: false); a check would say: {verdict}")
    elif tls.get("verified") is False:
        parts.append("not verified (verify_certificate: false)")
    return ", ".join(parts)


def _login_line(login: dict[str, Any]) -> str:
    method = login.get("method", "?")
    who = f" as {login['admin_user']}" if login.get("admin_user") else ""
    if login.get("ok"):
        text = f"login: {method}{who}: works"
    elif login.get("ok") is None:
        text = f"login: {method}{who}: {login.get('error') or 'not tested'}"
    else:
        text = f"login: {method}{who}: refused ({login.get('error')})"
    alt = login.get("alternative")
    if isinstance(alt, dict):
        text += f"; {alt.get('method')}: " + ("works" if alt.get("ok") else "refused too")
    return text
