"""Running one step of one wave: what every step shares, written once.

The order of a run, and what each part refuses:

1. The wave's plan file must be valid (else ``ValidationFailed``, exit 2) and, for a step that needs it,
   approved with the hash it has now (else ``NotApproved``, exit 6). A dry run only warns about approval.
2. The wave's lock is taken; a second run of the same wave is refused naming the holder (``LockHeld``, exit 7).
   Runs of the same wave that a kill left unfinished are marked ``killed``.
3. The step picks its items (:meth:`Step.select`).
4. The step's gate (:meth:`Step.gate`); a problem stops the run before anything changes (``PreflightFailed``,
   exit 8), unless ``--force``: a step whose force leaves items out runs without the failing ones (marked
   failed), a step whose force overrides its gate goes ahead with every item, with the ``--reason`` recorded.
5. The step runs, as a run record of the wave with its events. Each item's state changes the moment its work
   ends, so a run killed at any point leaves every finished item recorded and the rest resumable. A stop
   (Ctrl-C, SIGTERM) lets the work in flight finish; stopped items keep their state.

:func:`start` does 1–4 and :func:`execute` 5, so that a command can show the gate's findings in between.
"""

from __future__ import annotations

import threading
import time

from migrate.core.errors import Interrupted, MigrateError, PreflightFailed, UsageError
from migrate.core.progress import ProgressSink, no_progress
from migrate.waves.context import WaveRun
from migrate.waves.results import StepResult
from migrate.waves.step import LEAVE_OUT, OVERRIDE, Step, StepOptions

#: A step run with no option given.
DEFAULTS = StepOptions()
#: How many findings an event names (the rest are counted).
EVENT_FINDINGS = 10


def start(run: WaveRun, step: Step, options: StepOptions = DEFAULTS, *,
          progress: ProgressSink = no_progress) -> StepResult:
    """Check, lock, select and gate (module docstring, 1–4). Raises ``PreflightFailed`` when the gate refuses;
    its findings are then in ``run.gate``. Call :func:`execute` with what it returns."""
    if options.force and step.force == OVERRIDE and not options.reason:
        raise UsageError("--force needs --reason: it is recorded with what it overrides")
    if options.reason and not options.force:
        raise UsageError("--reason goes with --force")
    run.check_plan(approval=step.needs_approval)
    if step.takes_lock:
        run.acquire(step.command(run.wave_id, options))
    result = StepResult(run.wave_id, step.name, run.dry_run, again=options.again, items=step.items,
                        warnings=list(run.warnings), force_reason=options.reason if options.force else None)
    chosen = step.select(run, options)
    result.already = [(step.key(i), why) for i, why in chosen.done]
    result.blocked = [(step.key(i), why) for i, why in chosen.blocked]
    if not run.dry_run:
        step.mark_blocked(run, chosen.blocked)
    result.work = [step.key(i) for i in chosen.work]
    run.gate = None
    if not chosen.work:
        return result
    gate = step.gate(run, chosen.work, options, progress)
    result.gate = run.gate = gate
    if not gate.errors:
        return result
    listed = "; ".join(f"{f.item or 'all'}: {f.message}" for f in gate.errors[:EVENT_FINDINGS])
    if options.force and step.force == OVERRIDE and gate.blocking:
        # Some things force cannot change: a switch that could not reach every server would strand the domain.
        run.event("gate-refused", f"{step.name}: forced ({options.reason}), but: "
                  + "; ".join(f"{f.item or 'all'}: {f.message}" for f in gate.blocking[:EVENT_FINDINGS]))
        message, _hint = step.refusal(run, gate)
        raise PreflightFailed(f"{message}; --force cannot go past {len(gate.blocking)} of them: "
                              + "; ".join(f.message for f in gate.blocking[:EVENT_FINDINGS]),
                              hint="fix those first (the message says what and where); the others may be forced")
    if options.force and step.force == OVERRIDE:
        # A gate passed by force: every item goes ahead; what was overridden, and why, is recorded.
        result.forced = [(f.item or "all", f.message) for f in gate.errors]
        run.event("gate-forced", f"{step.name}: {options.reason}; overridden: {listed}")
        return result
    if gate.fatal or not (options.force and step.force == LEAVE_OUT):
        run.event("gate-refused", f"{step.name}: {listed}")
        message, hint = step.refusal(run, gate)
        raise PreflightFailed(message, hint=hint)
    failing = gate.failing()
    for item in chosen.work:
        key = step.key(item)
        if key in failing:
            result.forced_out.append((key, failing[key]))
            if not run.dry_run:
                step.leave_out(run, item, failing[key])
    result.work = [k for k in result.work if k not in failing]
    return result


def execute(run: WaveRun, step: Step, result: StepResult, options: StepOptions = DEFAULTS, *,
            progress: ProgressSink = no_progress, stop: threading.Event | None = None) -> StepResult:
    """The step itself over the items :func:`start` chose, recorded as a run of the wave."""
    if not result.work:
        return result
    work = step.load(run, result.work)
    started = time.monotonic()
    if not run.dry_run:
        result.run_id = run.store.start_run(run.wave_id, step.name)
        run.event("run-start", step.describe(len(work), options))
    outcome_text = "finished"
    try:
        step.execute(run, result, work, options, progress, stop or threading.Event())
    except Interrupted:
        result.interrupted = True
        outcome_text = "interrupted"
    except MigrateError as exc:  # refused half-way (an export the writers refuse, a server that stops answering)
        _finish(run, step, result, "failed", time.monotonic() - started, detail=f"{step.name} failed: {exc.message}")
        raise
    except BaseException:
        _finish(run, step, result, "interrupted", time.monotonic() - started)
        raise
    order = {k: i for i, k in enumerate(result.work)}
    result.outcomes.sort(key=lambda o: order.get(o.item, len(order)))
    result.seconds = time.monotonic() - started
    _finish(run, step, result, outcome_text, result.seconds)
    return result


def run_step(run: WaveRun, step: Step, options: StepOptions = DEFAULTS, *,
             progress: ProgressSink = no_progress, stop: threading.Event | None = None) -> StepResult:
    """:func:`start` and :func:`execute` in one."""
    return execute(run, step, start(run, step, options, progress=progress), options, progress=progress, stop=stop)


def _finish(run: WaveRun, step: Step, result: StepResult, outcome_text: str, seconds: float, *,
            detail: str | None = None) -> None:
    if run.dry_run or result.run_id is None:
        return
    if outcome_text in ("interrupted", "failed"):
        verdict = outcome_text
    else:
        verdict = "partial" if result.failed or result.incomplete or any(o.over_limit for o in result.outcomes) \
            else "ok"
    detail = detail or step.summary(result, outcome_text)
    run.store.finish_run(result.run_id, result=verdict, mailboxes=len(result.outcomes), messages=result.copied,
                         bytes_=result.copied_bytes, seconds=seconds, detail=detail)
    run.event({"interrupted": "run-interrupted", "failed": "run-failed"}.get(verdict, "run-finish"), detail)
