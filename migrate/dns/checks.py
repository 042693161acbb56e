"""``dns check``: per ministry domain, each check with pass, warn or fail and the reason.

The domain's own records are read from its authoritative servers (the primary first): what the zone
publishes now, not what a cache remembers. Names outside the zone (MX targets, SPF includes, the parent's
servers) are looked up through the configured resolvers, as the world sees them, which must recurse (checked
first); the delegation is read from the parent zone's servers themselves, found through the resolvers or, with
``dns.parent_servers``, by following referrals. An MX or SRV target that is an alias is named as one whether or
not the alias resolves.

Records the cut-over creates (DKIM, client SRV, MTA-STS, TLS-RPT) are "not yet" (warn) while the MX does
not point at the central host, and missing (fail) once it does. Whether a record points at the central
host is said in the reason and in ``details``; it is a fact about the migration, not a fault.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import dns.name
import dns.rdatatype

from migrate.core.config import DnsRecords, DnsSection
from migrate.core.errors import MigrateError
from migrate.core.fanout import fanout
from migrate.dns.client import DnsClient, DnsQueryFailed, label, resolve_addresses
from migrate.dns.delegation import Delegation
from migrate.dns.mailauth import (
    evaluate_dmarc,
    evaluate_spf,
    mta_sts_problem,
    parse_dkim,
    tls_rpt_problem,
)
from migrate.dns.records import RRset, absolute
from migrate.dns.targets import central_mx_hosts, is_spf

PASS, WARN, FAIL = "pass", "warn", "fail"
_RANK = {PASS: 0, WARN: 1, FAIL: 2}

#: RFC 7208 §4.6.4.
MAX_LOOKUPS = 10
MAX_VOID_LOOKUPS = 2


@dataclass
class CheckResult:
    check: str
    status: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class DomainReport:
    domain: str
    zone: str | None
    checks: list[CheckResult]

    @property
    def status(self) -> str:
        return max((c.status for c in self.checks), key=_RANK.__getitem__, default=PASS)

    def check(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.check == name)

    def to_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "zone": self.zone, "status": self.status,
                "checks": [asdict(c) for c in self.checks]}


class _Domain:
    """One domain under check: its records as its authoritative servers serve them, read once each."""

    def __init__(self, client: DnsClient, section: DnsSection, domain: str) -> None:
        self.client = client
        self.section = section
        self.domain = absolute(domain)
        self.records: DnsRecords = section.records_for(domain.rstrip(".").lower())
        self.zone: str | None = None
        self.zone_error: str | None = None
        self._cache: dict[tuple[str, str], RRset | None] = {}
        self._lock = threading.Lock()
        self._down: set[str] = set()
        #: Whether the MX points at the central host (None: unknown); set by the MX check.
        self.mx_central: bool | None = None
        self._delegation: Delegation | None = None

    def delegation(self) -> Delegation:
        """What the parent zone's servers say about the zone, asked once for the checks that read it."""
        if self._delegation is None:
            assert self.zone is not None
            self._delegation = self.client.delegation(self.zone)
        return self._delegation

    def in_zone(self, host: str) -> bool:
        return self.zone is not None and dns.name.from_text(absolute(host)).is_subdomain(
            dns.name.from_text(self.zone))

    def addresses(self, host: str) -> list[str]:
        """``host``'s A and AAAA: from the zone's own servers for a name in the zone (what it publishes now),
        through the resolvers for any other."""
        if not self.in_zone(host):
            return resolve_addresses(self.client, host)
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            rrset = self.rrset(host, rdtype)
            found += list(rrset.rdatas) if rrset else []
        return found

    def alias(self, host: str) -> str | None:
        """When ``host`` is an alias (a CNAME), what it says of it: its target and what became of that, whether
        the target resolves or not (an MX or SRV naming an alias is wrong either way)."""
        if self.in_zone(host):
            rrset = self.rrset(host, "CNAME")
            target = absolute(rrset.rdatas[0]) if rrset else None
        else:
            answer = self.client.resolve(host, "CNAME")
            target = absolute(answer.rrset[0].target) if answer is not None and answer.rrset else None
        if target is None:
            return None
        try:
            if self.in_zone(target) and self.rrset(target, "CNAME") is None and not self.addresses(target):
                exists = any(self.rrset(target, t) is not None for t in ("TXT", "MX", "SRV"))
                fate = "which has no A or AAAA record" if exists else "which does not exist"
            elif not self.in_zone(target) and self.client.resolve(target, "A") is None \
                    and self.client.resolve(target, "AAAA") is None:
                fate = "which does not resolve"
            else:
                fate = "which resolves"
        except MigrateError as exc:
            fate = f"which could not be looked up ({exc.message})"
        return f"{host} is an alias (CNAME to {target}, {fate})"

    def at(self, label_: str) -> str:
        return absolute(f"{label_}.{self.domain}")

    def rrset(self, name: str, rdtype: str) -> RRset | None:
        """``name``'s RRset from the first authoritative server that answers (the primary first)."""
        key = (absolute(name), rdtype)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        errors: list[str] = []
        for server in self.client.servers:
            if label(server) in self._down:
                continue
            try:
                found = self.client.rrset(server, name, rdtype)
            except MigrateError as exc:
                errors.append(exc.message)
                self._down.add(label(server))
                continue
            with self._lock:
                self._cache[key] = found
            return found
        raise DnsQueryFailed("no authoritative server answered: " + "; ".join(errors or ["all failed before"]))

    def after_switch(self) -> bool:
        return bool(self.mx_central)

    def missing(self, what: str, configured: bool) -> tuple[str, str]:
        """Status and reason for a record the cut-over creates and that is not there."""
        if configured and self.after_switch():
            return FAIL, f"{what} is missing, and the MX already points at the central host"
        if configured:
            return WARN, f"{what} is not published yet (the cut-over publishes it)"
        return WARN, f"{what} is not published, and the project file does not configure it"


