"""What the IMAP and the Exchange folder syncs share: the pass's context, the parts a folder's sync is made of
(reconciling, copying, carrying changes), and the one call the mailbox pass makes of them."""

from __future__ import annotations

from migrate.core.store import FolderState
from migrate.mailbox.folders import SourceFolderInfo
from migrate.mailbox.sync.changes import ChangeCarrier
from migrate.mailbox.sync.context import PassContext
from migrate.mailbox.sync.copy import Copier
from migrate.mailbox.sync.reconcile import Reconciler
from migrate.mailbox.sync.reports import FolderReport


class FolderSync:
    def __init__(self, ctx: PassContext) -> None:
        self.ctx = ctx
        self.reconciler = Reconciler(ctx)
        self.copier = Copier(ctx)
        self.changes = ChangeCarrier(ctx)

    def sync(self, src_info: SourceFolderInfo, state: FolderState | None, dest_name: str,
             pre_existing: bool, status: dict[str, int], fr: FolderReport) -> None:
        """Bring one mapped folder up to date on the central host. ``state``: the store's record of the folder
        (None only in a dry run of a new folder); ``pre_existing``: ``dest_name`` was there before this pass;
        ``status``: the source's STATUS of the folder, as listed."""
        raise NotImplementedError
