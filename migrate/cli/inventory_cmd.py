"""`govmigrate inventory`: probe ministry mail servers, measure every mailbox, and show what was found."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from migrate.cli.app import App, pass_app
from migrate.cli.output import emit_csv, emit_json, emit_table, human_bytes, output_options
from migrate.cli.progress import progress_for
from migrate.core.errors import Finished

if TYPE_CHECKING:
    from migrate.reports.inventory import SourceSection


MAILBOX_COLUMNS = [("email", "mailbox"), ("status", "status"), ("folders", "folders>"),
                   ("messages", "messages>"), ("size", "size>"), ("largest", "largest>"), ("oldest", "oldest"),
                   ("newest", "newest"), ("quota", "quota")]
FOLDER_COLUMNS = [("email", "mailbox"), ("folder", "folder"), ("special_use", "special use"),
                  ("messages", "messages>"), ("size", "size>"), ("error", "error")]
NO_WRAP = ("email", "folder")  # addresses and folder names are read whole

source_option = click.option(
    "-s", "--source", "source_ids", multiple=True, metavar="ID",
    help="Only this source (a source id from migration.yaml); repeat for several. Default: all.")


@click.group()
def command() -> None:
    """Probe ministry mail servers and measure every mailbox.

    `inventory mail` contacts the servers and records what it finds in the state store;
    `inventory show` prints the recorded inventory again without contacting any server.
    """


@command.command("phones")
@source_option
@output_options
@pass_app
def phones(app: App, source_ids: tuple[str, ...], fmt: str) -> Finished:
    """Read every ministry PBX's files (the pbx: inputs of each source) and record each extension.

    Per extension: number, name, tech and transport, caller IDs (the outbound one too), voicemail box
    and e-mail, whether a PIN and a SIP secret exist (never their values), DIDs routed to it (E.164,
    phones.region), the device if known, and the file and line it was read from. Each is tied to its
    mail user by the voicemail e-mail, then by a user column, then by display name (reported as "by
    name only": confirm it); extensions with no user are listed per ministry.

    A bad row or section (a malformed pjsip section, a number defined twice, a DID that is not a number)
    is an error naming its file, line and field: it is left out, the rest of the file is read, and the
    extension it concerns is recorded as held (neither exported nor cut over until the file is fixed,
    or the operator passes --force --reason). Exit 2 when any file has an error, 1 when there are only
    warnings.
    """
    from migrate.reports.phones import CSV_COLUMNS, phone_rows, unlinked
    from migrate.voip.inventory import run_phone_inventory

    chosen = list(source_ids) or None
    result = run_phone_inventory(app.project, app.store, chosen)
    rows = phone_rows(app.store, list(result.sources))
    if fmt == "json":
        emit_json({"extensions": rows, "problems": [p.__dict__ for p in result.problems],
                   "files": {s: inv.files for s, inv in result.sources.items()},
                   "forgotten": result.forgotten, "stale": result.stale})
    elif fmt == "csv":
        emit_csv(CSV_COLUMNS, rows)
    else:
        for source_id in result.sources:
            mine = [r for r in rows if r["source"] == source_id]
            for r in mine:
                r["who"] = r["user"] + (" (by name only: confirm)" if r["link"] == "name" else "")
                # The box's e-mail only where it is not the user's own address (it mostly is: that linked them).
                email = r["voicemail_email"]
                r["vm"] = r["voicemail_box"] + (f" → {email}" if email and email.lower() != r["user"].lower() else "")
                r["shown_state"] = r["state"] + (" (HELD)" if r["held"] else "") + (
                    " (moved by hand)" if r["line"] == "by-hand" else "")
            emit_table(app, f"{source_id}: {len(mine)} extension(s)",
                       [("number", "ext"), ("name", "name"), ("who", "user"), ("dids", "DIDs"),
                        ("outbound_cid", "outbound CID"), ("vm", "voicemail"), ("secret", "secret"), ("wave", "wave"),
                        ("shown_state", "state")], mine, no_wrap=("number", "dids", "who"))
        for source_id, rooms in unlinked(rows).items():
            app.info(f"{source_id}: {len(rooms)} extension(s) with no user: "
                     + ", ".join(f"{r['number']} {r['name']}".strip() for r in rooms))
        for r in rows:
            if r["line"] == "by-hand":
                app.info(f"{r['source']}:{r['number']} is not a SIP phone ({r['tech']}): it gets no account on the "
                         "hosted platform and is moved by hand")
    for key in result.forgotten:
        app.info(f"{key} is no longer in the PBX files: forgotten")
    for key in result.stale:
        app.warn(f"{key} is no longer in the PBX files, but it is already past 'new': left as it is")
    for problem in result.problems:
        app.problem(problem)
    errors = [p for p in result.problems if p.severity == "error"]
    held = [r for r in rows if r["held"]]
    if errors:
        app.info(f"{len(errors)} error(s) in the PBX files: the rows they name are left out, the rest is recorded"
                 + (f"; {len(held)} extension(s) held until the files are fixed" if held else ""))
    return Finished(invalid=bool(errors))


@command.command("mail")
@source_option
@output_options
@pass_app
def mail(app: App, source_ids: tuple[str, ...], fmt: str) -> Finished:
    """Probe each source's mail server and measure every mailbox in its user list.

    Per server: reachability, TLS version and certificate, the IMAP capabilities that matter for a
    migration, hierarchy separator and namespace, the login method that works, and the server software.
    Per mailbox: login, folders with message counts and sizes, totals, largest message, oldest and
    newest message date, and quota use. Results are stored (a re-run replaces them) and printed as a
    table per ministry.

    Anything that fails (a malformed user-list row, an unreachable server, a refused certificate or
    login, a folder that cannot be read) is recorded with its reason, the rest goes on, and the command
    exits 1.
    """
    from migrate.mailbox.inventory import run_inventory
    from migrate.reports.inventory import load_inventory

    project, store = app.project, app.store
    chosen = list(source_ids) or None
    if chosen:
        for sid in chosen:
            project.source(sid)  # an unknown id is a usage error before anything is contacted
    with progress_for(app, "inventory", unit="items") as sink:
        result = run_inventory(project, store, chosen, progress=sink)
    sections = load_inventory(store, list(result.probes))
    _render(app, sections, fmt, with_folders=False)
    total = sum(len(boxes) for boxes in result.mailboxes.values())
    summary = (f"inventory: {total} mailbox{'es' if total != 1 else ''} in {len(result.probes)} "
               f"source{'s' if len(result.probes) != 1 else ''}, {result.measured} measured completely")
    if not result.ok:  # user-list problems are listed here too, with the servers' and mailboxes'
        count = len(result.failures)
        app.warn(f"{summary}; {count} problem{'s' if count != 1 else ''}:")
        for line in result.failure_summary():
            app.warn(f"  {line}")
        return Finished(partial=True)
    app.info(summary)
    return Finished()


@command.command("show")
@source_option
@click.option("--folders", is_flag=True, help="List every folder of every mailbox instead of one row per mailbox.")
@output_options
@pass_app
def show(app: App, source_ids: tuple[str, ...], folders: bool, fmt: str) -> None:
    """Print the recorded inventory again, without contacting any server.

    One table per ministry with the server probe's findings and totals; --json gives everything
    (folders included), --csv one row per mailbox (with --folders, one row per folder).
    """
    from migrate.reports.inventory import load_inventory

    chosen = list(source_ids) or None
    if chosen:
        for sid in chosen:
            app.project.source(sid)
    sections = load_inventory(app.store, chosen)
    if not sections and fmt == "table":
        app.info("no inventory recorded yet: run govmigrate inventory mail")
    _render(app, sections, fmt, with_folders=folders)


def _render(app: App, sections: list[SourceSection], fmt: str, *, with_folders: bool) -> None:
    from migrate.reports.inventory import (
        CSV_COLUMNS,
        FOLDER_CSV_COLUMNS,
        as_json,
        csv_rows,
        folder_csv_rows,
        grand_totals,
    )

    if fmt == "json":
        emit_json(as_json(sections))
    elif fmt == "csv":
        if with_folders:
            emit_csv(FOLDER_CSV_COLUMNS, folder_csv_rows(sections))
        else:
            emit_csv(CSV_COLUMNS, csv_rows(sections))
    else:
        for section in sections:
            _table(app, section, with_folders=with_folders)
        if len(sections) > 1:
            t = grand_totals(sections)
            app.out.print(f"All sources: {t.mailboxes} mailboxes ({t.measured} measured, {t.failed} failed), "
                          f"{t.folders} folders, {t.messages} messages, {human_bytes(t.bytes)}",
                          markup=False, highlight=False)


def _table(app: App, section: SourceSection, *, with_folders: bool) -> None:
    from migrate.core.store import MIGRATED_KINDS
    from migrate.reports.inventory import probe_lines

    out = app.out
    out.print(f"{section.ministry} ({section.id})", markup=False, highlight=False, style="bold")
    for line in probe_lines(section.probe):
        out.print(f"  {line}", markup=False, highlight=False)
    if with_folders:
        rows = [{"email": m.email, "folder": f.name + ("" if f.kind in MIGRATED_KINDS else f" ({f.kind}: not migrated as mail)"),
                 "special_use": f.special_use or "",
                 "messages": f.messages, "size": human_bytes(f.bytes), "error": f.error or ""}
                for m in section.mailboxes for f in m.folder_list]
        emit_table(app, f"{section.ministry}: folders", FOLDER_COLUMNS, rows, no_wrap=NO_WRAP)
        out.print("")
        return
    t = section.totals
    footer = {"email": f"{t.mailboxes} mailboxes", "status": f"{t.measured} ok" + (f", {t.failed} failed"
                                                                                   if t.failed else ""),
              "folders": t.folders, "messages": t.messages, "size": human_bytes(t.bytes),
              "largest": human_bytes(t.largest), "oldest": (t.oldest or "")[:10], "newest": (t.newest or "")[:10],
              "quota": human_bytes(t.quota_used) if t.quota_used else ""}
    emit_table(app, f"{section.ministry}: mailboxes", MAILBOX_COLUMNS, [_mailbox_row(m) for m in section.mailboxes],
               footer=footer, no_wrap=NO_WRAP)
    if t.archive_items:
        out.print(f"  archive mailboxes: {t.archive_items} messages, moved with the mail", markup=False,
                  highlight=False)
    if t.calendar_items or t.contacts or t.tasks or t.not_migrated_items:
        out.print(f"  besides mail: {t.calendar_items} calendar items, {t.contacts} contacts, {t.tasks} tasks; "
                  f"{t.not_migrated_items} items in folders that are not migrated (Outbox, Sync Issues, RSS Feeds, "
                  "Recoverable Items: see --folders)", markup=False, highlight=False)
    by_reason: dict[str, list[str]] = {}
    for m in section.mailboxes:
        if m.error:
            by_reason.setdefault(m.error, []).append(m.email)
    if by_reason:
        out.print("  problems:", markup=False, highlight=False)
        for reason, emails in by_reason.items():
            who = emails[0] if len(emails) == 1 else f"{len(emails)} mailboxes"
            out.print(f"    {who}: {reason}", markup=False, highlight=False)
    out.print("")


def _mailbox_row(m: Any) -> dict[str, Any]:
    quota = ""
    if m.quota_used is not None:
        quota = human_bytes(m.quota_used) + (f" of {human_bytes(m.quota_limit)}" if m.quota_limit else "")
    return {"email": m.email, "status": m.status, "folders": m.folders if m.folders is not None else "",
            "messages": m.messages if m.messages is not None else "", "size": human_bytes(m.bytes),
            "largest": human_bytes(m.largest), "oldest": (m.oldest or "")[:10], "newest": (m.newest or "")[:10],
            "quota": quota}
