"""A zone's delegation as its parent publishes it: the zone a name lives in, the parent zone's servers, and what
each of them says about the zone (its NS set and glue).

Two ways in. Through the resolvers, as the world sees it (the default). Or, for labs and split-horizon networks
whose resolvers do not see the ministry zones, by following referrals from the servers the project file names
in ``dns.parent_servers`` (the parent zone's servers, or root hints): :class:`Walker` asks without recursion,
takes the glue a referral carries (or looks the server's name up the same way), and stops where a server
answers with authority. Nothing here needs a recursive resolver when ``parent_servers`` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from migrate.core.config import NameServer
from migrate.core.errors import MigrateError
from migrate.dns.failures import DnsQueryFailed
from migrate.dns.records import absolute

#: Referrals followed before a lookup gives up (a loop, or a tree deeper than any real one).
MAX_REFERRALS = 16


@dataclass(frozen=True)
class Server:
    """One address of a DNS server, with the name it was found under (None: configured by address)."""

    address: str
    host: str | None = None
    port: int = 53

    @property
    def who(self) -> str:
        where = self.address if self.port == 53 else f"{self.address}:{self.port}"
        return f"{self.host} ({where})" if self.host else where


@dataclass
class ParentView:
    """What one server of the parent zone says about the zone: the NS names of its referral, and the glue
    (addresses of those names) it hands out with them."""

    server: Server
    ns: list[str] = field(default_factory=list)
    glue: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Delegation:
    """The zone, its parent, each parent server's view of the zone, and what could not be asked."""

    zone: str
    parent: str
    views: list[ParentView]
    problems: list[str] = field(default_factory=list)

    def listed(self) -> list[str]:
        """Every NS name any parent server lists, sorted."""
        return sorted({name for v in self.views for name in v.ns})

    def glue(self) -> dict[str, set[str]]:
        """NS name → every address the parent's servers give as its glue."""
        out: dict[str, set[str]] = {}
        for view in self.views:
            for name, addresses in view.glue.items():
                out.setdefault(name, set()).update(addresses)
        return out


def parent_name(zone: str) -> str:
    return absolute(dns.name.from_text(absolute(zone)).parent())


def referral(response: dns.message.Message, zone: str) -> tuple[list[str], dict[str, list[str]]]:
    """The NS names a response gives for ``zone`` (a referral's authority section, or an authoritative NS
    answer) and their addresses from the additional section (glue)."""
    qname = dns.name.from_text(absolute(zone))
    names: list[str] = []
    for section in (response.answer, response.authority):
        for rrset in section:
            if rrset.name == qname and rrset.rdtype == dns.rdatatype.NS:
                names = sorted(absolute(rd.target) for rd in rrset)
                break
        if names:
            break
    return names, _glue(response, names)


def _glue(response: dns.message.Message, names: list[str]) -> dict[str, list[str]]:
    glue: dict[str, list[str]] = {}
    for rrset in response.additional:
        owner = absolute(rrset.name)
        if owner in names and rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            glue.setdefault(owner, []).extend(rd.to_text() for rd in rrset)
    return {k: sorted(v) for k, v in glue.items()}


def _deepest_referral(response: dns.message.Message, qname: str) -> tuple[str, list[str]] | None:
    """The zone cut a referral names for ``qname`` (owner of the NS set in the authority section)."""
    name = dns.name.from_text(absolute(qname))
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.NS and name.is_subdomain(rrset.name):
            return absolute(rrset.name), sorted(absolute(rd.target) for rd in rrset)
    return None


def _zone_of(response: dns.message.Message, qname: str) -> str:
    """The zone an authoritative answer for ``qname`` comes from: the SOA's owner (an SOA answer at the apex,
    or the SOA of a negative answer); else the name itself."""
    for section in (response.answer, response.authority):
        for rrset in section:
            if rrset.rdtype == dns.rdatatype.SOA:
                return absolute(rrset.name)
    return absolute(qname)


