"""`govmigrate init`: create a migration workspace with a commented example project file."""

from __future__ import annotations

from pathlib import Path

import click

from migrate.cli.app import App, pass_app


@click.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@pass_app
def command(app: App, directory: Path | None) -> None:
    """Create a migration workspace in DIRECTORY (default: the --workspace directory).

    The workspace gets a fully commented example migration.yaml, example user lists under users/,
    plans/ and reports/ directories, and an empty state store. An existing workspace is never
    overwritten.
    """
    from migrate.core.workspace import init_workspace

    ws = init_workspace(directory or app.workspace_dir)
    app.info(f"created workspace {ws.root}")
    app.info(f"  {ws.project_file.name}  the project file: edit it for your central host and ministries")
    app.info("  users/          one CSV user list per ministry")
    app.info("  plans/          wave plans (govmigrate plan generate)")
    app.info("  reports/        generated reports")
    app.info(f"next: edit {ws.project_file}, then run: govmigrate -w {ws.root} check")
