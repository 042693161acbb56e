"""`govmigrate run`: run one wave of the approved plan: pre-flight, then a prestage, delta or final pass (or
another step of the wave, by its name)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from migrate.cli.app import App, pass_app
from migrate.cli.output import emit_json, emit_table, human_bytes, output_options
from migrate.cli.progress import print_summary, progress_for, summary_line
from migrate.core import lifecycle
from migrate.core.errors import Interrupted, PreflightFailed, UsageError

if TYPE_CHECKING:
    from migrate.waves.context import WaveRun
    from migrate.waves.results import Gate, StepResult
    from migrate.waves.step import Step, StepOptions


NEXT_PASS = {"prestage": "delta", "delta": "final", "final": None}


@click.command()
@click.argument("wave")
@click.option("--pass", "pass_name", type=click.Choice(lifecycle.PASSES),
              help="prestage: copy the existing mail in advance; delta: catch up (may be skipped); final: the "
                   "last copy, in the maintenance window. Default: the earliest pass with work left.")
@click.option("--step", "step_name", metavar="NAME",
              help="Run another step of the wave by its name in the steps table (docs/architecture.md), e.g. "
                   "sip-check; the sync passes are --pass.")
@click.option("--dry-run", is_flag=True, help="Pre-flight, then show what the pass would copy; change nothing.")
@click.option("--force", is_flag=True, help="Go on without the mailboxes that fail pre-flight (marked failed).")
@click.option("--reason", metavar="TEXT", help="With --force, for a step whose gate it overrides: why (recorded).")
@click.option("--again", is_flag=True,
              help="Repeat a delta or final pass also on mailboxes that completed it (e.g. before a late cut-over).")
@click.option("--carry-deletes", is_flag=True,
              help="A delta pass also removes from the central host what users deleted at the source (messages "
                   "and folders govmigrate copied); the final pass always does. Default: sync.carry_deletes_in_delta.")
@click.option("--workers", "queued", is_flag=True,
              help="Queue the pass's mailboxes for `govmigrate worker` processes (on this or other hosts sharing "
                   "the project's PostgreSQL state store) and follow their progress, instead of copying here.")
@output_options(csv=False)
@pass_app
def command(app: App, wave: str, pass_name: str | None, step_name: str | None, dry_run: bool, force: bool,
            reason: str | None, again: bool, carry_deletes: bool, queued: bool, fmt: str) -> StepResult:
    """Run WAVE of the approved plan: pre-flight, then one pass of the sync engine over its mailboxes.

    The wave must be approved as its file stands (exit 6 otherwise). Pre-flight checks that every
    source and the central host answer, logins work, each destination mailbox exists and its quota
    can take the mail; problems are listed before any copying (exit 8; --force runs without the
    failing mailboxes). Progress shows on stderr. Ctrl-C or SIGTERM stops cleanly at a batch
    boundary (exit 130) and running the same command again resumes; a second run of the same wave
    at the same time is refused (exit 7). Each mailbox's state moves planned → prestaging →
    prestaged → delta-synced → final-synced, or to failed with the reason (retried by the next run);
    every change is in `govmigrate log`. Exits 1 if any mailbox failed or was skipped.

    Every pass carries what users moved and renamed at the source; the final pass also carries what
    they deleted (a delta pass with --carry-deletes). A mailbox with more messages not copied than
    sync.bad_item_limit allows is not final-synced unless --force --reason TEXT accepts them.

    With --workers the pass is queued in the state store and `govmigrate worker` processes copy it, on
    any number of hosts; this command shows their progress and ends when every mailbox is done or failed.
    """
    from migrate.waves.results import StepResult
    from migrate.waves.step import StepOptions
    from migrate.waves.table import step as step_named
    from migrate.waves.table import sync_step

    as_json = fmt == "json"
    if queued and dry_run:
        raise UsageError("--workers queues a real pass; a dry run is shown by this host alone (drop --workers)")
    if step_name and (pass_name or queued or carry_deletes):
        raise UsageError("--step names a step other than a sync pass: it goes without --pass, --workers and "
                         "--carry-deletes")
    if carry_deletes and queued:
        raise UsageError("--carry-deletes is not passed on to workers; set sync.carry_deletes_in_delta in the project "
                         "file for a queued delta pass")
    with wave_run(app, wave, dry_run=dry_run) as wr:
        if step_name:
            chosen: Step | None = step_named(step_name)
        else:
            wr.check_plan()
            pass_chosen = lifecycle.next_pass(wr.mailboxes()) if pass_name is None else pass_name
            if carry_deletes and pass_chosen == "prestage":
                raise UsageError("--carry-deletes goes with a delta pass (a prestage has nothing to delete, a final "
                                 "pass always carries deletions)")
            chosen = sync_step(pass_chosen, queued=queued) if pass_chosen else None
        if chosen is None:
            app.info(f"wave {wave}: nothing left to do: every mailbox has completed the final pass "
                     "(--pass final --again repeats it)")
            result = StepResult(wave, None, dry_run)
            if as_json:
                emit_json(as_dict(result))
            return result
        options = StepOptions(again=again, force=force, reason=reason,
                              params={"carry_deletes": True} if carry_deletes else {})
        result = run_with_progress(app, wr, chosen, options)
    if as_json:
        emit_json(as_dict(result))
        print_summary(app, summary(result))
    else:
        render(app, result)
    if result.interrupted:
        raise Interrupted(f"wave {wave}: stopped; the batches in flight were finished and recorded; "
                          "run the same command again to resume")
    return result


@contextmanager
def wave_run(app: App, wave: str, *, dry_run: bool) -> Iterator[WaveRun]:
    """A run of ``wave`` with the user lists registered and the plan loaded; the wave's lock (taken by the
    runner) is released when the block ends. Shared by every command that runs a wave step."""
    from migrate.core.registry import register_users
    from migrate.plans.planfiles import load_plan
    from migrate.waves.context import WaveRun

    project, store = app.project, app.store
    for problem in register_users(project, store).problems:
        app.warn(str(problem))
    plan = load_plan(app.workspace.plans_dir, project, store)
    with WaveRun(project, store, plan, wave, locks_dir=app.workspace.locks_dir, dry_run=dry_run) as wr:
        yield wr


def run_with_progress(app: App, wr: WaveRun, step: Step, options: StepOptions, *,
                      label: str | None = None) -> StepResult:
    """One step through the runner, as a person at a terminal follows it: the gate's progress and findings
    (listed when it refuses, exit 8), then the step's progress. Shared by run, cutover, sip and voip."""
    from migrate.waves import runner

    what = label or (f"{step.name} pass" if step.name in lifecycle.PASSES else step.name)
    gate_label = f"{wr.wave_id}: {step.gate_label}"
    try:
        with progress_for(app, gate_label, unit="items") as sink:
            result = runner.start(wr, step, options, progress=sink)
    except PreflightFailed:
        if wr.gate is not None:
            print_gate(app, wr.gate, step)
        raise
    finally:
        for warning in wr.warnings:
            app.warn(warning)
        wr.warnings.clear()
    if wr.killed_runs:
        app.info(f"wave {wr.wave_id}: the last run (#{wr.killed_runs[-1]}) ended without finishing (killed or "
                 "crashed); this run resumes where it stopped")
        wr.killed_runs = []
    if result.gate is not None:
        print_gate(app, result.gate, step)
    for who, why in result.forced:  # deliberate, and recorded: said plainly, not a warning
        app.err.print(f"gate forced ({options.reason}): {who}: {why}", style="yellow", markup=False, highlight=False)
    unit = "messages" if step.items == "mailbox" else "items"
    given = len(result.warnings)  # the plan's, shown above; what the step adds is shown as it ends
    with progress_for(app, f"{wr.wave_id}: {what}" + (" (dry run)" if wr.dry_run else ""), unit=unit) as sink:
        result = runner.execute(wr, step, result, options, progress=sink, stop=threading.Event())
    for warning in result.warnings[given:]:
        app.warn(warning)
    return result


