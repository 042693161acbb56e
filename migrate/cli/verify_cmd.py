"""`govmigrate verify`: compare source and destination mailboxes message by message."""

from __future__ import annotations

import click

from migrate.cli.app import App, pass_app
from migrate.cli.mailboxes import select_mailboxes
from migrate.cli.output import emit_json, emit_table, output_options
from migrate.cli.progress import progress_for
from migrate.core.errors import Finished


@click.command()
@click.argument("users", nargs=-1, metavar="[USER]...")
@click.option("--source", "source_id", metavar="ID", help="Every mailbox of this source (ministry).")
@click.option("--all", "everything", is_flag=True, help="Every mailbox of every source.")
@click.option("--deep", is_flag=True, help="Also compare every message's full bytes (reads everything twice).")
@output_options(csv=False)
@pass_app
def command(app: App, users: tuple[str, ...], source_id: str | None, everything: bool, deep: bool,
            fmt: str) -> Finished:
    """Compare mailboxes at the source and on the central host; exit 0 only when they match.

    Messages are matched by content (size and first 8 KiB; --deep: every byte), so missing messages,
    duplicates, wrong flags and wrong dates are found independently of govmigrate's own records.
    Extra mail on the central host that did not come from the source (new mail after cut-over) is
    reported but is not a mismatch. Copies of messages deleted or moved away at the source since
    (stale) and central folders whose source folder is gone (orphaned) are differences. Each mailbox's
    result is kept in the state store: `report` shows the last one per ministry, wave and mailbox (its
    data consistency).
    """
    from migrate.mailbox.verify import verify_mailboxes

    project, store, mailboxes = select_mailboxes(app, users, source_id, everything)
    with progress_for(app, "verify", unit="items") as sink:
        results = verify_mailboxes(project, store, mailboxes, deep=deep, progress=sink)
    rows = []
    for r in results:
        totals = r.totals()
        rows.append({"mailbox": r.email, "matches": r.matches, "error": r.error, **totals,
                     "folders": [{"source": f.source, "dest": f.dest, "missing": f.missing,
                                  "duplicates": f.duplicates, "flag_mismatches": f.flag_mismatches,
                                  "date_mismatches": f.date_mismatches, "content_mismatches": f.content_mismatches,
                                  "dest_folder_missing": f.dest_folder_missing, "not_subscribed": f.not_subscribed,
                                  "stale": f.deleted_at_source, "orphaned": f.orphaned,
                                  "unexportable": f.unexportable, "not_migrated": f.not_migrated,
                                  "error": f.error} for f in r.folders
                                 if not f.matches or f.unexportable or f.not_migrated],
                     "groupware": [{"kind": g.kind, "location": g.location, "source": g.source, "dest": g.dest,
                                    "missing": g.missing, "unexportable": g.unexportable, "error": g.error}
                                   for g in r.groupware]})
    if fmt == "json":
        emit_json(rows)
    else:
        for row in rows:
            row["result"] = "match" if row["matches"] else ("error: " + row["error"] if row["error"] else "DIFFERS")
        emit_table(app, "verify" + (" (deep)" if deep else ""),
                   [("mailbox", "mailbox"), ("result", "result"), ("source_messages", "source>"),
                    ("dest_messages", "central>"), ("missing", "missing>"), ("duplicates", "duplicates>"),
                    ("flag_mismatches", "flags>"), ("date_mismatches", "dates>"),
                    ("deleted_at_source", "stale>"), ("orphaned_folders", "orphaned>"),
                    ("other_mail", "other mail>")], rows)
        for row in rows:
            for f in row["folders"]:
                for kind in ("missing", "duplicates", "flag_mismatches", "date_mismatches", "content_mismatches"):
                    for item in f[kind][:10]:
                        app.out.print(f"  {row['mailbox']}: {f['source']}: {kind.replace('_', ' ')}: {item}",
                                      markup=False, highlight=False)
                for item in f["unexportable"][:10]:
                    app.out.print(f"  {row['mailbox']}: {f['source']}: the source server cannot export: {item}",
                                  markup=False, highlight=False)
                for item in f["not_migrated"][:10]:
                    app.out.print(f"  {row['mailbox']}: {f['source']}: {item}", markup=False, highlight=False)
                if f["dest_folder_missing"]:
                    app.out.print(f"  {row['mailbox']}: {f['source']}: folder {f['dest']} missing on the central host",
                                  markup=False, highlight=False)
                if f["orphaned"]:
                    app.out.print(f"  {row['mailbox']}: {f['source']}: gone at the source; folder {f['dest']} is still "
                                  "on the central host", markup=False, highlight=False)
                if f["stale"]:
                    app.out.print(f"  {row['mailbox']}: {f['source']}: {f['stale']} copies of messages deleted or moved "
                                  "away at the source are still on the central host (a pass carrying deletions "
                                  "removes them)", markup=False, highlight=False)
                if f["not_subscribed"]:
                    app.out.print(f"  {row['mailbox']}: {f['source']}: not subscribed on the central host",
                                  markup=False, highlight=False)
                if f["error"]:
                    app.out.print(f"  {row['mailbox']}: {f['source']}: {f['error']}", markup=False, highlight=False)
            for g in row["groupware"]:
                app.out.print(f"  {row['mailbox']}: {g['kind']}: {g['source']} at the source, {g['dest']} at "
                              f"{g['location']}" + (f"; {len(g['missing'])} missing" if g["missing"] else ""),
                              markup=False, highlight=False)
                for uid in g["missing"][:10]:
                    app.out.print(f"  {row['mailbox']}: {g['kind']}: missing: UID {uid}", markup=False,
                                  highlight=False)
                for item in g["unexportable"][:10]:
                    app.out.print(f"  {row['mailbox']}: {g['kind']}: the source server cannot export: {item}",
                                  markup=False, highlight=False)
                if g["error"]:
                    app.out.print(f"  {row['mailbox']}: {g['kind']}: {g['error']}", markup=False, highlight=False)
    return Finished(partial=not all(r.matches for r in results))
