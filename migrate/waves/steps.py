"""The steps of a wave: what each one applies to, its pre-flight, how it runs, and the state it moves items to.

A wave runs one step at a time (``govmigrate run WAVE --pass P``, ``govmigrate cutover WAVE``); the runner
(:mod:`migrate.waves.runner`) does what every step shares: approval, the wave lock, the run record, forced
pre-flight failures, interruption. The three sync passes are steps here; the DNS cut-over
(:mod:`migrate.waves.cutover`) and, later, the SIP checks are steps too.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from migrate.core import lifecycle
from migrate.core.progress import ProgressEvent, ProgressSink, no_progress
from migrate.core.store import MailboxRow, Store
from migrate.mailbox.sync import MailboxReport, SyncEngine, SyncOptions
from migrate.plans.catalog import Catalog
from migrate.waves.preflight import PreflightResult, preflight

if TYPE_CHECKING:
    from migrate.waves.runner import Outcome, WaveRun, WaveRunResult


class Step:
    """One thing a wave does to its mailboxes. Subclasses say which mailboxes, check, and act."""

    #: How the step is named on the command line, in the run records and in events.
    name: str = ""
    #: The lifecycle state a mailbox reaches when the step completes for it.
    target: str = ""
    #: With ``--force``: True lets every mailbox past a failed pre-flight (a gate, with a recorded reason);
    #: False leaves the failing mailboxes out (marked failed) and runs the rest.
    force_overrides_gate: bool = False

    def select(self, run: WaveRun, *, again: bool = False) -> lifecycle.Eligibility:
        """The wave's mailboxes this step works on, those already past it, and those that cannot take it."""
        raise NotImplementedError

    def preflight(self, run: WaveRun, work: list[MailboxRow], progress: ProgressSink = no_progress) -> PreflightResult:
        """What must hold before the step changes anything; errors stop it (or, with force, their mailboxes)."""
        raise NotImplementedError

    def execute(self, run: WaveRun, result: WaveRunResult, work: list[MailboxRow], progress: ProgressSink,
                stop: threading.Event) -> None:
        """Do the step, recording each mailbox's outcome in ``result`` as it ends (run.record)."""
        raise NotImplementedError

    def describe(self, count: int, again: bool) -> str:
        return f"{self.name} over {count} mailbox(es)" + (" (again)" if again else "")

    def summary(self, result: WaveRunResult, outcome_text: str) -> str:
        done = sum(1 for o in result.outcomes if o.ok)
        return f"{self.name} {outcome_text}: {done} mailbox(es) done, {len(result.failed)} failed"


