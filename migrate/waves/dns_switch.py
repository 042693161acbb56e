"""The DNS cut-over of a wave: each of its ``cutover_domains`` switched to the central host, gated on the final
sync, and its rollback.

Per domain, in order, each part recorded in ``dns_domains`` and as an event ``dns/<domain>``, so that a cut-over
stopped anywhere (Ctrl-C, a kill, a server that does not answer) resumes where it stopped:

1. **Gate** (the step's pre-flight): every mailbox of the domain is final-synced, ``dns prepare`` lowered
   the TTLs at least one old TTL ago, and ``dns check`` finds no failure for the domain (its authoritative
   servers agree on the serial and answer, every server the parent lists answers with authority, the glue is
   the zone's, no MX names an alias, ...). Otherwise the cut-over refuses and lists why (exit 8), unless forced
   with a reason, which is recorded. A forced switch still refuses when the change could not reach every
   server: one that stays behind the primary's serial (or silent) for ``propagation_timeout``, the time the
   switch would wait for it, does not transfer the zone, and a switch would strand the domain half-switched.
2. **Baseline**: the RRsets the switch will change go into the store, and the whole zone (AXFR with TSIG where
   the primary allows it) to ``reports/dns-baseline-<wave>-<domain>.zone`` (0600: it is the whole zone).
3. **Update**: one RFC 2136 UPDATE over TCP, signed with TSIG, whose prerequisites require every RRset to be
   exactly as in the baseline: if someone changed one meanwhile, nothing changes (exit 9). Just before it,
   each mailbox's central folders are marked (their UIDNEXT as the forward copy last saw it), so that a
   rollback can tell the mail that arrives after the switch from what was copied (migrate.mailbox.sync.reverse).
4. **Wait**: until every authoritative server serves the new records with one SOA serial (exit 10 on timeout).
5. **Advance**: every mailbox of the domain goes to ``cut-over``.
6. **Final delta**: a last sync pass for mail that reached the old server while the change propagated; each
   mailbox then goes to ``done``, and the domain with it.

The rollback (:mod:`migrate.waves.rollback`) puts the baseline back.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from migrate.core import lifecycle
from migrate.core.config import DnsSection
from migrate.core.crashpoints import crashpoint
from migrate.core.errors import Interrupted
from migrate.core.files import write_private
from migrate.core.progress import ProgressEvent, ProgressSink, no_progress
from migrate.core.store import DnsDomainRow, MailboxRow, Store, now
from migrate.dns.baseline import take_baseline
from migrate.dns.changes import ChangeSet, mx_text, plan_domain, primary_holds
from migrate.dns.checks import FAIL, check_domain
from migrate.dns.client import DnsClient, dns_section
from migrate.dns.prepare import parse_time
from migrate.dns.propagation import Propagation, wait_propagated, wait_serials
from migrate.dns.update import apply_changes
from migrate.waves.context import WaveRun
from migrate.waves.results import Finding, Gate, Outcome, StepResult
from migrate.waves.step import OVERRIDE, Step, StepOptions
from migrate.waves.sync_pass import sync_pass

log = logging.getLogger(__name__)


@dataclass
class DomainOutcome:
    """What the cut-over (or its rollback) did to one domain."""

    domain: str
    before: str
    after: str
    changes: list[dict[str, Any]] = field(default_factory=list)
    baseline_file: str | None = None
    detail: str = ""
    #: A rollback: the RRsets it could not put back (with why), the files it wrote for the operator, and what
    #: the copy back did per mailbox.
    unrestored: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    mailboxes: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def domain_of(email: str) -> str:
    return email.rsplit("@", 1)[1].lower()


def domain_mailboxes(store: Store, domains: list[str]) -> dict[str, list[MailboxRow]]:
    """Every mailbox of each domain, whichever wave holds it: a domain moves only when all of them have."""
    wanted = {d.lower() for d in domains}
    out: dict[str, list[MailboxRow]] = {d: [] for d in domains}
    for m in store.mailboxes():
        d = domain_of(m.email)
        if d in wanted:
            out[d].append(m)
    return out


def dns_findings(client: DnsClient, section: DnsSection, domain: str, *, force: bool,
                 progress: ProgressSink = no_progress) -> list[Finding]:
    """The gate's view of a domain's DNS: every failure of ``dns check`` (forceable). With ``force``, and the
    authoritative servers not agreeing: a wait of ``propagation_timeout`` (what the switch would wait) for them to
    serve the primary's serial; a server still behind or silent then is a finding force cannot pass: a switch
    would reach the primary and never that server, and strand the domain half-switched."""
    # The primary is what the whole cut-over depends on: one that does not answer stops it (exit 4), not a finding.
    client.query(client.primary, domain, "SOA", authoritative=False)
    report = check_domain(client, section, domain)
    found = [Finding(None, "dns-check", f"{domain}: {c.check}: {c.reason}") for c in report.checks if c.status == FAIL]
    if force and report.check("nameservers").status == FAIL:
        timeout = section.propagation_timeout

        def on_look(lagging: list[str]) -> None:
            progress(ProgressEvent("note", domain, detail=f"{domain}: forced; waiting up to {timeout:g} s for "
                                   + "; ".join(lagging)))

        left = wait_serials(client, report.zone or domain, timeout=timeout, on_look=on_look)
        if left:
            found.append(Finding(None, "dns-propagation", f"{domain}: a change could not reach every authoritative "
                                 f"server: {'; '.join(left)}, and it did not catch up within {timeout:g} s (the time "
                                 "the switch waits): it does not transfer the zone from the primary (its primaries, "
                                 "allow-transfer, NOTIFY, the TSIG key) or does not answer. Mend it, or take it out "
                                 "of the zone's NS set and dns.nameservers", overridable=False))
    return found


def _domains_text(result: StepResult) -> str:
    """Each domain of a step's result with where it ended: ``health.gov.bz done, works.gov.bz switched``."""
    return ", ".join(f"{d.domain} {d.after}" for d in result.domains) or "no domain"


