"""Talking to the configured DNS servers: authoritative queries (no recursion), SOA serials, the zone a domain
lives in (through the resolvers, which must recurse, or by referrals from ``dns.parent_servers``), what the
parent zone's servers say of it, AXFR, and the TSIG key that signs transfers and updates.

Failures become MigrateErrors that say which server and what happened: a server that does not answer is
:class:`DnsServerUnreachable` (exit 4 for a command that depends on it; a failed check elsewhere), an answer
that is not the one asked for (refused, not authoritative, SERVFAIL) is :class:`DnsQueryFailed`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.tsig
import dns.xfr
import dns.zone

from migrate.core.config import DnsSection, NameServer, Project
from migrate.core.errors import DnsServerUnreachable, MigrateError, TransientError, UsageError
from migrate.core.retry import call_with_retry
from migrate.core.secrets import SecretRef, register, resolve
from migrate.dns.delegation import Delegation, Walker, delegation, resolver_parent_servers
from migrate.dns.failures import DnsQueryFailed
from migrate.dns.records import RRset, absolute

log = logging.getLogger(__name__)

#: Seconds to wait for one answer; a query that times out is asked once more before the server is called
#: unreachable (UDP may lose a packet; a server that is down stays down).
QUERY_TIMEOUT = 2.0
QUERY_ATTEMPTS = 2


__all__ = ["DnsClient", "DnsQueryFailed", "Tsig", "dns_section", "label", "resolve_addresses", "tsig_problem"]


class _Timeout(TransientError):
    pass


def dns_section(project: Project, *, tsig: bool = False) -> DnsSection:
    """The project file's ``dns:`` section, or a usage error saying what is missing (``tsig``: a step that
    changes records needs the TSIG key too)."""
    section = project.config.dns
    if section is None:
        raise UsageError(f"{project.path.name} has no dns: section",
                         hint="add one: the authoritative nameservers, the TSIG key, resolvers and targets "
                              "(govmigrate init writes a commented example)")
    if tsig and section.tsig is None:
        raise UsageError(f"{project.path.name}: dns.tsig is missing; the cut-over signs its updates with it")
    return section


def label(server: NameServer) -> str:
    """How a server is named in messages: its address, and its port when not 53."""
    return server.address if server.port == 53 else f"{server.address}:{server.port}"


@dataclass(frozen=True)
class Tsig:
    """The TSIG key as dnspython takes it. Its secret is registered with the redactor when it is read."""

    name: dns.name.Name
    algorithm: dns.name.Name
    keyring: dict

    def __repr__(self) -> str:  # dnspython's Key repr would print the secret
        return f"Tsig({self.name}, {self.algorithm})"


class DnsClient:
    """The DNS servers of one project file's ``dns:`` section."""

    def __init__(self, section: DnsSection, base_dir: Path | None = None, *, timeout: float = QUERY_TIMEOUT) -> None:
        self.section = section
        self.base_dir = base_dir
        self.timeout = timeout
        self._tsig: Tsig | None = None
        self._not_recursing: list[str] | None = None

    # -- servers ----------------------------------------------------------------------------------

    @property
    def servers(self) -> list[NameServer]:
        """Every authoritative server, the primary first."""
        primary = self.section.primary
        return [primary, *(ns for ns in self.section.nameservers if ns is not primary)]

    @property
    def primary(self) -> NameServer:
        return self.section.primary

    # -- authoritative queries --------------------------------------------------------------------

    def query(self, server: NameServer, name: str, rdtype: str, *, authoritative: bool = True) -> dns.message.Message:
        """Ask ``server`` directly (recursion off). With ``authoritative``, an answer without the AA bit (a
        referral, a cached answer) is refused as :class:`DnsQueryFailed`: that server does not serve the name."""
        return self.query_at(server.address, server.port, name, rdtype, who=label(server),
                             authoritative=authoritative)

    def query_at(self, address: str, port: int, name: str, rdtype: str, *, who: str,
                 authoritative: bool = True) -> dns.message.Message:
        qname = absolute(name)
        message = dns.message.make_query(qname, rdtype, use_edns=0)
        message.flags &= ~dns.flags.RD

        def ask() -> dns.message.Message:
            try:
                response, _ = dns.query.udp_with_fallback(message, address, timeout=self.timeout, port=port)
                return response
            except dns.exception.Timeout:
                raise _Timeout(f"DNS server {who} did not answer {qname} {rdtype} within {self.timeout:g} s")
            except (ConnectionError, OSError) as exc:
                raise DnsServerUnreachable(f"DNS server {who} cannot be reached: {exc.strerror or exc}")
            except dns.exception.DNSException as exc:
                raise DnsQueryFailed(f"DNS server {who} sent an answer that cannot be read for {qname} {rdtype}: {exc}")

        try:
            response = call_with_retry(f"DNS {who}", ask, attempts=QUERY_ATTEMPTS, initial=0.2, maximum=1.0)
        except _Timeout as exc:
            raise DnsServerUnreachable(exc.message) from None
        rcode = response.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            why = {dns.rcode.REFUSED: "refused the query (it does not serve this zone, or does not answer us)",
                   dns.rcode.SERVFAIL: "answered SERVFAIL (the zone is not loaded, or the server cannot serve it)",
                   dns.rcode.NOTAUTH: "is not authoritative for it"}.get(rcode, f"answered {dns.rcode.to_text(rcode)}")
            raise DnsQueryFailed(f"DNS server {who} {why}: {qname} {rdtype}")
        if authoritative and not response.flags & dns.flags.AA:
            raise DnsQueryFailed(f"DNS server {who} is not authoritative for {qname} (it answered without the "
                                 "authoritative flag)")
        return response

    def rrset(self, server: NameServer, name: str, rdtype: str) -> RRset | None:
        """The RRset ``server`` serves at ``name`` (``None``: no such name, or no data of that type)."""
        return _answer_rrset(self.query(server, name, rdtype), name, rdtype)

    def read(self, keys: list[tuple[str, str]], server: NameServer | None = None) -> dict[tuple[str, str], RRset | None]:
        """Several RRsets from one server (the primary unless told), as they are now, with their TTLs."""
        server = server or self.primary
        return {(absolute(n), t.upper()): self.rrset(server, n, t) for n, t in dict.fromkeys(keys)}

    def serial(self, server: NameServer, zone: str) -> int:
        rrset = _answer_rrset(self.query(server, zone, "SOA"), zone, "SOA")
        if rrset is None:
            raise DnsQueryFailed(f"DNS server {label(server)} has no SOA for {absolute(zone)}: it does not serve "
                                 "that zone")
        return int(rrset.rdata_objects()[0].serial)  # type: ignore[attr-defined]

    # -- through the resolvers --------------------------------------------------------------------

    def resolver(self) -> dns.resolver.Resolver:
        """A resolver over the configured recursive resolvers (the system's when none are configured)."""
        if not self.section.resolvers:
            resolver = dns.resolver.Resolver()
        else:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(ns.address, ns.port)
                                    for ns in self.section.resolvers]
        resolver.timeout = self.timeout
        resolver.lifetime = self.timeout * QUERY_ATTEMPTS
        # A resolver's SERVFAIL is often passing (an upstream that did not answer in time, a cold cache): ask
        # again within the lifetime rather than report a domain's delegation broken on one bad answer.
        resolver.retry_servfail = True
        return resolver

    @property
    def resolver_label(self) -> str:
        return ", ".join(label(ns) for ns in self.section.resolvers) or "the system resolver"

    def resolve(self, name: str, rdtype: str) -> dns.resolver.Answer | None:
        """A recursive lookup; ``None`` for no such name or no data of that type."""
        try:
            return self.resolver().resolve(absolute(name), rdtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return None
        except dns.resolver.LifetimeTimeout:
            raise DnsServerUnreachable(f"the resolver ({self.resolver_label}) did not answer {absolute(name)} {rdtype}")
        except dns.resolver.NoNameservers as exc:
            raise DnsQueryFailed(f"the resolver ({self.resolver_label}) could not resolve {absolute(name)} "
                                 f"{rdtype}: {_first_error(exc)}")
        except dns.exception.DNSException as exc:
            raise DnsQueryFailed(f"the resolver ({self.resolver_label}) failed on {absolute(name)} {rdtype}: {exc}")

    def not_recursing(self) -> list[str]:
        """The resolvers that do not recurse for us (their answers lack the RA flag: an authoritative-only server,
        or one that refuses recursion to this host), each with what it said; asked once per client."""
        if self._not_recursing is None:
            found = []
            for server in self.resolver().nameservers:
                address, port = str(getattr(server, "address", server)), int(getattr(server, "port", 53))
                who = address if port == 53 else f"{address}:{port}"
                message = dns.message.make_query(dns.name.root, "NS", use_edns=0)
                try:
                    response, _ = dns.query.udp_with_fallback(message, address, timeout=self.timeout, port=port)
                except (dns.exception.DNSException, OSError):
                    continue  # not answering is a different fault, reported where a lookup fails
                if not response.flags & dns.flags.RA:
                    rcode = dns.rcode.to_text(response.rcode())
                    found.append(f"{who} does not recurse (it answers {rcode} without the RA flag: an authoritative "
                                 "server, or a resolver that does not serve this host)")
            self._not_recursing = found
        return self._not_recursing

    def _walker(self) -> Walker | None:
        return Walker(self, self.section.parent_servers) if self.section.parent_servers else None

    def zone_for(self, domain: str) -> str:
        """The zone ``domain`` lives in: the closest enclosing name with an SOA, found by following referrals
        from ``dns.parent_servers`` where the project file names them, else through the resolvers (which must
        recurse: an authoritative-only server would make every name look like part of its own zone)."""
        walker = self._walker()
        if walker is not None:
            try:
                return walker.zone_for(domain)
            except MigrateError as exc:
                raise DnsQueryFailed(f"the zone of {absolute(domain)} was not found from {walker.label}: "
                                     f"{exc.message}")
        lazy = self.not_recursing()
        if lazy:
            raise DnsQueryFailed(f"the zone of {absolute(domain)} cannot be found through the resolver: "
                                 + "; ".join(lazy) + ". Name a recursive resolver in dns.resolvers, or the parent "
                                 "zone's servers (or root hints) in dns.parent_servers")
        try:
            return absolute(dns.resolver.zone_for_name(absolute(domain), resolver=self.resolver(),
                                                       lifetime=self.timeout * QUERY_ATTEMPTS * 2))
        except dns.resolver.LifetimeTimeout:
            raise DnsServerUnreachable(f"the resolver ({self.resolver_label}) did not answer while looking for the "
                                       f"zone of {absolute(domain)}")
        except dns.resolver.NoNameservers as exc:
            raise DnsQueryFailed(f"the resolver ({self.resolver_label}) could not find the zone of "
                                 f"{absolute(domain)}: {_first_error(exc)}")
        except dns.resolver.NoRootSOA:
            raise DnsQueryFailed(f"{self.resolver_label} sees no zone that holds {absolute(domain)} (no delegation "
                                 "leads to it from the root it knows): on a split-horizon network or in a lab, name "
                                 "the parent zone's servers (or root hints) in dns.parent_servers, or a resolver "
                                 "that sees the ministry zones in dns.resolvers")
        except dns.exception.DNSException as exc:
            raise DnsQueryFailed(f"no zone found for {absolute(domain)} through {self.resolver_label}: {exc}")

    def delegation(self, zone: str) -> Delegation:
        """What the parent zone's servers say about ``zone`` (NS set and glue), asked of each of them."""
        walker = self._walker()
        if walker is not None:
            parent, servers, problems = walker.parent_servers(zone)
        else:
            parent, servers, problems = resolver_parent_servers(self, zone, resolve_addresses)
        return delegation(self, zone, parent, servers, problems)

    # -- TSIG and zone transfers ------------------------------------------------------------------

    def tsig(self) -> Tsig:
        """The TSIG key of the project file, its secret resolved once and registered with the redactor."""
        if self._tsig is None:
            key = self.section.tsig
            if key is None:
                raise UsageError("dns.tsig is not set in the project file: updates and zone transfers are signed "
                                 "with a TSIG key (name, algorithm, secret)")
            secret = resolve(SecretRef(key.secret), base_dir=self.base_dir, label="dns.tsig.secret").reveal()
            try:
                raw = base64.b64decode("".join(secret.split()), validate=True)
            except (binascii.Error, ValueError):
                raise UsageError(f"dns.tsig.secret: the value of {key.secret} is not base64 (write the secret as "
                                 "tsig-keygen prints it)")
            if not raw:
                raise UsageError(f"dns.tsig.secret: the value of {key.secret} is empty")
            register(base64.b64encode(raw).decode())  # the form dnspython's own repr would show
            name = dns.name.from_text(key.name)
            algorithm = dns.name.from_text(key.algorithm)
            self._tsig = Tsig(name, algorithm, {name: dns.tsig.Key(name, raw, algorithm)})
        return self._tsig

    def axfr(self, zone: str) -> str:
        """The whole zone from the primary by AXFR signed with TSIG, as zone-file text (absolute names).

        Raises :class:`DnsQueryFailed` when the primary refuses the transfer, so a caller can fall back to
        the RRsets it read itself."""
        tsig = self.tsig()
        server = self.primary
        target = dns.zone.Zone(absolute(zone), relativize=False)
        query, _ = dns.xfr.make_query(target, keyring=tsig.keyring, keyname=tsig.name, keyalgorithm=tsig.algorithm)
        try:
            dns.query.inbound_xfr(server.address, target, query, port=server.port, timeout=self.timeout * 5,
                                  lifetime=self.timeout * 30)
        except dns.xfr.TransferError as exc:
            raise DnsQueryFailed(f"the primary {label(server)} refused the zone transfer of {absolute(zone)} "
                                 f"({dns.rcode.to_text(exc.rcode)})")
        except dns.tsig.PeerError as exc:
            raise DnsQueryFailed(f"the primary {label(server)} refused the TSIG signature of the zone transfer of "
                                 f"{absolute(zone)}: {tsig_problem(exc, self.section.tsig.name)}")
        except dns.exception.Timeout:
            raise DnsServerUnreachable(f"the primary {label(server)} did not answer the zone transfer of "
                                       f"{absolute(zone)}")
        except (ConnectionError, OSError) as exc:
            raise DnsServerUnreachable(f"the primary {label(server)} cannot be reached: {exc.strerror or exc}")
        except dns.exception.DNSException as exc:
            raise DnsQueryFailed(f"the zone transfer of {absolute(zone)} from {label(server)} failed: {exc}")
        return target.to_text(sorted=True, relativize=False, want_origin=True)


def tsig_problem(exc: dns.tsig.PeerError, key_name: str | None) -> str:
    """What a TSIG error from the server means for the person fixing the project file."""
    key = f"key {key_name!r}" if key_name else "the key"
    if isinstance(exc, dns.tsig.PeerBadKey):
        return f"BADKEY: the server does not know {key} (or not with this algorithm)"
    if isinstance(exc, dns.tsig.PeerBadSignature):
        return f"BADSIG: the secret of {key} is not the one the server has"
    if isinstance(exc, dns.tsig.PeerBadTime):
        return "BADTIME: this machine's clock and the server's differ by more than the allowed fudge"
    return f"{type(exc).__name__}: {exc}"


def _answer_rrset(response: dns.message.Message, name: str, rdtype: str) -> RRset | None:
    qname = dns.name.from_text(absolute(name))
    wanted = dns.rdatatype.from_text(rdtype)
    for rrset in response.answer:
        if rrset.name == qname and rrset.rdtype == wanted and rrset.rdclass == dns.rdataclass.IN:
            return RRset.from_dns(rrset)
    return None


def _first_error(exc: dns.resolver.NoNameservers) -> str:
    errors = exc.kwargs.get("errors") or []
    for _server, _tcp, _port, error, *_ in errors:
        return str(error)
    return "no server could answer"


def resolve_addresses(client: DnsClient, host: str) -> list[str]:
    """A host's IPv4 and IPv6 addresses through the resolvers (empty when it has none)."""
    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        answer = client.resolve(host, rdtype)
        if answer is not None and answer.rrset is not None:
            found += [rd.to_text() for rd in answer.rrset]
    return found


def is_ip(text: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
            return True
        except OSError:
            pass
    return False
