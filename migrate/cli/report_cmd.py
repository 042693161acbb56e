"""`govmigrate report`: programme progress for the project manager, per ministry and per wave."""

from __future__ import annotations

import click

from migrate.cli.app import App, pass_app
from migrate.cli.output import emit_csv, emit_json, emit_table, human_bytes, output_options
from migrate.reports.programme import (
    CSV_COLUMNS,
    Completion,
    Counts,
    ProgrammeReport,
    as_json,
    build_report,
    csv_rows,
)


@click.command()
@output_options
@pass_app
def command(app: App, fmt: str) -> None:
    """Programme summary: per ministry and per wave, mailboxes done of total, GB moved of total,
    failures, and the estimated completion.

    Done means the final pass copied everything (final-synced, cut over or done); domains cut over
    are those whose MX the DNS cut-over switched to the central host. Estimated
    completion comes from the waves' window dates and the copy still to do at the measured rate;
    a wave without a date has none. --json for everything, --csv for one row per programme,
    ministry and wave (for spreadsheets). Reads the state store only.
    """
    report = build_report(app.project, app.store)
    if fmt == "json":
        emit_json(as_json(report))
    elif fmt == "csv":
        emit_csv(CSV_COLUMNS, csv_rows(report))
    else:
        render(app, report)


def _cells(c: Counts, completion: Completion) -> dict[str, str]:
    return {"done": f"{c.done}/{c.to_migrate}", "progress": str(c.in_progress), "failed": str(c.failed),
            "waiting": str(c.planned + c.unplanned),
            "moved": f"{human_bytes(c.bytes_moved) or '0 B'} / {human_bytes(c.bytes_total) or '0 B'}",
            "completion": _when(completion),
            "note": completion.note}


def _when(c: Completion) -> str:
    if c.status == "done":
        return f"done {c.at}" if c.at else "done"
    if c.status == "partly planned":
        return f"{c.at} (partly planned)"
    return c.at or c.status


def render(app: App, r: ProgrammeReport) -> None:
    out = app.out
    t = r.totals
    out.print(f"{r.programme}: {t.done} of {t.to_migrate} mailboxes done, "
              f"{human_bytes(t.bytes_moved) or '0 B'} of {human_bytes(t.bytes_total) or '0 B'} moved, "
              f"{t.failed} failed; estimated completion: {_when(r.completion)}"
              + (f" ({r.completion.note})" if r.completion.note else ""), style="bold", markup=False, highlight=False)
    columns = [("name", "ministry"), ("done", "done>"), ("progress", "in progress>"), ("waiting", "waiting>"),
               ("failed", "failed>"), ("moved", "moved / total>"), ("completion", "est. completion"),
               ("note", "note")]
    with_phones = any(m.phones.total for m in r.ministries)
    phone_column = [("phones", "phones moved>")] if with_phones else []
    ministry_columns = [*columns[:6], ("domains", "domains cut over>"), *phone_column, *columns[6:]]
    emit_table(app, "per ministry", ministry_columns,
               [{"name": m.ministry, "waves": ", ".join(m.waves), **_cells(m.counts, m.completion),
                 "domains": f"{len(m.domains_cut_over)}/{len(m.domains)}",
                 "phones": f"{m.phones.moved}/{m.phones.total}"} for m in r.ministries])
    wave_columns = [("wave", "wave"), ("title", "title"), ("window", "window"), ("approval", "approval"),
                    *columns[1:6], *phone_column, *columns[6:]]
    emit_table(app, "per wave", wave_columns,
               [{"wave": w.id, "title": w.title + (" (white-glove)" if w.white_glove else ""),
                 "window": f"{w.window_date} {w.window_start}" if w.window_date else "not scheduled",
                 "approval": w.approval, **_cells(w.counts, w.completion),
                 "phones": f"{w.phones.moved}/{w.phones.total}"} for w in r.waves])
    if r.failures:
        out.print("failures:", markup=False, highlight=False)
        for f in r.failures:
            out.print(f"  {f.email} ({f.ministry}, {f.wave or 'no wave'}): {f.reason}", markup=False, highlight=False)
    app.info(r.rate_note)