class Walker:
    """Lookups without a recursive resolver: referrals followed from ``start`` (the parent zone's servers or
    root hints). ``client`` is the :class:`migrate.dns.client.DnsClient` whose ``query_at`` asks one server."""

    def __init__(self, client: Any, start: list[NameServer]) -> None:
        self.client = client
        self.start = [Server(ns.address, None, ns.port) for ns in start]

    @property
    def label(self) -> str:
        return "dns.parent_servers (" + ", ".join(s.who for s in self.start) + ")"

    def _ask(self, servers: list[Server], qname: str, rdtype: str) -> tuple[Server, dns.message.Message]:
        errors: list[str] = []
        for server in servers:
            try:
                return server, self.client.query_at(server.address, server.port, qname, rdtype, who=server.who,
                                                    authoritative=False)
            except MigrateError as exc:
                errors.append(exc.message)
        raise DnsQueryFailed(f"no server answered {absolute(qname)} {rdtype}: " + "; ".join(errors))

    def lookup(self, qname: str, rdtype: str, *, depth: int = 0) -> tuple[dns.message.Message, list[Server], str]:
        """Follow referrals until a server answers ``qname``/``rdtype`` with authority. Returns that answer,
        the servers it came from, and the zone they serve it from."""
        if depth > 4:
            raise DnsQueryFailed(f"{absolute(qname)}: the names of the servers to ask lead to each other")
        servers = list(self.start)
        cut: str | None = None
        for _ in range(MAX_REFERRALS):
            server, response = self._ask(servers, qname, rdtype)
            if response.flags & dns.flags.AA:
                return response, servers, _zone_of(response, qname)
            found = _deepest_referral(response, qname)
            closer = found is not None and (cut is None or (found[0] != cut and dns.name.from_text(found[0])
                                                            .is_subdomain(dns.name.from_text(cut))))
            if found is None or not closer:
                raise DnsQueryFailed(f"{server.who} neither answered {absolute(qname)} {rdtype} with authority nor "
                                     "referred it to servers closer to it (is it a recursive resolver, or does it "
                                     "serve neither the name's zone nor a parent of it?)")
            cut, names = found
            glue = _glue(response, names)
            servers = [Server(address, name) for name in names for address in glue.get(name, [])]
            if not servers:
                servers = [Server(address, name) for name in names for address in self.addresses(name, depth + 1)]
            if not servers:
                raise DnsQueryFailed(f"the servers of {cut} ({', '.join(names)}) have no address")
        raise DnsQueryFailed(f"{absolute(qname)}: more than {MAX_REFERRALS} referrals")

    def addresses(self, host: str, depth: int = 0) -> list[str]:
        """``host``'s IPv4 addresses, looked up by referrals."""
        try:
            response, _servers, _zone = self.lookup(host, "A", depth=depth)
        except MigrateError:
            return []
        if response.rcode() != dns.rcode.NOERROR:
            return []
        name = dns.name.from_text(absolute(host))
        for rrset in response.answer:
            if rrset.name == name and rrset.rdtype == dns.rdatatype.A:
                return sorted(rd.to_text() for rd in rrset)
        return []

    def zone_for(self, name: str) -> str:
        """The zone ``name`` lives in, as the servers that serve it say."""
        return self.lookup(name, "SOA")[2]

    def parent_servers(self, zone: str) -> tuple[str, list[Server], list[str]]:
        """The parent zone of ``zone``, every address of every server its NS set names, and what could not be
        found."""
        _answer, servers, parent = self.lookup(parent_name(zone), "SOA")
        problems: list[str] = []
        try:
            _server, ns_answer = self._ask(servers, parent, "NS")
            names, glue = referral(ns_answer, parent)
        except MigrateError as exc:
            return parent, servers, [exc.message]
        found: list[Server] = []
        for name in names:
            addresses = glue.get(name) or self.addresses(name)
            if not addresses:
                problems.append(f"parent server {name} has no address")
            found += [Server(address, name) for address in addresses]
        return parent, found or servers, problems


def resolver_parent_servers(client: Any, zone: str,
                            resolve_addresses: Callable[[Any, str], list[str]]) -> tuple[str, list[Server], list[str]]:
    """The parent zone of ``zone`` and its servers' addresses, through the resolvers (as the world sees them)."""
    parent = client.zone_for(parent_name(zone))
    answer = client.resolve(parent, "NS")
    names = sorted(absolute(rd.target) for rd in answer.rrset) if answer is not None and answer.rrset else []
    if not names:
        raise DnsQueryFailed(f"the parent zone {parent} lists no nameservers")
    servers: list[Server] = []
    problems: list[str] = []
    for name in names:
        try:
            addresses = resolve_addresses(client, name)
        except MigrateError as exc:
            problems.append(f"parent server {name}: {exc.message}")
            continue
        if not addresses:
            problems.append(f"parent server {name} has no address")
        servers += [Server(address, name) for address in addresses]
    return parent, servers, problems


def delegation(client: Any, zone: str, parent: str, servers: list[Server], problems: list[str]) -> Delegation:
    """Ask every server of the parent zone what it says about ``zone`` (without recursion)."""
    views: list[ParentView] = []
    problems = list(problems)
    for server in servers:
        try:
            response = client.query_at(server.address, server.port, zone, "NS", who=server.who,
                                       authoritative=False)
        except MigrateError as exc:
            problems.append(exc.message)
            continue
        names, glue = referral(response, zone)
        views.append(ParentView(server, names, glue))
    return Delegation(absolute(zone), parent, views, problems)
