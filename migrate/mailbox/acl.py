"""Shared folders: IMAP access lists (RFC 4314) read from a ministry server, or made from Exchange folder
permissions, and set on the central host, whose shared namespace then shows each folder to the users it is
shared with (Dovecot's acl plugin keeps that list as SETACL changes it).

Only what means the same on the central host moves: rights of named users. ``anyone``/``authenticated`` (and
Exchange's Default and Anonymous) mean "everyone at the ministry" at the source but every user of the
government on the central host, negative rights and groups have no counterpart there, and a user the central
host cannot know is not given anything: each of those is listed instead. Exchange's "own items only" edit and
delete rights have no IMAP equivalent; the right is left out and said so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: RFC 4314 rights in their canonical order.
RIGHTS = "lrswipkxtea"
#: The obsolete RFC 2086 rights a server may still show, as RFC 4314 §2.1.1 splits them.
_OBSOLETE = {"c": "kx", "d": "te"}
#: An identifier the central host gets: a plain address (validated before it reaches a command).
_ADDRESS = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
EVERYONE = ("anyone", "authenticated")


def normalise(rights: str) -> str:
    """RFC 4314 letters only, obsolete ones split, in canonical order."""
    letters = set()
    for ch in rights:
        letters.update(_OBSOLETE.get(ch, ch))
    return "".join(r for r in RIGHTS if r in letters)


def is_address(identifier: str) -> bool:
    return bool(_ADDRESS.match(identifier))


@dataclass(frozen=True)
class FolderPermission:
    """One entry of an Exchange folder's PermissionSet (read by :mod:`migrate.mailbox.ews_settings`)."""

    user: str                  # an SMTP address, or "Default" / "Anonymous"
    level: str                 # PermissionLevel: None, Reviewer, Author, Editor, Owner, Custom...
    read: bool = False         # ReadItems FullDetails
    visible: bool = False      # IsFolderVisible
    create: bool = False       # CanCreateItems
    subfolders: bool = False   # CanCreateSubFolders
    owner: bool = False        # IsFolderOwner
    edit: str = "None"         # EditItems: None | Owned | All
    delete: str = "None"       # DeleteItems: None | Owned | All


@dataclass(frozen=True)
class Grant:
    """One entry of a folder's access list as the source has it."""

    folder: str            # the source folder's name (as the state store keeps it)
    identifier: str        # at the source: a login, an address, anyone, -name, $group ...
    rights: str            # RFC 4314 letters for the central host ("" when nothing carries over)
    note: str = ""         # what of it does not carry over


def exchange_rights(perm: FolderPermission) -> tuple[str, str]:
    """An Exchange folder permission as RFC 4314 rights, and what it grants that IMAP cannot."""
    rights = set()
    notes = []
    if perm.visible or perm.read:
        rights.add("l")
    if perm.read:
        rights.update("rs")
    if perm.create:
        rights.update("ip")
    if perm.subfolders:
        rights.add("k")
    if perm.edit == "All":
        rights.add("w")
    elif perm.edit == "Owned":
        notes.append("editing their own items")
    if perm.delete == "All":
        rights.update("te")
    elif perm.delete == "Owned":
        notes.append("deleting their own items")
    if perm.owner:
        rights.update("ax")
    note = f"{' and '.join(notes)} (IMAP has no per-item ownership) left out" if notes else ""
    return normalise("".join(rights)), note


def from_exchange(folder: str, perms: Iterable[FolderPermission]) -> list[Grant]:
    """A folder's Exchange permissions as grants (entries granting nothing are left out)."""
    out = []
    for perm in perms:
        rights, note = exchange_rights(perm)
        if not rights:
            continue
        identifier = {"Default": "anyone", "Anonymous": "anonymous"}.get(perm.user, perm.user)
        out.append(Grant(folder, identifier, rights, note + (f" ({perm.level})" if note and perm.level else "")))
    return out


def grants_of(folder: str, entries: Iterable[tuple[Any, Any]], owner: str) -> list[Grant]:
    """A folder's access list as GETACL gave it ((identifier, rights) pairs), without the owner's own entry."""
    out = []
    for who, rights in entries:
        who = who.decode("utf-8", "replace") if isinstance(who, bytes) else str(who)
        rights = rights.decode("ascii", "replace") if isinstance(rights, bytes) else str(rights)
        if who.lower() in (owner.lower(), "owner"):
            continue
        out.append(Grant(folder, who, normalise(rights)))
    return out


def why_not(identifier: str) -> str | None:
    """Why an identifier's rights do not move as they are (None: they may, if the user is known)."""
    low = identifier.lower()
    if low in EVERYONE or low == "anonymous":
        return ("shared with everyone at the ministry; on the central host that would be every user of the "
                "government, so it is left to the folder's owner to share it again with named people")
    if identifier.startswith("-"):
        return "a negative right (taking rights away), which the central host's access lists would read otherwise"
    if identifier.startswith("$") or low.startswith("group="):
        return "shared with a group, which the central host does not have"
    return None


def central_acl(client: Any, folder: str) -> dict[str, str]:
    """Identifier → normalised rights of a central folder."""
    return {(w.decode("utf-8", "replace") if isinstance(w, bytes) else str(w)):
            normalise(r.decode("ascii", "replace") if isinstance(r, bytes) else str(r))
            for w, r in client.getacl(folder)}


def set_rights(client: Any, folder: str, identifier: str, rights: str) -> None:
    """SETACL on the central host (``identifier`` must be a plain address: checked here)."""
    if not is_address(identifier):
        raise ValueError(f"not an address: {identifier!r}")
    client.setacl(folder, f'"{identifier}"', normalise(rights))


def delete_rights(client: Any, folder: str, identifier: str) -> None:
    if not is_address(identifier):
        raise ValueError(f"not an address: {identifier!r}")
    client._command_and_check("deleteacl", client._normalise_folder(folder), f'"{identifier}"', unpack=True)
