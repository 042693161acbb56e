"""What the user did to folders between passes: renamed them, or deleted them.

A folder the store knows that the source no longer lists, and a folder the source lists that the store does not
know, are one folder renamed when
- Exchange: they have the same FolderId (a rename keeps it; the folder's record keeps it as ``source_key``);
- IMAP: they have the same UIDVALIDITY (Dovecot, like most servers, keeps it across RENAME) and the messages the
  records name are there with the sizes recorded; or, where the server gave the renamed folder a new
  UIDVALIDITY, at least half the records' fingerprints are among its messages' (its records are then rebuilt by
  fingerprint, as after any change of UIDVALIDITY).
The central folder is then renamed (RENAME, the folders below it and their subscriptions with it) and the
records follow; nothing is copied again. INBOX and the central host's special-use folders are never renamed.

A known folder that is gone and was not renamed was deleted at the source: its copies join the pool of copies
whose message left its folder (what the user moved out of it before deleting it is moved on the central host
too). A pass that carries deletions removes the rest (only what govmigrate copied), then the folder's record,
and the central folder itself when nothing else is left in it: no other mail, no folder below it, and it is
neither INBOX nor a special-use folder.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter

from migrate.core.errors import FolderFailed
from migrate.core.store import FolderState
from migrate.mailbox.folders import FolderMapping, SourceFolderInfo
from migrate.mailbox.protocol import CommandFailed, ListedFolder
from migrate.mailbox.sync.changes import ChangeCarrier
from migrate.mailbox.sync.context import PassContext
from migrate.mailbox.sync.reconcile import Reconciler
from migrate.mailbox.sync.reports import FolderReport, record_key

log = logging.getLogger(__package__)  # the engine's one logger, migrate.mailbox.sync


class FolderChanges:
    def __init__(self, ctx: PassContext) -> None:
        self.ctx = ctx
        self.reconciler = Reconciler(ctx)
        self.changes = ChangeCarrier(ctx)

    # -- renames ----------------------------------------------------------------------------------------

    def renamed(self, recorded: dict[str, FolderState],
                folders: list[tuple[SourceFolderInfo, ListedFolder | None]]) -> dict[str, FolderState]:
        """New source name → the known folder it was renamed from."""
        listed = {info.name for info, _ in folders}
        gone = [f for name, f in recorded.items() if name not in listed and f.dest_name != "INBOX"]
        fresh = [(info, lf) for info, lf in folders if info.name not in recorded and info.path != ("INBOX",)]
        if not gone or not fresh:
            return {}
        found: dict[str, FolderState] = {}
        if self.ctx.is_ews:
            by_key = {f.source_key: f for f in gone if f.source_key}
            for info, _ in fresh:
                if info.folder_id in by_key:
                    found[info.name] = by_key.pop(info.folder_id)
            return found
        for info, lf in fresh:
            old = self._imap_origin(info, lf, [g for g in gone if g not in found.values()])
            if old is not None:
                found[info.name] = old
        return found

    def _imap_origin(self, info: SourceFolderInfo, listed: ListedFolder | None,
                     candidates: list[FolderState]) -> FolderState | None:
        status = listed.status if listed is not None else {}
        validity = status.get("UIDVALIDITY")
        src = self.ctx.src
        try:
            for old in [c for c in candidates if validity is not None and c.source_uidvalidity == validity]:
                records = [r for r in self.ctx.store.message_records(old.id)
                           if r.src_uid is not None and r.state == "copied"]
                if not records:
                    return old
                src.examine(info.name)
                sizes = {uid: m.size for uid, m in src.metadata().items()}
                if 2 * sum(1 for r in records if sizes.get(r.src_uid) == r.size) >= len(records):
                    return old
            if not status.get("MESSAGES"):
                return None
            # The server gave the renamed folder a new UIDVALIDITY: what it holds says where it came from.
            src.examine(info.name)
            here = Counter(fp for fp, _size in src.fingerprints().values())
        except FolderFailed:
            return None        # the folder cannot be read: it is reported as such when it is synced
        best, overlap = None, 0
        for old in candidates:
            theirs = Counter(r.fingerprint for r in self.ctx.store.message_records(old.id) if r.state == "copied")
            shared = sum((theirs & here).values())
            if shared and 2 * shared >= sum(theirs.values()) and shared > overlap:
                best, overlap = old, shared
        return best

    def carry_rename(self, old: FolderState, mapping: FolderMapping, fr: FolderReport) -> FolderState:
        """The folder's record under its new source name, and the central folder renamed when the name it maps to
        changed (a re-run after a kill finds it renamed already). Returns the record as it is now."""
        ctx = self.ctx
        new_name, dest = mapping.source.name, mapping.dest or old.dest_name
        fr.renamed_from = old.source_name
        log.info("%s: folder %s was renamed %s at the source", ctx.mailbox.email, old.source_name, new_name)
        if dest != old.dest_name and not self._protected(old.dest_name):
            folders = ctx.dest.folders(refresh=True)
            if ctx.dry:
                fr.renamed_dest_from = old.dest_name
            elif old.dest_name in folders and dest not in folders:
                try:
                    ctx.hold()
                    ctx.dest.rename_folder(old.dest_name, dest)
                except CommandFailed as exc:
                    fr.warnings.append(f"the central host refused to rename {old.dest_name!r} to {dest!r} "
                                       f"({exc.text}); the folder keeps its name there")
                    dest = old.dest_name
                else:
                    fr.renamed_dest_from = old.dest_name
            elif old.dest_name in folders:
                fr.warnings.append(f"{dest!r} exists already on the central host; {old.dest_name!r} keeps its name")
                dest = old.dest_name
            else:
                fr.renamed_dest_from = old.dest_name    # renamed by an earlier pass, or with the folder above it
        else:
            dest = old.dest_name
        if ctx.dry:
            return dataclasses.replace(old, source_name=new_name, dest_name=dest)
        with ctx.store.tx():
            if dest != old.dest_name:
                ctx.store.rename_dest_folders(ctx.mailbox.id, old.dest_name, dest, ctx.dest.layout().separator)
            ctx.store.update_folder(old.id, source_name=new_name, note=mapping.note)
        return next(f for f in ctx.store.folders(ctx.mailbox.id) if f.id == old.id)

    def _protected(self, dest_name: str) -> bool:
        """INBOX and the central host's special-use folders are never renamed or deleted."""
        if dest_name.upper() == "INBOX":
            return True
        listed = self.ctx.dest.folders().get(dest_name)
        return (listed is not None and listed.special_use is not None) or \
            dest_name in dict(self.ctx.dest.layout().special).values()

    # -- deleted folders ----------------------------------------------------------------------------------

    def leave(self, gone: list[FolderState], reports: dict[int, FolderReport]) -> None:
        """Folders deleted at the source: their interrupted copies settled, their copies marked as having left."""
        ctx = self.ctx
        for folder in gone:
            fr = FolderReport(folder.source_name, folder.dest_name, deleted_at_source=True)
            ctx.report.folders.append(fr)
            reports[folder.id] = fr
            if ctx.dry:
                continue
            records = {record_key(r): r for r in ctx.store.message_records(folder.id)}
            if folder.dest_name in ctx.dest.folders():
                records = self.reconciler.reconcile_pending(folder, folder.dest_name, records, fr)
            self.changes.vanished(folder, records, set())

    def remove(self, gone: list[FolderState], reports: dict[int, FolderReport]) -> None:
        """After the pass's moves and deletions: the records of folders deleted at the source, and the central
        folders with nothing else in them (deepest first, so a parent is left childless)."""
        ctx = self.ctx
        if not ctx.options.propagate_deletes or ctx.dry:
            return
        for folder in sorted(gone, key=lambda f: f.dest_name.count(ctx.dest.layout().separator or "/"),
                             reverse=True):
            if any(r.state == "copied" for r in ctx.store.message_records(folder.id)):
                continue   # a copy could not be removed (its folder failed): the next pass tries again
            fr = reports[folder.id]
            name = folder.dest_name
            folders = ctx.dest.folders(refresh=True)
            if name in folders and not self._protected(name):
                others = ctx.dest.status(name).get("MESSAGES") or 0
                if others or ctx.dest.has_children(name):
                    fr.kept = (f"it holds {others} message(s) govmigrate did not copy" if others
                               else "folders below it are still there")
                else:
                    ctx.hold()
                    ctx.dest.delete_folder(name)
                    fr.removed = True
            ctx.store.delete_folder(folder.id)
            log.info("%s: folder %s was deleted at the source%s", ctx.mailbox.email, folder.source_name,
                     "; deleted on the central host too" if fr.removed else "")

