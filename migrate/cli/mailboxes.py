"""Choosing mailboxes on the command line: USER arguments (email, login or part of a name), --source, --all."""

from __future__ import annotations

from typing import TYPE_CHECKING

from migrate.cli.app import App
from migrate.core.errors import UsageError

if TYPE_CHECKING:
    from migrate.core.config import Project
    from migrate.core.store import MailboxRow, Store



def select_mailboxes(app: App, users: tuple[str, ...], source_id: str | None,
                     everything: bool) -> tuple[Project, Store, list[MailboxRow]]:
    from migrate.core.registry import register_users
    from migrate.mailbox.sync import selected_mailboxes

    chosen = sum(bool(x) for x in (users, source_id, everything))
    if chosen != 1:
        raise UsageError("name the mailboxes: USER... (email or login), or --source ID, or --all")
    project = app.project
    if source_id:
        project.source(source_id)  # a clear error for an unknown id
    store = app.store
    registered = register_users(project, store)
    for problem in registered.problems:
        app.warn(str(problem))
    mailboxes, unknown = selected_mailboxes(store, users=list(users), source_id=source_id, everything=everything)
    if unknown:
        raise UsageError(f"not in any user list: {', '.join(unknown)}")
    skipped = [m for m in mailboxes if "skip" in m.flags]
    if skipped and not users:
        mailboxes = [m for m in mailboxes if "skip" not in m.flags]
        app.info(f"leaving out {len(skipped)} mailbox(es) flagged skip in the user lists")
    if not mailboxes:
        raise UsageError("no mailboxes to work on")
    return project, store, mailboxes
