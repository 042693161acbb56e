"""Calendar items and contacts for the lab's EWS responder: a small corpus per mailbox, placed in each mailbox's
Calendar (IPF.Appointment) and Contacts (IPF.Contact) folders, served as Exchange serves them.

Exchange answers a calendar item's MimeContent with iCalendar: a recurring series is one object (the master
VEVENT with RRULE and EXDATE for a deleted occurrence, a VEVENT with RECURRENCE-ID for each modified one, and
the VTIMEZONE they use); FindItem without a CalendarView lists masters and single items only. A contact's
MimeContent is a vCard. The items are ordinary :class:`~tests.lab.ews_store.LabItem`s whose "message" holds
those bytes, so FindItem, GetItem and SyncFolderItems serve them with no code of their own; their ItemClass
(:data:`ITEM_CLASSES`) makes the responder answer them as ``t:CalendarItem`` and ``t:Contact``.

Each mailbox gets: a weekly series in America/Belize (10 occurrences, the 3rd moved and retitled, the 5th
deleted), an all-day event, a one-off meeting with a hostile-looking summary and a UID holding ``/`` and
``..``, and three contacts with hostile-looking names (one without a UID, as some Exchange vCards are).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tests.lab.corpus import CorpusMessage
from tests.lab.ews_store import LabItem, LabStore

#: The ItemClass of the items placed in each kind of folder (the responder answers them as t:CalendarItem
#: and t:Contact: tests.lab.ews.element_for).
ITEM_CLASSES = {"calendar": "IPM.Appointment", "contacts": "IPM.Contact"}

BELIZE = """BEGIN:VTIMEZONE\r
TZID:America/Belize\r
BEGIN:STANDARD\r
DTSTART:19700101T000000\r
TZOFFSETFROM:-0600\r
TZOFFSETTO:-0600\r
TZNAME:CST\r
END:STANDARD\r
END:VTIMEZONE\r
"""


def _calendar(*components: str) -> bytes:
    return ("BEGIN:VCALENDAR\r\nMETHOD:PUBLISH\r\nPRODID:Microsoft Exchange Server 2010\r\nVERSION:2.0\r\n"
            + "".join(components) + "END:VCALENDAR\r\n").encode("utf-8")


def _event(uid: str, summary: str, *lines: str) -> str:
    return ("BEGIN:VEVENT\r\n" + f"UID:{uid}\r\n" + f"SUMMARY;LANGUAGE=en-US:{summary}\r\n"
            + "DTSTAMP:20261101T120000Z\r\n" + "".join(f"{line}\r\n" for line in lines) + "END:VEVENT\r\n")


@dataclass(frozen=True)
class GroupwareObject:
    kind: str          # calendar | contacts
    uid: str | None    # None: a vCard without UID
    raw: bytes


def series(local: str, summary: str = "Cabinet briefing") -> GroupwareObject:
    """A weekly series in Belize time: the 3rd occurrence moved to 14:00 and retitled, the 5th deleted."""
    uid = f"040000008200E00074C5B7101A82E008-{local}-series"
    master = _event(uid, summary, "DTSTART;TZID=America/Belize:20261202T090000",
                    "DTEND;TZID=America/Belize:20261202T100000", "RRULE:FREQ=WEEKLY;COUNT=10;BYDAY=WE",
                    "EXDATE;TZID=America/Belize:20261230T090000", "LOCATION:Room 2\\, Belmopan")
    moved = _event(uid, f"{summary} (moved)", "RECURRENCE-ID;TZID=America/Belize:20261216T090000",
                   "DTSTART;TZID=America/Belize:20261216T140000", "DTEND;TZID=America/Belize:20261216T150000")
    return GroupwareObject("calendar", uid, _calendar(BELIZE, master, moved))


def corpus_for(email: str) -> list[GroupwareObject]:
    local = email.split("@")[0]
    return [
        series(local),
        GroupwareObject("calendar", f"{local}-allday@lab.gov.bz", _calendar(_event(
            f"{local}-allday@lab.gov.bz", "National Heroes and Benefactors Day", "DTSTART;VALUE=DATE:20270309",
            "DTEND;VALUE=DATE:20270310", "TRANSP:TRANSPARENT"))),
        GroupwareObject("calendar", f"../{local}/meeting/../x", _calendar(_event(
            f"../{local}/meeting/../x", "<script>alert(1)</script> =HYPERLINK(\"x\")\\; budget",
            "DTSTART:20261203T150000Z", "DTEND:20261203T160000Z"))),
        GroupwareObject("contacts", f"{local}-c1", (
            "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:" + f"{local}-c1" + "\r\nN:O'Brien;Robert;;;\r\n"
            "FN:Robert O'Brien\r\nEMAIL;TYPE=INTERNET:robert.obrien@health.gov.bz\r\nEND:VCARD\r\n").encode()),
        GroupwareObject("contacts", f"{local}-c2", (
            "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:" + f"{local}-c2" + "\r\nN:=cmd|' /C calc'!A0;<img src=x>;;;\r\n"
            "FN:=cmd|' /C calc'!A0 <img src=x onerror=alert(1)>\r\nTEL;TYPE=WORK:+501 822 0000\r\n"
            "END:VCARD\r\n").encode()),
        GroupwareObject("contacts", None, (
            "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Pérez;José;;;\r\nFN:José Pérez\r\nORG:Ministry of Finance\r\n"
            "END:VCARD\r\n").encode()),
    ]


def add_groupware(store: LabStore) -> dict[str, list[GroupwareObject]]:
    """Give every mailbox of ``store`` its calendar items and contacts; returns them per mailbox."""
    placed = {}
    with store.lock:
        for email, box in store.mailboxes.items():
            objects = corpus_for(email)
            for obj in objects:
                kind = "calendar" if obj.kind == "calendar" else "contacts"
                store._append(box.distinguished[kind], _as_message(obj.raw), (), ITEM_CLASSES[kind])
            placed[email] = objects
    return placed


def _as_message(raw: bytes) -> CorpusMessage:
    return CorpusMessage(raw, (), dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC))


def find(store: LabStore, email: str, kind: str, uid: str) -> LabItem:
    box = store.mailbox(email)
    folder = box.distinguished["calendar" if kind == "calendar" else "contacts"]
    for item in folder.items:
        if f"UID:{uid}\r\n".encode() in item.message.raw:
            return item
    raise KeyError(f"no {kind} item {uid} in {email}")


def change(store: LabStore, email: str, kind: str, uid: str, raw: bytes) -> str:
    """Replace an item's content as an edit in Outlook would (same item id, new change key); returns its id."""
    with store.lock:
        item = find(store, email, kind, uid)
        item.message = _as_message(raw)
        seq = store.next_seq()
        item.changed_seq = item.content_seq = seq
        item.version += 1
        item.folder.touch()
        return item.item_id
