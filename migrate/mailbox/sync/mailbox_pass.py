"""One pass over one mailbox: map its folders to the central host's, skip those unchanged since the last pass,
and hand each other folder to the IMAP or the Exchange folder sync; a folder's failure stays that folder's."""

from __future__ import annotations

import logging

from migrate.core.config import FolderPolicy
from migrate.core.errors import FolderFailed, RemoteError
from migrate.core.store import FolderState
from migrate.mailbox.folders import CentralLayout, FolderMapping, SourceFolderInfo, map_folders
from migrate.mailbox.protocol import CommandFailed, ListedFolder
from migrate.mailbox.sync.context import PassContext
from migrate.mailbox.sync.ews_folder import EwsFolderSync
from migrate.mailbox.sync.folder_sync import FolderSync
from migrate.mailbox.sync.imap_folder import ImapFolderSync
from migrate.mailbox.sync.reports import FolderReport

log = logging.getLogger(__package__)  # the engine's one logger, migrate.mailbox.sync


class MailboxPass:
    def __init__(self, ctx: PassContext, central_folders: FolderPolicy) -> None:
        """``central_folders``: the central host's folder policy, applied after the source's own."""
        self.ctx = ctx
        self.central_folders = central_folders
        self.folder_sync: FolderSync = EwsFolderSync(ctx) if ctx.is_ews else ImapFolderSync(ctx)

    def run(self, folders: list[tuple[SourceFolderInfo, ListedFolder | None]]) -> None:
        ctx = self.ctx
        store, mailbox = ctx.store, ctx.mailbox
        recorded = {f.source_name: f for f in store.folders(mailbox.id)}
        # The central host's layout only matters for folders not mapped before; a pass where nothing is new
        # need not even log in there.
        unmapped = any(info.name not in recorded for info, _ in folders)
        layout: CentralLayout = ctx.dest.layout() if unmapped else CentralLayout()
        policy_rules = list(ctx.source.folders.rules) + list(self.central_folders.rules)
        prefix = ctx.source.folders.prefix or self.central_folders.prefix
        mappings = map_folders([info for info, _ in folders], central=layout, rules=policy_rules, prefix=prefix,
                               recorded={name: (f.dest_name, f.note) for name, f in recorded.items()})
        listed = {info.name: lf for info, lf in folders}
        attention = store.folders_needing_attention(mailbox.id)
        if ctx.options.propagate_deletes:
            attention |= store.folders_with_vanished(mailbox.id)
        for mapping in mappings:
            ctx.check_stop()
            folder_report = FolderReport(mapping.source.name, mapping.dest, mapping.note)
            ctx.report.folders.append(folder_report)
            if mapping.dest is None:
                continue
            try:
                self._folder(mapping, recorded.get(mapping.source.name), listed.get(mapping.source.name),
                             attention, folder_report)
                if ctx.long_names and not ctx.dry:
                    store.record_keyword_names(ctx.long_names)
                    ctx.long_names.clear()
            except (FolderFailed, CommandFailed) as exc:
                folder_report.error = exc.message if isinstance(exc, FolderFailed) else exc.text
                log.warning("%s: folder %s: %s", mailbox.email, mapping.source.name, folder_report.error)
            except RemoteError as exc:
                if exc.transient:
                    raise
                folder_report.error = exc.message

    def _folder(self, mapping: FolderMapping, state: FolderState | None, listed: ListedFolder | None,
                attention: set[int], fr: FolderReport) -> None:
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
            return
        pre_existing = dest_name in ctx.dest.folders()
        if not ctx.dry:
            fr.created = ctx.dest.ensure_folder(dest_name, src_info.subscribed)
            if state is None or state.dest_name != dest_name or state.subscribed != src_info.subscribed \
                    or state.note != mapping.note:
                state = ctx.store.ensure_folder(ctx.mailbox.id, src_info.name, dest_name,
                                                subscribed=src_info.subscribed, note=mapping.note)
        else:
            fr.created = not pre_existing
        self.folder_sync.sync(src_info, state, dest_name, pre_existing, status, fr)
