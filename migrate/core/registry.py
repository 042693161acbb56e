"""Bring the state store's sources and mailboxes in line with the project file and its user lists.

Every command that works on mailboxes calls :func:`register_users` first, so a user added to a CSV
list is known everywhere; sync, plan and inventory state of existing mailboxes is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from migrate.core.config import ImapServer, Project, Source
from migrate.core.errors import Problem
from migrate.core.store import Store
from migrate.core.userlist import UserEntry, read_user_list


@dataclass
class Registered:
    """The user-list entries per source, and the problems found reading the lists."""

    users: dict[str, list[UserEntry]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def entry(self, email: str) -> tuple[str, UserEntry] | None:
        for source_id, entries in self.users.items():
            for entry in entries:
                if entry.email.lower() == email.lower():
                    return source_id, entry
        return None


def needs_user_passwords(source: Source) -> bool:
    return isinstance(source.server, ImapServer) and source.server.login.method == "user_password"


def read_users(project: Project, source: Source) -> tuple[list[UserEntry], list[Problem]]:
    return read_user_list(project.resolve_path(source.users), domains=source.domains, source_id=source.id,
                          needs_password=needs_user_passwords(source))


def register_users(project: Project, store: Store, source_ids: list[str] | None = None) -> Registered:
    """Upsert sources and their users' mailboxes; rows with problems are reported and left out."""
    result = Registered()
    for source in project.config.sources:
        if source_ids and source.id not in source_ids:
            continue
        entries, problems = read_users(project, source)
        result.problems.extend(problems)
        result.users[source.id] = entries
        with store.tx():
            store.upsert_source(source.id, source.ministry, source.server.type, list(source.domains))
            for entry in entries:
                store.upsert_mailbox(source.id, entry.email, entry.login, entry.display_name, entry.flags)
    return result
