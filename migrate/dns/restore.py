"""Putting a domain's baseline back, always ending in a known state.

The inverse of the cut-over's change set is sent as one update (prerequisites: every RRset exactly as the
cut-over left it). When the primary refuses it whole, it is sent again one RRset at a time (where a CNAME comes
or goes, the RRsets at its name move together: a CNAME and the records it replaces are one change), so every
RRset the primary allows is restored, and each it refuses (the zone's integrity checks, a policy, someone's change since the cut-over,
which is never overwritten) is reported with why. RRsets already at the baseline are left alone: a second run
sends only what is still missing. What could not be restored is written for the operator as an nsupdate script
and as zone-file lines (:func:`nsupdate_script`, :func:`zone_lines`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from migrate.core.errors import DnsChangedMeanwhile, DnsUpdateRefused
from migrate.dns.changes import Change, ChangeSet, same
from migrate.dns.client import DnsClient
from migrate.dns.records import absolute, describe, relative
from migrate.dns.update import apply_changes


@dataclass
class Unrestored:
    """One RRset the primary would not put back: the inverse change (``before``: as the cut-over left it,
    ``after``: the baseline), why, and the possible causes."""

    change: Change
    reason: str
    causes: list[str] = field(default_factory=list)
    #: Someone changed it after the cut-over: left as they made it (never overwritten).
    changed_since: bool = False
    #: What the primary answered (REFUSED, NOTAUTH, ...; NXRRSET for a record changed since).
    rcode: str = ""

    @property
    def why(self) -> str:
        """In a line: the answer and the likeliest cause (the whole reason is in ``reason``)."""
        if self.changed_since:
            return self.reason
        return f"{self.rcode or 'refused'}: {self.causes[0]}" if self.causes else self.reason

    def to_dict(self, zone: str) -> dict:
        c = self.change
        return {"name": relative(c.name, zone), "type": c.rdtype, "baseline": describe(c.after),
                "now": describe(c.before), "why": self.why, "reason": self.reason, "rcode": self.rcode,
                "causes": self.causes, "changed_since": self.changed_since}


@dataclass
class Restore:
    """What a restore did: RRsets put back now, those already at the baseline, and those it could not."""

    zone: str
    restored: list[Change] = field(default_factory=list)
    already: list[Change] = field(default_factory=list)
    unrestored: list[Unrestored] = field(default_factory=list)
    #: The whole update was refused and the RRsets were sent one at a time.
    one_by_one: bool = False

    @property
    def complete(self) -> bool:
        return not self.unrestored

    def restores(self, name: str, rdtype: str) -> bool:
        """Whether the RRset is at the baseline now (restored now or before)."""
        key = (absolute(name), rdtype)
        return any(c.key == key for c in self.restored + self.already)


def restore(client: DnsClient, inverse: ChangeSet) -> Restore:
    """Put ``inverse`` (a cut-over's change set inverted) on the primary: whole, or one RRset at a time when the
    whole is refused. An unreachable primary raises (exit 4); refusals are reported, never raised."""
    done = Restore(inverse.zone)
    current = client.read([c.key for c in inverse])
    pending = []
    for change in inverse:
        if same(current.get(change.key), change.after):
            done.already.append(change)
        else:
            pending.append(change)
    if not pending:
        return done
    try:
        apply_changes(client, inverse.only(pending))
        done.restored += pending
        return done
    except DnsUpdateRefused:
        done.one_by_one = True
    for group in inverse.only(pending).one_by_one():
        try:
            apply_changes(client, group)
            done.restored += list(group)
        except DnsChangedMeanwhile as exc:
            done.unrestored += [Unrestored(c, exc.message, changed_since=True, rcode="NXRRSET") for c in group]
        except DnsUpdateRefused as exc:
            done.unrestored += [Unrestored(c, exc.message, list(exc.causes), rcode=exc.rcode) for c in group]
    return done


def nsupdate_script(done: Restore, client: DnsClient, *, header: str) -> str:
    """An nsupdate(1) script that puts back what ``done`` could not, once its cause is fixed: per owner name one
    update whose prerequisites are the RRsets as the cut-over left them (so nobody's later change is overwritten).
    The TSIG key is named, never its secret: run it with ``nsupdate -k KEYFILE``."""
    server = client.primary
    key = client.section.tsig.name if client.section.tsig else None
    lines = [f"; {line}" for line in header.splitlines()]
    lines += ["; The primary refused these RRsets. Fix the cause named with each (the primary's log says it too),",
              f"; then run:  nsupdate -k <the key file of {key or 'the TSIG key'}> <this file>",
              "; and run the rollback again: it finds them restored and finishes.", ""]
    lines += [f"server {server.address} {server.port}", f"zone {done.zone}", ""]
    groups: dict[str, list[Unrestored]] = {}
    for item in done.unrestored:
        groups.setdefault(item.change.name, []).append(item)
    for name, items in groups.items():
        for item in items:
            c = item.change
            if item.causes:
                lines.append(f"; {relative(c.name, done.zone)} {c.rdtype}: the primary answered {item.rcode or 'a '}"
                             "refusal; possible causes, most likely first:")
                lines += [f";   ({n}) {_one_line(cause)}" for n, cause in enumerate(item.causes, 1)]
            else:
                lines.append(f"; {relative(c.name, done.zone)} {c.rdtype}: {_one_line(item.reason)}")
        for item in items:
            c = item.change
            if c.before is None:
                lines.append(f"prereq nxrrset {c.name} {c.rdtype}")
            else:
                lines += [f"prereq yxrrset {c.name} {c.rdtype} {rdata}" for rdata in c.before.rdatas]
        for item in items:
            if item.change.before is not None:
                lines.append(f"update delete {name} {item.change.rdtype}")
        for item in items:
            c = item.change
            if c.after is not None:
                lines += [f"update add {c.name} {c.after.ttl} {c.rdtype} {rdata}" for rdata in c.after.rdatas]
        lines += ["send", ""]
    return "\n".join(lines) + "\n"


def zone_lines(done: Restore, *, header: str) -> str:
    """The RRsets ``done`` could not put back, as they were before the cut-over, in zone-file syntax."""
    lines = [f"; {line}" for line in header.splitlines()]
    lines.append("; as they were before the cut-over (the baseline), to put back in the zone file by hand:")
    for item in done.unrestored:
        if item.change.after is None:
            lines.append(f"; {item.change.name} {item.change.rdtype}: absent before the cut-over (delete it)")
        else:
            lines += item.change.after.zone_lines()
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())
