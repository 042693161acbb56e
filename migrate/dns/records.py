"""DNS record sets as values: an owner name, a type, a TTL and rdata texts, canonical and comparable.

Two RRsets hold the same data when their rdata sets are equal after canonicalisation (names absolute and
lower-cased inside MX, CNAME, SRV and NS data; TXT kept byte for byte, as RFC 4034 §6.2 orders it). The
TTL is carried but is not data: ``same_data`` ignores it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.wire
from dns.rdtypes.ANY.TXT import TXT

#: The longest character-string a TXT record holds (RFC 1035 §3.3); longer values are split.
TXT_CHUNK = 255


def absolute(name: str | dns.name.Name) -> str:
    """``Health.gov.bz`` → ``health.gov.bz.``: the form every name takes in this package."""
    if isinstance(name, dns.name.Name):
        return name.to_text().lower() if name.is_absolute() else name.concatenate(dns.name.root).to_text().lower()
    return dns.name.from_text(name.strip(), origin=dns.name.root).to_text().lower()


def relative(name: str, zone: str) -> str:
    """An owner name as people read it in a zone: ``@`` for the apex, else the part before the zone."""
    name, zone = absolute(name), absolute(zone)
    if name == zone:
        return "@"
    return name[: -len(zone) - 1] if name.endswith("." + zone) else name


def canonical_rdata(rdtype: str, text: str) -> str:
    """One rdata in canonical presentation form; ``ValueError`` if it does not parse as ``rdtype``."""
    rd = _parse(rdtype, text)
    return _canonical(rd)


def _parse(rdtype: str, text: str) -> dns.rdata.Rdata:
    try:
        # Names in the data are taken as absolute and kept so: relativized to the root they would be sent
        # relative to the zone in an UPDATE ("mail.health.gov.bz.health.gov.bz.").
        return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text,
                                   origin=dns.name.root, relativize=False)
    except Exception as exc:  # dnspython raises several kinds for bad presentation text
        raise ValueError(f"not a valid {rdtype} record: {text!r} ({exc})") from None


def _canonical(rd: dns.rdata.Rdata) -> str:
    # RFC 4034 §6.2 form: names lower-cased where the type allows it; then back to text.
    wire = rd.to_digestable(dns.name.root)
    parser = dns.wire.Parser(wire)
    back = dns.rdata.from_wire_parser(rd.rdclass, rd.rdtype, parser, None)
    return back.to_text(origin=None, relativize=False)


def txt_rdata(value: str) -> str:
    """The TXT rdata (presentation form) that publishes ``value``: UTF-8, split into 255-byte strings."""
    data = value.encode("utf-8")
    chunks = [data[i:i + TXT_CHUNK] for i in range(0, len(data), TXT_CHUNK)] or [b""]
    return TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks).to_text()


def txt_value(rdata_text: str) -> str:
    """What a TXT rdata says: its strings joined (RFC 7208 §3.3, RFC 6376 §3.6.2.2), decoded as UTF-8."""
    rd = _parse("TXT", rdata_text)
    return b"".join(rd.strings).decode("utf-8", errors="replace")  # type: ignore[attr-defined]


@dataclass(frozen=True, order=True)
class RRset:
    """One RRset: every record of one type at one owner name. Build with :meth:`make` or :meth:`from_dns`."""

    name: str                 # absolute, lower case: "health.gov.bz."
    rdtype: str               # "MX", "TXT", ...
    ttl: int
    rdatas: tuple[str, ...]   # canonical presentation texts, sorted

    @classmethod
    def make(cls, name: str, rdtype: str, ttl: int, values: Iterable[str]) -> RRset:
        """From presentation texts (``"10 mx1.mail.gov.bz"``; TXT quoted as in a zone file)."""
        rdtype = rdtype.upper()
        return cls(absolute(name), rdtype, int(ttl), tuple(sorted({canonical_rdata(rdtype, v) for v in values})))

    @classmethod
    def txt(cls, name: str, ttl: int, values: Iterable[str]) -> RRset:
        """A TXT RRset from the values it says (unquoted), each split into strings as needed."""
        return cls.make(name, "TXT", ttl, [txt_rdata(v) for v in values])

    @classmethod
    def from_dns(cls, rrset: dns.rrset.RRset) -> RRset:
        return cls(absolute(rrset.name), dns.rdatatype.to_text(rrset.rdtype), int(rrset.ttl),
                   tuple(sorted({_canonical(rd) for rd in rrset})))

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.rdtype

    def same_data(self, other: RRset | None) -> bool:
        return other is not None and self.key == other.key and self.rdatas == other.rdatas

    def with_ttl(self, ttl: int) -> RRset:
        return replace(self, ttl=int(ttl))

    def rdata_objects(self) -> list[dns.rdata.Rdata]:
        return [_parse(self.rdtype, text) for text in self.rdatas]

    def to_rdataset(self, ttl: int | None = None) -> dns.rdataset.Rdataset:
        return dns.rdataset.from_rdata_list(self.ttl if ttl is None else ttl, self.rdata_objects())

    def values(self) -> list[str]:
        """The data as people read it: TXT as the text it says, other types as presentation text."""
        if self.rdtype == "TXT":
            return [txt_value(text) for text in self.rdatas]
        return list(self.rdatas)

    def zone_lines(self) -> list[str]:
        return [f"{self.name} {self.ttl} IN {self.rdtype} {text}" for text in self.rdatas]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.rdtype, "ttl": self.ttl, "rdata": list(self.rdatas)}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RRset:
        return cls.make(doc["name"], doc["type"], doc["ttl"], doc["rdata"])

    def __str__(self) -> str:
        return "; ".join(self.zone_lines())


def describe(rrset: RRset | None) -> str:
    """An RRset's data in one line for messages, or "absent"."""
    if rrset is None:
        return "absent"
    return ", ".join(rrset.values()) + f" (TTL {rrset.ttl})"