# -- the checks ---------------------------------------------------------------------------------------


def check_resolvers(d: _Domain) -> CheckResult:
    """The resolvers recurse: an authoritative-only server named as a resolver answers only for its own zones
    and would make every other name look missing (or part of its zone)."""
    client = d.client
    lazy = client.not_recursing()
    details = {"resolvers": client.resolver_label, "parent_servers": [label(ns) for ns in client.section.parent_servers]}
    if lazy:
        via = (" (the delegation is looked up from dns.parent_servers; names outside the ministry zones still "
               "need a recursive resolver)" if client.section.parent_servers else "")
        return CheckResult("resolvers", FAIL, "; ".join(lazy) + via, details)
    return CheckResult("resolvers", PASS, f"{client.resolver_label} answers recursively", details)


def check_delegation(d: _Domain) -> CheckResult:
    """The parent's NS set (the referral its servers give) equals the zone's own NS set."""
    if d.zone is None:
        return CheckResult("delegation", FAIL, f"the zone of {d.domain} was not found: {d.zone_error}")
    zone = d.zone
    details: dict[str, Any] = {"zone": zone}
    if zone != d.domain:
        details["note"] = f"{d.domain} has no zone of its own; it lives in {zone}"
    if zone == ".":
        return CheckResult("delegation", FAIL, "the domain resolves to the root zone", details)
    try:
        found = d.delegation()
        own = d.rrset(zone, "NS")
    except MigrateError as exc:
        return CheckResult("delegation", FAIL, exc.message, details)
    parent = found.parent
    details["parent"] = parent
    zone_set = sorted(absolute(t) for t in own.rdatas) if own else []
    details["zone_ns"] = zone_set
    referrals = {v.server.who: v.ns for v in found.views}
    details["parent_ns"] = referrals
    problems = found.problems
    if not referrals:
        return CheckResult("delegation", FAIL, "no server of the parent zone " + parent + " answered: "
                           + "; ".join(problems), details)
    if not zone_set:
        return CheckResult("delegation", FAIL, f"the zone {zone} has no NS records of its own", details)
    differing = {who: ns for who, ns in referrals.items() if ns != zone_set}
    if differing:
        who, ns = next(iter(differing.items()))
        only_parent = sorted(set(ns) - set(zone_set))
        only_zone = sorted(set(zone_set) - set(ns))
        parts = []
        if only_parent:
            parts.append("only at the parent: " + ", ".join(only_parent))
        if only_zone:
            parts.append("only in the zone: " + ", ".join(only_zone))
        return CheckResult("delegation", FAIL, f"the parent {parent} delegates {zone} to {', '.join(ns) or 'nothing'}"
                           f" (asked {who}), the zone lists {', '.join(zone_set)}: " + "; ".join(parts), details)
    reason = f"{parent} delegates {zone} to {', '.join(zone_set)}, as the zone lists"
    if problems:
        return CheckResult("delegation", WARN, reason + "; but " + "; ".join(problems), details)
    return CheckResult("delegation", PASS, reason, details)


