"""The sync passes of a wave (prestage, delta, final): the sync engine over the mailboxes that have not
completed the pass, each moved along its lifecycle as its copy ends.

:class:`PassLifecycle` is what a pass does to a mailbox's state as its sync starts and ends; a run on this host,
a worker of a queued pass (:mod:`migrate.waves.workers`) and the cut-over's last delta record it the same way.
"""

from __future__ import annotations

import threading

from migrate.core import lifecycle
from migrate.core.errors import UsageError
from migrate.core.limits import ConnectionLimits
from migrate.core.progress import ProgressEvent, ProgressSink, no_progress
from migrate.core.store import MailboxRow, Store
from migrate.mailbox.sync import MailboxReport, SyncEngine, SyncOptions
from migrate.plans.catalog import Catalog
from migrate.waves.context import WaveRun
from migrate.waves.preflight import preflight
from migrate.waves.results import Gate, Outcome, StepResult
from migrate.waves.step import LEAVE_OUT, Step, StepOptions


class SyncPass(Step[MailboxRow]):
    """prestage, delta or final: one pass of the sync engine over the mailboxes that have not completed it."""

    force = LEAVE_OUT
    gate_label = "pre-flight"

    def __init__(self, name: str) -> None:
        self.name = name
        self.target = lifecycle.PASS_TARGET[name]

    def command(self, wave: str, options: StepOptions) -> str:
        return f"govmigrate run {wave} --pass {self.name}"

    def select(self, run: WaveRun, options: StepOptions) -> lifecycle.Eligibility[MailboxRow]:
        if options.again and self.name == "prestage":
            raise UsageError("--again repeats a delta or final pass; a prestage pass always resumes")
        return lifecycle.eligibility(run.mailboxes(), self.name, again=options.again)

    def mark_blocked(self, run: WaveRun, blocked: list[tuple[MailboxRow, str]]) -> None:
        for m, why in blocked:
            if "skip" in m.flags and m.state != lifecycle.SKIPPED:
                run.store.set_mailbox_state(m.id, lifecycle.SKIPPED, why)

    def gate(self, run: WaveRun, work: list[MailboxRow], options: StepOptions,
             progress: ProgressSink = no_progress) -> Gate:
        with ConnectionLimits(run.project, run.store) as limits:
            return preflight(run.project, Catalog(run.project, run.store), work, limits, progress=progress)

    def leave_out(self, run: WaveRun, item: MailboxRow, reason: str) -> None:
        run.store.set_mailbox_state(item.id, lifecycle.FAILED, f"pre-flight: {reason}",
                                    prior_state=lifecycle.level(item))

    def describe(self, count: int, options: StepOptions) -> str:
        return f"{self.name} pass over {count} mailbox(es)" + (" (again)" if options.again else "")

    def summary(self, result: StepResult, outcome_text: str) -> str:
        return (f"{self.name} pass {outcome_text}: {len(result.done)} mailbox(es) done, {len(result.failed)} failed, "
                f"{result.copied} messages ({result.copied_bytes} bytes) copied")

    def execute(self, run: WaveRun, result: StepResult, work: list[MailboxRow], options: StepOptions,
                progress: ProgressSink, stop: threading.Event) -> None:
        sync_pass(run, result, work, self.name, progress, stop,
                  carry_deletes=bool(options.params.get("carry_deletes")))


def sync_pass(run: WaveRun, result: StepResult, work: list[MailboxRow], pass_name: str, progress: ProgressSink,
              stop: threading.Event, *, target: str | None = None, failed_prior: str | None = None,
              carry_deletes: bool = False) -> None:
    """One sync pass over ``work``, each mailbox moved to ``target`` (the pass's own by default) the moment its
    sync completes, or to failed with the reason (remembering ``failed_prior``, by default where a retry of
    the pass resumes). The DNS cut-over's last delta uses it too (a final pass: it carries deletions).
    ``carry_deletes``: a delta pass carries deletions too (``run --carry-deletes``)."""

    def sink(event: ProgressEvent) -> None:
        # The totals are the engine's (SyncEngine.expected): for a prestage, what the inventory measured of
        # mailboxes never synced; later passes copy only what changed, learned folder by folder (grow).
        if event.kind == "failed" and stop.is_set():
            # Stopped on request, not failed: it keeps its state and resumes on the next run.
            progress(ProgressEvent("done", event.subject))
            event = ProgressEvent("note", event.subject, detail=f"stopped: {event.subject} (resumes on the next run)")
        progress(event)

    lifecycle_of = PassLifecycle(run.store, pass_name, work, dry_run=run.dry_run, stop=stop, target=target,
                                 failed_prior=failed_prior, bad_item_limit=run.project.config.sync.bad_item_limit,
                                 accept=result.force_reason)
    options = SyncOptions.for_pass(run.project, pass_name, carry_deletes=carry_deletes, dry_run=run.dry_run,
                                   lock_dir=run.locks_dir)
    SyncEngine(run.project, run.store, options=options, progress=sink, stop=stop).run(
        work, on_start=lifecycle_of.start,
        on_report=lambda mailbox, report: run.record(result, lifecycle_of.end(mailbox, report)))


