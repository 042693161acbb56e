"""Where phones find the hosted platform: RFC 3263 §4 resolution of the SIP domain, with dnspython.

1. **NAPTR** of the domain: the records whose service is one of ``SIP+D2U``, ``SIP+D2T``, ``SIPS+D2T`` (UDP,
   TCP, TLS), flag ``s``, in order and preference; each names an SRV record set.
2. Without NAPTR: the **SRV** records ``_sips._tcp``, ``_sip._tcp`` and ``_sip._udp`` of the domain.
3. Without either: **A/AAAA** of the domain itself, on 5060 (UDP, TCP) and 5061 (TLS).

Then every SRV target's A/AAAA records. The transports phones do not use (``sip.transports``) are left out. A
record that points nowhere (a NAPTR to an SRV name with no records, an SRV target with no address) is a
finding that names it, as is an inconsistent one (a ``SIPS+D2T`` NAPTR whose replacement is an ``_sip._udp``
name); the targets that do resolve are still checked. ``sip.registrar`` skips the lookups: that host, on the
configured port, over each configured transport.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.nameserver
import dns.resolver

from migrate.core.config import NameServer, Project, SipSection
from migrate.voip.sip.client import Target

#: NAPTR service → transport (RFC 3263 §4.1; SIPS over TCP is TLS).
SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
#: The SRV names RFC 3263 §4.2 looks up without NAPTR, per transport.
SRV_PREFIX = {"tls": "_sips._tcp", "tcp": "_sip._tcp", "udp": "_sip._udp"}
DEFAULT_PORT = {"udp": 5060, "tcp": 5060, "tls": 5061}
#: Preference among transports when nothing else orders them (RFC 3263 §4.1: TLS where it is supported).
TRANSPORT_ORDER = ("tls", "tcp", "udp")
LOOKUP_TIMEOUT = 3.0


@dataclass
class Finding:
    """Something found while resolving: ``fail`` (a record that leads nowhere), ``warn``, or ``note``."""

    result: str
    name: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"result": self.result, "name": self.name, "detail": self.detail}


@dataclass
class Resolution:
    """The targets phones would try, best first, and how they were found."""

    domain: str
    #: naptr | srv | a | registrar: the step of RFC 3263 that gave the targets.
    method: str = ""
    targets: list[Target] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    #: The lookups, in order, as "NAME TYPE: answer" lines (for people and the stored check).
    steps: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.targets) and not any(f.result == "fail" for f in self.findings)

    def fail(self, name: str, detail: str) -> None:
        self.findings.append(Finding("fail", name, detail))

    def warn(self, name: str, detail: str) -> None:
        self.findings.append(Finding("warn", name, detail))


class _Lookups:
    def __init__(self, resolvers: list[NameServer], timeout: float) -> None:
        if resolvers:
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [dns.nameserver.Do53Nameserver(ns.address, ns.port) for ns in resolvers]
            self.label = ", ".join(ns.address if ns.port == 53 else f"{ns.address}:{ns.port}" for ns in resolvers)
        else:
            self.resolver = dns.resolver.Resolver()
            self.label = "the system resolver"
        self.resolver.timeout = timeout
        self.resolver.lifetime = timeout * 2
        self.resolver.retry_servfail = True

    def query(self, name: str, rdtype: str) -> list:
        """The records, [] for no such name or no data; :class:`LookupFailed` when the resolver fails."""
        try:
            answer = self.resolver.resolve(_absolute(name), rdtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return []
        except dns.resolver.LifetimeTimeout:
            raise LookupFailed(f"the resolver ({self.label}) did not answer {_absolute(name)} {rdtype}") from None
        except (dns.resolver.NoNameservers, dns.exception.DNSException) as exc:
            raise LookupFailed(f"the resolver ({self.label}) could not resolve {_absolute(name)} {rdtype}: "
                               f"{type(exc).__name__}") from None
        return list(answer.rrset) if answer.rrset is not None else []


class LookupFailed(Exception):
    pass


def _absolute(name: str) -> str:
    return name if name.endswith(".") else name + "."


def _text(name: dns.name.Name | str) -> str:
    return str(name).rstrip(".").lower()


def resolvers_for(project: Project) -> list[NameServer]:
    sip = project.config.sip
    assert sip is not None
    if sip.resolvers:
        return list(sip.resolvers)
    return list(project.config.dns.resolvers) if project.config.dns is not None else []


def resolve(project: Project, *, timeout: float = LOOKUP_TIMEOUT) -> Resolution:
    """The SIP domain's targets for the configured transports (module docstring)."""
    sip = project.config.sip
    assert sip is not None
    lookups = _Lookups(resolvers_for(project), timeout)
    found = Resolution(sip.domain.lower())
    try:
        if sip.registrar:
            _registrar(sip, lookups, found)
        else:
            _rfc3263(sip, lookups, found)
    except LookupFailed as exc:
        found.fail(sip.registrar or sip.domain, str(exc))
    if not found.targets and not any(f.result == "fail" for f in found.findings):
        found.fail(found.domain, "no target for the transports phones use ("
                   + ", ".join(sip.transports) + ") was found")
    return found


