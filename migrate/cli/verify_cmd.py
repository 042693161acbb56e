"""`govmigrate verify`: Compare source and destination mailboxes message by message."""

from migrate.cli.placeholder import not_yet_available

command = not_yet_available("verify", "Compare source and destination mailboxes message by message.", "the mailbox sync engine issue")
