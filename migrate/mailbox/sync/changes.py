"""Carrying what changed at the source since the last pass to the central host: flags (three-way), what left a
folder (marked, for a move to claim), and, in a pass that carries deletions, the removal of the copies of
messages deleted at the source (only copies this engine made: they have records)."""

from __future__ import annotations

from collections import defaultdict

from migrate.core.store import FolderState, MessageRecord
from migrate.mailbox.sync.context import PassContext
from migrate.mailbox.sync.moves import Vanished
from migrate.mailbox.sync.reports import FolderReport, Key, cols, flagstr, record_key, split_keys


class ChangeCarrier:
    def __init__(self, ctx: PassContext) -> None:
        self.ctx = ctx

    def carry_flags(self, state: FolderState | None, dest_name: str, records: dict[Key, MessageRecord],
                    current: dict[Key, tuple[str, ...]], fr: FolderReport, encoded: set[Key] = frozenset(), *,
                    record: bool = True) -> list[tuple]:
        """Three-way: only what changed at the source since the last pass is applied to the destination,
        so flags the user changed on the central host are left alone. Returns the records' new flags, (flags,
        src_uid, src_item) each; ``record=False``: the caller records them (with its own writes, in one
        transaction)."""
        add: dict[frozenset[str], list[int]] = defaultdict(list)
        remove: dict[frozenset[str], list[int]] = defaultdict(list)
        updates = []
        for key, flags in current.items():
            rec = records.get(key)
            if rec is None or rec.state != "copied" or rec.dest_uid is None:
                continue
            now_flags = set(flags)
            before = set(rec.flags.split())
            if now_flags == before:
                continue
            if now_flags - before:
                add[frozenset(now_flags - before)].append(rec.dest_uid)
            if before - now_flags:
                remove[frozenset(before - now_flags)].append(rec.dest_uid)
            updates.append((flagstr(now_flags), *cols(key)))
        if not updates:
            return []
        fr.flag_updates += len(updates)
        fr.keywords_encoded += sum(1 for u in updates if (u[1] if u[1] is not None else u[2]) in encoded)
        if self.ctx.dry or state is None:
            return []
        self.ctx.hold()
        self.ctx.dest.change_flags(dest_name, add, remove)
        if record:
            self.ctx.store.update_message_flags(state.id, updates)
        return updates

    def vanished(self, state: FolderState | None, records: dict[Key, MessageRecord], present: set[Key]) -> None:
        """What left the folder at the source since the last pass, as the records say: a copy on the central host
        is marked (``vanished_at``), for this pass to move it where the message went or, if it went nowhere, a
        pass carrying deletions to remove it; a record of a message never copied (refused, not exportable, not
        migrated) goes at once, there being nothing of it on the central host. A marked record whose message is
        back (a UID never comes back; a full re-read says so) is unmarked."""
        if self.ctx.dry or state is None:
            return
        gone = [k for k, r in records.items() if k not in present and r.state == "copied" and r.vanished_at is None]
        back = [k for k, r in records.items() if k in present and r.vanished_at is not None]
        never = [k for k, r in records.items() if k not in present and r.state in ("failed", "skipped")]
        store = self.ctx.store
        if gone:
            store.mark_vanished(state.id, *split_keys(gone))
        if back:
            store.mark_vanished(state.id, *split_keys(back), vanished=False)
        if never:
            store.delete_message_records(state.id, *split_keys(never))

    def settle(self, left: list[Vanished], reports: dict[int, FolderReport]) -> None:
        """The copies whose message left its folder and arrived nowhere: deleted at the source. A pass carrying
        deletions removes them from the central host, by their recorded UIDs only (what govmigrate copied); any
        other pass leaves them, marked, for the pass that does (``status`` counts them apart)."""
        if not left or not self.ctx.options.propagate_deletes:
            return
        by_folder: dict[int, list[Vanished]] = defaultdict(list)
        for entry in left:
            by_folder[entry.folder.id].append(entry)
        for folder_id, entries in by_folder.items():
            folder = entries[0].folder
            fr = reports.get(folder_id)
            if fr is None:
                fr = reports[folder_id] = FolderReport(folder.source_name, folder.dest_name)
                self.ctx.report.folders.append(fr)
            fr.deleted += len(entries)
            if self.ctx.dry:
                continue
            uids = [e.record.dest_uid for e in entries if e.record.dest_uid]
            if uids and folder.dest_name in self.ctx.dest.folders():
                self.ctx.hold()
                self.ctx.dest.expunge(folder.dest_name, uids)  # type: ignore[arg-type]
            self.ctx.store.delete_message_records(folder_id, *split_keys(record_key(e.record) for e in entries))
