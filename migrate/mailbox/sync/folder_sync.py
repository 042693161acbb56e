"""What the IMAP and the Exchange folder syncs share: the pass's context, the parts a folder's sync is made of
(reconciling, copying, carrying changes), and the calls the mailbox pass makes of them: :meth:`FolderSync.read`
for every folder first (so that what left one folder is known before anything arrives in another), then
:meth:`FolderSync.apply` with the mailbox's :class:`~migrate.mailbox.sync.moves.MovePool`."""

from __future__ import annotations

from typing import Any

from migrate.core.store import FolderState
from migrate.mailbox.folders import SourceFolderInfo
from migrate.mailbox.sync.changes import ChangeCarrier
from migrate.mailbox.sync.context import PassContext
from migrate.mailbox.sync.copy import Copier
from migrate.mailbox.sync.moves import MovePool
from migrate.mailbox.sync.reconcile import Reconciler
from migrate.mailbox.sync.reports import FolderReport


class FolderSync:
    def __init__(self, ctx: PassContext) -> None:
        self.ctx = ctx
        self.reconciler = Reconciler(ctx)
        self.copier = Copier(ctx)
        self.changes = ChangeCarrier(ctx)

    def read(self, src_info: SourceFolderInfo, state: FolderState | None, dest_name: str,
             pre_existing: bool, status: dict[str, int], fr: FolderReport) -> Any:
        """What changed in one mapped folder at the source since the last pass; marks what left it. ``state``: the
        store's record of the folder (None only in a dry run of a new folder); ``pre_existing``: ``dest_name`` was
        there before this pass; ``status``: the source's STATUS of the folder, as listed. Returns what
        :meth:`apply` needs."""
        raise NotImplementedError

    def apply(self, work: Any, pool: MovePool | None = None) -> None:
        """Bring the folder up to date on the central host: copy (or move, from ``pool``) what is new, carry
        flags, and record where the folder stands."""
        raise NotImplementedError

    def sync(self, src_info: SourceFolderInfo, state: FolderState | None, dest_name: str,
             pre_existing: bool, status: dict[str, int], fr: FolderReport) -> None:
        """One folder on its own (read, then apply, with no other folder to move from)."""
        self.apply(self.read(src_info, state, dest_name, pre_existing, status, fr))
