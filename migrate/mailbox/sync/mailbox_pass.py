"""One pass over one mailbox: carry the folders the user renamed, map the folders to the central host's, read
every folder that changed since the last pass (skipping those unchanged), then bring each up to date (copying
what is new, moving on the central host what the user moved at the source), and finally carry deletions of
messages and folders where the pass does. A folder's failure stays that folder's.

Every folder is read before any is brought up to date: a message the user moved from one folder to another is
then known to have left the first before it is found new in the second, whichever comes first in the mapping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from migrate.core.config import FolderPolicy
from migrate.core.errors import FolderFailed, RemoteError, Throttled
from migrate.core.store import FolderState
from migrate.mailbox.folders import CentralLayout, FolderMapping, SourceFolderInfo, map_folders
from migrate.mailbox.protocol import CommandFailed, ListedFolder
from migrate.mailbox.sync.context import PassContext
from migrate.mailbox.sync.ews_folder import EwsFolderSync
from migrate.mailbox.sync.folder_changes import FolderChanges
from migrate.mailbox.sync.folder_sync import FolderSync
from migrate.mailbox.sync.imap_folder import ImapFolderSync
from migrate.mailbox.sync.moves import MovePool
from migrate.mailbox.sync.reports import FolderReport

log = logging.getLogger(__package__)  # the engine's one logger, migrate.mailbox.sync

Listing = list[tuple[SourceFolderInfo, ListedFolder | None]]


class MailboxPass:
    def __init__(self, ctx: PassContext, central_folders: FolderPolicy) -> None:
        """``central_folders``: the central host's folder policy, applied after the source's own."""
        self.ctx = ctx
        self.central_folders = central_folders
        self.folder_sync: FolderSync = EwsFolderSync(ctx) if ctx.is_ews else ImapFolderSync(ctx)
        self.folder_changes = FolderChanges(ctx)

    def run(self, folders: Listing) -> None:
        ctx = self.ctx
        store, mailbox = ctx.store, ctx.mailbox
        recorded = {f.source_name: f for f in store.folders(mailbox.id)}
        listed = {info.name: lf for info, lf in folders}
        renamed = self._renames(folders, recorded)
        gone = [f for name, f in recorded.items() if name not in listed]
        mappings = self._map(folders, recorded)
        attention = store.folders_needing_attention(mailbox.id)
        if ctx.options.propagate_deletes:
            attention |= store.folders_with_vanished(mailbox.id)
        reports: dict[int, FolderReport] = {}
        work: list[tuple[FolderReport, Any]] = []
        for mapping in mappings:
            ctx.check_stop()
            fr = FolderReport(mapping.source.name, mapping.dest, mapping.note)
            ctx.report.folders.append(fr)
            if mapping.source.name in renamed:
                fr.renamed_from, fr.renamed_dest_from, fr.warnings = renamed[mapping.source.name]
            if mapping.dest is None:
                continue
            state = recorded.get(mapping.source.name)
            read = self._guarded(fr, lambda m=mapping, s=state, r=fr: self._read(m, s, listed.get(m.source.name),
                                                                                 attention, r))
            if read is not None:
                state, folder_work = read
                if state is not None:
                    reports[state.id] = fr
                if folder_work is not None:
                    work.append((fr, folder_work))
        self.folder_changes.leave(gone, reports)
        # What left a folder matters to a folder with something new in it, or to a pass carrying deletions; a
        # nightly pass where every folder is unchanged does not even ask.
        pool = MovePool.load(ctx, {f.id: f for f in store.folders(mailbox.id)}) \
            if work or gone or ctx.options.propagate_deletes else MovePool()
        for fr, folder_work in work:
            ctx.check_stop()
            self._guarded(fr, lambda w=folder_work: self.folder_sync.apply(w, pool))
            if ctx.long_names and not ctx.dry:
                store.record_keyword_names(ctx.long_names)
                ctx.long_names.clear()
        self.folder_sync.changes.settle(pool.left(), reports)
        self.folder_changes.remove(gone, reports)

    def _renames(self, folders: Listing, recorded: dict[str, FolderState]) -> dict[str, tuple]:
        """Carry the folders renamed at the source (``recorded`` follows); returns, per new name, what the report
        says of it: (old source name, old central name or None, warnings)."""
        renamed = self.folder_changes.renamed(recorded, folders)
        if not renamed:
            return {}
        moved_ids = {f.id for f in renamed.values()}
        wanted = {m.source.name: m for m in self._map(folders, {n: f for n, f in recorded.items()
                                                                if f.id not in moved_ids})}
        out = {}
        # Folders above first: renaming one on the central host renames those below it with it.
        for new_name, old in sorted(renamed.items(), key=lambda kv: len(kv[1].dest_name)):
            mapping = wanted[new_name]
            if mapping.dest is None:
                continue            # excluded by a rule under its new name: as if deleted
            current = next((f for f in self.ctx.store.folders(self.ctx.mailbox.id) if f.id == old.id), old) \
                if not self.ctx.dry else old
            fr = FolderReport(new_name, mapping.dest)
            state = self.folder_changes.carry_rename(current, mapping, fr)
            recorded.pop(old.source_name, None)
            recorded[new_name] = state
            out[new_name] = (fr.renamed_from, fr.renamed_dest_from, fr.warnings)
        return out

    def _map(self, folders: Listing, recorded: dict[str, FolderState]) -> list[FolderMapping]:
        ctx = self.ctx
        # The central host's layout only matters for folders not mapped before; a pass where nothing is new
        # need not even log in there.
        unmapped = any(info.name not in recorded for info, _ in folders)
        layout: CentralLayout = ctx.dest.layout() if unmapped else CentralLayout()
        policy_rules = list(ctx.source.folders.rules) + list(self.central_folders.rules)
        prefix = ctx.source.folders.prefix or self.central_folders.prefix
        return map_folders([info for info, _ in folders], central=layout, rules=policy_rules, prefix=prefix,
                           recorded={name: (f.dest_name, f.note) for name, f in recorded.items()})

    def _guarded(self, fr: FolderReport, step: Callable[[], Any]) -> Any:
        """One folder's step; what fails there is that folder's (a lost connection or a throttling server is the
        mailbox's)."""
        try:
            return step()
        except (FolderFailed, CommandFailed) as exc:
            fr.error = exc.message if isinstance(exc, FolderFailed) else exc.text
            log.warning("%s: folder %s: %s", self.ctx.mailbox.email, fr.source, fr.error)
        except RemoteError as exc:
            if exc.transient or isinstance(exc, Throttled):
                raise
            fr.error = exc.message
        return None

    def _read(self, mapping: FolderMapping, state: FolderState | None, listed: ListedFolder | None,
              attention: set[int], fr: FolderReport) -> tuple[FolderState | None, Any]:
        """(the folder's record, what its sync needs, or None when it is unchanged since the last pass)."""
        ctx = self.ctx
        src_info = mapping.source
        dest_name = mapping.dest
        assert dest_name is not None
        status = listed.status if listed is not None else {}
        if listed is not None and listed.selectable and not status:
            raise FolderFailed(f"the source server cannot report the status of {src_info.name!r}")
        if (state is not None and status and not ctx.is_ews
                and state.dest_name == dest_name and state.subscribed == src_info.subscribed
                and state.id not in attention
                and state.source_uidvalidity == status.get("UIDVALIDITY")
                and state.source_uidnext == status.get("UIDNEXT")
                and state.source_messages == status.get("MESSAGES")
                and "HIGHESTMODSEQ" in status and state.source_modseq == status.get("HIGHESTMODSEQ")):
            fr.unchanged = True
            ctx.report.src_messages += state.source_messages or 0
            ctx.report.src_bytes += state.source_bytes or 0
            return state, None
        pre_existing = dest_name in ctx.dest.folders()
        if not ctx.dry:
            fr.created = ctx.dest.ensure_folder(dest_name, src_info.subscribed)
            if state is not None and state.subscribed and not src_info.subscribed:
                ctx.dest.set_subscribed(dest_name, False)     # unsubscribed at the source since the last pass
            if state is None or state.dest_name != dest_name or state.subscribed != src_info.subscribed \
                    or state.note != mapping.note or state.source_key != src_info.folder_id:
                state = ctx.store.ensure_folder(ctx.mailbox.id, src_info.name, dest_name,
                                                subscribed=src_info.subscribed, note=mapping.note,
                                                source_key=src_info.folder_id)
        else:
            fr.created = not pre_existing
        return state, self.folder_sync.read(src_info, state, dest_name, pre_existing, status, fr)
