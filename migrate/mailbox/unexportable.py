"""What a source server cannot give: kept apart from :mod:`migrate.mailbox.ews` so the sync engine and verify can
name it without importing exchangelib (half a second at every start of the command line)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Unreadable:
    """An item the server cannot give as MIME (a meeting request or S/MIME item Exchange cannot convert, a
    corrupt item, an item with no MimeContent): recorded as failed with this reason, never copied, and the
    folder goes on. ``described`` names it for people: subject, date received and size, where the server
    still gives them."""

    reason: str
    described: str