def print_gate(app: App, gate: Gate, step: Step) -> None:
    """The gate's findings, one line per reason with everything it concerns."""
    from migrate.waves.step import PLURAL

    by_message: dict[str, list[str]] = {}
    for f in gate.findings:
        by_message.setdefault(f"{f.severity}|{f.message}", []).append(f.item or "")
    label = step.gate_label
    for key, items in by_message.items():
        severity, message = key.split("|", 1)
        who = ", ".join(e for e in items if e) or f"all {PLURAL[step.items]}"
        if severity == "error":
            app.err.print(f"{label}: {who}: {message}", style="red", markup=False, highlight=False)
        else:
            app.warn(f"{label}: {who}: {message}")
    if gate.ok and step.items == "mailbox" and step.name in lifecycle.PASSES:
        app.info(f"{label}: {len(gate.checked)} mailbox(es) ok")


def as_dict(result: StepResult) -> dict[str, Any]:
    return {
        "wave": result.wave, "pass": result.step, "dry_run": result.dry_run, "again": result.again,
        "interrupted": result.interrupted, "exit_code": int(result.exit_code), "seconds": round(result.seconds, 2),
        "mailboxes": [o.as_dict() for o in result.outcomes],
        "already": [{"email": e, "why": w} for e, w in result.already],
        "skipped": [{"email": e, "why": w} for e, w in result.blocked],
        "left_out_by_preflight": [{"email": e, "why": w} for e, w in result.forced_out],
        "preflight": None if result.gate is None else {
            "checked": result.gate.checked,
            "findings": [f.as_dict() for f in result.gate.findings],
            "quota": {e: {"used": u, "limit": lim} for e, (u, lim) in result.gate.quota.items()}},
        "forced": [{"who": w, "what": m} for w, m in result.forced], "reason": result.force_reason,
        "incomplete": result.incomplete, "warnings": result.warnings,
    }