class DnsSwitch(Step[MailboxRow]):
    """The wave's cut-over: its cutover_domains switched, their mailboxes advanced and given a last delta."""

    name = "cutover"
    target = lifecycle.DONE
    #: ``--force --reason`` goes past the gate with every mailbox (rather than leaving the failing ones out).
    force = OVERRIDE

    def command(self, wave: str, options: StepOptions) -> str:
        return f"govmigrate cutover {wave}"

    def select(self, run: WaveRun, options: StepOptions) -> lifecycle.Eligibility[MailboxRow]:
        work, done, blocked = [], [], []
        for rows in domain_mailboxes(run.store, run.domains()).values():
            for m in rows:
                if m.state == lifecycle.SKIPPED or "skip" in m.flags:
                    blocked.append((m, "flagged skip in the user list: its mail is not moved"))
                elif m.state == lifecycle.DONE:
                    done.append((m, "already done"))
                else:
                    work.append(m)
        return lifecycle.Eligibility(work, done, blocked)

    def gate(self, run: WaveRun, work: list[MailboxRow], options: StepOptions,
             progress: ProgressSink = no_progress) -> Gate:
        """Every mailbox final-synced (or further), the TTLs lowered at least one old TTL ago, and no failure of
        ``dns check`` for the domain; with ``--force``, also that a change would reach every server."""
        section = dns_section(run.project, tsig=True)
        client = DnsClient(section, run.project.base_dir)
        result = Gate(checked=[m.email for m in work])
        for m in work:
            reached = lifecycle.level(m)
            if lifecycle.rank(reached) < lifecycle.rank(lifecycle.FINAL_SYNCED):
                result.findings.append(Finding(m.email, "final-sync", f"not final-synced yet ({reached}): run "
                                               f"govmigrate run {m.wave or '<its wave>'} --pass final first"))
        at = datetime.now(UTC)
        for domain in run.domains():
            row = run.store.dns_domain(domain)
            state = row.state if row else "unchanged"
            if state in lifecycle.DOMAIN_ROLLING_BACK:
                result.findings.append(Finding(None, "dns-rollback", f"{domain}: its rollback has not finished "
                                               f"({state}): run govmigrate dns rollback --wave "
                                               f"{(row.wave if row else None) or run.wave_id} again first",
                                               overridable=False))
                continue
            if state not in lifecycle.DOMAIN_NOT_BEGUN:
                continue  # begun: the gate was passed (or forced) then; the cut-over resumes
            result.findings += dns_findings(client, section, domain, force=options.force, progress=progress)
            if state != "prepared" or not row or not row.safe_after:
                result.findings.append(Finding(None, "dns-ttl", f"{domain}: its TTLs were not lowered: run "
                                               f"govmigrate dns prepare --wave {run.wave_id} first"))
            elif parse_time(row.safe_after) > at:
                left = int((parse_time(row.safe_after) - at).total_seconds())
                result.findings.append(Finding(None, "dns-ttl", f"{domain}: the old TTL ({row.old_ttl} s) has not "
                                               f"run out: safe to switch after {row.safe_after} (in {left} s)"))
        return result

    def describe(self, count: int, options: StepOptions) -> str:
        return f"cut-over of {count} mailbox(es)"

    def summary(self, result: StepResult, outcome_text: str) -> str:
        return (f"cut-over {outcome_text}: {_domains_text(result)}; {len(result.done)} mailbox(es) done, "
                f"{len(result.failed)} failed")

    def execute(self, run: WaveRun, result: StepResult, work: list[MailboxRow], options: StepOptions,
                progress: ProgressSink, stop: threading.Event) -> None:
        section = dns_section(run.project, tsig=True)
        client = DnsClient(section, run.project.base_dir)
        by_domain: dict[str, list[MailboxRow]] = {d: [] for d in run.domains()}
        for m in work:
            by_domain.setdefault(domain_of(m.email), []).append(m)
        for domain, mailboxes in by_domain.items():
            if stop.is_set():
                raise Interrupted("the cut-over was stopped between domains; run the same command again to resume")
            _DomainSwitch(run, client, section, domain, mailboxes, result, progress, stop).run()