def _parent_view(d: _Domain, check: str) -> Delegation | CheckResult:
    """What the parent's servers say of the zone, or the failed check saying why it is not known."""
    if d.zone is None:
        return CheckResult(check, FAIL, f"the zone of {d.domain} was not found: {d.zone_error}")
    try:
        return d.delegation()
    except MigrateError as exc:
        return CheckResult(check, FAIL, exc.message)


def check_glue(d: _Domain) -> CheckResult:
    """The parent's glue for the zone's name servers (the addresses it hands out with the referral) is what the
    zone itself says those names' addresses are."""
    found = _parent_view(d, "glue")
    if isinstance(found, CheckResult):
        return found
    glue = found.glue()
    details: dict[str, Any] = {"glue": {k: sorted(v) for k, v in glue.items()}, "zone": {}}
    problems: list[str] = []
    for name in found.listed():
        if not d.in_zone(name):
            continue  # a server named outside the zone needs no glue; its own zone says where it is
        try:
            own = sorted(d.addresses(name))
        except MigrateError as exc:
            problems.append(f"{name}: {exc.message}")
            continue
        details["zone"][name] = own
        at_parent = sorted(glue.get(name, ()))
        if not at_parent:
            problems.append(f"the parent gives no glue for {name}, a name inside the zone (resolvers cannot reach it)")
        elif not own:
            problems.append(f"the parent's glue says {name} is at {', '.join(at_parent)}; the zone has no address "
                            "for it")
        elif set(at_parent) != set(own):
            problems.append(f"the parent's glue says {name} is at {', '.join(at_parent)}; the zone says "
                            f"{', '.join(own)}")
    if problems:
        return CheckResult("glue", FAIL, "; ".join(problems), details)
    if not details["zone"]:
        return CheckResult("glue", PASS, "the zone's name servers are named outside it: no glue needed", details)
    return CheckResult("glue", PASS, "the parent's glue matches the zone's addresses for "
                       + ", ".join(details["zone"]), details)


def check_ns_authority(d: _Domain) -> CheckResult:
    """Every name server the parent lists answers for the zone with authority, at every address it is known by
    (the parent's glue, the zone's own records, the resolvers for a name outside the zone)."""
    found = _parent_view(d, "ns-authority")
    if isinstance(found, CheckResult):
        return found
    assert d.zone is not None
    glue = found.glue()
    targets: list[tuple[str, str, str]] = []
    problems: list[str] = []
    for name in found.listed():
        known: dict[str, str] = {address: "glue" for address in glue.get(name, ())}
        try:
            for address in d.addresses(name):
                known.setdefault(address, "zone" if d.in_zone(name) else "resolver")
        except MigrateError as exc:
            problems.append(f"{name}: {exc.message}")
        if not known:
            problems.append(f"{name} has no address")
        targets += [(name, address, how) for address, how in sorted(known.items())]

    def ask(target: tuple[str, str, str]) -> str | None:
        name, address, how = target
        who = f"{name} ({address}, from the {how})"
        try:
            answer = d.client.query_at(address, 53, d.zone, "SOA", who=who)
        except MigrateError as exc:
            return exc.message
        if not any(rrset.rdtype == dns.rdatatype.SOA for rrset in answer.answer):
            return f"{who} answers without the zone's SOA"
        return None

    failures = [f for f in fanout(targets, ask, workers=8, name="dns-ns") if f]
    details = {"asked": [f"{n} ({a}, {h})" for n, a, h in targets]}
    if failures or problems:
        return CheckResult("ns-authority", FAIL, "; ".join(problems + failures), details)
    return CheckResult("ns-authority", PASS, f"every name server the parent lists answers for {d.zone} with "
                       f"authority ({len(targets)} address{'es' if len(targets) != 1 else ''})", details)


