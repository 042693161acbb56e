"""The copy back of a rolled-back cut-over: mail that reached the central host after the switch, and the flags
users changed there, copied to the ministry server (:mod:`migrate.mailbox.sync.reverse`), each mailbox back to
``final-synced`` once its copy back is complete.

The rollback (:mod:`migrate.waves.rollback`) runs it for each domain once the MX is back at the ministry
server and caches of the switched MX have expired. As a step of its own (``govmigrate run WAVE --step
copy-back``) it copies back what reached the central host since (stale caches, a user still connected there):
nothing twice, so it can be run as often as useful. Its gate refuses while a domain's MX still points at the
central host: mail would keep arriving after the copy.
"""

from __future__ import annotations

import threading

from migrate.core import lifecycle
from migrate.core.progress import ProgressSink, no_progress
from migrate.core.store import MailboxRow
from migrate.mailbox.sync import MailboxReport, SyncOptions
from migrate.mailbox.sync.reverse import CopyBack
from migrate.waves.context import WaveRun
from migrate.waves.results import Finding, Gate, Outcome, StepResult
from migrate.waves.step import Step, StepOptions
from migrate.waves.sync_pass import incomplete

#: Where a domain's MX is the ministry server's again after a cut-over: its mail can be copied back.
MX_BACK = ("restored", "rolled-back")


def copy_back_candidates(run: WaveRun, domains: list[str]) -> list[MailboxRow]:
    """The mailboxes of ``domains`` a copy back works on: those the cut-over marked, and any that reached
    cut-over or done (without marks, everything the forward records do not name is new to them)."""
    wanted = {d.lower() for d in domains}
    out = []
    for m in run.store.mailboxes():
        if m.email.rsplit("@", 1)[1].lower() not in wanted or m.state == lifecycle.SKIPPED:
            continue
        if run.store.marked(m.id) or lifecycle.level(m) in (lifecycle.CUT_OVER, lifecycle.DONE):
            out.append(m)
    return out


def copy_back(run: WaveRun, result: StepResult | None, mailboxes: list[MailboxRow], progress: ProgressSink,
              stop: threading.Event) -> tuple[list[Outcome], list[Outcome]]:
    """Copy back each mailbox; each whose copy back completed returns to final-synced (from cut-over or done),
    each that failed is marked failed with why (it is retried by the next rollback or copy back). Returns the
    outcomes (done, failed); with ``result``, they are recorded there too."""
    if not mailboxes:
        return [], []
    done: list[Outcome] = []
    failed: list[Outcome] = []
    levels = {m.email: lifecycle.level(m) for m in mailboxes}

    def ended(mailbox: MailboxRow, report: MailboxReport) -> None:
        ok = report.ok and report.complete
        outcome = Outcome(mailbox.email, mailbox.state, mailbox.state, ok, copied=report.copied,
                          copied_bytes=report.copied_bytes)
        reached = levels[mailbox.email]
        if not ok:
            outcome.error = report.error or incomplete(report, "refused by the ministry server")
            outcome.stopped = not report.ok and stop.is_set()
        if not run.dry_run and not outcome.stopped:
            if ok and reached in (lifecycle.CUT_OVER, lifecycle.DONE):
                run.store.set_mailbox_state(mailbox.id, lifecycle.FINAL_SYNCED,
                                            f"rollback: the ministry server has its mail again ({report.copied} "
                                            "message(s) copied back)")
                outcome.after = lifecycle.FINAL_SYNCED
            elif ok and mailbox.state == lifecycle.FAILED and reached in lifecycle.MOVED:
                run.store.set_mailbox_state(mailbox.id, lifecycle.FINAL_SYNCED, "rollback: copy back completed")
                outcome.after = lifecycle.FINAL_SYNCED
            elif not ok:
                run.store.set_mailbox_state(mailbox.id, lifecycle.FAILED, f"rollback: copy back: {outcome.error}",
                                            prior_state=reached)
                outcome.after = lifecycle.FAILED
        (done if ok else failed).append(outcome)
        if result is not None:
            run.record(result, outcome)

    options = SyncOptions.from_project(run.project, dry_run=run.dry_run, lock_dir=run.locks_dir)
    CopyBack(run.project, run.store, options=options, progress=progress, stop=stop).run(mailboxes, on_report=ended)
    return done, failed


class CopyBackStep(Step[MailboxRow]):
    """Copy back, again, what reached the central host since the rollback of the wave's domains."""

    name = "copy-back"
    target = lifecycle.FINAL_SYNCED
    needs_approval = False

    def command(self, wave: str, options: StepOptions) -> str:
        return f"govmigrate run {wave} --step copy-back"

    def select(self, run: WaveRun, options: StepOptions) -> lifecycle.Eligibility[MailboxRow]:
        return lifecycle.Eligibility(copy_back_candidates(run, run.domains()), [], [])

    def gate(self, run: WaveRun, work: list[MailboxRow], options: StepOptions,
             progress: ProgressSink = no_progress) -> Gate:
        result = Gate(checked=[m.email for m in work])
        for domain in run.domains():
            row = run.store.dns_domain(domain)
            state = row.state if row else "unchanged"
            mx_back = state in MX_BACK or (state == "rollback-incomplete" and row is not None and row.unrestored
                                           and row.unrestored.get("mx_restored"))
            if not mx_back:
                result.findings.append(Finding(None, "copy-back", f"{domain}: its MX is not back at the ministry "
                                               f"server ({state}): mail would keep arriving on the central host; "
                                               f"run govmigrate dns rollback --wave {run.wave_id}"))
        return result

    def describe(self, count: int, options: StepOptions) -> str:
        return f"copy back of {count} mailbox(es)"

    def summary(self, result: StepResult, outcome_text: str) -> str:
        return (f"copy back {outcome_text}: {len(result.done)} mailbox(es) done, {len(result.failed)} failed, "
                f"{result.copied} message(s) copied back")

    def execute(self, run: WaveRun, result: StepResult, work: list[MailboxRow], options: StepOptions,
                progress: ProgressSink, stop: threading.Event) -> None:
        copy_back(run, result, work, progress, stop)
