"""`govmigrate sync`: Copy mailboxes from their ministry server into the central host."""

from migrate.cli.placeholder import not_yet_available

command = not_yet_available("sync", "Copy mailboxes from their ministry server into the central host.", "the mailbox sync engine issue")
