"""Why a primary refused an update, told honestly: what is known (the RCODE, the RRsets the update held) and the
possible causes, most likely first, told apart where a cheap probe can.

* REFUSED: an update with prerequisites only (the zone's SOA exists), signed with the same key, tests the key
  and the policy without changing anything. Refused too: the zone does not take updates signed with that key.
  Answered NOERROR: the key is accepted, so the refusal is about these records: the zone's integrity checks
  (BIND's ``check-integrity`` refuses an update adding an MX whose target in the zone is an alias or has no
  address; the zone is read to name the record) or an update-policy that grants the key only some names or
  types.
* NOTAUTH: the server is not the zone's primary (the zone's SOA names its primary master), or does not serve
  it.
* SERVFAIL: the zone is not loaded (an SOA query answers SERVFAIL too), or the server could not write the
  zone's journal.

The server's log always says which; these messages say where to look and what is likely.
"""

from __future__ import annotations

import logging

import dns.exception
import dns.name
import dns.query
import dns.rcode
import dns.update

from migrate.core.errors import DnsUpdateRefused, MigrateError
from migrate.dns.changes import ChangeSet
from migrate.dns.client import DnsClient, label
from migrate.dns.records import absolute, relative

log = logging.getLogger(__name__)


def rrset_names(changeset: ChangeSet) -> list[str]:
    """The RRsets an update holds, as people read them: "@ MX (replace)"."""
    return [f"{relative(c.name, changeset.zone)} {c.rdtype} ({c.action})" for c in changeset]


def integrity_problems(client: DnsClient, changeset: ChangeSet) -> list[str]:
    """What BIND's integrity checks would refuse in ``changeset``, found by reading the zone on the primary: an
    MX added whose target, inside the zone, is an alias (CNAME) or has no address records, as the zone will be
    after the update."""
    zone = dns.name.from_text(changeset.zone)
    added = {(c.name, c.rdtype) for c in changeset if c.after is not None}
    removed = {(c.name, c.rdtype) for c in changeset if c.after is None}
    problems: list[str] = []
    for change in changeset:
        if change.after is None or change.rdtype != "MX":
            continue
        for rd in change.after.rdata_objects():
            host = absolute(rd.exchange)  # type: ignore[attr-defined]
            if host == "." or not dns.name.from_text(host).is_subdomain(zone):
                continue
            mx = f"{relative(change.name, changeset.zone)} MX {rd.preference} {host}"  # type: ignore[attr-defined]
            try:
                alias = None if (host, "CNAME") in removed else client.rrset(client.primary, host, "CNAME")
                if alias is not None:
                    problems.append(f"{mx} names an alias ({relative(host, changeset.zone)} CNAME {alias.rdatas[0]}): "
                                    "BIND's check-integrity refuses an MX whose target is a CNAME (its log: "
                                    "\"is a CNAME (illegal)\")")
                    continue
                has_address = any((host, t) in added or client.rrset(client.primary, host, t) is not None
                                  for t in ("A", "AAAA"))
                if not has_address:
                    problems.append(f"{mx} names a host with no address records in the zone: BIND's "
                                    "check-integrity refuses it (its log: \"has no address records (A or AAAA)\")")
            except MigrateError:
                continue
    return problems


def probe_policy(client: DnsClient, zone: str) -> str | None:
    """Send an update that changes nothing (its only prerequisite: the zone's SOA exists), signed with the key;
    what the primary answers, or None when the probe itself did not get an answer."""
    tsig = client.tsig()
    update = dns.update.UpdateMessage(zone, keyring=tsig.keyring, keyname=tsig.name, keyalgorithm=tsig.algorithm)
    update.present(dns.name.from_text(zone), "SOA")
    try:
        response = dns.query.tcp(update, client.primary.address, port=client.primary.port, timeout=client.timeout * 5)
    except (dns.exception.DNSException, OSError) as exc:
        log.info("the policy probe of %s on %s got no answer: %s", zone, label(client.primary), exc)
        return None
    return dns.rcode.to_text(response.rcode())


