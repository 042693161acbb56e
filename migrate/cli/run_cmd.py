"""`govmigrate run`: run one wave of the approved plan: pre-flight, then a prestage, delta or final pass."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from migrate.cli.app import App, pass_app
from migrate.cli.output import emit_json, emit_table, human_bytes
from migrate.cli.progress import print_summary, progress_for, summary_line
from migrate.core import lifecycle
from migrate.core.errors import Interrupted, PreflightFailed, UsageError
from migrate.core.registry import register_users
from migrate.plans.planfiles import load_plan
from migrate.waves.preflight import PreflightResult
from migrate.waves.runner import WaveRun, WaveRunResult

NEXT_PASS = {"prestage": "delta", "delta": "final", "final": None}


@click.command()
@click.argument("wave")
@click.option("--pass", "pass_name", type=click.Choice(lifecycle.PASSES),
              help="prestage: copy the existing mail in advance; delta: catch up (may be skipped); final: the "
                   "last copy, in the maintenance window. Default: the earliest pass with work left.")
@click.option("--dry-run", is_flag=True, help="Pre-flight, then show what the pass would copy; change nothing.")
@click.option("--force", is_flag=True, help="Go on without the mailboxes that fail pre-flight (marked failed).")
@click.option("--again", is_flag=True,
              help="Repeat a delta or final pass also on mailboxes that completed it (e.g. before a late cut-over).")
@click.option("--workers", "queued", is_flag=True,
              help="Queue the pass's mailboxes for `govmigrate worker` processes (on this or other hosts sharing "
                   "the project's PostgreSQL state store) and follow their progress, instead of copying here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@pass_app
@click.pass_context
def command(ctx: click.Context, app: App, wave: str, pass_name: str | None, dry_run: bool, force: bool,
            again: bool, queued: bool, as_json: bool) -> None:
    """Run WAVE of the approved plan: pre-flight, then one pass of the sync engine over its mailboxes.

    The wave must be approved as its file stands (exit 6 otherwise). Pre-flight checks that every
    source and the central host answer, logins work, each destination mailbox exists and its quota
    can take the mail; problems are listed before any copying (exit 8; --force runs without the
    failing mailboxes). Progress shows on stderr. Ctrl-C or SIGTERM stops cleanly at a batch
    boundary (exit 130) and running the same command again resumes; a second run of the same wave
    at the same time is refused (exit 7). Each mailbox's state moves planned → prestaging →
    prestaged → delta-synced → final-synced, or to failed with the reason (retried by the next run);
    every change is in `govmigrate log`. Exits 1 if any mailbox failed or was skipped.

    With --workers the pass is queued in the state store and `govmigrate worker` processes copy it, on
    any number of hosts; this command shows their progress and ends when every mailbox is done or failed.
    """
    if queued and dry_run:
        raise UsageError("--workers queues a real pass; a dry run is shown by this host alone (drop --workers)")
    with wave_run(app, wave, dry_run=dry_run, queued=queued) as wr:
        chosen = wr.choose_pass(pass_name)
        if chosen is None:
            app.info(f"wave {wave}: nothing left to do: every mailbox has completed the final pass "
                     "(--pass final --again repeats it)")
            if as_json:
                emit_json(as_dict(WaveRunResult(wave, None, dry_run)))
            ctx.exit(0)
        wr.acquire(chosen)
        if wr.killed_runs:
            app.info(f"wave {wave}: the last run (#{wr.killed_runs[-1]}) ended without finishing (killed or crashed); "
                     "this run resumes where it stopped")
        label = f"{wave}: {chosen} pass" + (" (dry run)" if dry_run else "")
        try:
            with progress_for(app, f"{wave}: pre-flight", unit="items") as sink:
                result = wr.start(chosen, again=again, force=force, preflight_progress=sink)
        except PreflightFailed:
            if wr.preflight_result is not None:
                print_preflight(app, wr.preflight_result)
            raise
        if result.preflight is not None:
            print_preflight(app, result.preflight)
        stop = threading.Event()
        with progress_for(app, label) as sink:
            result = wr.execute(result, progress=sink, stop=stop)
    if as_json:
        emit_json(as_dict(result))
        print_summary(app, summary(result))
    else:
        render(app, result)
    if result.interrupted:
        raise Interrupted(f"wave {wave}: stopped; the batches in flight were finished and recorded; "
                          "run the same command again to resume")
    ctx.exit(int(result.exit_code))


@contextmanager
def wave_run(app: App, wave: str, *, dry_run: bool, queued: bool = False) -> Iterator[WaveRun]:
    """A run of ``wave`` with the user lists registered and the plan checked (valid, approved as it stands:
    exit 2 or 6 otherwise); the wave's lock is released when the block ends. Shared by run and cutover."""
    project, store = app.project, app.store
    for problem in register_users(project, store).problems:
        app.warn(str(problem))
    plan = load_plan(app.workspace.plans_dir, project, store)
    with WaveRun(project, store, plan, wave, locks_dir=app.workspace.locks_dir, dry_run=dry_run,
                 queued=queued) as wr:
        wr.check_plan()
        for warning in wr.warnings:
            app.warn(warning)
        yield wr


