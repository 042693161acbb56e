"""Calendars and contacts of an Exchange mailbox: copied to the central DAV server, or exported to files.

Keyed by UID: each calendar object (a single event, or a recurring series with its exceptions and time zones,
as Exchange gives it) and each vCard is written under its UID, and the store keeps UID → EWS item id and
change key. A later pass fetches only items whose change key moved and writes them over the same UID, so a
second pass copies nothing and a changed event is updated in place. Without ``central.dav`` the pass writes
one ``.ics`` and one ``.vcf`` file per user in the workspace's ``groupware/`` directory (0600 from creation,
replaced atomically). Deletions at the source are not carried. iCalendar is read with icalendar and vCard
with vobject; nothing here parses either format by hand.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from migrate.core.errors import ConnectFailed, LoginFailed, RemoteError, TlsFailed, TransientError
from migrate.core.files import write_private
from migrate.core.store import GroupwareRecord, MailboxRow, Store

log = logging.getLogger(__name__)

KINDS = ("calendar", "contacts")
EXPORT_DIR = "groupware"
SUFFIX = {"calendar": ".ics", "contacts": ".vcf"}


class NotGroupware(ValueError):
    """The server's bytes are not a usable iCalendar object or vCard."""


def uid_of(kind: str, raw: bytes) -> str | None:
    """The UID of an iCalendar object (shared by a series and its exceptions) or of a vCard; None if absent.
    Raises :class:`NotGroupware` when the bytes do not parse."""
    if kind == "calendar":
        from icalendar import Calendar

        try:
            cal = Calendar.from_ical(raw)
        except Exception as exc:
            raise NotGroupware(f"not iCalendar ({type(exc).__name__})") from None
        uids = {str(c.get("UID")) for c in cal.walk() if c.name in ("VEVENT", "VTODO", "VJOURNAL") and c.get("UID")}
        if len(uids) > 1:
            raise NotGroupware("one calendar item holds several UIDs")
        return uids.pop() if uids else None
    card = _vcard(raw)
    uid = getattr(card, "uid", None)
    return str(uid.value).strip() or None if uid is not None else None


def _vcard(raw: bytes) -> Any:
    import vobject

    try:
        card = vobject.readOne(raw.decode("utf-8"))
    except Exception as exc:
        raise NotGroupware(f"not a vCard ({type(exc).__name__})") from None
    if card.name != "VCARD":
        raise NotGroupware("not a vCard")
    return card


def with_uid(raw: bytes, uid: str) -> bytes:
    """A vCard given a UID (Exchange's vCards may have none; the EWS item's id makes a stable one)."""
    card = _vcard(raw)
    card.add("uid").value = uid
    return card.serialize().encode("utf-8")


def keyed(kind: str, item_id: str, raw: bytes) -> tuple[str, bytes]:
    """(UID, bytes to write) of a source item: a vCard without UID gets one made from its EWS item id (the
    same on every pass); a calendar item without UID is refused (:class:`NotGroupware`); Exchange's
    ``METHOD:PUBLISH`` is taken out, as a calendar collection's objects must not hold METHOD (RFC 4791 §4.1)."""
    uid = uid_of(kind, raw)
    if kind == "calendar":
        from icalendar import Calendar

        cal = Calendar.from_ical(raw)
        if "METHOD" in cal:
            del cal["METHOD"]
            raw = cal.to_ical()
    if uid is None and kind == "contacts":
        uid = "govmigrate-" + hashlib.sha256(item_id.encode()).hexdigest()[:32]
        raw = with_uid(raw, uid)
    if uid is None:
        raise NotGroupware("the calendar item has no UID")
    return uid, raw


def file_uids(kind: str, path: Path) -> set[str]:
    """The UIDs an export file holds (empty when there is none)."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    if kind == "calendar":
        from icalendar import Calendar

        return {str(c["UID"]) for c in Calendar.from_ical(data).walk() if c.name == "VEVENT" and c.get("UID")}
    import vobject

    return {str(card.uid.value) for card in vobject.readComponents(data.decode("utf-8"))
            if getattr(card, "uid", None) is not None}


def export_path(workspace: Path, email: str, kind: str) -> Path:
    return workspace / EXPORT_DIR / (quote(email.lower(), safe="@._-+") + SUFFIX[kind])


def merged_calendar(objects: list[bytes]) -> bytes:
    """One VCALENDAR holding every object's components, each VTIMEZONE once (by TZID)."""
    from icalendar import Calendar

    out = Calendar()
    out.add("prodid", "-//govmigrate//Exchange calendar export//EN")
    out.add("version", "2.0")
    zones: set[str] = set()
    for raw in objects:
        for component in Calendar.from_ical(raw).subcomponents:
            if component.name == "VTIMEZONE":
                tzid = str(component.get("TZID"))
                if tzid in zones:
                    continue
                zones.add(tzid)
            out.add_component(component)
    return out.to_ical()


@dataclass
class GroupwareReport:
    """One kind (calendar or contacts) of one mailbox in one pass."""

    kind: str
    location: str = ""
    source_items: int = 0
    copied: int = 0           # new UIDs written
    updated: int = 0          # UIDs written again because the item changed at the source
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)   # (item, reason)
    error: str | None = None


@dataclass
class GroupwareCheck:
    """verify's comparison of one kind: UIDs at the source against UIDs at the target."""

    kind: str
    location: str = ""
    source: int = 0
    dest: int = 0
    missing: list[str] = field(default_factory=list)        # UIDs at the source, not at the target
    unexportable: list[str] = field(default_factory=list)   # items the source server cannot export
    error: str | None = None

    @property
    def matches(self) -> bool:
        return not self.missing and self.error is None


