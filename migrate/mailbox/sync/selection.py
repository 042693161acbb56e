"""Which mailboxes a command line names: users, a source, or all."""

from __future__ import annotations

from migrate.core.store import MailboxRow, Store


def selected_mailboxes(store: Store, *, users: list[str] = (), source_id: str | None = None,
                       everything: bool = False) -> tuple[list[MailboxRow], list[str]]:
    """Resolve a command line's selection to mailboxes; returns (found, unknown names)."""
    if everything:
        return store.mailboxes(), []
    if source_id:
        return store.mailboxes(source_id=source_id), []
    found, unknown = [], []
    for user in users:
        matches = store.find_mailboxes(user)
        exact = [m for m in matches if m.email.lower() == user.lower() or m.login == user]
        chosen = exact or (matches if len(matches) == 1 else [])
        if chosen:
            found.extend(c for c in chosen if c not in found)
        else:
            unknown.append(user)
    return found, unknown
