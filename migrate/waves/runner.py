"""Running one step of one wave of the approved plan: approval check, wave lock, pre-flight, then the step.

A step (:mod:`migrate.waves.steps`) is one thing a wave does to its items: the prestage, delta and final sync
passes, the DNS cut-over, later the SIP checks. The order of a run, and what each part refuses:

1. The wave's plan file must be valid (else ``ValidationFailed``, exit 2) and approved with the hash it
   has now (else ``NotApproved``, exit 6). A dry run only warns about approval.
2. The wave's lock (``.locks/``) is taken; a second run of the same wave is refused naming the holder
   (``LockHeld``, exit 7). Runs of the same wave that a kill left unfinished are marked ``killed``.
3. The step picks its items (for a sync pass: by default the earliest pass with work left); see
   :mod:`migrate.core.lifecycle`.
4. The step's pre-flight; a problem stops the run before anything changes (``PreflightFailed``, exit 8)
   unless ``force``, which marks the failing items failed and goes on.
5. The step runs. Each item's lifecycle state changes the moment its work ends, so a run killed at any
   point leaves every finished item recorded and the rest resumable. A stop (Ctrl-C, SIGTERM) lets the work
   in flight finish; stopped items keep their state.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrate.core import lifecycle
from migrate.core.config import Project
from migrate.core.errors import ExitCode, Interrupted, NotApproved, PreflightFailed, UsageError
from migrate.core.leases import wave_lock
from migrate.core.progress import ProgressSink, no_progress
from migrate.core.registry import register_users
from migrate.core.store import MailboxRow, Store
from migrate.plans.edits import approval_status
from migrate.plans.planfiles import Plan, WavePlan
from migrate.waves.preflight import PreflightResult

if TYPE_CHECKING:
    from migrate.waves.steps import Step

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one pass did to one mailbox."""

    email: str
    before: str
    after: str
    ok: bool
    error: str | None = None
    stopped: bool = False
    #: Another process holds this mailbox (a sync of it): left as it is, for that process to finish.
    locked: bool = False
    copied: int = 0
    copied_bytes: int = 0
    would_copy: int = 0
    would_copy_bytes: int = 0
    src_messages: int = 0
    src_bytes: int = 0
    seconds: float = 0.0
    #: The migration host that copied it (a pass queued for workers on several hosts).
    host: str | None = None


@dataclass
class WaveRunResult:
    wave: str
    pass_name: str | None
    dry_run: bool
    again: bool = False
    #: Addresses the pass works on (after pre-flight).
    work: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    #: (email, why) past this pass already: not a problem.
    already: list[tuple[str, str]] = field(default_factory=list)
    #: (email, why) that cannot take this pass: counted as skipped.
    blocked: list[tuple[str, str]] = field(default_factory=list)
    #: (email, reason) left out after a failed pre-flight with ``force``.
    forced_out: list[tuple[str, str]] = field(default_factory=list)
    preflight: PreflightResult | None = None
    interrupted: bool = False
    seconds: float = 0.0
    run_id: int | None = None
    warnings: list[str] = field(default_factory=list)
    #: ``--force --reason``: why a gate was passed by force (recorded with what it overrode).
    force_reason: str | None = None
    #: (who, what) a forced gate let through.
    forced: list[tuple[str, str]] = field(default_factory=list)
    #: Per domain, what a cut-over step did (migrate.waves.cutover).
    domains: list[Any] = field(default_factory=list)

    @property
    def copied(self) -> int:
        return sum(o.copied for o in self.outcomes)

    @property
    def copied_bytes(self) -> int:
        return sum(o.copied_bytes for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok and not o.stopped and not o.locked]

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return ExitCode.INTERRUPTED
        if any(o.locked for o in self.outcomes):
            return ExitCode.LOCKED
        if self.failed or self.blocked or self.forced_out:
            return ExitCode.PARTIAL
        return ExitCode.OK