def _soa_answer(client: DnsClient, zone: str) -> tuple[str | None, str | None]:
    """(the zone's primary master as its SOA names it, a problem) as the primary answers an SOA query."""
    try:
        rrset = client.rrset(client.primary, zone, "SOA")
    except MigrateError as exc:
        return None, exc.message
    if rrset is None:
        return None, "it has no SOA for the zone"
    return absolute(rrset.rdata_objects()[0].mname), None  # type: ignore[attr-defined]


def refused(client: DnsClient, changeset: ChangeSet, rcode: int) -> DnsUpdateRefused:
    """The error for an update the primary answered REFUSED, NOTAUTH or SERVFAIL (or another failure RCODE)."""
    who = label(client.primary)
    zone = changeset.zone
    key = client.section.tsig.name if client.section.tsig else "(none)"
    code = dns.rcode.to_text(rcode)
    held = rrset_names(changeset)
    causes: list[str] = []
    if rcode == dns.rcode.REFUSED:
        probe = probe_policy(client, zone)
        integrity = integrity_problems(client, changeset)
        policy = (f"an update-policy that lets the key {key} change only some names or types (the key itself is "
                  "accepted: an update with prerequisites only, signed with it, was answered NOERROR)")
        if probe == "NOERROR":
            generic = ("the zone's integrity checks (BIND's check-integrity refuses an MX whose target in the zone "
                       "is an alias or has no address records); reading the zone found no such record")
            causes = [f"the zone's integrity checks: {p}" for p in integrity] + [policy] + ([] if integrity
                                                                                             else [generic])
        elif probe in ("REFUSED", "NOTAUTH"):
            causes = [f"the zone does not take updates signed with the key {key} (allow-update or update-policy "
                      f"does not name it; an update with prerequisites only, signed with it, was answered {probe} "
                      "too)", "updates of this zone are turned off on this server"]
            causes += [f"also, the zone's integrity checks would refuse: {p}" for p in integrity]
        else:
            causes = [f"the zone's integrity checks: {p}" for p in integrity]
            causes += [f"the zone's allow-update or update-policy does not let the key {key} make this change (the "
                       f"probe that tells key and records apart got {probe or 'no answer'})"]
    elif rcode == dns.rcode.NOTAUTH:
        mname, problem = _soa_answer(client, zone)
        if problem:
            causes = [f"the server does not serve the zone {zone}: {problem}"]
        else:
            causes = [f"the server is not the zone's primary: the zone's SOA names {mname} as its primary master, "
                      "and a secondary answers updates NOTAUTH unless it forwards them (allow-update-forwarding)",
                      "the server does not serve this zone as an authoritative server"]
    elif rcode == dns.rcode.SERVFAIL:
        _mname, problem = _soa_answer(client, zone)
        journal = ("the server could not write the zone's journal or file (permissions on the zone's directory or "
                   "its .jnl file; BIND logs \"journal open failed\" or \"permission denied\")")
        unloaded = f"the zone is not loaded on the server (errors in its zone file): {problem}" if problem else \
            "the zone is not loaded on the server (errors in its zone file)"
        causes = [unloaded, journal] if problem else [journal, unloaded]
        causes.append("a DNSSEC-signed zone whose signing keys the server cannot use")
    numbered = " ".join(f"({n}) {c};" for n, c in enumerate(causes, 1)).rstrip(";")
    message = (f"the primary {who} answered the update of {zone} with {code}: nothing was changed. The update held "
               f"{len(held)} RRset(s): {', '.join(held)}."
               + (f" Possible causes, most likely first: {numbered}." if causes else ""))
    return DnsUpdateRefused(message, rcode=code, rrsets=held, causes=causes,
                            hint="the primary's log says which (BIND logs every refused update with its reason)")
