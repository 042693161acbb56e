"""Calendar items and contacts of an Exchange mailbox, beside the mail that :mod:`migrate.mailbox.ews` reads.

Exchange gives a calendar item's MimeContent as iCalendar (a recurring series as one object: the master with
its RRULE and EXDATEs, each modified occurrence as a VEVENT with RECURRENCE-ID, and the VTIMEZONEs they
use) and, from Exchange 2010 SP1 on, a contact's as a vCard. A FindItem on the calendar folder without a
CalendarView lists single items and series masters, never the expanded occurrences, which is what a copy
needs. Listing and fetching reuse :class:`~migrate.mailbox.ews.EwsMailbox` (paging, retries, failures).
"""

from __future__ import annotations

from collections.abc import Iterator

from exchangelib.items import ID_ONLY

from migrate.mailbox.ews import (
    TNS,
    EwsItem,
    EwsMailbox,
    Unreadable,
    _distinguished,
    _RawGetFolder,
)

#: Our name for each kind → the distinguished folder id Exchange keeps it in.
FOLDERS = {"calendar": "calendar", "contacts": "contacts"}


def folder_id(box: EwsMailbox, kind: str) -> str | None:
    """The id of the mailbox's default calendar or contacts folder; None when it has none."""
    from exchangelib import errors as ews_errors

    def call() -> list:
        return list(_RawGetFolder(account=box.account).call(
            folders=[_distinguished(FOLDERS[kind], box.email)], additional_fields=[], shape=ID_ONLY))

    elems = box._call(f"open the {kind} folder", call)
    elem = elems[0] if elems else None
    if isinstance(elem, (ews_errors.ErrorFolderNotFound, ews_errors.ErrorItemNotFound)) or elem is None:
        return None
    box._raise_if_error(elem)
    return elem.find(f"{{{TNS}}}FolderId").get("Id")


def items(box: EwsMailbox, kind: str) -> tuple[str | None, list[EwsItem]]:
    """The folder id and every item (id and change key) of the mailbox's calendar or contacts."""
    found = folder_id(box, kind)
    return found, (list(box.items(found)) if found else [])


def contents(box: EwsMailbox, item_ids: list[str]) -> Iterator[tuple[str, bytes | Unreadable]]:
    """(item id, iCalendar or vCard bytes, or why the server cannot export it)."""
    return box.mime(item_ids)
