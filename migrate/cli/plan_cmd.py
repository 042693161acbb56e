"""`govmigrate plan`: Generate, review, edit and approve wave plans."""

from migrate.cli.placeholder import not_yet_available

command = not_yet_available("plan", "Generate, review, edit and approve wave plans.", "the wave plans and runs issue")
