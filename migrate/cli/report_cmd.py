"""`govmigrate report`: programme progress for the project manager, per ministry and per wave."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click

from migrate.cli.app import App, pass_app
from migrate.cli.output import emit_csv, emit_json, emit_table, human_bytes, output_options
from migrate.core.errors import UsageError

if TYPE_CHECKING:
    from migrate.core.timezones import Zone
    from migrate.reports.programme import Completion, Counts, ProgrammeReport
    from migrate.reports.record import WaveRecord


#: ``--html`` given without a file name.
DEFAULT_FILE = "<default>"


@click.command()
@output_options
@click.option("--html", "html", is_flag=False, flag_value=DEFAULT_FILE, default=None, metavar="[FILE]",
              help="Write a self-contained HTML report (default: reports/programme-DATE.html, or "
                   "reports/wave-WAVE-DATE.html with --wave) and print its path.")
@click.option("--wave", "wave_id", metavar="WAVE", help="The wave's record for the change board instead of the "
                                                        "programme: approval, gates, each pass per mailbox, DNS "
                                                        "changes, SIP results, events.")
@pass_app
def command(app: App, fmt: str, html: str | None, wave_id: str | None) -> None:
    """Programme summary: per ministry and per wave, mailboxes done of total, GB moved of total,
    phones and domains cut over, failures, the planned completion and the forecast.

    Done means the final pass copied everything (final-synced, cut over or done); domains cut over
    are those whose MX the DNS cut-over switched to the central host. The planned completion is
    the end of the waves' windows; the forecast applies the throughput and failure rate measured so
    far to what remains, and says whether the programme is on schedule. Times are in the project
    file's timezone. --json for everything, --csv for one row per programme, ministry and wave (for
    spreadsheets). --html writes one file a project manager can open, forward or print (a one-page
    A4 summary, then the detail): headline figures, burn-up charts, compliance per ministry, the
    wave timeline, the waves, and the failures grouped by reason with what to do next; it loads
    nothing from the network. --wave WAVE gives that wave's record instead (its approval history
    and the approval each run ran under). Reads the state store only.
    """
    from migrate.core.store import now
    from migrate.plans.catalog import Catalog
    from migrate.reports.history import burn_up, failure_groups
    from migrate.reports.programme import CSV_COLUMNS, as_json, build_report, csv_rows
    from migrate.reports.record import record_json, wave_record

    if html is not None and fmt != "table":
        raise UsageError("--html writes a file; it does not go with --json or --csv")
    zone = app.project.zone
    if wave_id is not None:
        record = wave_record(app.store, wave_id)
        if html is not None:
            from migrate.cli.html import render_wave  # jinja2 and pygal: for the HTML reports only

            line = next((w for w in build_report(app.project, app.store).waves if w.id == wave_id), None)
            text = render_wave(record, workspace=app.workspace.root, generated_at=now(), zone=zone, line=line)
            _write(app, html, f"wave-{wave_id}", text)
        elif fmt == "json":
            emit_json(record_json(record))
        else:
            render_record(app, record)
        return
    today = zone.now()
    report = build_report(app.project, app.store, today=today)
    if html is not None:
        from migrate.cli.html import render_programme

        mailboxes = Catalog(app.project, app.store).in_sources()
        text = render_programme(report, burn_up(app.store, report, mailboxes, zone=zone, now=today),
                                failure_groups(report.failures), workspace=app.workspace.root, zone=zone,
                                today=today)
        _write(app, html, "programme", text)
    elif fmt == "json":
        emit_json(as_json(report))
    elif fmt == "csv":
        emit_csv(CSV_COLUMNS, csv_rows(report))
    else:
        render(app, report)


def _write(app: App, html: str, stem: str, text: str) -> None:
    """Write the report (atomically: a reader never sees half a file) and print where it is, on stdout."""
    path = (app.workspace.root / "reports" / f"{stem}-{dt.date.today().isoformat()}.html" if html == DEFAULT_FILE
            else Path(html))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    click.echo(str(path.resolve()))


def render_record(app: App, record: WaveRecord) -> None:
    from migrate.reports.record import MILESTONES
    from migrate.reports.words import plural

    approval = {"approved": f"approved by {record.approved_by} at {record.approved_at} (hash {record.plan_hash})",
                "lapsed": "approval lapsed", "not approved": "not approved"}[record.approval_state]
    app.out.print(f"wave {record.wave}: {record.title}; window {record.window}; {approval}", markup=False,
                  highlight=False)
    for a in record.approvals:
        end = "in force" if a.status == "in force" else f"{a.status} {a.ended_at}: {a.end_reason}"
        runs = ", ".join(str(r) for r in a.runs) or "none"
        app.out.print(f"  approval {a.number}: {a.approved_by} at {a.approved_at} (hash {a.plan_hash[:16]}); "
                      f"{end}; runs under it: {runs}", markup=False, highlight=False)
    for gate in record.gates:
        app.out.print(f"  {gate.at} {gate.action}: {gate.detail}", markup=False, highlight=False)
    hosts = [("host", "copied by")] if record.show_hosts else []
    emit_table(app, "mailboxes, pass by pass",
               [("email", "mailbox"), ("state", "now"), *[(name, name) for name, _ in MILESTONES], *hosts,
                ("verified", "last verify"), ("failure", "last failure")],
               [{"email": m.email, "state": m.state, **{k: v or "" for k, v in m.reached.items()},
                 "host": m.host or "", "failure": m.last_failure or "",
                 "verified": ("not verified" if m.verified is None else "not since its last copy"
                              if not m.verified_current else "matched" if m.verified.matches
                              else plural(m.verified.differences, "difference") if not m.verified.error else "failed")}
                for m in record.mailboxes])
    for m in record.mailboxes:
        for n in m.not_copied:
            app.out.print(f"  {m.email}: not copied ({n['folder']}): {n['why']}"
                          + (f" — accepted: {n['accepted']}" if n["accepted"] else ""), markup=False, highlight=False)
    left = [{"email": m.email, **s} for m in record.mailboxes for s in m.settings_not_moved]
    if left:
        emit_table(app, "rules, out-of-office, shared folders and delegates not moved or moved switched off "
                        "(tell the users)",
                   [("email", "mailbox"), ("kind", "what"), ("name", "name"), ("state", "state"),
                    ("reason", "why")], left)
    for domain in record.domains:
        emit_table(app, f"{domain['domain']}: {domain['state']}",
                   [("name", "name"), ("type", "type"), ("before", "before"), ("after", "after")], domain["changes"])
    if record.sip_checks:
        emit_table(app, "SIP checks", [("kind", "check"), ("subject", "what"), ("result", "result"),
                                       ("detail", "detail")], [asdict(c) for c in record.sip_checks])
    app.info(f"{plural(len(record.events), 'event')}: govmigrate log --object wave/{record.wave}; "
             f"--html writes the whole record")


def _cells(c: Counts, completion: Completion, zone: Zone) -> dict[str, str]:
    return {"done": f"{c.done:,}/{c.to_migrate:,}", "progress": f"{c.in_progress:,}", "failed": f"{c.failed:,}",
            "waiting": f"{c.planned + c.unplanned:,}",
            "moved": f"{human_bytes(c.bytes_moved) or '0 B'} / {human_bytes(c.bytes_total) or '0 B'}",
            "completion": _when(completion, zone),
            "note": completion.note}


def _when(c: Completion, zone: Zone) -> str:
    if c.status == "done":
        return f"done {zone.show_iso(c.at)}" if c.at else "done"
    if c.status == "partly planned":
        return f"{zone.show_iso(c.at)} (partly planned)" if c.at else "partly planned"
    return zone.show_iso(c.at) or c.status


def render(app: App, r: ProgrammeReport) -> None:
    from migrate.reports.words import plural

    out = app.out
    zone = app.project.zone
    _at = zone.show_iso
    t = r.totals
    f = r.forecast
    out.print(f"{r.programme}: {t.done:,} of {t.to_migrate:,} mailboxes done, "
              f"{human_bytes(t.bytes_moved) or '0 B'} of {human_bytes(t.bytes_total) or '0 B'} moved, "
              f"{t.failed:,} failed"
              + (f", {plural(t.messages_not_copied, 'message')} not copied (govmigrate status USER names them)"
                 if t.messages_not_copied else "")
              + f"; planned completion: {_when(r.completion, zone)}"
              + (f" ({r.completion.note})" if r.completion.note else "")
              + f"; forecast: {f.headline}" + (f", done {_at(f.forecast_end)}" if f.forecast_end else ""),
              style="bold", markup=False, highlight=False)
    columns = [("name", "ministry"), ("done", "done>"), ("progress", "in progress>"), ("waiting", "waiting>"),
               ("failed", "failed>"), ("moved", "moved / total>"), ("completion", "planned completion"),
               ("note", "note")]
    with_phones = any(m.phones.total for m in r.ministries)
    phone_column = [("phones", "phones moved>")] if with_phones else []
    ministry_columns = [*columns[:6], ("domains", "domains cut over>"), *phone_column, *columns[6:]]
    emit_table(app, "per ministry", ministry_columns,
               [{"name": m.ministry, "waves": ", ".join(m.waves), **_cells(m.counts, m.completion, zone),
                 "domains": f"{len(m.domains_cut_over)}/{len(m.domains)}",
                 "phones": f"{m.phones.moved:,}/{m.phones.total:,}"} for m in r.ministries])
    wave_columns = [("wave", "wave"), ("title", "title"), ("window", "window"), ("approval", "approval"),
                    *columns[1:6], *phone_column, ("schedule", "schedule"), ("forecast", "forecast"),
                    *columns[6:]]
    emit_table(app, "per wave", wave_columns,
               [{"wave": w.id, "title": w.title + (" (white-glove)" if w.white_glove else ""),
                 "window": _at(w.window_starts) or "not scheduled",
                 "approval": w.approval, **_cells(w.counts, w.completion, zone),
                 "schedule": w.forecast.status, "forecast": _at(w.forecast.forecast_end),
                 "phones": f"{w.phones.moved:,}/{w.phones.total:,}"} for w in r.waves])
    g = r.groupware
    if g.any:
        out.print(f"calendars and contacts (Exchange): {g.calendar_copied} of {g.calendar_items} calendar items and "
                  f"{g.contacts_copied} of {g.contacts} contacts copied"
                  + (f", {g.failed} not copied" if g.failed else ""), markup=False, highlight=False)
        for m in r.ministries:
            if m.groupware.any:
                out.print(f"  {m.ministry}: {m.groupware.calendar_copied}/{m.groupware.calendar_items} calendar "
                          f"items, {m.groupware.contacts_copied}/{m.groupware.contacts} contacts", markup=False,
                          highlight=False)
        if g.exported_mailboxes:
            out.print(f"  {plural(g.exported_mailboxes, 'mailbox')} had no central DAV server to go to (central.dav is not "
                      f"set): their calendars and contacts are files in {app.workspace.root / 'groupware'} "
                      "(govmigrate status USER names each)", markup=False, highlight=False)
    c = r.settings
    if c:
        from migrate.mailbox.settings import STATE_WORDS

        moved = ", ".join(f"{c[k]} {STATE_WORDS[k]}" for k in ("moved", "held", "not-moved", "failed") if c.get(k))
        found = ", ".join(f"{c[k]} {STATE_WORDS[k]}" for k in ("to-move", "cannot-move") if c.get(k))
        out.print("mail rules, out-of-office, shared folders and delegates: "
                  + "; ".join(p for p in (moved, f"inventory: {found}" if found else "") if p)
                  + " (report --wave W and status USER list each)", markup=False, highlight=False)
    if r.failures:
        out.print("failures:", markup=False, highlight=False)
        for fl in r.failures:
            out.print(f"  {fl.email} ({fl.ministry}, {fl.wave or 'no wave'}): {fl.reason}", markup=False,
                      highlight=False)
    app.info(f"{r.rate_note}; times are {r.zone}; forecast from {f.basis}")
