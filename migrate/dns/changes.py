"""The change set of a domain: for every RRset its cut-over writes, what it holds now (with its TTL) and what
it will hold, listed only where the data differs. ``dns plan`` shows it, ``dns prepare`` lowers the TTLs of
its "before" side, the cut-over applies it and the rollback applies its inverse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from migrate.core.config import DnsSection
from migrate.dns.records import RRset, absolute, relative
from migrate.dns.targets import Target, targets

if TYPE_CHECKING:  # dnspython's query machinery (httpcore, trio) is for the commands that talk DNS, not for status
    from migrate.dns.client import DnsClient


@dataclass(frozen=True)
class Change:
    """One RRset: ``before`` as read (``None``: absent), ``after`` as it is to be (``None``: removed)."""

    what: str
    name: str
    rdtype: str
    before: RRset | None
    after: RRset | None

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.rdtype

    @property
    def action(self) -> str:
        if self.before is None:
            return "create"
        if self.after is None:
            return "delete"
        return "replace" if not self.before.same_data(self.after) else "ttl"

    def inverse(self) -> Change:
        return Change(self.what, self.name, self.rdtype, self.after, self.before)

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "name": self.name, "type": self.rdtype, "action": self.action,
                "before": self.before.to_dict() if self.before else None,
                "after": self.after.to_dict() if self.after else None}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Change:
        return cls(doc["what"], absolute(doc["name"]), doc["type"],
                   RRset.from_dict(doc["before"]) if doc.get("before") else None,
                   RRset.from_dict(doc["after"]) if doc.get("after") else None)


@dataclass(frozen=True)
class ChangeSet:
    """Every change of one domain, in the zone it lives in."""

    domain: str
    zone: str
    changes: tuple[Change, ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return bool(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    def __iter__(self):
        return iter(self.changes)

    def inverse(self) -> ChangeSet:
        """The change set that undoes this one (a rollback): every ``after`` back to its ``before``."""
        return ChangeSet(self.domain, self.zone, tuple(c.inverse() for c in self.changes))

    def one_by_one(self) -> list[ChangeSet]:
        """One change set per RRset, in order, except that the RRsets at a name where a CNAME comes or goes move
        together (a CNAME cannot stand beside other data: replacing one with the other is a single update)."""
        aliased = {c.name for c in self.changes if c.rdtype == "CNAME"}
        units: dict[tuple[str, str], list[Change]] = {}
        for change in self.changes:
            key = (change.name, "") if change.name in aliased else change.key
            units.setdefault(key, []).append(change)
        return [ChangeSet(self.domain, self.zone, tuple(group)) for group in units.values()]

    def only(self, changes) -> ChangeSet:
        """The same domain and zone with just ``changes``."""
        return ChangeSet(self.domain, self.zone, tuple(changes))

    @property
    def old_ttl(self) -> int | None:
        """The highest TTL among the RRsets as they are before the change (what caches may hold)."""
        ttls = [c.before.ttl for c in self.changes if c.before is not None]
        return max(ttls) if ttls else None

    def before(self) -> list[RRset]:
        return [c.before for c in self.changes if c.before is not None]

    def after(self) -> list[RRset]:
        return [c.after for c in self.changes if c.after is not None]

    def to_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "zone": self.zone, "changes": [c.to_dict() for c in self.changes]}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ChangeSet:
        return cls(doc["domain"], absolute(doc["zone"]), tuple(Change.from_dict(c) for c in doc["changes"]))

    def rows(self) -> list[dict[str, Any]]:
        """One row per change for tables: name relative to the zone, before and after as people read them."""
        return [{"what": c.what, "name": relative(c.name, self.zone), "type": c.rdtype, "action": c.action,
                 "ttl": c.before.ttl if c.before else None,
                 "before": "; ".join(c.before.values()) if c.before else "(none)",
                 "after": "; ".join(c.after.values()) if c.after else "(none)",
                 "new_ttl": c.after.ttl if c.after else None} for c in self.changes]


def keys_to_read(domain: str, wanted: list[Target]) -> list[tuple[str, str]]:
    keys: list[tuple[str, str]] = []
    for target in wanted:
        keys.append((target.name, target.rdtype))
        keys += [(target.name, rdtype) for rdtype in target.conflicts]
    return keys


def compute_changes(domain: str, zone: str, wanted: list[Target], current: Mapping[tuple[str, str], RRset | None],
                    ttl: int) -> ChangeSet:
    """The changes that make ``current`` into ``wanted`` (pure: no server is asked). New and replaced RRsets
    get ``ttl``; RRsets whose data is already as wanted are left out, whatever their TTL."""
    changes: list[Change] = []
    for target in wanted:
        for rdtype in target.conflicts:
            now = current.get((target.name, rdtype))
            if now is not None:
                changes.append(Change(f"{target.what} ({rdtype} in the way)", target.name, rdtype, now, None))
    for target in wanted:
        now = current.get((target.name, target.rdtype))
        desired = target.desired(now, ttl)
        if not desired.same_data(now):
            changes.append(Change(target.what, target.name, target.rdtype, now, desired))
    return ChangeSet(absolute(domain), absolute(zone), tuple(changes))


def plan_domain(client: DnsClient, section: DnsSection, domain: str, *, zone: str | None = None) -> ChangeSet:
    """Read the domain's RRsets from the primary and compute its change set."""
    zone = zone or client.zone_for(domain)
    wanted = targets(domain, section.records_for(domain))
    current = client.read(keys_to_read(domain, wanted))
    return compute_changes(domain, zone, wanted, current, section.cutover_ttl)


