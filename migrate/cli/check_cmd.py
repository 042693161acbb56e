"""`govmigrate check`: validate the project file, the user lists and the PBX files it names, offline."""

from __future__ import annotations

import click

from migrate.cli.app import App, pass_app
from migrate.core.errors import ValidationFailed


@click.command()
@pass_app
def command(app: App) -> None:
    """Validate migration.yaml, every user list and every PBX file it names, without contacting any server.

    Every problem is listed as FILE:LINE: FIELD: MESSAGE and the command exits 2 if there is any
    error (in a PBX file too: a bad row, a number defined twice), 1 if there are only warnings. A
    secret reference that does not resolve yet (an unset variable) is only a warning here.
    """
    from migrate.core.config import user_password_problems
    from migrate.core.userlist import read_user_list

    ws = app.workspace
    project = ws.load_project()  # raises ValidationFailed (exit 2) with every problem listed
    problems = list(project.warnings)
    total_users = 0
    for source in project.config.sources:
        needs_password = getattr(getattr(source.server, "login", None), "method", "") == "user_password"
        entries, found = read_user_list(project.resolve_path(source.users), domains=source.domains,
                                        source_id=source.id, needs_password=needs_password)
        problems.extend(found)
        total_users += len(entries)
        filename = str(project.resolve_path(source.users))
        for entry in entries if needs_password else ():
            if entry.password_ref and entry.password_ref != "prompt":
                problems.extend(user_password_problems(project, entry.password_ref, filename, entry.line))
    pbx = [s for s in project.config.sources if s.pbx is not None]
    if pbx:
        from migrate.voip.inventory import read_all

        problems.extend(read_all(project, pbx)[1])
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ValidationFailed(f"{ws.project_file} and the files it names", problems)
    notes = [p for p in problems if p.severity == "note"]
    problems = [p for p in problems if p.severity != "note"]
    for warning in problems:
        app.warn(str(warning))
    for note in notes:
        app.info(f"note: {note}")
    sources = project.config.sources
    app.out.print(f"{ws.project_file}: ok — {len(sources)} source{'s' if len(sources) != 1 else ''}, "
                  f"{total_users} mailbox{'es' if total_users != 1 else ''}"
                  + (f", the PBX files of {len(pbx)} source{'s' if len(pbx) != 1 else ''}" if pbx else "")
                  + (f", {len(problems)} warning{'s' if len(problems) != 1 else ''}" if problems else ""),
                  markup=False, highlight=False)