def check_nameservers(d: _Domain) -> CheckResult:
    """Every configured authoritative server answers for the zone, with the same SOA serial."""
    zone = d.zone or d.domain

    def serial(server) -> tuple[str, int | None, str | None]:
        try:
            return label(server), d.client.serial(server, zone), None
        except MigrateError as exc:
            return label(server), None, exc.message

    found = fanout(d.client.servers, serial, workers=8, name="dns-soa")
    serials = {who: s for who, s, _ in found}
    details = {"zone": zone, "serials": serials}
    failed = [err for _, _, err in found if err]
    if failed:
        return CheckResult("nameservers", FAIL, "; ".join(failed), details)
    if len(set(serials.values())) > 1:
        top = max(serials.values())
        behind = [f"{who} has {s}" for who, s in serials.items() if s != top]
        return CheckResult("nameservers", FAIL, f"SOA serials of {zone} differ: the newest is {top}; "
                           + ", ".join(behind) + " (behind)", details)
    value = next(iter(serials.values()))
    return CheckResult("nameservers", PASS, f"{len(serials)} server{'s' if len(serials) != 1 else ''} answer for "
                       f"{zone}, all with serial {value}", details)


def check_mx(d: _Domain) -> CheckResult:
    """MX targets resolve to A/AAAA and are not aliases (RFC 2181 §10.3); whether they are the central host's."""
    mx = d.rrset(d.domain, "MX")
    if mx is None:
        d.mx_central = False
        return CheckResult("mx", FAIL, "no MX record")
    central = central_mx_hosts(d.records)
    targets = []
    problems = []
    for rd in sorted(mx.rdata_objects(), key=lambda r: (r.preference, r.exchange.to_text())):  # type: ignore[attr-defined]
        host = absolute(rd.exchange)
        entry: dict[str, Any] = {"preference": rd.preference, "host": host, "central": host in central}
        targets.append(entry)
        if host == ".":
            problems.append("a null MX (RFC 7505): the domain says it accepts no mail")
            continue
        try:
            alias = d.alias(host)
            if alias is not None:
                entry["alias"] = alias
                problems.append(f"{alias}; an MX must name a host with A/AAAA records itself (RFC 2181 §10.3)")
                continue
            entry["addresses"] = d.addresses(host)
        except MigrateError as exc:
            problems.append(f"{host}: {exc.message}")
            continue
        if not entry["addresses"]:
            problems.append(f"{host} has no A or AAAA record")
    at_central = [t["host"] for t in targets if t["central"]]
    elsewhere = [t["host"] for t in targets if not t["central"]]
    d.mx_central = bool(at_central) and not elsewhere
    details = {"targets": targets, "points_at_central": "all" if d.mx_central else "some" if at_central else "none"}
    if problems:
        return CheckResult("mx", FAIL, "; ".join(problems), details)
    if d.mx_central:
        return CheckResult("mx", PASS, "points at the central host: " + ", ".join(at_central), details)
    if at_central:
        return CheckResult("mx", WARN, f"split: {', '.join(at_central)} at the central host, {', '.join(elsewhere)} "
                           "elsewhere (mail lands on both)", details)
    return CheckResult("mx", PASS, "not yet at the central host: points at " + ", ".join(elsewhere), details)


