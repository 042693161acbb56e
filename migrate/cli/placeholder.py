"""Commands whose issue has not landed yet: they exist, explain themselves, and exit 2."""

from __future__ import annotations

import click

from migrate.core.errors import NotYetAvailable


def not_yet_available(name: str, summary: str, issue: str) -> click.Command:
    @click.command(name=name, help=f"{summary}\n\nNot yet available: arrives with {issue}.",
                   context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def command() -> None:
        raise NotYetAvailable(f"'govmigrate {name}' is not yet available (arrives with {issue})")

    return command
