"""Running one wave of the approved plan: approval check, wave lock, pre-flight, then one sync pass.

The order of a run, and what each step refuses:

1. The wave's plan file must be valid (else ``ValidationFailed``, exit 2) and approved with the hash it
   has now (else ``NotApproved``, exit 6). A dry run only warns about approval.
2. The wave's lock (``.locks/``) is taken; a second run of the same wave is refused naming the holder
   (``LockHeld``, exit 7). Runs of the same wave that a kill left unfinished are marked ``killed``.
3. The pass (``prestage``, ``delta``, ``final``; by default the earliest with work left) picks its
   mailboxes; see :mod:`migrate.plans.lifecycle`.
4. Pre-flight (:mod:`migrate.plans.preflight`); a problem stops the run before any copying
   (``PreflightFailed``, exit 8) unless ``force``, which marks the failing mailboxes failed and goes on.
5. The sync engine copies the mailboxes in parallel. Each mailbox's lifecycle state changes the moment
   its sync ends, so a run killed at any point leaves every finished mailbox recorded and the rest
   resumable. A stop (Ctrl-C, SIGTERM) lets in-flight batches finish; stopped mailboxes keep their state.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from migrate.core.config import Project
from migrate.core.errors import ExitCode, Interrupted, NotApproved, PreflightFailed, UsageError
from migrate.core.locks import Lock
from migrate.core.progress import ProgressEvent, ProgressSink, no_progress
from migrate.core.store import MailboxRow, Store
from migrate.mailbox.registry import register_users
from migrate.mailbox.sync import MailboxReport, SyncEngine, SyncOptions
from migrate.plans import lifecycle
from migrate.plans.catalog import Catalog
from migrate.plans.edits import approval_status
from migrate.plans.planfiles import Plan, WavePlan
from migrate.plans.preflight import PreflightResult, preflight

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
                 dry_run: bool = False) -> None:
        self.project = project
        self.store = store
        self.plan = plan
        self.wave: WavePlan = plan.wave(wave_id)
        self.wave_id = wave_id
        self.locks_dir = locks_dir
        self.dry_run = dry_run
        self.lock: Lock | None = None
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

    def acquire(self, pass_name: str) -> None:
        if self.dry_run or self.lock is not None:
            return
        self.lock = Lock(self.locks_dir, f"wave {self.wave_id}",
                         f"govmigrate run {self.wave_id} --pass {pass_name}").acquire()
        self.killed_runs = self.store.abandon_runs(self.wave_id)
        for run_id in self.killed_runs:
            self.store.add_event(f"wave/{self.wave_id}", "run-killed",
                                 f"run {run_id} ended without finishing (killed or crashed); this run resumes it")

    # -- the run ---------------------------------------------------------------------------------------------

    def start(self, pass_name: str, *, again: bool = False, force: bool = False,
              preflight_progress: ProgressSink = no_progress) -> WaveRunResult:
        """Choose the pass's mailboxes and run the pre-flight; raises ``PreflightFailed`` (the findings are in
        :attr:`preflight_result`) unless everything passed or ``force`` leaves the failing mailboxes out.
        Call :meth:`check_plan` and :meth:`acquire` first, and :meth:`copy` after."""
        if again and pass_name == "prestage":
            raise UsageError("--again repeats a delta or final pass; a prestage pass always resumes")
        result = WaveRunResult(self.wave_id, pass_name, self.dry_run, again=again, warnings=list(self.warnings))
        chosen = lifecycle.eligibility(self.mailboxes(), pass_name, again=again)
        result.already = [(m.email, why) for m, why in chosen.done]
        result.blocked = [(m.email, why) for m, why in chosen.blocked]
        if not self.dry_run:
            for m, why in chosen.blocked:
                if "skip" in m.flags and m.state != lifecycle.SKIPPED:
                    self.store.set_mailbox_state(m.id, lifecycle.SKIPPED, why)
        result.work = [m.email for m in chosen.work]
        if not chosen.work:
            return result
        pre = preflight(self.project, Catalog(self.project, self.store), chosen.work, progress=preflight_progress)
        result.preflight = self.preflight_result = pre
        if pre.fatal or (pre.errors and not force):
            if not self.dry_run:
                self.store.add_event(f"wave/{self.wave_id}", "preflight-failed",
                                     "; ".join(f"{f.email or 'all'}: {f.message}" for f in pre.errors[:10]))
            raise PreflightFailed(
                f"pre-flight of wave {self.wave_id} found {len(pre.errors)} problem(s); nothing was copied",
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

    def copy(self, result: WaveRunResult, *, progress: ProgressSink = no_progress,
             stop: threading.Event | None = None) -> WaveRunResult:
        """The pass itself over the mailboxes :meth:`start` chose."""
        if not result.work or result.pass_name is None:
            return result
        started = time.monotonic()
        work = [self.store.mailbox(e) for e in result.work]
        self._sync(result.pass_name, [m for m in work if m is not None], result, Catalog(self.project, self.store),
                   progress, stop or threading.Event(), result.again)
        result.seconds = time.monotonic() - started
        return result

    def run(self, pass_name: str, *, again: bool = False, force: bool = False,
            preflight_progress: ProgressSink = no_progress, progress: ProgressSink = no_progress,
            stop: threading.Event | None = None) -> WaveRunResult:
        """:meth:`start` and :meth:`copy` in one."""
        result = self.start(pass_name, again=again, force=force, preflight_progress=preflight_progress)
        return self.copy(result, progress=progress, stop=stop)

    def _sync(self, pass_name: str, work: list[MailboxRow], result: WaveRunResult, catalog: Catalog,
              progress: ProgressSink, stop: threading.Event, again: bool = False) -> None:
        target = lifecycle.PASS_TARGET[pass_name]
        levels = {m.email: lifecycle.level(m) for m in work}
        remaining = {}
        for m in work:
            info = catalog.get(m.email)
            remaining[m.email] = info.remaining_bytes if info is not None else 0

        def sink(event: ProgressEvent) -> None:
            # Show what is left to copy: for a prestage the mailboxes' remaining size; later passes copy only
            # what changed, which nobody knows in advance.
            if event.kind == "plan":
                total = sum(remaining.values()) if pass_name == "prestage" else None
                event = ProgressEvent("plan", total_bytes=total or None, total_messages=None)
            elif event.kind == "start":
                total = remaining.get(event.subject) if pass_name == "prestage" else None
                event = replace(event, total_bytes=total or None, total_messages=None)
            elif event.kind == "failed" and stop.is_set():
                # Stopped on request, not failed: it keeps its state and resumes on the next run.
                progress(ProgressEvent("done", event.subject))
                event = ProgressEvent("note", event.subject, detail=f"stopped: {event.subject} (resumes on the next run)")
            progress(event)

        def on_start(mailbox: MailboxRow) -> None:
            if not self.dry_run and pass_name == "prestage" and mailbox.state != lifecycle.PRESTAGING:
                self.store.set_mailbox_state(mailbox.id, lifecycle.PRESTAGING)

        def on_report(mailbox: MailboxRow, report: MailboxReport) -> None:
            outcome = Outcome(mailbox.email, mailbox.state, mailbox.state, report.ok and report.complete,
                              copied=report.copied, copied_bytes=report.copied_bytes,
                              would_copy=sum(f.to_copy for f in report.folders),
                              would_copy_bytes=sum(f.to_copy_bytes for f in report.folders),
                              src_messages=report.src_messages, src_bytes=report.src_bytes, seconds=report.seconds)
            if report.locked:
                outcome.locked, outcome.error = True, report.error
            elif not report.ok and stop.is_set():
                outcome.stopped, outcome.error = True, report.error
            elif not outcome.ok:
                outcome.error = report.error or _incomplete(report)
            if not self.dry_run and not outcome.stopped and not outcome.locked:
                if outcome.ok:
                    self.store.set_mailbox_state(mailbox.id, target)
                    outcome.after = target
                else:
                    prior = lifecycle.retry_state(pass_name, levels[mailbox.email])
                    self.store.set_mailbox_state(mailbox.id, lifecycle.FAILED, f"{pass_name} pass: {outcome.error}",
                                                 prior_state=prior)
                    outcome.after = lifecycle.FAILED
            elif not self.dry_run and outcome.stopped:
                row = self.store.mailbox(mailbox.email)
                outcome.after = row.state if row else mailbox.state
            with self._lock:
                result.outcomes.append(outcome)

        if not self.dry_run:
            result.run_id = self.store.start_run(self.wave_id, pass_name)
            self.store.add_event(f"wave/{self.wave_id}", "run-start",
                                 f"{pass_name} pass over {len(work)} mailbox(es)" + (" (again)" if again else ""))
        options = SyncOptions.from_project(self.project, dry_run=self.dry_run, lock_dir=self.locks_dir)
        engine = SyncEngine(self.project, self.store, options=options, progress=sink, stop=stop)
        started = time.monotonic()
        outcome_text = "finished"
        try:
            engine.run(work, on_start=on_start, on_report=on_report)
        except Interrupted:
            result.interrupted = True
            outcome_text = "interrupted"
        except BaseException:
            outcome_text = "interrupted"
            self._finish(result, pass_name, outcome_text, time.monotonic() - started)
            raise
        order = {m.email: i for i, m in enumerate(work)}
        result.outcomes.sort(key=lambda o: order.get(o.email, len(order)))
        self._finish(result, pass_name, outcome_text, time.monotonic() - started)

    def _finish(self, result: WaveRunResult, pass_name: str, outcome_text: str, seconds: float) -> None:
        if self.dry_run or result.run_id is None:
            return
        failed = len(result.failed)
        done = sum(1 for o in result.outcomes if o.ok)
        verdict = "interrupted" if outcome_text == "interrupted" else ("partial" if failed else "ok")
        detail = (f"{pass_name} pass {outcome_text}: {done} mailbox(es) done, {failed} failed, "
                  f"{result.copied} messages ({result.copied_bytes} bytes) copied")
        self.store.finish_run(result.run_id, result=verdict, mailboxes=len(result.outcomes), messages=result.copied,
                              bytes_=result.copied_bytes, seconds=seconds, detail=detail)
        self.store.add_event(f"wave/{self.wave_id}", "run-finish" if verdict != "interrupted" else "run-interrupted",
                             detail)


def _incomplete(report: MailboxReport) -> str:
    parts = []
    if report.failed_messages:
        first = next((why for f in report.folders for _m, why in f.failed), "")
        parts.append(f"{report.failed_messages} message(s) could not be copied ({first})")
    if report.folder_errors:
        first = next((f"{f.source}: {f.error}" for f in report.folders if f.error), "")
        parts.append(f"{report.folder_errors} folder(s) failed ({first})")
    return "; ".join(parts) or "incomplete"


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
