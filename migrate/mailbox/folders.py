"""Folder mapping: where each source folder lands on the central host.

Order of decisions, per folder: a name already recorded for it (so a mapping never changes between
passes); the project file's rules (source rules, then central rules; first match wins; regex rename or
exclude); with a prefix, everything lands under it with its source name; otherwise the defaults —
INBOX to INBOX, source special-use folders (server attribute, EWS well-known folder, or a well-known name
such as "Sent Items") to the central host's special-use folders. Finally names the destination cannot
hold (its separator inside a name, empty or control characters, a second "INBOX") or that two source
folders would share are renamed predictably, and the reason is recorded with the mapping.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from migrate.core.config import FolderRule

#: Well-known folder names (case-insensitive, top level) and the special use they stand for.
NAME_ROLES: dict[str, tuple[str, ...]] = {
    "\\Sent": ("sent", "sent items", "sent messages", "sent mail", "sent-mail", "enviados", "elementos enviados"),
    "\\Trash": ("trash", "deleted items", "deleted messages", "bin", "papelera", "elementos eliminados"),
    "\\Junk": ("junk", "junk e-mail", "junk email", "spam", "bulk mail", "correo no deseado"),
    "\\Drafts": ("drafts", "draft", "borradores"),
    "\\Archive": ("archive", "archives", "archivo"),
}
ROLE_OF_NAME = {name: role for role, names in NAME_ROLES.items() for name in names}
DEFAULT_CENTRAL_SPECIAL = {"\\Sent": "Sent", "\\Drafts": "Drafts", "\\Trash": "Trash", "\\Junk": "Junk",
                           "\\Archive": "Archive"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class SourceFolderInfo:
    """A folder as the source server shows it."""

    name: str                      # the source's own name (decoded), used to select it
    path: tuple[str, ...]          # components below the personal namespace; ("INBOX",) for the inbox
    special_use: str | None = None
    subscribed: bool = True
    folder_id: str | None = None   # EWS: folders are selected by id
    messages: int | None = None    # EWS: the folder's item count, as the server reports it
    size: int | None = None        # EWS: the folder's size, when the server reports it

    @property
    def logical(self) -> str:
        """The path as rules see it: components joined with "/" whatever the source separator."""
        return "/".join(self.path)


@dataclass(frozen=True)
class FolderMapping:
    source: SourceFolderInfo
    dest: str | None               # None: excluded by a rule
    note: str | None = None        # why the destination name is not the obvious one, or why excluded


@dataclass(frozen=True)
class CentralLayout:
    separator: str = "/"
    prefix: str = ""
    special: tuple[tuple[str, str], ...] = tuple(DEFAULT_CENTRAL_SPECIAL.items())

    def special_folder(self, role: str) -> str | None:
        return dict(self.special).get(role)


def source_path(name: str, separator: str | None, prefix: str) -> tuple[str, ...]:
    """Strip the personal namespace prefix and split on the source separator."""
    if name.upper() == "INBOX":
        return ("INBOX",)
    rest = name[len(prefix):] if prefix and name.startswith(prefix) else name
    if not separator:
        return (rest,)
    parts = tuple(rest.split(separator))
    if parts and parts[0].upper() == "INBOX" and not prefix:
        parts = ("INBOX", *parts[1:])
    return parts


def role_by_name(path: tuple[str, ...]) -> str | None:
    if len(path) == 1:
        return ROLE_OF_NAME.get(path[0].strip().lower())
    return None


def _apply_rules(path: tuple[str, ...], rules: Iterable[FolderRule]) -> tuple[tuple[str, ...] | None, str | None]:
    """(new path or None when excluded, note) for the first matching rule; (path, None) when none match."""
    logical = "/".join(path)
    for rule in rules:
        pattern = re.compile(rule.match)
        if not pattern.search(logical):
            continue
        if rule.exclude:
            return None, f"excluded by rule {rule.match!r}"
        renamed = pattern.sub(rule.rename or "", logical, count=1)
        return tuple(renamed.split("/")), f"renamed by rule {rule.match!r}"
    return path, None


def _clean(components: tuple[str, ...], separator: str) -> tuple[tuple[str, ...], list[str]]:
    notes = []
    out = []
    for comp in components:
        new = comp
        if separator and separator in new:
            new = new.replace(separator, "_")
            notes.append(f"{separator!r} is the central host's separator")
        if _CONTROL.search(new):
            new = _CONTROL.sub("_", new)
            notes.append("control characters")
        if new.strip() in ("", ".", ".."):
            new = "_" if not new.strip() else new.replace(".", "_")
            notes.append("empty or dot-only name")
        out.append(new)
    return tuple(out), notes


def map_folders(folders: list[SourceFolderInfo], *, central: CentralLayout, rules: list[FolderRule] = (),
                prefix: str | None = None,
                recorded: dict[str, tuple[str, str | None]] | None = None) -> list[FolderMapping]:
    """Map every source folder; deterministic for the same input, and stable across passes: ``recorded``
    maps source names to the (destination, note) chosen on an earlier pass."""
    recorded = recorded or {}
    taken: dict[str, str] = {}  # destination name → source name
    result: dict[str, FolderMapping] = {}

    for f in folders:
        if f.name in recorded:
            dest, note = recorded[f.name]
            result[f.name] = FolderMapping(f, dest, note)
            taken[dest] = f.name

    def priority(f: SourceFolderInfo) -> tuple:
        inbox = f.path == ("INBOX",)
        return (not inbox, f.special_use is None, f.name)

    top_renames: dict[str, tuple[str, ...]] = {}
    for f in sorted(folders, key=priority):
        if f.name in result:
            continue
        path, note = _apply_rules(f.path, rules)
        if path is None:
            result[f.name] = FolderMapping(f, None, note)
            continue
        notes = [note] if note else []
        if note is None:  # no rule matched: the defaults apply
            if prefix:
                path = tuple(p for p in prefix.split("/") if p) + path
            elif path[0] == "INBOX":
                pass
            elif len(path) == 1:
                role = f.special_use or role_by_name(path)
                target = central.special_folder(role) if role else None
                if target and target not in taken:
                    new = tuple(target.split(central.separator)) if central.separator else (target,)
                    top_renames[path[0]] = new
                    if new != path:
                        notes.append(f"special-use {role} folder")
                    path = new
            elif path[0] in top_renames:
                path = top_renames[path[0]] + path[1:]
                notes.append("inside a special-use folder")
        path, cleaned = _clean(path, central.separator)
        if cleaned:
            notes.append("renamed: " + ", ".join(sorted(set(cleaned))))
        if path[0].upper() == "INBOX" and path[0] != "INBOX":
            path = (f"{path[0]} (migrated)", *path[1:])
            notes.append("a second INBOX is ambiguous")
        dest = "INBOX" if path == ("INBOX",) else central.prefix + central.separator.join(path)
        base, n = dest, 2
        while dest in taken and taken[dest] != f.name:
            dest = f"{base} ({n})"
            n += 1
        if dest != base:
            notes.append(f"{base!r} is already used by {taken[base]!r}")
        taken[dest] = f.name
        result[f.name] = FolderMapping(f, dest, "; ".join(notes) or None)
    return [result[f.name] for f in folders]