def print_preflight(app: App, pre: PreflightResult) -> None:
    by_message: dict[str, list[str]] = {}
    for f in pre.findings:
        by_message.setdefault(f"{f.severity}|{f.message}", []).append(f.email or "")
    for key, emails in by_message.items():
        severity, message = key.split("|", 1)
        who = ", ".join(e for e in emails if e) or "all mailboxes"
        if severity == "error":
            app.err.print(f"pre-flight: {who}: {message}", style="red", markup=False, highlight=False)
        else:
            app.warn(f"pre-flight: {who}: {message}")
    if pre.ok:
        app.info(f"pre-flight: {len(pre.checked)} mailbox(es) ok")


def as_dict(result: WaveRunResult) -> dict[str, Any]:
    return {
        "wave": result.wave, "pass": result.pass_name, "dry_run": result.dry_run, "again": result.again,
        "interrupted": result.interrupted, "exit_code": int(result.exit_code), "seconds": round(result.seconds, 2),
        "mailboxes": [o.__dict__ for o in result.outcomes],
        "already": [{"email": e, "why": w} for e, w in result.already],
        "skipped": [{"email": e, "why": w} for e, w in result.blocked],
        "left_out_by_preflight": [{"email": e, "why": w} for e, w in result.forced_out],
        "preflight": None if result.preflight is None else {
            "checked": result.preflight.checked,
            "findings": [f.__dict__ for f in result.preflight.findings],
            "quota": {e: {"used": u, "limit": lim} for e, (u, lim) in result.preflight.quota.items()}},
        "warnings": result.warnings,
    }


def render(app: App, result: WaveRunResult) -> None:
    dry = result.dry_run
    rows = []
    for o in result.outcomes:
        if o.stopped:
            verdict = "stopped (resumes)"
        elif o.ok:
            verdict = "ok"
        else:
            verdict = f"failed: {o.error}"
        row = {"mailbox": o.email, "state": o.before if dry or o.before == o.after else f"{o.before} → {o.after}",
               "result": verdict, "messages": "" if o.stopped else o.src_messages,
               "size": "" if o.stopped else human_bytes(o.src_bytes),
               "copied": o.copied, "moved": human_bytes(o.copied_bytes), "seconds": f"{o.seconds:.1f}"}
        if dry:
            row["would"] = f"{o.would_copy} ({human_bytes(o.would_copy_bytes)})"
        row["host"] = o.host or ""
        rows.append(row)
    for email, why in result.forced_out:
        rows.append({"mailbox": email, "state": "failed", "result": f"left out: pre-flight: {why}"})
    for email, why in result.blocked:
        rows.append({"mailbox": email, "result": f"skipped: {why}"})
    columns = [("mailbox", "mailbox"), ("state", "state"), ("result", "result"), ("messages", "messages>"),
               ("size", "size>")]
    columns += [("would", "would copy>")] if dry else [("copied", "copied>"), ("moved", "moved>"),
                                                        ("seconds", "seconds>")]
    if any(o.host for o in result.outcomes):
        columns.append(("host", "copied by"))
    what = "cut-over" if result.pass_name == "cutover" else f"{result.pass_name} pass"
    title = f"wave {result.wave}: {what}" + (" — dry run: nothing was changed" if dry else "")
    if rows:
        emit_table(app, title, columns, rows)
    if result.already:
        app.info(f"{len(result.already)} mailbox(es) already past this pass: "
                 + ", ".join(f"{e} ({w})" for e, w in result.already[:5]) + (" ..." if len(result.already) > 5 else ""))
    if not dry and not result.interrupted and not result.failed and not result.blocked:
        following = NEXT_PASS.get(result.pass_name or "")
        if following:
            app.info(f"next: govmigrate run {result.wave} --pass {following}")
        elif result.pass_name == "final":
            app.info("next: the DNS cut-over of the wave's domains")
    elif result.failed:
        app.info(f"failed mailboxes are retried by the next run: govmigrate run {result.wave} --pass {result.pass_name}")
    print_summary(app, summary(result))


def summary(result: WaveRunResult) -> str:
    """The line a run ends with: ``wave wave-01: prestage pass: 4 mailboxes, 120 messages, 12.3 MB in 41 s; 1
    failed, 3 now prestaged``. Mailboxes left out by a forced pre-flight count as failed; skipped, stopped and
    locked ones are named when there are any."""
    dry = result.dry_run
    what = "cut-over" if result.pass_name == "cutover" else f"{result.pass_name} pass"
    if dry:
        messages = sum(o.would_copy for o in result.outcomes)
        nbytes = sum(o.would_copy_bytes for o in result.outcomes)
    else:
        messages, nbytes = result.copied, result.copied_bytes
    more = []
    if not dry:
        target = lifecycle.PASS_TARGET.get(result.pass_name or "", lifecycle.DONE)
        more.append(f"{sum(1 for o in result.outcomes if o.ok)} now {target}")
    stopped = sum(1 for o in result.outcomes if o.stopped)
    locked = sum(1 for o in result.outcomes if o.locked)
    if stopped:
        more.append(f"{stopped} stopped (the next run resumes them)")
    if locked:
        more.append(f"{locked} held by another process")
    if result.blocked:
        more.append(f"{len(result.blocked)} skipped")
    return summary_line(f"wave {result.wave}: {what}" + (" (dry run)" if dry else ""),
                        mailboxes=len(result.outcomes) + len(result.forced_out), messages=messages, nbytes=nbytes,
                        seconds=result.seconds, failed=len(result.failed) + len(result.forced_out), dry_run=dry,
                        more=more)
