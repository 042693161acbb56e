"""`govmigrate dns`: Check ministry DNS records and apply RFC 2136 updates signed with TSIG."""

from migrate.cli.placeholder import not_yet_available

command = not_yet_available("dns", "Check ministry DNS records and apply RFC 2136 updates signed with TSIG.", "the DNS cut-over issue")
