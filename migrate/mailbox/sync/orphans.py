"""Copies a host appended after it lost the mailbox, and could not record: settled by the mailbox's holder.

A host paused in the middle of an APPEND (a VM stopped, a swap stall) wakes after another host took the mailbox
over; the server finishes its APPEND and the store refuses the record (the fence). The copy is on the central
host all the same: the waking host records it as an *orphan* (its folder, where it landed, which source message
it copies, its fingerprint). Whoever holds the mailbox next (the successor at the end of its pass, or the waking
host itself once the mailbox is free again) settles each orphan against the records:

- the record of its source message names the same UID: the successor found the copy itself (its pending
  records led it there), nothing to do;
- the record names another UID: the successor copied the message too, and the orphan is a duplicate that
  govmigrate made: it is expunged (only that UID, which only govmigrate knows of);
- no record (or a failed one): the orphan is the message's only copy: it is recorded as copied.

A record still pending (another interrupted batch) is left for that batch's own reconciliation.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from migrate.core.store import FolderState, MailboxRow, OrphanRow

log = logging.getLogger(__package__)  # the engine's one logger, migrate.mailbox.sync


def settle_orphans(store: Any, dest: Any, mailbox: MailboxRow) -> int:
    """Settle the mailbox's orphans (module docstring) with ``store`` (fenced: the caller holds the mailbox)
    and ``dest``, its central host session. Returns how many duplicates were expunged."""
    orphans = store.orphans(mailbox.id)
    if not orphans:
        return 0
    folders: dict[int, FolderState] = {f.id: f for f in store.folders(mailbox.id)}
    by_folder: dict[int, list[OrphanRow]] = defaultdict(list)
    for orphan in orphans:
        by_folder[orphan.folder_id].append(orphan)
    expunged = 0
    for folder_id, rows in by_folder.items():
        folder = folders.get(folder_id)
        if folder is None:  # the folder's records are gone (deleted): its copies are other mail now
            store.forget_orphans(o.id for o in rows)
            continue
        records = {(r.src_uid, r.src_item): r for r in store.message_records(folder_id)}
        duplicates, adopted, settled = [], [], []
        for orphan in rows:
            record = records.get((orphan.src_uid, orphan.src_item))
            if record is not None and record.state == "pending":
                continue
            if record is not None and record.state == "copied":
                if record.dest_uid != orphan.dest_uid:
                    duplicates.append(orphan)
            else:
                adopted.append((orphan.src_uid, orphan.src_item, orphan.dest_uid, orphan.fingerprint, orphan.size,
                                orphan.flags))
            settled.append(orphan.id)
        if duplicates:
            dest.expunge(folder.dest_name, [o.dest_uid for o in duplicates])
            expunged += len(duplicates)
        with store.tx():
            if adopted:
                store.record_copied(folder_id, adopted)
            store.forget_orphans(settled)
        log.info("%s: %s: %d copy(ies) left by a host that had lost the mailbox: %d duplicate(s) expunged, %d "
                 "recorded", mailbox.email, folder.dest_name, len(settled), len(duplicates), len(adopted))
    if expunged:
        store.add_event(f"mailbox/{mailbox.email}", "orphans-settled",
                        f"{expunged} duplicate(s) a host appended after it had lost the mailbox were expunged")
    return expunged
