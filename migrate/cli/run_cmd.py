"""`govmigrate run`: Run a wave of the approved plan: pre-flight, then prestage, delta or final passes."""

from migrate.cli.placeholder import not_yet_available

command = not_yet_available("run", "Run a wave of the approved plan: pre-flight, then prestage, delta or final passes.", "the wave plans and runs issue")
