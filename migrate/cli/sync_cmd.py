"""`govmigrate sync`: copy mailboxes from their ministry server into the central host."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from migrate.cli.app import App, pass_app
from migrate.cli.mailboxes import select_mailboxes
from migrate.cli.output import emit_json, emit_table, human_bytes, output_options
from migrate.cli.progress import print_summary, progress_for, summary_line
from migrate.core.errors import Finished

if TYPE_CHECKING:
    from migrate.mailbox.sync import MailboxReport



@click.command()
@click.argument("users", nargs=-1, metavar="[USER]...")
@click.option("--source", "source_id", metavar="ID", help="Every mailbox of this source (ministry).")
@click.option("--all", "everything", is_flag=True, help="Every mailbox of every source.")
@click.option("--dry-run", is_flag=True, help="Show what would be copied; change nothing anywhere.")
@click.option("--propagate-deletes", is_flag=True,
              help="Remove from the central host what was deleted at the source since the last pass: messages "
                   "and folders govmigrate itself copied. Moves and renames are carried without it.")
@click.option("--settings", "read_settings", is_flag=True,
              help="Read the rules, out-of-office, shared folders and delegates again even where a sync read "
                   "them less than sync.settings_interval_hours ago.")
@output_options(csv=False)
@pass_app
def command(app: App, users: tuple[str, ...], source_id: str | None, everything: bool, dry_run: bool,
            propagate_deletes: bool, read_settings: bool, fmt: str) -> Finished:
    """Copy mailboxes (USER: email address or login) into the central host.

    Incremental and resumable: run it once, twice, or after a crash, and the central host ends with a
    faithful copy (same bytes, flags, dates and folders) and no duplicates. New mail that reached the
    central host by other means is never touched. Exits 1 if any mailbox, folder or message failed.

    Rules, out-of-office, shared folders and delegates are read again once sync.settings_interval_hours
    (default 12) have passed since a sync last read them (--settings: now); a wave's final pass always does.
    """
    from migrate.mailbox.sync import SyncEngine, SyncOptions

    project, store, mailboxes = select_mailboxes(app, users, source_id, everything)
    options = SyncOptions.from_project(project, dry_run=dry_run, propagate_deletes=propagate_deletes,
                                       lock_dir=app.workspace.locks_dir,
                                       **({"settings_max_age": None} if read_settings else {}))
    started = time.monotonic()
    with progress_for(app, "dry run" if dry_run else "sync") as sink:
        reports = SyncEngine(project, store, options=options, progress=sink).run(mailboxes)
    seconds = time.monotonic() - started
    render(app, reports, dry_run=dry_run, as_json=fmt == "json")
    print_summary(app, summary(reports, seconds, dry_run=dry_run))
    # Locked: another sync or run holds some of these mailboxes (named above).
    return Finished(partial=not all(r.complete for r in reports), locked=any(r.locked for r in reports))


#: Above this many mailboxes the sync table leaves out those where nothing happened.
QUIET_ROWS_LIMIT = 50


def _nothing_happened(row: dict, dry_run: bool) -> bool:
    if row["result"] != "ok" or row["problems"] or row["folder_warnings"] or row.get("not_migrated") \
            or any(g["failed"] or g["error"] or g["copied"] or g["updated"] for g in row.get("groupware", [])):
        return False
    if dry_run:
        return not row["would_copy"] and not row["flag_updates"] and not row["created_folders"]
    return not (row["copied"] or row["flag_updates"] or row["deleted"] or row["refused"] or row["reconciled"]
                or row["resumed"] or row["created_folders"] or row["moved"] or row["folders_renamed"]
                or row["folders_deleted"])


def summary(reports: list[MailboxReport], seconds: float, *, dry_run: bool) -> str:
    """``sync: 12 mailboxes, 4,512 messages, 186.3 MB in 3 min 12 s; 1 failed``: what was copied (a dry run: what
    would be), mailboxes that failed (locked by another process included), and those that finished with
    messages or folders left behind."""
    if dry_run:
        messages = sum(f.to_copy for r in reports for f in r.folders)
        nbytes = sum(f.to_copy_bytes for r in reports for f in r.folders)
    else:
        messages, nbytes = sum(r.copied for r in reports), sum(r.copied_bytes for r in reports)
    incomplete = sum(1 for r in reports if r.ok and not r.complete)
    more = [f"{incomplete} incomplete (messages refused or folders failed)"] if incomplete else []
    return summary_line("sync (dry run)" if dry_run else "sync", mailboxes=len(reports), messages=messages,
                        nbytes=nbytes, seconds=seconds, failed=sum(1 for r in reports if not r.ok),
                        dry_run=dry_run, more=more)


def report_rows(reports: list[MailboxReport], dry_run: bool) -> list[dict]:
    rows = []
    for r in reports:
        row = {
            "mailbox": r.email, "source": r.source_id,
            "result": ("failed: " + (r.error or "")) if not r.ok else ("ok" if r.complete else "incomplete"),
            "folders": len([f for f in r.folders if f.dest and not f.deleted_at_source]),
            "created_folders": sum(1 for f in r.folders if f.created),
            "source_messages": r.src_messages, "source_bytes": r.src_bytes,
            "copied": r.copied, "copied_bytes": r.copied_bytes,
            "reconciled": sum(f.reconciled for f in r.folders),
            "resumed": sum(f.resumed for f in r.folders),
            "flag_updates": sum(f.flag_updates for f in r.folders),
            "deleted": sum(f.deleted for f in r.folders),
            "moved": r.moved,
            "refused": r.failed_messages, "folder_errors": r.folder_errors,
            "keywords_encoded": r.keywords_encoded,
            "seconds": round(r.seconds, 2),
        }
        if dry_run:
            row["would_copy"] = sum(f.to_copy for f in r.folders)
            row["would_copy_bytes"] = sum(f.to_copy_bytes for f in r.folders)
        row["problems"] = [{"folder": f.source, "error": f.error} for f in r.folders if f.error] + \
            [{"folder": f.source, "message": m, "error": why} for f in r.folders for m, why in f.failed]
        row["renamed_folders"] = [{"source": f.source, "dest": f.dest, "why": f.note}
                                  for f in r.folders if f.note]
        # What the user did to folders at the source since the last pass, as carried to the central host.
        row["folders_renamed"] = [{"from": f.renamed_from, "to": f.source, "dest": f.dest,
                                   "dest_from": f.renamed_dest_from} for f in r.folders if f.renamed_from]
        row["folders_deleted"] = [{"folder": f.source, "dest": f.dest, "removed": f.removed, "kept": f.kept}
                                  for f in r.folders if f.deleted_at_source]
        row["folder_warnings"] = [{"folder": f.source, "warning": w} for f in r.folders for w in f.warnings]
        row["not_migrated"] = [{"folder": f.source, "item": m, "why": why} for f in r.folders
                               for m, why in f.not_migrated]
        row["groupware"] = [{"kind": g.kind, "location": g.location, "source_items": g.source_items,
                             "copied": g.copied, "updated": g.updated, "unchanged": g.unchanged,
                             "failed": [{"item": item, "error": why} for item, why in g.failed], "error": g.error}
                            for g in r.groupware]
        rows.append(row)
    return rows


def render(app: App, reports: list[MailboxReport], *, dry_run: bool, as_json: bool) -> None:
    rows = report_rows(reports, dry_run)
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        row["size"] = human_bytes(row["source_bytes"])
        row["volume"] = human_bytes(row["copied_bytes"])
        if dry_run:
            row["would"] = f"{row['would_copy']} ({human_bytes(row['would_copy_bytes'])})"
    columns = [("mailbox", "mailbox"), ("result", "result"), ("source_messages", "messages>"), ("size", "size>")]
    if dry_run:
        columns += [("would", "would copy>"), ("created_folders", "new folders>"), ("flag_updates", "flag updates>")]
    else:
        columns += [("copied", "copied>"), ("volume", "volume>"), ("moved", "moved>"), ("flag_updates", "flags>"),
                    ("deleted", "deleted>"), ("refused", "refused>"), ("seconds", "seconds>")]
    shown = rows
    if len(rows) > QUIET_ROWS_LIMIT:
        # A nightly pass over thousands of mailboxes: the table lists those where something happened (rendering
        # thousands of "nothing to do" rows took longer than the pass); --json lists every one.
        shown = [r for r in rows if not _nothing_happened(r, dry_run)]
    emit_table(app, "dry run: nothing was changed" if dry_run else "sync", columns, shown)
    if len(shown) < len(rows):
        app.out.print(f"{len(rows) - len(shown):,} more mailboxes: up to date, nothing to do (--json lists every "
                      "mailbox)", markup=False, highlight=False)
    for row in rows:
        for p in row["problems"]:
            what = f"{p['folder']}: {p['message']}: " if "message" in p else f"{p['folder']}: "
            app.out.print(f"  {row['mailbox']}: {what}{p['error']}", markup=False, highlight=False)
        for w in row["folder_warnings"]:
            app.warn(f"{row['mailbox']}: {w['folder']}: {w['warning']}")
        for f in row["folders_renamed"]:
            app.out.print(f"  {row['mailbox']}: folder {f['from']} renamed {f['to']} at the source"
                          + (f"; {f['dest_from']} renamed {f['dest']} on the central host" if f["dest_from"] else ""),
                          markup=False, highlight=False)
        for f in row["folders_deleted"]:
            app.out.print(f"  {row['mailbox']}: folder {f['folder']} deleted at the source"
                          + ("; deleted on the central host" if f["removed"] else "")
                          + (f"; kept on the central host: {f['kept']}" if f["kept"] else ""),
                          markup=False, highlight=False)
        for n in row["not_migrated"]:
            app.out.print(f"  {row['mailbox']}: {n['folder']}: {n['item']}: {n['why']}", markup=False,
                          highlight=False)
        for g in row["groupware"]:
            app.out.print(f"  {row['mailbox']}: {g['kind']}: {g['source_items']} at the source, {g['copied']} new, "
                          f"{g['updated']} updated, {len(g['failed'])} refused -> {g['location']}",
                          markup=False, highlight=False)
            for f in g["failed"]:
                app.out.print(f"  {row['mailbox']}: {g['kind']}: {f['item']}: {f['error']}", markup=False,
                              highlight=False)
            if g["error"]:
                app.out.print(f"  {row['mailbox']}: {g['kind']}: {g['error']}", markup=False, highlight=False)