def verify_groupware(box: Any, email: str, target: Any, workspace: Path) -> list[GroupwareCheck]:
    """Read every calendar item and contact at the source again and compare their UIDs with the target's."""
    from migrate.mailbox import ews_groupware

    checks = []
    for kind in KINDS:
        check = GroupwareCheck(kind)
        try:
            _folder, listed = ews_groupware.items(box, kind)
            uids: set[str] = set()
            for item_id, answer in ews_groupware.contents(box, [i.item_id for i in listed]) if listed else ():
                if not isinstance(answer, bytes):
                    check.unexportable.append(f"{answer.described}: {answer.reason}")
                    continue
                try:
                    uids.add(keyed(kind, item_id, answer)[0])
                except NotGroupware as exc:
                    check.unexportable.append(f"item {item_id[:16]}…: {exc}")
            check.source = len(uids)
            if target is not None:
                check.location = target.collection(email, kind)
                there = set(target.uids(email, kind) or {})
            else:
                path = export_path(workspace, email, kind)
                check.location = str(path)
                there = file_uids(kind, path)
            check.dest = len(there)
            check.missing = sorted(uids - there)
        except RemoteError as exc:
            check.error = exc.message
        checks.append(check)
    return checks


class GroupwarePass:
    """Calendars and contacts of one EWS mailbox into the DAV target (or the export files)."""

    def __init__(self, store: Store, mailbox: MailboxRow, box: Any, target: Any, workspace: Path) -> None:
        self.store = store
        self.mailbox = mailbox
        self.box = box
        self.target = target
        self.workspace = workspace

    def run(self) -> list[GroupwareReport]:
        reports = []
        for kind in KINDS:
            report = GroupwareReport(kind)
            try:
                self._kind(kind, report)
            except (LoginFailed, ConnectFailed, TlsFailed, TransientError):
                raise                   # the mailbox's retries (or its failure) handle these
            except RemoteError as exc:  # this folder or collection only: the other kind still goes
                report.error = exc.message
            reports.append(report)
        return reports

    def _kind(self, kind: str, report: GroupwareReport) -> None:
        from migrate.mailbox import ews_groupware

        folder, listed = ews_groupware.items(self.box, kind)
        report.source_items = len(listed)
        records = self.store.groupware_records(self.mailbox.id, kind)
        by_item = {r.src_item: r for r in records.values()}
        if self.target is not None:
            report.location = self.target.collection(self.mailbox.email, kind)
            todo = [i for i in listed if not self._current(by_item.get(i.item_id), i.change_key)]
            report.unchanged = len(listed) - len(todo)
        else:
            path = export_path(self.workspace, self.mailbox.email, kind)
            report.location = str(path)
            stale = [i for i in listed if not self._current(by_item.get(i.item_id), i.change_key)]
            # The file holds every object, so any change (or a missing file) means writing it whole again.
            todo = listed if stale or (listed and not path.exists()) else []
            report.unchanged = len(listed) - len(stale)
        change_keys = {i.item_id: i.change_key for i in listed}
        written: list[tuple[str, bytes, str]] = []   # (uid, bytes, item id)
        rows: list[GroupwareRecord] = []
        for item_id, answer in ews_groupware.contents(self.box, [i.item_id for i in todo]) if todo else ():
            if not isinstance(answer, bytes):
                report.failed.append((answer.described, answer.reason))
                rows.append(GroupwareRecord(kind, f"ews:{item_id}", item_id, change_keys[item_id], None, None,
                                            "failed", answer.reason))
                continue
            try:
                uid, answer = keyed(kind, item_id, answer)
            except NotGroupware as exc:
                report.failed.append((f"item {item_id[:16]}…", str(exc)))
                rows.append(GroupwareRecord(kind, f"ews:{item_id}", item_id, change_keys[item_id], None, None,
                                            "failed", str(exc)))
                continue
            written.append((uid, answer, item_id))
        if self.target is not None:
            for uid, data, item_id in written:
                try:
                    done = self.target.put(self.mailbox.email, kind, uid, data)
                except (LoginFailed, ConnectFailed, TlsFailed, TransientError):
                    raise
                except RemoteError as exc:      # the server refused this object: the others still go
                    report.failed.append((f"UID {uid}", exc.message))
                    self.store.record_groupware_items(self.mailbox.id, [GroupwareRecord(
                        kind, uid, item_id, change_keys[item_id], None, None, "failed", exc.message)])
                    continue
                record = records.get(uid)
                if record is not None and record.state == "copied":
                    report.updated += 1
                else:
                    report.copied += 1
                # Stored per object: a pass stopped half-way keeps what it wrote.
                self.store.record_groupware_items(self.mailbox.id, [GroupwareRecord(
                    kind, uid, item_id, change_keys[item_id], done.href, done.etag, "copied", None)])
        elif written:
            data = merged_calendar([d for _u, d, _i in written]) if kind == "calendar" else \
                b"".join(d if d.endswith(b"\n") else d + b"\r\n" for _u, d, _i in written)
            write_private(export_path(self.workspace, self.mailbox.email, kind), data)
            for uid, _data, item_id in written:
                record = records.get(uid)
                if record is None or record.state != "copied":
                    report.copied += 1
                elif record.change_key != change_keys[item_id]:
                    report.updated += 1
                rows.append(GroupwareRecord(kind, uid, item_id, change_keys[item_id], None, None, "copied", None))
        if rows:
            self.store.record_groupware_items(self.mailbox.id, rows)
        if folder is not None or records:
            self.store.record_groupware_pass(self.mailbox.id, kind, location=report.location,
                                             source_items=report.source_items)

    @staticmethod
    def _current(record: GroupwareRecord | None, change_key: str) -> bool:
        return record is not None and record.state == "copied" and record.change_key == change_key
