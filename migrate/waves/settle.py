"""After the switch has held: the TTLs ``dns prepare`` lowered go back up (``govmigrate dns settle --wave WAVE``).

A cut-over runs on short TTLs so that a switch, and a rollback, reach every cache within minutes. Once the
cut-over has held for ``dns.settle_after`` seconds (three days by default) nobody expects to roll it back in a
hurry, and short TTLs only cost queries: each RRset the switch wrote gets the TTL it had before ``dns prepare``
lowered it (recorded per RRset then), an RRset the switch created the highest of those. One signed update whose
prerequisites are the records exactly as the switch left them (someone's change since stops it: exit 9, nothing
changed), then a wait until every authoritative server serves it. The domain is then ``settled``; a rollback still
works (its prerequisites compare data, not TTLs).
"""

from __future__ import annotations

from datetime import UTC, datetime

from migrate.core import lifecycle
from migrate.core.progress import ProgressSink, no_progress
from migrate.core.store import DnsDomainRow, now
from migrate.dns.changes import Change, ChangeSet
from migrate.dns.client import DnsClient, dns_section
from migrate.dns.prepare import parse_time
from migrate.dns.propagation import wait_propagated
from migrate.dns.update import apply_changes
from migrate.waves.context import WaveRun
from migrate.waves.dns_switch import DomainStep, DomainWork
from migrate.waves.results import Finding, Gate
from migrate.waves.step import OVERRIDE, StepOptions


def settle_changes(row: DnsDomainRow) -> ChangeSet:
    """Each RRset the switch wrote, as it left it, with the TTL it is to have now (only where that is higher)."""
    assert row.changes
    switched = ChangeSet.from_dict(row.changes)
    recorded = row.ttls or {}
    replaced = [c.before.ttl for c in switched if c.before is not None]
    highest = max([*recorded.values(), *replaced, row.old_ttl or 0], default=0)
    raised = []
    for c in switched:
        if c.after is None:
            continue
        ttl = recorded.get(" ".join(c.key)) or (c.before.ttl if c.before is not None else highest)
        if ttl > c.after.ttl:
            raised.append(Change(c.what, c.name, c.rdtype, c.after, c.after.with_ttl(ttl)))
    return switched.only(raised)


class _DomainSettle(DomainWork):
    """One domain's TTLs raised again."""

    def run(self) -> bool:
        assert self.row is not None
        raised = settle_changes(self.row)
        self.outcome.changes = raised.rows()
        if raised:
            apply_changes(self.client, raised)
            wait_propagated(self.client, raised, stop=self.stop)
            detail = "TTLs raised again: " + ", ".join(f"{r['name']} {r['type']} {r['ttl']} → {r['new_ttl']} s"
                                                       for r in raised.rows())
        else:
            detail = "the TTLs already were as before the cut-over"
        if self.result.force_reason:
            detail += f" (forced before dns.settle_after: {self.result.force_reason})"
        self.record("settled", "settle", detail, settled_at=now())
        return True


class DnsSettle(DomainStep):
    """The wave's cut-over domains, their TTLs raised again once the cut-over has held."""

    name = "settle"
    verb = "settle"
    work = _DomainSettle
    force = OVERRIDE

    def command(self, wave: str, options: StepOptions) -> str:
        return f"govmigrate dns settle --wave {wave}"

    def select(self, run: WaveRun, options: StepOptions) -> lifecycle.Eligibility[str]:
        work, done, blocked = [], [], []
        for domain in run.domains():
            row = run.store.dns_domain(domain)
            state = row.state if row else "unchanged"
            if state == "settled":
                done.append((domain, f"settled at {row.settled_at}" if row else "settled"))
            elif state == "done":
                work.append(domain)
            else:
                blocked.append((domain, f"its cut-over is not done ({state}): nothing to settle"))
        return lifecycle.Eligibility(work, done, blocked)

    def gate(self, run: WaveRun, work: list[str], options: StepOptions, progress: ProgressSink = no_progress) -> Gate:
        section = dns_section(run.project, tsig=True)
        DnsClient(section, run.project.base_dir).tsig()
        result = Gate(checked=list(work))
        at = datetime.now(UTC)
        for domain in work:
            row = run.store.dns_domain(domain)
            since = (row.propagated_at or row.switched_at) if row else None
            held = (at - parse_time(since)).total_seconds() if since else 0.0
            if held < section.settle_after:
                result.findings.append(Finding(None, "settle", f"{domain}: the cut-over has held {held:.0f} s of "
                                               f"dns.settle_after ({section.settle_after:g} s): a rollback may still "
                                               "be needed, and short TTLs make it quick"))
        return result