def _registrar(sip: SipSection, lookups: _Lookups, found: Resolution) -> None:
    found.method = "registrar"
    host = sip.registrar
    assert host is not None
    addresses = _addresses(host, lookups, found)
    for transport in _ordered(sip.transports):
        port = sip.port or DEFAULT_PORT[transport]
        found.targets += [Target(transport, host.lower(), a, port) for a in addresses]


def _ordered(transports: list[str]) -> list[str]:
    return [t for t in TRANSPORT_ORDER if t in transports]


def _rfc3263(sip: SipSection, lookups: _Lookups, found: Resolution) -> None:
    domain = found.domain
    srv_names: list[tuple[str, str]] = []  # (transport, SRV name) in NAPTR order
    naptrs = lookups.query(domain, "NAPTR")
    usable = []
    for rr in sorted(naptrs, key=lambda r: (r.order, r.preference)):
        service = rr.service.decode(errors="replace").upper()
        replacement = _text(rr.replacement)
        found.steps.append(f"{domain} NAPTR {rr.order} {rr.preference} {service} → {replacement}")
        if service not in SERVICES:
            continue  # another service (e.g. SIPS+D2S, SIP+D2W): not one of ours, as RFC 3263 says
        if rr.flags.decode(errors="replace").lower() != "s":
            found.warn(domain, f"NAPTR {service} has flags {rr.flags.decode(errors='replace')!r}, not \"s\": "
                               "ignored (phones follow only SRV replacements)")
            continue
        transport = SERVICES[service]
        expected = SRV_PREFIX[transport]
        if not replacement.startswith(expected + "."):
            found.warn(domain, f"NAPTR {service} points to {replacement}, which is not a {expected} name: "
                               f"inconsistent (phones will still look it up)")
        usable.append((transport, replacement))
    if naptrs and not usable:
        found.warn(domain, "NAPTR records exist but none for SIP over UDP, TCP or TLS: falling back to SRV")
    if usable:
        found.method = "naptr"
        srv_names = [(t, n) for t, n in usable if t in sip.transports]
    else:
        found.method = "srv"
        srv_names = [(t, f"{SRV_PREFIX[t]}.{domain}") for t in _ordered(sip.transports)]
    any_srv = False
    for transport, name in srv_names:
        records = lookups.query(name, "SRV")
        if not records:
            if found.method == "naptr":
                found.fail(name, f"the NAPTR record for {transport.upper()} points to {name}, which has no SRV "
                                 "records")
            continue
        any_srv = True
        for rr in sorted(records, key=lambda r: (r.priority, -r.weight)):
            target = _text(rr.target)
            found.steps.append(f"{name} SRV {rr.priority} {rr.weight} {rr.port} {target}")
            if target in ("", "."):
                found.warn(name, "SRV target \".\": the service is declared unavailable at this domain")
                continue
            for address in _addresses(target, lookups, found, via=name):
                found.targets.append(Target(transport, target, address, rr.port))
    if found.method == "srv" and not any_srv:
        found.method = "a"
        addresses = _addresses(domain, lookups, found)
        for transport in _ordered(sip.transports):
            found.targets += [Target(transport, domain, a, DEFAULT_PORT[transport]) for a in addresses]


def _addresses(host: str, lookups: _Lookups, found: Resolution, *, via: str | None = None) -> list[str]:
    if _is_address(host):
        return [host]
    addresses = []
    for rdtype in ("A", "AAAA"):
        for rr in lookups.query(host, rdtype):
            addresses.append(rr.address)
            found.steps.append(f"{host} {rdtype} {rr.address}")
    if not addresses:
        found.fail(host, f"{host} has no A or AAAA record" + (f" (the target of {via})" if via else ""))
    return addresses


def _is_address(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def redirect_targets(project: Project, host: str, port: int | None, transport: str, *,
                     timeout: float = LOOKUP_TIMEOUT) -> tuple[list[Target], str]:
    """Where a registrar's redirect points: the host's A/AAAA records through the configured resolvers, on the
    port given (else the transport's standard one). ([], why) when it does not resolve."""
    lookups = _Lookups(resolvers_for(project), timeout)
    found = Resolution(host)
    try:
        addresses = _addresses(host.lower(), lookups, found)
    except LookupFailed as exc:
        return [], str(exc)
    if not addresses:
        return [], "; ".join(f.detail for f in found.findings)
    return [Target(transport, host.lower(), a, port or DEFAULT_PORT[transport]) for a in addresses], ""
