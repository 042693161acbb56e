"""Every mailbox the state store knows, with what planning needs: ministry, domain, flags, size, state.

Read once per command from the store (user lists, inventory, sync records), so the planner, the plan
checks and the reports see one consistent picture.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from migrate.core.config import Project
from migrate.core.store import MailboxRow, Store


@dataclass(frozen=True)
class MailboxInfo:
    row: MailboxRow
    ministry: str
    #: The inventory's verdict: True measured completely, False failed or incomplete, None not measured.
    measured: bool | None
    inventory_error: str | None
    inventory_messages: int | None
    inventory_bytes: int | None
    #: Mail rules, out-of-office, shared folders and delegates the inventory found: state (to-move,
    #: cannot-move, unknown) → how many.
    settings: dict[str, int] = field(default_factory=dict)

    @property
    def email(self) -> str:
        return self.row.email

    @property
    def source_id(self) -> str:
        return self.row.source_id

    @property
    def domain(self) -> str:
        return self.row.email.rsplit("@", 1)[1].lower()

    @property
    def flags(self) -> frozenset[str]:
        return self.row.flags

    @property
    def size(self) -> int | None:
        """Bytes at the source as last seen: the last sync's count, else the inventory's."""
        if self.row.last_sync_at and self.row.src_bytes is not None:
            return self.row.src_bytes
        return self.inventory_bytes

    @property
    def messages(self) -> int | None:
        if self.row.last_sync_at and self.row.src_messages is not None:
            return self.row.src_messages
        return self.inventory_messages

    @property
    def remaining_bytes(self) -> int:
        return max(0, (self.size or 0) - self.row.copied_bytes)


class Catalog:
    def __init__(self, project: Project, store: Store) -> None:
        ministries = {s.id: s.ministry for s in project.config.sources}
        for src in store.sources():
            ministries.setdefault(src.id, src.ministry)
        inventory = {inv.email.lower(): inv for inv in store.inventory()}
        settings: dict[int, dict[str, int]] = {}
        for s in store.settings(phase="inventory"):
            if s.name != "*":
                counts = settings.setdefault(s.mailbox_id, {})
                counts[s.state] = counts.get(s.state, 0) + 1
        self.by_email: dict[str, MailboxInfo] = {}
        for row in store.mailboxes():
            inv = inventory.get(row.email.lower())
            self.by_email[row.email.lower()] = MailboxInfo(
                row=row, ministry=ministries.get(row.source_id, row.source_id), measured=inv.ok if inv else None,
                inventory_error=inv.error if inv else None, inventory_messages=inv.messages if inv else None,
                inventory_bytes=inv.bytes if inv else None, settings=settings.get(row.id, {}))
        self.source_order = [s.id for s in project.config.sources]
        #: PBX extensions by "<dial plan>:<number>" (from the last `inventory phones`).
        self.extensions = {e.key: e for e in store.extensions()}
        self._email_of = {row.id: row.email.lower() for row in store.mailboxes()}

    def get(self, email: str) -> MailboxInfo | None:
        return self.by_email.get(email.lower())

    def extension_user(self, key: str) -> str | None:
        """The mail address of the user an extension is linked to, if it is."""
        ext = self.extensions.get(key)
        return self._email_of.get(ext.mailbox_id) if ext is not None and ext.mailbox_id else None

    def __iter__(self):
        return iter(self.by_email.values())

    def in_sources(self) -> list[MailboxInfo]:
        """Mailboxes of sources still in the project file, in project-file order, then by address."""
        order = {s: i for i, s in enumerate(self.source_order)}
        return sorted((m for m in self.by_email.values() if m.source_id in order),
                      key=lambda m: (order[m.source_id], m.email.lower()))