def check_spf(d: _Domain) -> CheckResult:
    """Syntax, at most 10 lookups with nested includes counted, at most 2 void lookups, central authorised."""
    txt = d.rrset(d.domain, "TXT")
    records = [v for v in (txt.values() if txt else []) if is_spf(v)]
    if not records:
        return CheckResult("spf", FAIL, "no SPF record (a TXT record starting v=spf1 at the domain)")
    if len(records) > 1:
        return CheckResult("spf", FAIL, f"{len(records)} SPF records: receivers treat that as a permanent error "
                           "(RFC 7208 §4.5)", {"records": records})
    include = d.records.spf_include
    verdict = evaluate_spf(records[0], d.domain, d.section.resolvers, include=include, timeout=d.client.timeout)
    details = {"record": verdict.record, "lookups": verdict.lookups, "void_lookups": verdict.void_lookups,
               "authorises_central": verdict.authorises, "warnings": verdict.warnings}
    if verdict.error:
        return CheckResult("spf", FAIL, verdict.error, details)
    counts = (f"{verdict.lookups} of {MAX_LOOKUPS} DNS lookups, {verdict.void_lookups} of {MAX_VOID_LOOKUPS} "
              "void lookups")
    if verdict.authorises is None:
        central = "no spf_include configured to look for"
    elif verdict.authorises:
        central = f"authorises the central host (include:{include.rstrip('.')})"
    else:
        central = f"does not authorise the central host yet (no include:{include.rstrip('.')})"
    reason = f"{central}; {counts}"
    if verdict.authorises is False and d.after_switch():
        return CheckResult("spf", FAIL, f"the MX points at the central host, but the SPF record {central[5:]}; "
                           f"{counts}", details)
    if verdict.warnings:
        return CheckResult("spf", WARN, f"{reason}; {verdict.warnings[0]}", details)
    return CheckResult("spf", PASS, reason, details)


def check_dmarc(d: _Domain) -> CheckResult:
    """A valid DMARC record at _dmarc.<domain>, with its policy."""
    name = d.at("_dmarc")
    txt = d.rrset(name, "TXT")
    records = [v for v in (txt.values() if txt else []) if v.startswith("v=DMARC1")]
    if not records:
        return CheckResult("dmarc", FAIL, f"no DMARC record at {name}")
    if len(records) > 1:
        return CheckResult("dmarc", FAIL, f"{len(records)} DMARC records at {name}: receivers ignore them all "
                           "(RFC 7489 §6.6.3)", {"records": records})
    verdict = evaluate_dmarc(records[0], d.domain, d.section.resolvers, timeout=d.client.timeout)
    details = {"record": verdict.record, "policy": verdict.policy, "tags": verdict.tags, "warnings": verdict.warnings}
    if verdict.error:
        return CheckResult("dmarc", FAIL, verdict.error, details)
    reason = f"p={verdict.policy}"
    if verdict.policy == "none":
        return CheckResult("dmarc", WARN, f"{reason}: receivers only report, they act on nothing", details)
    if verdict.warnings:
        return CheckResult("dmarc", WARN, f"{reason}; {verdict.warnings[0]}", details)
    return CheckResult("dmarc", PASS, reason, details)


def check_dkim(d: _Domain) -> CheckResult:
    """The central signer's selector TXT is there and holds a usable key."""
    selector = d.records.dkim_selector
    if not selector:
        return CheckResult("dkim", WARN, "no dkim_selector in the project file: the central signer's key cannot "
                           "be checked")
    name = d.at(f"{selector}._domainkey")
    details: dict[str, Any] = {"name": name, "selector": selector}
    txt = d.rrset(name, "TXT")
    if txt is None:
        alias = d.rrset(name, "CNAME")
        if alias is not None:  # a selector delegated to the central host by CNAME: read it where it points
            details["cname"] = alias.rdatas[0]
            answer = d.client.resolve(name, "TXT")
            txt = RRset.from_dns(answer.rrset) if answer is not None and answer.rrset is not None else None
    if txt is None:
        status, reason = d.missing(f"the DKIM key {name}", bool(d.records.dkim_key))
        return CheckResult("dkim", status, reason, details)
    values = txt.values()
    details["records"] = values
    if len(values) > 1:
        return CheckResult("dkim", FAIL, f"{len(values)} TXT records at {name}: a selector holds one key", details)
    try:
        key = parse_dkim(values[0])
    except ValueError as exc:
        return CheckResult("dkim", FAIL, f"{name} does not hold a usable DKIM key: {exc}", details)
    details.update(key_type=key.key_type, bits=key.bits)
    reason = f"selector {selector}: {key.key_type} key, {key.bits} bits"
    if key.key_type == "rsa" and key.bits < 1024:
        return CheckResult("dkim", FAIL, f"{reason}: receivers ignore RSA keys under 1024 bits (RFC 8301)", details)
    if d.records.dkim_key and _squash(d.records.dkim_key) != _squash(values[0]):
        return CheckResult("dkim", WARN, f"{reason}, but not the key the project file configures (the cut-over "
                           "replaces it)", details)
    return CheckResult("dkim", PASS, reason, details)


