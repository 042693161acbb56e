"""`govmigrate inventory`: Probe ministry mail servers and measure every mailbox."""

from migrate.cli.placeholder import not_yet_available

command = not_yet_available("inventory", "Probe ministry mail servers and measure every mailbox.", "the mail inventory issue")