def render(app: App, result: StepResult) -> None:
    if result.items != "mailbox":
        render_items(app, result)
        return
    dry = result.dry_run
    rows = []
    for o in result.outcomes:
        if o.stopped:
            verdict = "stopped (resumes)"
        elif o.ok:
            verdict = "ok" + (f", {o.not_copied} not copied" if o.not_copied else "") \
                + (f" ({o.accepted} not copied accepted: {result.force_reason})" if o.accepted else "")
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
    title = f"wave {result.wave}: {step_title(result)}" + (" — dry run: nothing was changed" if dry else "")
    if rows:
        emit_table(app, title, columns, rows)
    for o in result.outcomes:
        if o.ok and o.over_limit:
            app.info(f"{o.email}: {o.error}; the final pass needs them copied, within the limit, or accepted "
                     "(--force --reason)")
    if result.already:
        app.info(f"{len(result.already)} mailbox(es) already past this pass: "
                 + ", ".join(f"{e} ({w})" for e, w in result.already[:5]) + (" ..." if len(result.already) > 5 else ""))
    if not dry and not result.interrupted and not result.failed and not result.blocked:
        following = NEXT_PASS.get(result.step or "")
        if following:
            app.info(f"next: govmigrate run {result.wave} --pass {following}")
        elif result.step == "final":
            app.info("next: the DNS cut-over of the wave's domains")
    elif result.failed:
        app.info(f"failed mailboxes are retried by the next run: govmigrate run {result.wave} --pass {result.step}")
    print_summary(app, summary(result))


def step_title(result: StepResult) -> str:
    """``prestage pass``, ``cut-over``, or the step's name."""
    if result.step in lifecycle.PASSES:
        return f"{result.step} pass"
    return "cut-over" if result.step == "cutover" else str(result.step)


def summary(result: StepResult) -> str:
    """The line a run ends with: ``wave wave-01: prestage pass: 4 mailboxes, 120 messages, 12.3 MB in 41 s; 1
    failed, 3 now prestaged``. Mailboxes left out by a forced pre-flight count as failed; skipped, stopped and
    locked ones are named when there are any."""
    dry = result.dry_run
    what = step_title(result)
    if dry:
        messages = sum(o.would_copy for o in result.outcomes)
        nbytes = sum(o.would_copy_bytes for o in result.outcomes)
    else:
        messages, nbytes = result.copied, result.copied_bytes
    more = []
    if not dry:
        target = lifecycle.PASS_TARGET.get(result.step or "", lifecycle.DONE)
        more.append(f"{sum(1 for o in result.outcomes if o.ok)} now {target}")
    stopped = sum(1 for o in result.outcomes if o.stopped)
    locked = sum(1 for o in result.outcomes if o.locked)
    if stopped:
        more.append(f"{stopped} stopped (the next run resumes them)")
    if locked:
        more.append(f"{locked} held by another process")
    if result.blocked:
        more.append(f"{len(result.blocked)} skipped")
    over = sum(1 for o in result.outcomes if o.over_limit and o.ok)
    if over:
        more.append(f"{over} with more messages not copied than sync.bad_item_limit allows")
    return summary_line(f"wave {result.wave}: {what}" + (" (dry run)" if dry else ""),
                        mailboxes=len(result.outcomes) + len(result.forced_out), messages=messages, nbytes=nbytes,
                        seconds=result.seconds, failed=len(result.failed) + len(result.forced_out), dry_run=dry,
                        more=more)


def render_items(app: App, result: StepResult) -> None:
    """A step over extensions or domains: one row per item, then the summary."""
    from migrate.waves.step import PLURAL

    rows = [{"item": o.item, "state": o.before if o.before == o.after else f"{o.before} → {o.after}",
             "result": "ok" if o.ok else f"failed: {o.error}"} for o in result.outcomes]
    rows += [{"item": key, "state": "", "result": f"skipped: {why}"} for key, why in result.blocked]
    if rows:
        emit_table(app, f"wave {result.wave}: {step_title(result)}" + (" — dry run: nothing was changed"
                                                                        if result.dry_run else ""),
                   [("item", result.items), ("state", "state"), ("result", "result")], rows, no_wrap=("item",))
    if result.already:
        app.info(f"{len(result.already)} {PLURAL[result.items]} already past this step: "
                 + ", ".join(f"{e} ({w})" for e, w in result.already[:5]) + (" ..." if len(result.already) > 5 else ""))
    for reason in result.incomplete:
        app.info(f"wave {result.wave}: {step_title(result)}: {reason}")
    print_summary(app, f"wave {result.wave}: {step_title(result)}: {len(result.done)} {PLURAL[result.items]} done, "
                       f"{len(result.failed)} failed in {result.seconds:.1f} s")
