"""`govmigrate sip`: Inventory PBX extensions and probe the SIP registrar."""

from migrate.cli.placeholder import not_yet_available

command = not_yet_available("sip", "Inventory PBX extensions and probe the SIP registrar.", "the VOIP issue")
