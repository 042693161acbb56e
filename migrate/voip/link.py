"""Tying each PBX extension to the mail user it belongs to, so that a user's phone moves in the same wave as
their mailbox.

In order: the voicemail e-mail is a user's address (``voicemail-email``); an input names the user's address
in a column of its own (``column``); the extension's name is exactly one user's display name in the same
ministry, compared without case, accents or extra spaces (``name``). A name match is reported as such, for
a person to confirm; it is never silently taken as certain. Everything else is unlinked (reception,
conference rooms, fax), listed per ministry.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from migrate.core.errors import Problem
from migrate.core.store import MailboxRow

VOICEMAIL = "voicemail-email"
COLUMN = "column"
NAME = "name"


@dataclass(frozen=True)
class Link:
    mailbox: MailboxRow | None
    how: str | None
    #: For people: why it is linked this way, or why not.
    note: str


def normal_name(text: str) -> str:
    """"José  Pérez" and "jose perez" compare equal: no accents, no case, single spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.casefold().split())


class Linker:
    def __init__(self, mailboxes: list[MailboxRow]) -> None:
        self.by_email = {m.email.lower(): m for m in mailboxes}
        self.by_name: dict[tuple[str, str], list[MailboxRow]] = {}
        for m in mailboxes:
            if m.display_name.strip():
                self.by_name.setdefault((m.source_id, normal_name(m.display_name)), []).append(m)

    def link(self, ext, *, where: str = "") -> tuple[Link, list[Problem]]:
        """``ext``: an Extension (from the PBX files) or an ExtensionRow (from the store)."""
        problems: list[Problem] = []
        email = (ext.voicemail_email or "").strip().lower()
        if email:
            found = self.by_email.get(email)
            if found is not None:
                return Link(found, VOICEMAIL, f"voicemail e-mail {found.email}"), problems
            file, _, line = (ext.origins[0] if ext.origins else where).rpartition(":")
            problems.append(Problem(file or where, int(line) if line.isdigit() else None, "voicemail_email",
                                    f"extension {ext.number}: voicemail e-mail {ext.voicemail_email} matches no user "
                                    "in the user lists", "warning"))
        explicit = (getattr(ext, "link_email", None) or ext.extra.get("link_email") or "").strip().lower()
        if explicit:
            found = self.by_email.get(explicit)
            if found is not None:
                return Link(found, COLUMN, f"its user column names {found.email}"), problems
        if ext.name.strip():
            matches = self.by_name.get((ext.source_id, normal_name(ext.name)), [])
            if len(matches) == 1:
                return Link(matches[0], NAME, f"by name only ({ext.name!r} is {matches[0].email}'s display name): "
                                              "confirm"), problems
            if len(matches) > 1:
                return Link(None, None, f"{len(matches)} users are named {ext.name!r}: not linked"), problems
        return Link(None, None, "no user: a shared or room phone"), problems