class DomainWork:
    """What a DNS step does for one domain, shared by the cut-over, the rollback and dns settle: the domain's row
    as the step found it, its outcome in the step's result, notes as progress, and each state change recorded
    with its event ``dns/<domain>`` in one transaction."""

    def __init__(self, run: WaveRun, client: DnsClient, section: DnsSection, domain: str, result: StepResult,
                 progress: ProgressSink, stop: threading.Event) -> None:
        self.run_ = run
        self.store = run.store
        self.client = client
        self.section = section
        self.domain = domain
        self.result = result
        self.progress = progress
        self.stop = stop
        self.row = self.store.dns_domain(domain)
        state = self.row.state if self.row else "unchanged"
        self.outcome = DomainOutcome(domain, state, state)
        result.domains.append(self.outcome)

    def note(self, text: str) -> None:
        self.outcome.detail = text
        self.progress(ProgressEvent("note", self.domain, detail=f"{self.domain}: {text}"))

    def record(self, state: str, action: str, detail: str, **fields: Any) -> DnsDomainRow:
        with self.store.tx():
            row = self.store.update_dns_domain(self.domain, state=state, detail=detail, **fields)
            self.store.add_event(f"dns/{self.domain}", action, detail)
        self.row = row
        self.outcome.after = state
        self.note(detail)
        return row

    def run(self) -> bool:
        """The domain's part of the step; True when it ended where the step takes it."""
        raise NotImplementedError


class DomainStep(Step[str]):
    """A DNS step whose items are the wave's cut-over domains (the rollback, dns settle): each domain in turn, by
    its :attr:`work` (a :class:`DomainWork`), its outcome recorded as it ends."""

    items = "domain"
    #: The step in a word, for its run record ("rollback", "settle").
    verb = ""
    work: type[DomainWork] = DomainWork

    def execute(self, run: WaveRun, result: StepResult, work: list[str], options: StepOptions,
                progress: ProgressSink, stop: threading.Event) -> None:
        section = dns_section(run.project, tsig=True)
        client = DnsClient(section, run.project.base_dir)
        for domain in work:
            if stop.is_set():
                raise Interrupted(f"{self.verb} was stopped between domains; run the same command again to resume")
            one = self.work(run, client, section, domain, result, progress, stop)
            ok = one.run()
            run.record(result, Outcome(domain, one.outcome.before, one.outcome.after, ok,
                                       error=None if ok else one.outcome.detail))

    def key(self, item: str) -> str:
        return item

    def load(self, run: WaveRun, keys: list[str]) -> list[str]:
        return keys

    def describe(self, count: int, options: StepOptions) -> str:
        return f"{self.verb} of {count} domain(s)"

    def summary(self, result: StepResult, outcome_text: str) -> str:
        return f"{self.verb} {outcome_text}: {_domains_text(result)}"