class PassLifecycle:
    """What a sync pass does to a mailbox's lifecycle state as its sync starts and ends.

    Messages not copied (refused by the central host, or that the source cannot export) do not fail a mailbox's
    prestage or delta: it moves on, and the pass ends in part (exit 1) while more of them than
    ``bad_item_limit`` are outstanding. A final pass leaves such a mailbox failed instead, unless the run was
    forced with a reason (``accept``): the reason is then recorded with each of them, and the mailbox moves on.
    """

    def __init__(self, store: Store, pass_name: str, work: list[MailboxRow], *, dry_run: bool,
                 stop: threading.Event, target: str | None = None, failed_prior: str | None = None,
                 bad_item_limit: int = 0, accept: str | None = None) -> None:
        self.store = store
        self.pass_name = pass_name
        self.dry_run = dry_run
        self.stop = stop
        self.target = target or lifecycle.PASS_TARGET[pass_name]
        self.failed_prior = failed_prior
        self.levels = {m.email: lifecycle.level(m) for m in work}
        self.bad_item_limit = bad_item_limit
        self.accept = accept

    def start(self, mailbox: MailboxRow) -> None:
        if not self.dry_run and self.pass_name == "prestage" and mailbox.state != lifecycle.PRESTAGING:
            self.store.set_mailbox_state(mailbox.id, lifecycle.PRESTAGING)

    def end(self, mailbox: MailboxRow, report: MailboxReport) -> Outcome:
        outcome = Outcome(mailbox.email, mailbox.state, mailbox.state, report.ok and _whole(report),
                          copied=report.copied, copied_bytes=report.copied_bytes,
                          would_copy=sum(f.to_copy for f in report.folders),
                          would_copy_bytes=sum(f.to_copy_bytes for f in report.folders),
                          src_messages=report.src_messages, src_bytes=report.src_bytes, seconds=report.seconds)
        if report.locked:
            outcome.locked, outcome.error = True, report.error
        elif report.given_up:
            outcome.given_up, outcome.error = True, report.error
        elif not report.ok and self.stop.is_set():
            outcome.stopped, outcome.error = True, report.error
        elif not outcome.ok:
            outcome.error = report.error or incomplete(report)
        elif report.ok:
            self._not_copied(mailbox, report, outcome)
        if not self.dry_run and not outcome.stopped and not outcome.locked and not outcome.given_up:
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

    def _not_copied(self, mailbox: MailboxRow, report: MailboxReport, outcome: Outcome) -> None:
        """Count the mailbox's messages not copied that nobody accepted, and apply the limit (class docstring)."""
        if self.dry_run:
            outstanding = [why for f in report.folders for _m, why in f.failed]
        else:
            outstanding = [m.error or "" for m in self.store.failed_messages(mailbox.id) if m.accepted is None]
        outcome.not_copied = len(outstanding)
        if len(outstanding) <= self.bad_item_limit:
            return
        final = self.target == lifecycle.FINAL_SYNCED
        if final and self.accept:
            if not self.dry_run:
                outcome.accepted = self.store.accept_not_copied(mailbox.id, self.accept)
                self.store.add_event(f"mailbox/{mailbox.email}", "not-copied-accepted",
                                     f"{outcome.accepted} message(s) not copied accepted by the final pass: "
                                     f"{self.accept}")
            outcome.not_copied = 0
            return
        outcome.over_limit = True
        what = (f"{len(outstanding)} message(s) not copied, more than sync.bad_item_limit ({self.bad_item_limit}) "
                f"allows ({outstanding[0]})")
        if final:
            outcome.ok = False
            outcome.error = (f"{what}; copy them, raise the limit, or accept them: govmigrate run WAVE --pass final "
                             "--force --reason TEXT")
        else:
            outcome.error = what


def _whole(report: MailboxReport) -> bool:
    """Every folder and calendar synced (messages not copied are counted apart: PassLifecycle)."""
    return not report.folder_errors and not any(g.failed or g.error for g in report.groupware)


def incomplete(report: MailboxReport, refused: str = "could not be copied") -> str:
    """Why a mailbox's pass did not complete, in a line: messages refused (``refused`` says by whom) and folders
    that failed, each with the first reason."""
    parts = []
    if report.failed_messages:
        first = next((why for f in report.folders for _m, why in f.failed), "")
        parts.append(f"{report.failed_messages} message(s) {refused} ({first})")
    if report.folder_errors:
        first = next((f"{f.source}: {f.error}" for f in report.folders if f.error), "")
        parts.append(f"{report.folder_errors} folder(s) failed ({first})")
    return "; ".join(parts) or "incomplete"
