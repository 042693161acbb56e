"""`govmigrate report`: Programme progress for project managers (terminal, CSV, JSON, HTML)."""

from migrate.cli.placeholder import not_yet_available

command = not_yet_available("report", "Programme progress for project managers (terminal, CSV, JSON, HTML).", "the wave plans and runs issue")
