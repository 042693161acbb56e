"""The sync engine: copy mailboxes from ministry servers (IMAP or EWS) into the central host.

Per folder it remembers the source UIDVALIDITY and, per message, source UID (or EWS item id) →
destination UID with a content fingerprint. Later passes copy only what is new and carry flag changes.
Every batch is written to the state store as *pending* before its APPEND and as *copied* after it, so
a crash between the two is repaired on the next pass by matching fingerprints on the destination; a lost
state store or a changed UIDVALIDITY is repaired the same way, folder-wide. Nothing is ever duplicated
and mail that reached the destination by other means is never touched.

Mailboxes run in parallel, bounded per source and for the central host; transient faults reconnect and
resume from the last recorded batch. A stop event ends the run at the next batch boundary.

The modules, from the top: engine (the run), mailbox_pass (one mailbox), imap_folder and ews_folder (one
folder, on folder_sync), reconcile, copy and changes (what a folder sync does), context and reports (what
they all share), selection (which mailboxes a command names).
"""

from migrate.core.errors import TransientError
from migrate.mailbox.imap import describe_failure
from migrate.mailbox.sync.engine import SyncEngine
from migrate.mailbox.sync.reports import FolderReport, MailboxReport, SyncOptions
from migrate.mailbox.sync.selection import selected_mailboxes

__all__ = ["FolderReport", "MailboxReport", "SyncEngine", "SyncOptions", "TransientError", "describe_failure",
           "selected_mailboxes"]
