"""`govmigrate cutover`: Final delta sync, DNS switch and SIP checks for a wave's domains."""

from migrate.cli.placeholder import not_yet_available

command = not_yet_available("cutover", "Final delta sync, DNS switch and SIP checks for a wave's domains.", "the DNS and SIP cut-over issues")
