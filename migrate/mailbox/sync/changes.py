"""Carrying what changed at the source since the last pass to the central host: flags (three-way) and, with
--propagate-deletes, deletions of messages this engine copied."""

from __future__ import annotations

from collections import defaultdict

from migrate.core.store import FolderState, MessageRecord
from migrate.mailbox.sync.context import PassContext
from migrate.mailbox.sync.reports import FolderReport, Key, cols, flagstr


class ChangeCarrier:
    def __init__(self, ctx: PassContext) -> None:
        self.ctx = ctx

    def carry_flags(self, state: FolderState | None, dest_name: str, records: dict[Key, MessageRecord],
                    current: dict[Key, tuple[str, ...]], fr: FolderReport, encoded: set[Key] = frozenset()) -> None:
        """Three-way: only what changed at the source since the last pass is applied to the destination,
        so flags the user changed on the central host are left alone."""
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
            return
        fr.flag_updates += len(updates)
        fr.keywords_encoded += sum(1 for u in updates if (u[1] if u[1] is not None else u[2]) in encoded)
        if self.ctx.dry or state is None:
            return
        self.ctx.hold()
        self.ctx.dest.change_flags(dest_name, add, remove)
        self.ctx.store.update_message_flags(state.id, updates)

    def vanished(self, state: FolderState | None, dest_name: str, records: dict[Key, MessageRecord],
                 present: set[Key], fr: FolderReport) -> None:
        gone = [k for k, r in records.items() if r.state == "copied" and k not in present]
        self.delete(state, dest_name, records, gone, fr)

    def delete(self, state: FolderState | None, dest_name: str, records: dict[Key, MessageRecord],
               gone: list[Key], fr: FolderReport) -> None:
        if not gone or not self.ctx.options.propagate_deletes:
            return
        # Only messages this engine copied (they have a record) are ever removed.
        dest_uids = [records[k].dest_uid for k in gone if records[k].dest_uid]
        fr.deleted += len(gone)
        if self.ctx.dry or state is None:
            return
        if dest_uids:
            self.ctx.hold()
            self.ctx.dest.expunge(dest_name, dest_uids)  # type: ignore[arg-type]
        self.ctx.store.delete_message_records(state.id, [k for k in gone if isinstance(k, int)],
                                              [k for k in gone if isinstance(k, str)])