class WaveRun:
    """One run of one wave. Use as a context manager (the wave lock is released on exit)."""

    def __init__(self, project: Project, store: Store, plan: Plan, wave_id: str, *, locks_dir: Path,
                 dry_run: bool = False, queued: bool = False) -> None:
        """``queued``: a sync pass's mailboxes go to the shared queue for ``govmigrate worker`` processes on any
        host (:mod:`migrate.waves.workers`) instead of being copied by this process."""
        self.project = project
        self.store = store
        self.plan = plan
        self.wave: WavePlan = plan.wave(wave_id)
        self.wave_id = wave_id
        self.locks_dir = locks_dir
        self.dry_run = dry_run
        self.queued = queued
        self.lock: Any = None
        self.warnings: list[str] = []
        self.preflight_result: PreflightResult | None = None
        #: Earlier runs of this wave found unfinished (killed) when the lock was taken.
        self.killed_runs: list[int] = []
        self._lock = threading.Lock()

    def __enter__(self) -> WaveRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # -- the checks before anything happens --------------------------------------------------------------

    def check_plan(self) -> None:
        """The wave's file and the index must be valid, and the wave approved as it stands."""
        self.plan.require_valid(self.wave_id)
        row = self.store.wave(self.wave_id)
        status = approval_status(self.wave.hashes, row)
        if status == "approved":
            return
        rel = self.plan.relative(self.wave.path)
        if status == "not approved":
            message = f"wave {self.wave_id} is not approved"
            hint = f"review it (govmigrate plan show {self.wave_id}), then: govmigrate plan approve {self.wave_id}"
        else:
            assert row is not None
            message = (f"{rel} changed since {row.approved_by} approved wave {self.wave_id} at {row.approved_at}; "
                       "a changed wave must be approved again")
            hint = (f"see what changed with: govmigrate plan diff {self.wave_id}; then: "
                    f"govmigrate plan approve {self.wave_id}")
        if self.dry_run:
            self.warnings.append(f"{message} (a dry run goes ahead; a real run would be refused)")
            return
        raise NotApproved(message, hint=hint)

    def mailboxes(self) -> list[MailboxRow]:
        assert self.wave.data is not None
        rows = []
        for email in self.wave.data.mailboxes:
            row = self.store.mailbox(email)
            if row is None:  # validation reports unknown addresses; a row is missing only if the store was reset
                raise UsageError(f"{email} of wave {self.wave_id} is not in the state store; run govmigrate check")
            rows.append(row)
        return rows

    def choose_pass(self, pass_name: str | None) -> str | None:
        if pass_name is not None:
            if pass_name not in lifecycle.PASSES:
                raise UsageError(f"unknown pass {pass_name!r}; passes: {', '.join(lifecycle.PASSES)}")
            return pass_name
        return lifecycle.next_pass(self.mailboxes())

    def acquire(self, pass_name: str, *, command: str | None = None) -> None:
        """Take the wave's lock; ``command`` is what a refused second run is told holds it."""
        if self.dry_run or self.lock is not None:
            return
        self.lock = wave_lock(self.store, self.locks_dir, self.wave_id,
                              command or f"govmigrate run {self.wave_id} --pass {pass_name}",
                              ttl=self.project.config.sync.lease_seconds).acquire()
        self.killed_runs = self.store.abandon_runs(self.wave_id)
        for run_id in self.killed_runs:
            self.store.add_event(f"wave/{self.wave_id}", "run-killed",
                                 f"run {run_id} ended without finishing (killed or crashed); this run resumes it")

    # -- the run ---------------------------------------------------------------------------------------------

    def start(self, step_name: str, *, again: bool = False, force: bool = False, reason: str | None = None,
              preflight_progress: ProgressSink = no_progress) -> WaveRunResult:
        """Choose the step's mailboxes and run its pre-flight; raises ``PreflightFailed`` (the findings are in
        :attr:`preflight_result`) unless everything passed or ``force`` leaves the failing mailboxes out.
        Call :meth:`check_plan` and :meth:`acquire` first, and :meth:`execute` after."""
        step = self.step(step_name)
        if again and step_name == "prestage":
            raise UsageError("--again repeats a delta or final pass; a prestage pass always resumes")
        result = WaveRunResult(self.wave_id, step_name, self.dry_run, again=again, warnings=list(self.warnings),
                               force_reason=reason if force else None)
        chosen = step.select(self, again=again)
        result.already = [(m.email, why) for m, why in chosen.done]
        result.blocked = [(m.email, why) for m, why in chosen.blocked]
        if not self.dry_run:
            for m, why in chosen.blocked:
                if "skip" in m.flags and m.state != lifecycle.SKIPPED:
                    self.store.set_mailbox_state(m.id, lifecycle.SKIPPED, why)
        result.work = [m.email for m in chosen.work]
        if not chosen.work:
            return result
        pre = step.preflight(self, chosen.work, preflight_progress)
        result.preflight = self.preflight_result = pre
        if pre.errors and force and step.force_overrides_gate:
            # A gate (the cut-over's) passed by force: every mailbox goes ahead; what was overridden, and why,
            # is recorded.
            if not reason:
                raise UsageError("--force needs --reason: it is recorded with what it overrides")
            result.forced = [(f.email or "all", f.message) for f in pre.errors]
            if not self.dry_run:
                self.store.add_event(f"wave/{self.wave_id}", "gate-forced", f"{reason}; overridden: "
                                     + "; ".join(f"{w}: {m}" for w, m in result.forced[:10]))
            result.work = [m.email for m in chosen.work]
            return result
        if pre.fatal or (pre.errors and not force):
            if not self.dry_run:
                self.store.add_event(f"wave/{self.wave_id}", "preflight-failed",
                                     "; ".join(f"{f.email or 'all'}: {f.message}" for f in pre.errors[:10]))
            raise PreflightFailed(
                f"pre-flight of wave {self.wave_id} ({step_name}) found {len(pre.errors)} problem(s); "
                "nothing was copied or changed",
                hint=None if pre.fatal else "fix them and run again, or add --force to run without the failing "
                                            "mailboxes")
        failing = pre.failing()
        for m in chosen.work:
            if m.email in failing:
                result.forced_out.append((m.email, failing[m.email]))
                if not self.dry_run:
                    self.store.set_mailbox_state(m.id, lifecycle.FAILED, f"pre-flight: {failing[m.email]}",
                                                 prior_state=lifecycle.level(m))
        result.work = [m.email for m in chosen.work if m.email not in failing]
        return result

    def execute(self, result: WaveRunResult, *, progress: ProgressSink = no_progress,
                stop: threading.Event | None = None) -> WaveRunResult:
        """The step itself over the mailboxes :meth:`start` chose, recorded as a run of the wave."""
        if not result.work or result.pass_name is None:
            return result
        step = self.step(result.pass_name)
        work = [m for m in (self.store.mailbox(e) for e in result.work) if m is not None]
        started = time.monotonic()
        if not self.dry_run:
            result.run_id = self.store.start_run(self.wave_id, step.name)
            self.store.add_event(f"wave/{self.wave_id}", "run-start", step.describe(len(work), result.again))
        outcome_text = "finished"
        try:
            if self.queued:
                from migrate.waves.workers import queue_pass

                queue_pass(self, result, work, progress, stop or threading.Event())
            else:
                step.execute(self, result, work, progress, stop or threading.Event())
        except Interrupted:
            result.interrupted = True
            outcome_text = "interrupted"
        except BaseException:
            self._finish(result, step, "interrupted", time.monotonic() - started)
            raise
        order = {m.email: i for i, m in enumerate(work)}
        result.outcomes.sort(key=lambda o: order.get(o.email, len(order)))
        result.seconds = time.monotonic() - started
        self._finish(result, step, outcome_text, result.seconds)
        return result

    def run(self, step_name: str, *, again: bool = False, force: bool = False,
            preflight_progress: ProgressSink = no_progress, progress: ProgressSink = no_progress,
            stop: threading.Event | None = None) -> WaveRunResult:
        """:meth:`start` and :meth:`execute` in one."""
        result = self.start(step_name, again=again, force=force, preflight_progress=preflight_progress)
        return self.execute(result, progress=progress, stop=stop)

    def record(self, result: WaveRunResult, outcome: Outcome) -> None:
        """A mailbox's outcome, as its work ends (steps call this from their worker threads)."""
        with self._lock:
            result.outcomes.append(outcome)

    @property
    def reports_dir(self) -> Path:
        return self.locks_dir.parent / "reports"

    @staticmethod
    def step(name: str) -> Step:
        import migrate.waves.cutover  # noqa: F401  (registers the cut-over step)
        from migrate.waves.steps import STEPS

        if name not in STEPS:
            raise UsageError(f"unknown step {name!r}; steps: {', '.join(STEPS)}")
        return STEPS[name]

    def _finish(self, result: WaveRunResult, step: Step, outcome_text: str, seconds: float) -> None:
        if self.dry_run or result.run_id is None:
            return
        failed = len(result.failed)
        verdict = "interrupted" if outcome_text == "interrupted" else ("partial" if failed else "ok")
        detail = step.summary(result, outcome_text)
        self.store.finish_run(result.run_id, result=verdict, mailboxes=len(result.outcomes), messages=result.copied,
                              bytes_=result.copied_bytes, seconds=seconds, detail=detail)
        self.store.add_event(f"wave/{self.wave_id}", "run-finish" if verdict != "interrupted" else "run-interrupted",
                             detail)


def run_wave(project: Project, store: Store, plan: Plan, wave_id: str, *, locks_dir: Path, pass_name: str | None = None,
             dry_run: bool = False, again: bool = False, force: bool = False, progress: ProgressSink = no_progress,
             stop: threading.Event | None = None) -> WaveRunResult:
    """The whole run for library callers: register users, check, lock, pre-flight, pass."""
    register_users(project, store)
    with WaveRun(project, store, plan, wave_id, locks_dir=locks_dir, dry_run=dry_run) as wr:
        wr.check_plan()
        chosen = wr.choose_pass(pass_name)
        if chosen is None:
            return WaveRunResult(wave_id, None, dry_run, warnings=wr.warnings)
        wr.acquire(chosen)
        return wr.run(chosen, again=again, force=force, progress=progress, stop=stop)