def ttl_changes(changeset: ChangeSet, ttl: int) -> ChangeSet:
    """``dns prepare``: the RRsets that will change and exist now, with the same data and ``ttl``, where their
    TTL is higher. Absent RRsets have no TTL to lower (resolvers cache their absence for the zone's negative
    TTL, which the SOA sets for the whole zone)."""
    lowered = [Change(c.what, c.name, c.rdtype, c.before, c.before.with_ttl(ttl))
               for c in changeset.changes if c.before is not None and c.before.ttl > ttl]
    return ChangeSet(changeset.domain, changeset.zone, tuple(lowered))


def primary_holds(client: DnsClient, changeset: ChangeSet) -> str:
    """Which side of ``changeset`` the primary serves now, by data: "after" (applied), "before" (not applied),
    or "neither" (someone changed something else meanwhile). A run that was killed between sending an update
    and recording it finds out here whether the update landed."""
    current = client.read([c.key for c in changeset])
    if all(same(current.get(c.key), c.after) for c in changeset):
        return "after"
    if all(same(current.get(c.key), c.before) for c in changeset):
        return "before"
    return "neither"


def same(now: RRset | None, wanted: RRset | None) -> bool:
    """Whether an RRset as served holds the wanted data (both absent counts)."""
    return now is None if wanted is None else wanted.same_data(now)


def mx_text(changes: ChangeSet) -> str:
    """Where a change set leaves the domain's MX, in a few words for the event log."""
    for c in changes:
        if c.rdtype == "MX" and c.name == changes.domain:
            return "MX now " + ", ".join(c.after.values()) if c.after else "MX removed"
    return "MX unchanged"


def mx_now(changes: Mapping[str, Any] | None, switched: bool) -> list[str] | None:
    """Where a domain's MX points as far as its recorded change set (``ChangeSet.to_dict``) knows: the switch's
    new MX once ``switched``, the baseline's before; None where nothing was recorded."""
    if not changes:
        return None
    for c in changes.get("changes", []):
        if c["type"] == "MX" and relative(c["name"], changes["zone"]) == relative(changes["domain"], changes["zone"]):
            side = c["after"] if switched else c["before"]
            return list(side["rdata"]) if side else []
    return None
