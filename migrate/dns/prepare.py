"""``dns prepare``: ahead of the switch, lower the TTL of every RRset that will change to ``cutover_ttl``, so
that when the switch comes, caches let go of the old data within minutes.

The earliest safe switch time is when every authoritative server serves the lowered TTLs plus the highest
TTL they had before (what a cache may still hold), recorded per domain as ``safe_after``. Re-running changes
nothing that is already done and never moves ``safe_after`` earlier. The old TTL is recorded before the
update is sent, so a run killed in between still knows it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from migrate.core.config import DnsSection
from migrate.core.store import Store
from migrate.dns.changes import Change, ChangeSet, plan_domain, ttl_changes
from migrate.dns.client import DnsClient
from migrate.dns.propagation import wait_propagated
from migrate.dns.update import apply_changes, require_primary_for

log = logging.getLogger(__name__)

#: Where prepare may (re)mark a domain 'prepared'; later states are the cut-over's and are left alone.
PREPARABLE = {"unchanged", "prepared", "rolled-back"}
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass
class Prepared:
    """What ``dns prepare`` did for one domain."""

    domain: str
    zone: str
    #: Every RRset the cut-over will change, as read.
    plan: ChangeSet
    #: The RRsets whose TTL this run lowered (empty when there was nothing left to lower).
    lowered: ChangeSet
    state: str
    old_ttl: int | None = None
    prepared_at: str | None = None
    safe_after: str | None = None
    #: How long after prepared_at the switch is safe, in seconds (capped by max_ttl_wait in labs).
    wait_s: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"domain": self.domain, "zone": self.zone, "state": self.state, "old_ttl": self.old_ttl,
                "prepared_at": self.prepared_at, "safe_after": self.safe_after, "wait_seconds": self.wait_s,
                "lowered": [c.to_dict() for c in self.lowered], "will_change": len(self.plan), "notes": self.notes}


def _time(at: datetime) -> str:
    return at.strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


def served_ttls(plan: ChangeSet, ttl: int) -> ChangeSet:
    """What every server must serve once the TTLs are lowered: each existing RRset that will change, with
    its data as read and a TTL of at most ``ttl``."""
    return ChangeSet(plan.domain, plan.zone, tuple(
        Change(c.what, c.name, c.rdtype, c.before, c.before.with_ttl(min(c.before.ttl, ttl)))
        for c in plan if c.before is not None))


def prepare_domain(client: DnsClient, section: DnsSection, store: Store, domain: str, *, wave: str | None = None,
                   now=lambda: datetime.now(UTC)) -> Prepared:
    """Lower the TTLs of ``domain``'s RRsets that will change, wait until every authoritative server serves
    them, and record the domain as prepared with its earliest safe switch time."""
    domain = domain.rstrip(".").lower()
    zone = client.zone_for(domain)
    require_primary_for(client, zone)
    plan = plan_domain(client, section, domain, zone=zone)
    row = store.dns_domain(domain)
    state = row.state if row else "unchanged"
    result = Prepared(domain, plan.zone, plan, ChangeSet(plan.domain, plan.zone), state)
    if not plan:
        result.notes.append("nothing will change: the domain already publishes the central host's records")
        return result
    if state not in PREPARABLE:
        result.notes.append(f"the cut-over has already begun ({state}); TTLs are left as they are")
        result.old_ttl, result.safe_after, result.prepared_at = row.old_ttl, row.safe_after, row.prepared_at
        return result
    lowered = ttl_changes(plan, section.cutover_ttl)
    recorded_old = row.old_ttl if row and row.old_ttl else 0
    old_ttl = max(recorded_old, plan.old_ttl or 0)
    if state == "prepared" and not lowered and row.safe_after:
        # Done before and nothing has moved since: a re-run changes nothing, in DNS or in the store.
        result.old_ttl, result.safe_after, result.prepared_at = row.old_ttl, row.safe_after, row.prepared_at
        result.notes.append("already prepared")
        return result
    if lowered:
        # Before the update: a run killed after it would otherwise read only the lowered TTLs. Each RRset's own
        # TTL too, for dns settle (a TTL recorded by an earlier run is the original; it is kept).
        ttls = {" ".join(c.key): c.before.ttl for c in lowered if c.before is not None}
        ttls.update((row.ttls or {}) if row else {})
        store.update_dns_domain(domain, wave=wave, old_ttl=old_ttl, ttls=ttls,
                                detail=f"lowering the TTL of {len(lowered)} RRset(s) to {section.cutover_ttl} s")
        apply_changes(client, lowered)
    wait_propagated(client, served_ttls(plan, section.cutover_ttl))
    at = now()
    wait = old_ttl if section.max_ttl_wait is None else min(old_ttl, int(section.max_ttl_wait))
    safe = at + timedelta(seconds=wait)
    if state == "prepared" and row.safe_after:
        safe = max(safe, parse_time(row.safe_after))
    result.lowered, result.old_ttl, result.wait_s = lowered, old_ttl, wait
    result.prepared_at, result.safe_after, result.state = _time(at), _time(safe), "prepared"
    if section.max_ttl_wait is not None and wait < old_ttl:
        result.notes.append(f"max_ttl_wait ({section.max_ttl_wait:g} s, for labs) shortens the wait of the old TTL "
                            f"({old_ttl} s)")
    detail = (f"TTL of {len(lowered)} RRset(s) lowered to {section.cutover_ttl} s (was up to {old_ttl} s); "
              f"safe to switch after {result.safe_after}" if lowered else
              f"TTLs already at most {section.cutover_ttl} s (up to {old_ttl} s before); safe to switch after "
              f"{result.safe_after}")
    with store.tx():
        store.update_dns_domain(domain, wave=wave, state="prepared", old_ttl=old_ttl, prepared_at=result.prepared_at,
                                safe_after=result.safe_after, detail=detail)
        store.add_event(f"dns/{domain}", "prepare", detail)
    log.info("%s: %s", domain, detail)
    return result
