"""What an inventory measures: a server's probe, and each mailbox's folders, counts, sizes and extremes.

The records the protocol readers (``inventory_imap``, ``inventory_ews``) produce and ``inventory`` records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from migrate.core.store import MIGRATED_KINDS


def iso(when: datetime | None) -> str | None:
    """UTC timestamp text as the state store keeps it."""
    if when is None:
        return None
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class FolderMeasurement:
    """One folder of one mailbox: its count and size, or why it could not be measured."""

    name: str
    special_use: str | None = None
    messages: int | None = None
    bytes: int | None = None
    error: str | None = None
    #: mail (migrated) | archive (the archive mailbox's mail, migrated) | calendar | contacts | tasks | system |
    #: other: Exchange folders that are not moved as mail are counted too (see migrate.mailbox.ews.SYSTEM_FOLDERS);
    #: IMAP folders are all mail.
    kind: str = "mail"

    def as_record(self) -> dict[str, Any]:
        return {"name": self.name, "special_use": self.special_use, "messages": self.messages,
                "bytes": self.bytes, "error": self.error, "kind": self.kind}


@dataclass
class Extremes:
    """Running largest message and oldest/newest date over every message seen in a mailbox."""

    largest: int | None = None
    oldest: datetime | None = None
    newest: datetime | None = None

    def add(self, size: int | None, when: datetime | None) -> None:
        if size is not None and (self.largest is None or size > self.largest):
            self.largest = size
        if when is not None:
            if self.oldest is None or when < self.oldest:
                self.oldest = when
            if self.newest is None or when > self.newest:
                self.newest = when


@dataclass
class MailboxMeasurement:
    """What one mailbox holds, or why it could not be measured. ``ok`` means measured completely."""

    email: str
    ok: bool
    error: str | None = None
    messages: int | None = None
    bytes: int | None = None
    largest: int | None = None
    oldest: datetime | None = None
    newest: datetime | None = None
    quota_used: int | None = None
    quota_limit: int | None = None
    folders: list[FolderMeasurement] = field(default_factory=list)
    #: Mail rules, out-of-office, shared folders and delegates (migrate.mailbox.settings.Item); None: not read.
    settings: list | None = None

    @classmethod
    def failed(cls, email: str, reason: str) -> MailboxMeasurement:
        return cls(email=email, ok=False, error=reason)

    @classmethod
    def from_folders(cls, email: str, folders: list[FolderMeasurement], extremes: Extremes,
                     quota: tuple[int, int] | None) -> MailboxMeasurement:
        """Totals over the folders that could be measured; a folder that failed makes it incomplete."""
        broken = [f for f in folders if f.error]
        error = None
        if broken:
            error = (f"{len(broken)} folder{'s' if len(broken) != 1 else ''} could not be measured: "
                     + "; ".join(f"{f.name}: {f.error}" for f in broken[:3])
                     + (" ..." if len(broken) > 3 else ""))
        mail = [f for f in folders if f.kind in MIGRATED_KINDS and not f.error]
        return cls(email=email, ok=not broken, error=error,
                   messages=sum(f.messages or 0 for f in mail), bytes=sum(f.bytes or 0 for f in mail),
                   largest=extremes.largest, oldest=extremes.oldest, newest=extremes.newest,
                   quota_used=quota[0] if quota else None, quota_limit=quota[1] if quota else None,
                   folders=folders)

    @property
    def folder_errors(self) -> int:
        return sum(1 for f in self.folders if f.error)


@dataclass
class SourceProbe:
    """What the probe learnt about one server. ``blocked`` says why its mailboxes were not measured at all."""

    source_id: str
    ok: bool
    error: str | None
    detail: dict[str, Any]
    blocked: str | None = None
