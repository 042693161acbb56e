"""Reading mail-authentication records: SPF and DMARC through checkdmarc (syntax, RFC 7208 §4.6.4 lookup and
void-lookup limits with nested includes counted, DMARC tags), DKIM key records (RFC 6376 §3.6.1) here.

The record itself is read by the caller from the zone's authoritative server (what the zone publishes
now); checkdmarc is given the configured resolvers for the names the record leads to (includes, ``a``,
``mx``, report destinations). checkdmarc keeps a process-wide answer cache that is keyed by name and type
only (not by server) and kept 30 minutes; it is emptied before each evaluation, so an answer never comes
from an earlier look, another lab or before a change.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.nameserver

from migrate.core.config import NameServer
from migrate.dns.records import absolute

#: checkdmarc's checks run one at a time: its answer cache and failure bookkeeping are process-wide.
_CHECKDMARC = threading.Lock()


def _nameservers(resolvers: Sequence[NameServer]) -> list[dns.nameserver.Nameserver] | None:
    if not resolvers:
        return None  # checkdmarc then uses the system's resolvers
    return [dns.nameserver.Do53Nameserver(ns.address, ns.port) for ns in resolvers]


def _fresh_cache() -> None:
    from checkdmarc import utils

    utils.DNS_CACHE.clear()


@dataclass
class SpfVerdict:
    record: str
    #: DNS-querying terms (RFC 7208 §4.6.4), nested includes counted; when over the limit, the count at
    #: which checkdmarc stopped (11).
    lookups: int | None = None
    void_lookups: int | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    #: Whether the record reaches ``include:<spf_include>`` with a pass qualifier (None: nothing to look for).
    authorises: bool | None = None


def evaluate_spf(record: str, domain: str, resolvers: Sequence[NameServer], *, include: str | None,
                 timeout: float) -> SpfVerdict:
    """Parse and evaluate one SPF record of ``domain`` as receivers would, following its includes."""
    from checkdmarc.spf import SPFError, parse_spf_record
    from checkdmarc.utils import DNSException

    verdict = SpfVerdict(record)
    with _CHECKDMARC:
        _fresh_cache()
        try:
            parsed = parse_spf_record(record, domain.rstrip("."), nameservers=_nameservers(resolvers),
                                      timeout=timeout)
        except SPFError as exc:
            verdict.error = str(exc.args[0]) if exc.args else type(exc).__name__
            data = getattr(exc, "data", None) or {}
            verdict.lookups = data.get("dns_lookups")
            verdict.void_lookups = data.get("void_dns_lookups")
            verdict.warnings = list(getattr(exc, "warnings", None) or [])
            return verdict
        except (DNSException, dns.exception.DNSException) as exc:
            verdict.error = f"DNS error while following the record: {exc}"
            return verdict
    verdict.lookups = parsed.get("dns_lookups")
    verdict.void_lookups = parsed.get("void_dns_lookups")
    verdict.warnings = [str(w) for w in parsed.get("warnings") or []]
    if parsed.get("error"):
        verdict.error = str(parsed["error"])
    if include:
        verdict.authorises = _reaches(parsed.get("parsed") or {}, absolute(include))
    return verdict


def _reaches(parsed: dict[str, Any], include: str) -> bool:
    """Whether an SPF tree passes mail through ``include`` (an include or a redirect, at any depth)."""
    for mechanism in parsed.get("mechanisms") or []:
        if mechanism.get("mechanism") == "include" and mechanism.get("action") == "pass" and (
                _same(mechanism.get("value"), include) or _reaches(mechanism.get("parsed") or {}, include)):
            return True
    redirect = parsed.get("redirect")
    if isinstance(redirect, dict):
        return _same(redirect.get("domain"), include) or _reaches(redirect.get("parsed") or {}, include)
    return False


def _same(name: Any, other: str) -> bool:
    try:
        return isinstance(name, str) and absolute(name) == other
    except Exception:  # a macro or a name dnspython cannot read is simply not the include we look for
        return False


@dataclass
class DmarcVerdict:
    record: str
    policy: str | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


def evaluate_dmarc(record: str, domain: str, resolvers: Sequence[NameServer], *, timeout: float) -> DmarcVerdict:
    """Parse one DMARC record of ``domain``; report destinations outside the domain are checked for their
    authorisation record (RFC 7489 §7.1) through the resolvers."""
    from checkdmarc.dmarc import DMARCError, parse_dmarc_record
    from checkdmarc.utils import DNSException

    verdict = DmarcVerdict(record)
    with _CHECKDMARC:
        _fresh_cache()
        try:
            parsed = parse_dmarc_record(record, domain.rstrip("."), nameservers=_nameservers(resolvers),
                                        timeout=timeout)
        except DMARCError as exc:
            verdict.error = str(exc.args[0]) if exc.args else type(exc).__name__
            return verdict
        except (DNSException, dns.exception.DNSException) as exc:
            verdict.error = f"DNS error while checking the record: {exc}"
            return verdict
    tags = parsed.get("tags") or {}
    verdict.tags = {k: str(v.get("value")) for k, v in tags.items() if isinstance(v, dict)}
    verdict.policy = verdict.tags.get("p")
    verdict.warnings = [str(w) for w in parsed.get("warnings") or []]
    return verdict


@dataclass(frozen=True)
class DkimKey:
    key_type: str    # "rsa" or "ed25519"
    bits: int        # key size (256 for ed25519)
    tags: dict[str, str]


_TAG_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def parse_dkim(value: str) -> DkimKey:
    """A DKIM key record (RFC 6376 §3.6.1, RFC 8463); ``ValueError`` saying what is wrong."""
    tags: dict[str, str] = {}
    parts = [p.strip() for p in value.split(";")]
    if parts and parts[-1] == "":
        parts.pop()
    for i, part in enumerate(parts):
        if "=" not in part:
            raise ValueError(f"{part!r} is not a tag=value pair")
        name, _, tag_value = part.partition("=")
        name = name.strip()
        if not _TAG_RE.match(name):
            raise ValueError(f"{name!r} is not a tag name")
        if name in tags:
            raise ValueError(f"the tag {name}= appears twice")
        if name == "v" and i != 0:
            raise ValueError("v= must be the first tag")
        tags[name] = tag_value.strip()
    if "v" in tags and tags["v"] != "DKIM1":
        raise ValueError(f"v={tags['v']} is not DKIM1")
    if "p" not in tags:
        raise ValueError("no public key (p= is missing)")
    key_data = re.sub(r"\s+", "", tags["p"])
    if not key_data:
        raise ValueError("the key is revoked (p= is empty)")
    try:
        raw = base64.b64decode(key_data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("p= is not valid base64")
    key_type = tags.get("k", "rsa").lower()
    if key_type == "rsa":
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        try:
            key = load_der_public_key(raw)
        except (ValueError, TypeError):
            raise ValueError("p= does not hold an RSA public key (DER SubjectPublicKeyInfo)")
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("p= holds a key that is not RSA, but k= says rsa")
        return DkimKey("rsa", key.key_size, tags)
    if key_type == "ed25519":
        if len(raw) != 32:
            raise ValueError(f"p= holds {len(raw)} bytes; an Ed25519 key is 32")
        return DkimKey("ed25519", 256, tags)
    raise ValueError(f"k={key_type} is not a key type receivers know (rsa, ed25519)")


_MTA_STS_RE = re.compile(r"^v=STSv1;\s*id=[A-Za-z0-9]{1,32}\s*;?\s*$")
_TLS_RPT_RE = re.compile(r"^v=TLSRPTv1;\s*rua=(mailto:[^\s,;!]+|https://[^\s,;!]+)"
                         r"(\s*,\s*(mailto:[^\s,;!]+|https://[^\s,;!]+))*\s*;?\s*$")


def mta_sts_problem(value: str) -> str | None:
    """What is wrong with an ``_mta-sts`` TXT value (RFC 8461 §3.1), or None."""
    return None if _MTA_STS_RE.match(value) else "not 'v=STSv1; id=<1 to 32 letters or digits>' (RFC 8461 §3.1)"


def tls_rpt_problem(value: str) -> str | None:
    """What is wrong with an ``_smtp._tls`` TXT value (RFC 8460 §3), or None."""
    return None if _TLS_RPT_RE.match(value) else "not 'v=TLSRPTv1; rua=mailto:...|https://...' (RFC 8460 §3)"
