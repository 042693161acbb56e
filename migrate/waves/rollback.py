"""The rollback of a wave's DNS cut-over (``govmigrate dns rollback --wave WAVE``): each domain's baseline put
back and its mailboxes returned to ``final-synced``.

Per domain: the inverse of the recorded change set, sent as one RFC 2136 update whose prerequisites are the
records exactly as the cut-over left them (someone else's change since is never overwritten: exit 9, nothing
changed); a wait until every authoritative server serves it; then the domain's mailboxes go back to
final-synced. The wave need not be approved as its file stands (a rollback must work in an emergency), but its
lock is taken: a rollback never runs beside a cut-over of the same wave.
"""

from __future__ import annotations

import threading

from migrate.core import lifecycle
from migrate.core.progress import ProgressEvent, ProgressSink, no_progress
from migrate.core.store import Store
from migrate.dns.changes import ChangeSet, mx_text, primary_holds
from migrate.dns.client import DnsClient, dns_section
from migrate.dns.propagation import wait_propagated
from migrate.dns.update import apply_changes
from migrate.waves.context import WaveRun
from migrate.waves.dns_switch import DomainOutcome, domain_mailboxes
from migrate.waves.results import Gate, Outcome, StepResult
from migrate.waves.step import Step, StepOptions


class DnsRollback(Step[str]):
    """Every domain of the wave's cutover_domains back to its baseline."""

    name = "rollback"
    items = "domain"
    target = lifecycle.FINAL_SYNCED
    needs_approval = False

    def command(self, wave: str, options: StepOptions) -> str:
        return f"govmigrate dns rollback --wave {wave}"

    def key(self, item: str) -> str:
        return item

    def select(self, run: WaveRun, options: StepOptions) -> lifecycle.Eligibility[str]:
        return lifecycle.Eligibility(run.domains(), [], [])

    def load(self, run: WaveRun, keys: list[str]) -> list[str]:
        return keys

    def gate(self, run: WaveRun, work: list[str], options: StepOptions, progress: ProgressSink = no_progress) -> Gate:
        # A missing or unusable TSIG secret stops the rollback before any server is asked.
        DnsClient(dns_section(run.project, tsig=True), run.project.base_dir).tsig()
        return Gate(checked=list(work))

    def describe(self, count: int, options: StepOptions) -> str:
        return f"rollback of {count} domain(s)"

    def summary(self, result: StepResult, outcome_text: str) -> str:
        domains = ", ".join(f"{d.domain} {d.after}" for d in result.domains) or "no domain"
        return f"rollback {outcome_text}: {domains}"

    def execute(self, run: WaveRun, result: StepResult, work: list[str], options: StepOptions,
                progress: ProgressSink, stop: threading.Event) -> None:
        client = DnsClient(dns_section(run.project, tsig=True), run.project.base_dir)
        for domain in work:
            outcome = rollback_domain(run.store, client, domain, progress=progress, stop=stop)
            result.domains.append(outcome)
            run.record(result, Outcome(domain, outcome.before, outcome.after, True))


def rollback_domain(store: Store, client: DnsClient, domain: str, *, progress: ProgressSink = no_progress,
                    stop: threading.Event | None = None) -> DomainOutcome:
    """Put a domain's baseline back (prerequisites: every RRset exactly as the cut-over left it), wait until
    every authoritative server serves it, and return the domain's mailboxes to final-synced."""
    row = store.dns_domain(domain)
    state = row.state if row else "unchanged"
    outcome = DomainOutcome(domain, state, state)
    if state not in lifecycle.DOMAIN_BEGUN or row is None or not row.changes:
        outcome.detail = f"nothing to roll back ({state})"
        return outcome
    changes = ChangeSet.from_dict(row.changes)
    inverse = changes.inverse()
    outcome.changes = inverse.rows()
    if primary_holds(client, changes) == "before":
        detail = "the switch had not been applied; nothing to undo on the servers"
    else:
        apply_changes(client, inverse)
        wait_propagated(client, inverse, stop=stop,
                        on_look=lambda seen: progress(ProgressEvent(
                            "note", domain, detail=f"{domain}: waiting for " + "; ".join(seen.lagging())))
                        if not seen.done else None)
        detail = f"baseline restored: {len(inverse)} RRset(s); " + mx_text(inverse)
    moved = 0
    for m in domain_mailboxes(store, [domain])[domain]:
        if lifecycle.level(m) in (lifecycle.CUT_OVER, lifecycle.DONE):
            store.set_mailbox_state(m.id, lifecycle.FINAL_SYNCED, f"rollback: the MX of {domain} is the ministry "
                                                                 "server's again")
            moved += 1
    detail += f"; {moved} mailbox(es) back to final-synced"
    with store.tx():
        store.update_dns_domain(domain, state="rolled-back", detail=detail)
        store.add_event(f"dns/{domain}", "rollback", detail)
    outcome.after, outcome.detail = "rolled-back", detail
    progress(ProgressEvent("note", domain, detail=f"{domain}: {detail}"))
    return outcome
