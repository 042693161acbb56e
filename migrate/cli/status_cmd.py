"""`govmigrate status`: Helpdesk view: where is one user's mailbox in the migration?"""

from migrate.cli.placeholder import not_yet_available

command = not_yet_available("status", "Helpdesk view: where is one user's mailbox in the migration?", "the wave plans and runs issue")