class SyncPass(Step):
    """prestage, delta or final: one pass of the sync engine over the mailboxes that have not completed it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.target = lifecycle.PASS_TARGET[name]

    def select(self, run: WaveRun, *, again: bool = False) -> lifecycle.Eligibility:
        return lifecycle.eligibility(run.mailboxes(), self.name, again=again)

    def preflight(self, run: WaveRun, work: list[MailboxRow], progress: ProgressSink = no_progress) -> PreflightResult:
        return preflight(run.project, Catalog(run.project, run.store), work, progress=progress)

    def describe(self, count: int, again: bool) -> str:
        return f"{self.name} pass over {count} mailbox(es)" + (" (again)" if again else "")

    def summary(self, result: WaveRunResult, outcome_text: str) -> str:
        done = sum(1 for o in result.outcomes if o.ok)
        return (f"{self.name} pass {outcome_text}: {done} mailbox(es) done, {len(result.failed)} failed, "
                f"{result.copied} messages ({result.copied_bytes} bytes) copied")

    def execute(self, run: WaveRun, result: WaveRunResult, work: list[MailboxRow], progress: ProgressSink,
                stop: threading.Event) -> None:
        sync_pass(run, result, work, self.name, progress, stop)


def sync_pass(run: WaveRun, result: WaveRunResult, work: list[MailboxRow], pass_name: str, progress: ProgressSink,
              stop: threading.Event, *, target: str | None = None, failed_prior: str | None = None) -> None:
    """One sync pass over ``work``, each mailbox moved to ``target`` (the pass's own by default) the moment its
    sync completes, or to failed with the reason (remembering ``failed_prior``, by default where a retry of
    the pass resumes). The DNS cut-over's last delta uses it too."""

    def sink(event: ProgressEvent) -> None:
        # The totals are the engine's (SyncEngine.expected): for a prestage, what the inventory measured of
        # mailboxes never synced; later passes copy only what changed, learned folder by folder (grow).
        if event.kind == "failed" and stop.is_set():
            # Stopped on request, not failed: it keeps its state and resumes on the next run.
            progress(ProgressEvent("done", event.subject))
            event = ProgressEvent("note", event.subject, detail=f"stopped: {event.subject} (resumes on the next run)")
        progress(event)

    lifecycle_of = PassLifecycle(run.store, pass_name, work, dry_run=run.dry_run, stop=stop, target=target,
                                 failed_prior=failed_prior)
    options = SyncOptions.from_project(run.project, dry_run=run.dry_run, lock_dir=run.locks_dir)
    SyncEngine(run.project, run.store, options=options, progress=sink, stop=stop).run(
        work, on_start=lifecycle_of.start,
        on_report=lambda mailbox, report: run.record(result, lifecycle_of.end(mailbox, report)))


class PassLifecycle:
    """What a sync pass does to a mailbox's lifecycle state as its sync starts and ends; a wave run on this
    host and a worker of a queued pass (:mod:`migrate.waves.workers`) record it the same way."""

    def __init__(self, store: Store, pass_name: str, work: list[MailboxRow], *, dry_run: bool,
                 stop: threading.Event, target: str | None = None, failed_prior: str | None = None) -> None:
        self.store = store
        self.pass_name = pass_name
        self.dry_run = dry_run
        self.stop = stop
        self.target = target or lifecycle.PASS_TARGET[pass_name]
        self.failed_prior = failed_prior
        self.levels = {m.email: lifecycle.level(m) for m in work}

    def start(self, mailbox: MailboxRow) -> None:
        if not self.dry_run and self.pass_name == "prestage" and mailbox.state != lifecycle.PRESTAGING:
            self.store.set_mailbox_state(mailbox.id, lifecycle.PRESTAGING)

    def end(self, mailbox: MailboxRow, report: MailboxReport) -> Outcome:
        from migrate.waves.runner import Outcome

        outcome = Outcome(mailbox.email, mailbox.state, mailbox.state, report.ok and report.complete,
                          copied=report.copied, copied_bytes=report.copied_bytes,
                          would_copy=sum(f.to_copy for f in report.folders),
                          would_copy_bytes=sum(f.to_copy_bytes for f in report.folders),
                          src_messages=report.src_messages, src_bytes=report.src_bytes, seconds=report.seconds)
        if report.locked:
            outcome.locked, outcome.error = True, report.error
        elif not report.ok and self.stop.is_set():
            outcome.stopped, outcome.error = True, report.error
        elif not outcome.ok:
            outcome.error = report.error or _incomplete(report)
        if not self.dry_run and not outcome.stopped and not outcome.locked:
            if outcome.ok:
                self.store.set_mailbox_state(mailbox.id, self.target)
                outcome.after = self.target
            else:
                prior = self.failed_prior or lifecycle.retry_state(self.pass_name,
                                                                   self.levels.get(mailbox.email,
                                                                                   lifecycle.level(mailbox)))
                self.store.set_mailbox_state(mailbox.id, lifecycle.FAILED, f"{self.pass_name} pass: {outcome.error}",
                                             prior_state=prior)
                outcome.after = lifecycle.FAILED
        elif not self.dry_run and outcome.stopped:
            row = self.store.mailbox(mailbox.email)
            outcome.after = row.state if row else mailbox.state
        return outcome


def _incomplete(report: MailboxReport) -> str:
    parts = []
    if report.failed_messages:
        first = next((why for f in report.folders for _m, why in f.failed), "")
        parts.append(f"{report.failed_messages} message(s) could not be copied ({first})")
    if report.folder_errors:
        first = next((f"{f.source}: {f.error}" for f in report.folders if f.error), "")
        parts.append(f"{report.folder_errors} folder(s) failed ({first})")
    return "; ".join(parts) or "incomplete"


#: Every step a wave can run, by name.
STEPS: dict[str, Step] = {name: SyncPass(name) for name in lifecycle.PASSES}