def _squash(value: str) -> str:
    return "".join(value.split())


def _srv_check(d: _Domain, check: str, label_: str, port: int, configured: str | None) -> CheckResult:
    name = d.at(label_)
    srv = d.rrset(name, "SRV")
    if srv is None:
        status, reason = d.missing(f"{name} SRV", configured is not None)
        return CheckResult(check, status, reason, {"name": name})
    entries = []
    problems = []
    notes = []
    for rd in srv.rdata_objects():
        host = absolute(rd.target)  # type: ignore[attr-defined]
        entry = {"priority": rd.priority, "weight": rd.weight, "port": rd.port, "host": host}  # type: ignore[attr-defined]
        entries.append(entry)
        if host == ".":
            notes.append("the service is declared unavailable (target '.')")
            continue
        try:
            alias = d.alias(host)
            if alias is not None:
                problems.append(f"{alias}; an SRV target must be a host name, not an alias (RFC 2782)")
            elif not d.addresses(host):
                problems.append(f"{host} has no A or AAAA record")
        except MigrateError as exc:
            problems.append(f"{host}: {exc.message}")
        if rd.port != port:  # type: ignore[attr-defined]
            notes.append(f"{host} on port {rd.port}, not {port}")  # type: ignore[attr-defined]
    details: dict[str, Any] = {"name": name, "records": entries}
    if problems:
        return CheckResult(check, FAIL, "; ".join(problems), details)
    hosts = ", ".join(f"{e['host']}:{e['port']}" for e in entries)
    if configured is not None:
        central = any(e["host"] == absolute(configured) for e in entries)
        details["points_at_central"] = central
        where = f"points at the central host ({hosts})" if central else f"not yet at the central host: {hosts}"
    else:
        where = hosts
    if notes:
        return CheckResult(check, WARN, f"{where}; " + "; ".join(notes), details)
    return CheckResult(check, PASS, where, details)


def check_autodiscover(d: _Domain) -> CheckResult:
    """An autodiscover CNAME or an _autodiscover._tcp SRV record that leads to a host."""
    name = d.at("autodiscover")
    configured = d.records.autodiscover
    alias = d.rrset(name, "CNAME")
    if alias is not None:
        host = absolute(alias.rdatas[0])
        details = {"name": name, "cname": host}
        try:
            addresses = resolve_addresses(d.client, host)
        except MigrateError as exc:
            return CheckResult("autodiscover", FAIL, f"{name} is an alias of {host}: {exc.message}", details)
        if not addresses:
            return CheckResult("autodiscover", FAIL, f"{name} is an alias of {host}, which has no A or AAAA "
                               "record", details)
        if configured is not None:
            central = host == absolute(configured)
            details["points_at_central"] = central
            if central:
                return CheckResult("autodiscover", PASS, f"points at the central host ({host})", details)
            return CheckResult("autodiscover", PASS, f"not yet at the central host: CNAME {host}", details)
        return CheckResult("autodiscover", PASS, f"CNAME {host}", details)
    if d.rrset(name, "A") is not None or d.rrset(name, "AAAA") is not None:
        return CheckResult("autodiscover", PASS, f"{name} has an address of its own"
                           + (" (not yet the central host)" if configured else ""), {"name": name})
    if d.rrset(d.at("_autodiscover._tcp"), "SRV") is None:
        status, reason = d.missing(f"autodiscover (a CNAME at {name} or an SRV at {d.at('_autodiscover._tcp')})",
                                   configured is not None)
        return CheckResult("autodiscover", status, reason, {"name": name})
    return _srv_check(d, "autodiscover", "_autodiscover._tcp", 443, configured)


