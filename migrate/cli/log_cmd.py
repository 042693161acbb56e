"""`govmigrate log`: print the append-only event log of the workspace."""

from __future__ import annotations

import click

from migrate.cli.app import App, pass_app
from migrate.cli.output import emit_csv, emit_json, emit_table, output_options

COLUMNS = ("id", "at", "actor", "object", "action", "detail")


@click.command()
@click.option("--object", "obj", metavar="OBJECT",
              help="Only events of this object (e.g. mailbox/jane@health.gov.bz, wave/pilot).")
@click.option("--since", metavar="TIME", help="Only events at or after this UTC time (2026-11-27T22:00).")
@click.option("-n", "--last", "limit", type=click.IntRange(min=1), help="Only the last N events.")
@output_options
@pass_app
def command(app: App, obj: str | None, since: str | None, limit: int | None, fmt: str) -> None:
    """Show the event log: who did what to which object, and when (UTC)."""
    events = app.store.events(obj=obj, since=since, limit=limit)
    rows = [dict(id=e.id, at=e.at, actor=e.actor, object=e.object, action=e.action, detail=e.detail)
            for e in events]
    if fmt == "json":
        emit_json(rows)
    elif fmt == "csv":
        emit_csv(COLUMNS, rows)
    elif not rows:
        app.info("no events" + (" match" if obj or since else " yet"))
    else:
        emit_table(app, None, [(c, c) for c in COLUMNS], rows)
