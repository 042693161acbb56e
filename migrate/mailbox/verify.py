"""Verification: compare a mailbox at the source with its copy on the central host, message by message.

Independent of the sync engine's records for what it counts: both servers are read afresh and messages
are matched by content fingerprint as multisets, so a missing message, a duplicate, a wrong flag or a
wrong date is found even if the state store were wrong. The records are only used to explain extra
messages on the destination: copies the engine made of messages since deleted (or moved away) at the source
are *stale*, a difference until a pass carrying deletions removes them; others arrived by other means (new
mail after the MX cut-over) and are not a mismatch. The folder sets are compared too: a central folder the
engine copied into whose source folder is gone (renamed or deleted there, and not yet carried) is an
*orphaned* folder, a difference. ``deep`` also compares every matched pair's full bytes. Each mailbox's result
(counts of each kind of difference) is recorded in the store, replacing the one before, for the reports' data
consistency.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from migrate.core.config import Project
from migrate.core.errors import MigrateError, RemoteError
from migrate.core.fanout import fanout
from migrate.core.limits import ConnectionLimits
from migrate.core.store import MailboxRow, Store
from migrate.mailbox.central import CentralServer, Destination
from migrate.mailbox.fingerprint import PREFIX, Fingerprinter, fingerprint, stable, stable_content
from migrate.mailbox.folders import map_folders
from migrate.mailbox.imap import imap_date
from migrate.mailbox.keywords import for_central
from migrate.mailbox.protocol import clean_flags, fetch, uid_set
from migrate.mailbox.source_imap import ImapSourceMailbox
from migrate.mailbox.sources import Sources, folder_list
from migrate.mailbox.unexportable import Unreadable

log = logging.getLogger(__name__)

#: Flags an EWS item can carry (is_read, flag status, is_draft); keywords come from categories.
EWS_SYSTEM_FLAGS = {"\\Seen", "\\Flagged", "\\Draft"}


@dataclass
class Msg:
    ref: str                      # "UID 12" or an EWS item id
    fp: str
    size: int
    flags: frozenset[str]
    date: datetime | None
    full: str | None = None       # sha256 of the whole message (EWS, deep checks)


@dataclass
class FolderCheck:
    source: str
    dest: str | None
    source_messages: int = 0
    dest_messages: int = 0
    missing: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    flag_mismatches: list[str] = field(default_factory=list)
    date_mismatches: list[str] = field(default_factory=list)
    content_mismatches: list[str] = field(default_factory=list)
    #: Source items the source server cannot export at all (Exchange: no MIME for them), by subject, date and
    #: size with its reason: known and recorded by the sync, listed here, not counted as a difference.
    unexportable: list[str] = field(default_factory=list)
    #: Exchange items not migrated by policy (a contact or note kept in a mail folder): listed, not counted.
    not_migrated: list[str] = field(default_factory=list)
    #: Stale copies: what the engine copied of messages since deleted or moved away at the source, still here.
    deleted_at_source: int = 0
    other_mail: int = 0
    dest_folder_missing: bool = False
    not_subscribed: bool = False
    #: The source folder is gone (renamed or deleted there) and this central folder the engine copied into is
    #: still here.
    orphaned: bool = False
    error: str | None = None

    @property
    def matches(self) -> bool:
        return not (self.missing or self.duplicates or self.flag_mismatches or self.date_mismatches
                    or self.content_mismatches or self.dest_folder_missing or self.not_subscribed
                    or self.deleted_at_source or self.orphaned or self.error)


@dataclass
class MailboxCheck:
    email: str
    error: str | None = None
    folders: list[FolderCheck] = field(default_factory=list)
    #: Exchange calendars and contacts (migrate.mailbox.groupware.GroupwareCheck), one per kind.
    groupware: list = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return self.error is None and all(f.matches for f in self.folders) and all(g.matches for g in self.groupware)

    def totals(self) -> dict[str, int]:
        keys = ("missing", "duplicates", "flag_mismatches", "date_mismatches", "content_mismatches")
        out = {k: sum(len(getattr(f, k)) for f in self.folders) for k in keys}
        out["source_messages"] = sum(f.source_messages for f in self.folders)
        out["dest_messages"] = sum(f.dest_messages for f in self.folders)
        out["deleted_at_source"] = sum(f.deleted_at_source for f in self.folders)
        out["other_mail"] = sum(f.other_mail for f in self.folders)
        out["folder_problems"] = sum(1 for f in self.folders if f.dest_folder_missing or f.not_subscribed or f.error
                                     or f.orphaned)
        out["orphaned_folders"] = sum(1 for f in self.folders if f.orphaned)
        return out


def _imap_messages(client, max_keyword: int | None, fp: Fingerprinter = fingerprint) -> dict[int, Msg]:
    """Every message of the selected folder. ``max_keyword``: a source's flags, compared as the central host
    gets them (migrate.mailbox.keywords); None for the central host's own. ``fp``: the plain fingerprint, or
    for the copies of an Exchange mailbox the one that survives its MIME regeneration."""
    items = ["FLAGS", "INTERNALDATE", "RFC822.SIZE", f"BODY.PEEK[]<0.{PREFIX}>"]
    data = fetch(client, "1:*", items)
    return {uid: Msg(f"UID {uid}", fp(v.get(b"RFC822.SIZE", 0), v.get(b"BODY[]<0>") or b""),
                     v.get(b"RFC822.SIZE", 0), _flags(v.get(b"FLAGS"), max_keyword),
                     imap_date(v.get(b"INTERNALDATE")))
            for uid, v in data.items()}


def _flags(raw, max_keyword: int | None) -> frozenset[str]:
    flags = clean_flags(raw)
    return frozenset(flags if max_keyword is None else for_central(flags, max_keyword)[0])


def _full_hashes(client, uids: list[int], content: Callable[[bytes], bytes] = bytes) -> dict[int, str]:
    out = {}
    for i in range(0, len(uids), 100):
        chunk = uids[i:i + 100]
        for uid, v in fetch(client, uid_set(chunk), ["BODY.PEEK[]"]).items():
            out[uid] = hashlib.sha256(content(v.get(b"BODY[]") or b"")).hexdigest()
    return out


class Verifier:
    def __init__(self, project: Project, store: Store, *, deep: bool = False) -> None:
        self.project = project
        self.store = store
        self.deep = deep
        self.max_keyword = project.config.central.max_keyword_length
        self.central = CentralServer(project)
        self.central.credentials()  # a secret that does not resolve stops the command before any mailbox
        self.sources = Sources(project)

    def close(self) -> None:
        self.sources.close()

    def verify(self, mailbox: MailboxRow) -> MailboxCheck:
        check = MailboxCheck(mailbox.email)
        source = self.project.source(mailbox.source_id)
        src = dest = None
        try:
            dest = self.central.open(mailbox.email)
            src = self.sources.open(source, mailbox.email, mailbox.login)
            folders = [info for info, _ in folder_list(src)]
            recorded = {f.source_name: f for f in self.store.folders(mailbox.id)}
            rules = list(source.folders.rules) + list(self.project.config.central.folders.rules)
            prefix = source.folders.prefix or self.project.config.central.folders.prefix
            mappings = map_folders(folders, central=dest.layout(), rules=rules, prefix=prefix,
                                   recorded={n: (f.dest_name, f.note) for n, f in recorded.items()})
            dest_folders = dest.folders(refresh=True)
            for mapping in mappings:
                if mapping.dest is None:
                    continue
                fc = FolderCheck(mapping.source.name, mapping.dest)
                check.folders.append(fc)
                try:
                    if mapping.dest not in dest_folders:
                        fc.dest_folder_missing = True
                        src_msgs = self._source_messages(src, mapping.source, fc)
                        fc.source_messages = len(src_msgs)
                        fc.missing = [m.ref for m in src_msgs.values()]
                        continue
                    if mapping.source.subscribed and not dest_folders[mapping.dest].subscribed:
                        fc.not_subscribed = True
                    state = recorded.get(mapping.source.name)
                    self._compare(src, dest, mapping.source, mapping.dest, state, fc, ews=source.server.type == "ews")
                except MigrateError as exc:
                    fc.error = exc.message
            check.folders.extend(self._orphans(dest, recorded, mappings, dest_folders))
            if source.server.type == "ews":
                check.groupware = self._groupware(src, mailbox)
        except MigrateError as exc:
            check.error = exc.message
        finally:
            for side in (src, dest):
                if side is not None:
                    try:
                        side.close()
                    except Exception:
                        pass
        return check

    def _orphans(self, dest: Destination, recorded: dict, mappings: list, dest_folders: dict) -> list[FolderCheck]:
        """The central folders the engine copied into whose source folder is gone, with the copies left in them."""
        mapped = {m.dest for m in mappings if m.dest}
        listed = {m.source.name for m in mappings}
        out = []
        for name, state in recorded.items():
            if name in listed or state.dest_name in mapped or state.dest_name not in dest_folders:
                continue
            copies = {r.dest_uid for r in self.store.message_records(state.id) if r.state == "copied" and r.dest_uid}
            fc = FolderCheck(name, state.dest_name, orphaned=True)
            try:
                dest.select(state.dest_name)
                here = set(_imap_messages(dest.client, None))
            except MigrateError as exc:
                fc.error = exc.message
                here = set()
            fc.dest_messages = len(here)
            fc.deleted_at_source = len(copies & here)
            fc.other_mail = len(here - copies)
            out.append(fc)
        return out

    def _groupware(self, src, mailbox: MailboxRow) -> list:
        from migrate.mailbox.dav import DavTarget
        from migrate.mailbox.groupware import verify_groupware

        target = DavTarget.from_project(self.project)
        try:
            return verify_groupware(src, mailbox.email, target, self.project.base_dir)
        finally:
            if target is not None:
                target.close()

    def _source_messages(self, src, info, fc: FolderCheck) -> dict[Any, Msg]:
        if isinstance(src, ImapSourceMailbox):
            src.examine(info.name)
            return _imap_messages(src.client, self.max_keyword)
        items = []
        for item in src.items(info.folder_id):
            if item.not_migrated:
                fc.not_migrated.append(f"item received {item.received:%Y-%m-%d %H:%M} ({item.size} bytes): "
                                       f"{item.not_migrated}")
            else:
                items.append(item)
        out: dict[Any, Msg] = {}
        ids = [i.item_id for i in items]
        mime = dict(src.mime(ids)) if ids else {}
        for item in items:
            raw = mime.get(item.item_id, b"")
            if isinstance(raw, Unreadable):
                fc.unexportable.append(f"{raw.described}: {raw.reason}")
                continue
            out[item.item_id] = Msg(item.item_id, stable(len(raw), raw[:PREFIX]), len(raw),
                                    frozenset(for_central(item.flags, self.max_keyword)[0]), item.received,
                                    hashlib.sha256(stable_content(raw)).hexdigest() if self.deep else None)
        return out

    def _compare(self, src, dest: Destination, info, dest_name: str, state, fc: FolderCheck, *, ews: bool) -> None:
        src_msgs = self._source_messages(src, info, fc)
        dest.select(dest_name)
        dest_msgs = _imap_messages(dest.client, None, stable if ews else fingerprint)
        fc.source_messages, fc.dest_messages = len(src_msgs), len(dest_msgs)
        by_fp_src: dict[str, list[Any]] = defaultdict(list)
        by_fp_dest: dict[str, list[int]] = defaultdict(list)
        for key, m in src_msgs.items():
            by_fp_src[m.fp].append(key)
        for uid, m in dest_msgs.items():
            by_fp_dest[m.fp].append(uid)
        copied_dest_uids = set()   # copied by govmigrate from a message since deleted at the source
        recorded_dest: dict[Any, int] = {}
        if state is not None:
            present = set(src_msgs)
            for r in self.store.message_records(state.id):
                key = r.src_uid if r.src_uid is not None else r.src_item
                if r.state != "copied" or not r.dest_uid:
                    continue
                if key in present:
                    recorded_dest[key] = r.dest_uid
                else:
                    copied_dest_uids.add(r.dest_uid)
        pairs: list[tuple[Any, int]] = []
        for fp, src_keys in by_fp_src.items():
            dest_left = set(by_fp_dest.get(fp, []))
            src_left = []
            # Pair by the engine's records first, then the rest in date order (identical copies line up).
            for k in src_keys:
                uid = recorded_dest.get(k)
                if uid in dest_left:
                    pairs.append((k, uid))
                    dest_left.discard(uid)
                else:
                    src_left.append(k)
            src_sorted = sorted(src_left, key=lambda k: (_ts(src_msgs[k].date), str(k)))
            dest_sorted = sorted(dest_left, key=lambda u: (_ts(dest_msgs[u].date), u))
            pairs.extend(zip(src_sorted, dest_sorted, strict=False))
            for k in src_sorted[len(dest_sorted):]:
                fc.missing.append(src_msgs[k].ref)
            for u in dest_sorted[len(src_sorted):]:
                if u in copied_dest_uids:
                    fc.deleted_at_source += 1
                else:
                    fc.duplicates.append(f"UID {u} (same content as {src_msgs[src_keys[0]].ref})")
        for fp, dest_uids in by_fp_dest.items():
            if fp not in by_fp_src:
                for u in dest_uids:
                    if u in copied_dest_uids:
                        fc.deleted_at_source += 1
                    else:
                        fc.other_mail += 1
        for key, uid in pairs:
            s, d = src_msgs[key], dest_msgs[uid]
            dest_flags = d.flags & (EWS_SYSTEM_FLAGS | {f for f in d.flags if not f.startswith("\\")}) if ews else d.flags
            if s.flags != dest_flags:
                fc.flag_mismatches.append(f"{s.ref}: source {sorted(s.flags)} central {sorted(d.flags)}")
            if s.date and d.date and int(s.date.timestamp()) != int(d.date.timestamp()):
                fc.date_mismatches.append(f"{s.ref}: source {s.date.isoformat()} central {d.date.isoformat()}")
        if self.deep and pairs:
            dest_full = _full_hashes(dest.client, [u for _, u in pairs], stable_content if ews else bytes)
            if isinstance(src, ImapSourceMailbox):
                src.examine(info.name)
                src_full = _full_hashes(src.client, [k for k, _ in pairs])
            else:
                src_full = {k: src_msgs[k].full for k, _ in pairs}
            for key, uid in pairs:
                if src_full.get(key) != dest_full.get(uid):
                    fc.content_mismatches.append(f"{src_msgs[key].ref} differs from central UID {uid}")


def _ts(value: datetime | None) -> float:
    return value.timestamp() if value else 0.0


def verify_mailboxes(project: Project, store: Store, mailboxes: list[MailboxRow], *, deep: bool = False,
                     progress=None, workers: int = 8) -> list[MailboxCheck]:
    """Verify mailboxes in parallel, each holding a connection to its source and to the central host within
    their limits (across hosts when the store is shared: :class:`migrate.core.limits.ConnectionLimits`)."""
    from migrate.core.progress import ProgressEvent, no_progress

    sink = progress or no_progress
    verifier = Verifier(project, store, deep=deep)
    limits = ConnectionLimits(project, store)

    def one(mailbox: MailboxRow) -> MailboxCheck:
        with limits.source(mailbox.source_id), limits.central():
            sink(ProgressEvent("start", mailbox.email))
            try:
                result = verifier.verify(mailbox)
            except RemoteError as exc:
                result = MailboxCheck(mailbox.email, error=exc.message)
            sink(ProgressEvent("done" if result.matches else "failed", mailbox.email,
                               detail="" if result.matches else (result.error or "differs")))
            # The report's "data consistency" per wave reads the last verification of each mailbox.
            store.record_verification(mailbox.id, deep=deep, matches=result.matches, counts=result.totals(),
                                      error=result.error)
            return result

    sink(ProgressEvent("plan", total_messages=len(mailboxes)))
    try:
        return fanout(mailboxes, one, workers=min(workers, project.config.central.connections), name="verify")
    finally:
        verifier.close()
        limits.close()