def check_imaps(d: _Domain) -> CheckResult:
    return _srv_check(d, "imaps-srv", "_imaps._tcp", 993, d.records.imap_host)


def check_submission(d: _Domain) -> CheckResult:
    return _srv_check(d, "submission-srv", "_submission._tcp", 587, d.records.submission_host)


def check_submissions(d: _Domain) -> CheckResult:
    return _srv_check(d, "submissions-srv", "_submissions._tcp", 465, d.records.submission_host)


def _policy_txt(d: _Domain, check: str, label_: str, prefix: str, configured: str,
                problem: Callable[[str], str | None]) -> CheckResult:
    name = d.at(label_)
    txt = d.rrset(name, "TXT")
    values = [v for v in (txt.values() if txt else []) if v.startswith(prefix)]
    if not values:
        status, reason = d.missing(f"{name} TXT", True)
        return CheckResult(check, status, reason, {"name": name})
    details = {"name": name, "records": values}
    if len(values) > 1:
        return CheckResult(check, FAIL, f"{len(values)} {prefix} records at {name}: receivers ignore them all",
                           details)
    wrong = problem(values[0])
    if wrong:
        return CheckResult(check, FAIL, f"{name}: {wrong}", details)
    if _squash(values[0]) != _squash(configured):
        return CheckResult(check, PASS, f"valid, not yet the configured record ({values[0]})", details)
    return CheckResult(check, PASS, f"valid: {values[0]}", details)


def check_mta_sts(d: _Domain) -> CheckResult:
    return _policy_txt(d, "mta-sts", "_mta-sts", "v=STSv1", d.records.mta_sts or "", mta_sts_problem)


def check_tls_rpt(d: _Domain) -> CheckResult:
    return _policy_txt(d, "tls-rpt", "_smtp._tls", "v=TLSRPTv1", d.records.tls_rpt or "", tls_rpt_problem)


#: In the order they run and are shown; the MX check runs before those that depend on where the MX points.
CHECKS: list[tuple[str, Callable[[_Domain], CheckResult]]] = [
    ("resolvers", check_resolvers),
    ("delegation", check_delegation),
    ("glue", check_glue),
    ("ns-authority", check_ns_authority),
    ("nameservers", check_nameservers),
    ("mx", check_mx),
    ("spf", check_spf),
    ("dmarc", check_dmarc),
    ("dkim", check_dkim),
    ("autodiscover", check_autodiscover),
    ("imaps-srv", check_imaps),
    ("submission-srv", check_submission),
    ("submissions-srv", check_submissions),
    ("mta-sts", check_mta_sts),
    ("tls-rpt", check_tls_rpt),
]


def check_domain(client: DnsClient, section: DnsSection, domain: str) -> DomainReport:
    """Every check of one domain; a check whose servers fail is a failed check, never an exception."""
    d = _Domain(client, section, domain)
    try:
        d.zone = client.zone_for(d.domain)
    except MigrateError as exc:
        d.zone_error = exc.message
    results = []
    for name, check in CHECKS:
        if name == "mta-sts" and not d.records.mta_sts:
            continue
        if name == "tls-rpt" and not d.records.tls_rpt:
            continue
        try:
            results.append(check(d))
        except MigrateError as exc:
            results.append(CheckResult(name, FAIL, exc.message))
    return DomainReport(d.domain.rstrip("."), d.zone, results)


def check_domains(client: DnsClient, section: DnsSection, domains: list[str], *, workers: int = 8,
                  stop: threading.Event | None = None) -> list[DomainReport]:
    """:func:`check_domain` over ``domains`` in parallel; reports in the order of ``domains``."""
    return fanout(domains, lambda domain: check_domain(client, section, domain), workers=workers,
                  name="dns-check", stop=stop)
