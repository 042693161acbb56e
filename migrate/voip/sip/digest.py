"""HTTP digest authentication for SIP: RFC 2617 with RFC 7616's SHA-256, as RFC 8760 brings it to SIP.

Challenges are parsed and credentials built here by hand, not with sipmessage: its challenge parser splits
on every comma, so a quoted ``qop="auth,auth-int"`` (common) fails, and its credentials always quote ``qop``,
which RFC 2617 §3.2.2 defines as a token in an Authorization header (``qop=auth, nc=00000001``).

Only ``qop=auth`` (or no qop, RFC 2069) is answered; MD5, SHA-256 and their ``-sess`` variants. No password or
HA1 leaves this module other than inside the response hash.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from migrate.core.secrets import Secret
from migrate.voip.sip.message import quote_line

#: Algorithm (upper case) → hash; the order is the preference when a server offers several challenges.
HASHES: dict[str, Callable[[bytes], Any]] = {
    "SHA-256": hashlib.sha256,
    "SHA-256-SESS": hashlib.sha256,
    "MD5": hashlib.md5,
    "MD5-SESS": hashlib.md5,
}

_PARAM = re.compile(r'\s*([A-Za-z0-9_.!%*+`\'~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]+)\s*(?:,|$)')
_AUTH_LINE = re.compile(r"(?im)^((?:proxy-)?authorization[ \t]*:.*)$")
_MASKED_PARAM = re.compile(r'(?i)\b(response|cnonce)([ \t]*=[ \t]*)("(?:[^"\\]|\\.)*"|[^\s,]+)')


class DigestRefused(ValueError):
    """No challenge of a 401/407 can be answered; the message says why in plain words."""


@dataclass(frozen=True)
class Challenge:
    """One Digest challenge of a WWW-Authenticate (or Proxy-Authenticate, ``proxy``) header."""

    realm: str
    nonce: str
    #: As the server wrote it (echoed); None when absent, which means MD5.
    algorithm: str | None = None
    #: The qop options offered; None when the challenge has none (RFC 2069 compatibility).
    qop: tuple[str, ...] | None = None
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False

    @property
    def hash_name(self) -> str:
        return (self.algorithm or "MD5").upper()

    @property
    def answer_header(self) -> str:
        return "Proxy-Authorization" if self.proxy else "Authorization"


def parse_challenge(value: str, *, proxy: bool = False) -> Challenge:
    """One challenge header value; :class:`DigestRefused` when it is not a Digest challenge we can answer."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestRefused(f"scheme {quote_line(scheme)} is not Digest")
    params = _params(rest)
    if "realm" not in params or "nonce" not in params:
        raise DigestRefused("a Digest challenge without realm or nonce")
    qop = tuple(q.strip().lower() for q in params["qop"].split(",")) if "qop" in params else None
    challenge = Challenge(params["realm"], params["nonce"], params.get("algorithm"), qop,
                          params.get("opaque"), params.get("stale", "").lower() == "true", proxy)
    if challenge.hash_name not in HASHES:
        raise DigestRefused(f"algorithm {quote_line(challenge.algorithm or '')} is not supported")
    if qop is not None and "auth" not in qop:
        raise DigestRefused(f"qop {quote_line(','.join(qop))} does not offer auth")
    return challenge


def choose_challenge(values: Sequence[str], *, proxy: bool = False) -> Challenge:
    """The challenge to answer among a response's headers: SHA-256 before MD5 (RFC 8760 §2.4), unusable
    ones skipped; :class:`DigestRefused` naming every reason when none is usable."""
    usable, reasons = [], []
    for value in values:
        try:
            usable.append(parse_challenge(value, proxy=proxy))
        except DigestRefused as exc:
            reasons.append(str(exc))
    if not usable:
        raise DigestRefused("; ".join(reasons) or "the response carries no challenge")
    order = list(HASHES)
    return min(usable, key=lambda c: order.index(c.hash_name))


def digest_response(challenge: Challenge, *, username: str, password: Secret, method: str, uri: str,
                    nc: str, cnonce: str) -> str:
    """The ``response`` value (RFC 2617 §3.2.2.1, RFC 7616 §3.4.1) for qop=auth, or without qop."""
    hash_ = HASHES[challenge.hash_name]

    def h(text: str) -> str:
        return hash_(text.encode("utf-8")).hexdigest()

    ha1 = h(f"{username}:{challenge.realm}:{password.reveal()}")
    if challenge.hash_name.endswith("-SESS"):
        ha1 = h(f"{ha1}:{challenge.nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    if challenge.qop is None:
        return h(f"{ha1}:{challenge.nonce}:{ha2}")
    return h(f"{ha1}:{challenge.nonce}:{nc}:{cnonce}:auth:{ha2}")


class DigestSession:
    """Answers challenges for one user; counts the uses of each nonce (``nc``, RFC 2617 §3.2.2)."""

    def __init__(self, username: str, password: Secret) -> None:
        self.username = username
        self._password = password
        self._counts: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"DigestSession({self.username!r})"

    def authorization(self, challenge: Challenge, method: str, uri: str) -> str:
        """The Authorization (or Proxy-Authorization) header value answering ``challenge``."""
        count = self._counts.get(challenge.nonce, 0) + 1
        self._counts[challenge.nonce] = count
        nc, cnonce = f"{count:08x}", secrets.token_hex(8)
        response = digest_response(challenge, username=self.username, password=self._password, method=method,
                                   uri=uri, nc=nc, cnonce=cnonce)
        parts = [f"username={_quote(self.username)}", f"realm={_quote(challenge.realm)}",
                 f"nonce={_quote(challenge.nonce)}", f"uri={_quote(uri)}", f'response="{response}"']
        if challenge.algorithm is not None:
            parts.append(f"algorithm={challenge.algorithm}")
        if challenge.opaque is not None:
            parts.append(f"opaque={_quote(challenge.opaque)}")
        if challenge.qop is not None:
            parts += [f'cnonce="{cnonce}"', "qop=auth", f"nc={nc}"]
        return "Digest " + ", ".join(parts)


def mask_authorization(text: str) -> str:
    """``text`` with the ``response`` and ``cnonce`` values of every Authorization/Proxy-Authorization line
    replaced by ``"***"``."""
    return _AUTH_LINE.sub(lambda m: _MASKED_PARAM.sub(r'\1\2"***"', m.group(1)), text)


def _params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    pos = 0
    while pos < len(text.rstrip()):
        m = _PARAM.match(text, pos)
        if m is None:
            raise DigestRefused(f"cannot parse the challenge at {quote_line(text[pos:])}")
        value = m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[m.group(1).lower()] = value
        pos = m.end()
    return params


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
