"""`govmigrate sip`: SIP cut-over checks (RFC 3263 lookups, OPTIONS, REGISTER) against the hosted platform."""

from migrate.cli.placeholder import not_yet_available

command = not_yet_available("sip", "Check the hosted SIP platform: RFC 3263 lookups, OPTIONS, REGISTER.", "the SIP checks issue")