class _DomainSwitch(DomainWork):
    """One domain's cut-over, from wherever the last run left it."""

    def __init__(self, run: WaveRun, client: DnsClient, section: DnsSection, domain: str,
                 mailboxes: list[MailboxRow], result: StepResult, progress: ProgressSink,
                 stop: threading.Event) -> None:
        super().__init__(run, client, section, domain, result, progress, stop)
        self.mailboxes = mailboxes

    def run(self) -> None:
        row = self.store.dns_domain(self.domain)
        state = row.state if row else "unchanged"
        if self.run_.dry_run:
            self.dry_run(state)
            return
        if state in lifecycle.DOMAIN_NOT_BEGUN:
            row = self.baseline()
            state = row.state
            crashpoint("cutover-baselined")
        changes = ChangeSet.from_dict(row.changes) if row and row.changes else None
        if state == "baselined":
            self.switch(changes)
            state = "switched"
            crashpoint("cutover-switched")
        if state == "switched":
            self.wait(changes)
            state = "propagated"
        if state == "propagated":
            self.advance()
            state = "cut-over"
        if state == "cut-over":
            self.final_delta()

    def dry_run(self, state: str) -> None:
        if state in lifecycle.DOMAIN_NOT_BEGUN:
            plan = plan_domain(self.client, self.section, self.domain)
            self.outcome.changes = plan.rows()
            self.note(f"would switch {len(plan)} RRset(s) (govmigrate dns plan shows them) and advance "
                      f"{len(self.mailboxes)} mailbox(es)")
        else:
            self.note(f"the cut-over has begun ({state}); a real run resumes it")

    # -- the parts ----------------------------------------------------------------------------------------

    def baseline(self) -> DnsDomainRow:
        plan = plan_domain(self.client, self.section, self.domain)
        wave = self.run_.wave_id
        taken = take_baseline(self.client, plan)
        path = self.run_.reports_dir / f"dns-baseline-{wave}-{self.domain}.zone"
        # The whole zone (every host name and address of the ministry): readable by its owner only.
        write_private(path, taken.file_text(f"govmigrate: baseline of {self.domain} before the cut-over of wave "
                                            f"{wave}, {now()}"))
        reason = self.result.force_reason
        detail = (f"baseline of {len(plan)} RRset(s) recorded; {path.name}"
                  + (f" (no zone transfer: {taken.note})" if taken.zone_text is None else "")
                  + (f"; gate forced: {reason}" if reason else ""))
        self.outcome.baseline_file = str(path)
        self.outcome.changes = plan.rows()
        return self.record("baselined", "baseline", detail, wave=wave, baseline=taken.rrsets(),
                           baseline_file=str(path), changes=plan.to_dict(), forced_reason=reason)

    def switch(self, changes: ChangeSet | None) -> None:
        """Send the change set with the baseline as its prerequisites; a re-run after a kill finds it applied."""
        assert changes is not None
        if primary_holds(self.client, changes) == "after":
            detail = "the records already were the central host's (applied by an earlier run)"
        else:  # "before", or "neither": then the prerequisites refuse it and say what changed
            # Where the central folders stand before mail can arrive there: a rollback copies back what is above.
            everyone = [m for m in domain_mailboxes(self.store, [self.domain])[self.domain]
                        if m.state != lifecycle.SKIPPED]
            self.store.mark_for_copy_back([m.id for m in everyone])
            apply_changes(self.client, changes)
            detail = f"switched: {len(changes)} RRset(s) updated on the primary; " + mx_text(changes)
        self.record("switched", "switch", detail, switched_at=now())

    def wait(self, changes: ChangeSet | None) -> None:
        assert changes is not None

        def on_look(seen: Propagation) -> None:
            if not seen.done:
                self.progress(ProgressEvent("note", self.domain, detail=f"{self.domain}: waiting for "
                                            + "; ".join(seen.lagging())))

        seen = wait_propagated(self.client, changes, on_look=on_look, stop=self.stop)
        serial = next(iter(seen.serials.values()), None)
        self.record("propagated", "propagated", f"every authoritative server serves the change (serial {serial})",
                    propagated_at=now())

    def advance(self) -> None:
        forced = self.result.force_reason
        for m in self.mailboxes:
            row = self.store.mailbox(m.email)
            if row is None or row.state in (lifecycle.CUT_OVER, lifecycle.DONE):
                continue
            reached = lifecycle.level(row)
            why = f"MX of {self.domain} points at the central host"
            if reached != lifecycle.FINAL_SYNCED:
                why += f" (forced from {reached}: {forced})"
            self.store.set_mailbox_state(row.id, lifecycle.CUT_OVER, why)
        self.record("cut-over", "advance", f"{len(self.mailboxes)} mailbox(es) cut over")

    def final_delta(self) -> None:
        rows = [self.store.mailbox(m.email) for m in self.mailboxes]
        left = [r for r in rows if r is not None and r.state != lifecycle.DONE]
        if left:
            sync_pass(self.run_, self.result, left, "final", self.progress, self.stop, target=lifecycle.DONE,
                      failed_prior=lifecycle.CUT_OVER)
        rows = [self.store.mailbox(m.email) for m in self.mailboxes]
        if all(r is not None and r.state == lifecycle.DONE for r in rows):
            self.record("done", "done", f"final delta done: {len(rows)} mailbox(es) done")
        else:
            failing = [r.email for r in rows if r is not None and r.state != lifecycle.DONE]
            self.note(f"final delta left {len(failing)} mailbox(es) to retry (run the same command again)")
