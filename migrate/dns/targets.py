"""What a ministry domain publishes once its mail has moved: the RRsets its cut-over writes, from the project
file's ``dns.targets`` with the domain's overrides (``DnsSection.records_for``).

Each :class:`Target` is one RRset, replaced whole, except the apex TXT: there only the ``v=spf1`` string is
replaced and every other TXT at the apex (site verifications, other policies) is kept as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrate.core.config import DnsRecords
from migrate.dns.records import RRset, absolute, txt_rdata, txt_value


def is_spf(value: str) -> bool:
    """A TXT value that is an SPF record: "v=spf1" alone or followed by a space (RFC 7208 §4.5)."""
    head = value[:7].lower()
    return head == "v=spf1" or head == "v=spf1 "


@dataclass(frozen=True)
class Target:
    """One RRset a domain publishes after its cut-over."""

    #: What it is for people: "MX", "SPF", "DMARC", "DKIM", "autodiscover", ...
    what: str
    name: str
    rdtype: str
    #: Presentation texts (TXT already quoted).
    rdatas: tuple[str, ...]
    #: Apex TXT: replace only the SPF string, keep the other TXT values.
    spf_only: bool = False
    #: Types that cannot stay beside this one at its name (a CNAME stands alone: RFC 1034 §3.6.2).
    conflicts: tuple[str, ...] = ()

    def desired(self, current: RRset | None, ttl: int) -> RRset:
        """The RRset to publish, given what the name holds now (only the apex TXT depends on it)."""
        rdatas = list(self.rdatas)
        if self.spf_only and current is not None:
            rdatas += [text for text in current.rdatas if not is_spf(txt_value(text))]
        return RRset.make(self.name, self.rdtype, ttl, rdatas)


def spf_value(records: DnsRecords) -> str | None:
    if records.spf:
        return records.spf
    if records.spf_include:
        return f"v=spf1 include:{records.spf_include.rstrip('.')} -all"
    return None


def targets(domain: str, records: DnsRecords) -> list[Target]:
    """Every RRset ``domain`` publishes after its cut-over, in the order people read them."""
    apex = absolute(domain)

    def at(label: str) -> str:
        return absolute(f"{label}.{apex}")

    found: list[Target] = []
    if records.mx:
        found.append(Target("MX", apex, "MX", tuple(records.mx)))
    spf = spf_value(records)
    if spf:
        found.append(Target("SPF", apex, "TXT", (txt_rdata(spf),), spf_only=True))
    if records.dmarc:
        found.append(Target("DMARC", at("_dmarc"), "TXT", (txt_rdata(records.dmarc),)))
    if records.dkim_selector and records.dkim_key:
        found.append(Target("DKIM", at(f"{records.dkim_selector}._domainkey"), "TXT", (txt_rdata(records.dkim_key),)))
    if records.autodiscover:
        host = absolute(records.autodiscover)
        found.append(Target("autodiscover", at("autodiscover"), "CNAME", (host,), conflicts=("A", "AAAA", "TXT")))
        found.append(Target("autodiscover SRV", at("_autodiscover._tcp"), "SRV", (f"0 0 443 {host}",)))
    if records.imap_host:
        found.append(Target("IMAPS SRV", at("_imaps._tcp"), "SRV", (f"0 1 993 {absolute(records.imap_host)}",)))
    if records.submission_host:
        host = absolute(records.submission_host)
        found.append(Target("submission SRV", at("_submission._tcp"), "SRV", (f"0 1 587 {host}",)))
        found.append(Target("submissions SRV", at("_submissions._tcp"), "SRV", (f"0 1 465 {host}",)))
    if records.mta_sts:
        found.append(Target("MTA-STS", at("_mta-sts"), "TXT", (txt_rdata(records.mta_sts),)))
    if records.tls_rpt:
        found.append(Target("TLS-RPT", at("_smtp._tls"), "TXT", (txt_rdata(records.tls_rpt),)))
    return found


def central_mx_hosts(records: DnsRecords) -> set[str]:
    """The central host's MX host names (absolute), to tell whether a domain's MX points there yet."""
    return {absolute(item.split()[1]) for item in records.mx or ()}
