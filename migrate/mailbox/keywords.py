"""Flags and keywords as the central host may receive them: IMAP atoms, never anything else.

A flag is sent to the central host only as one of the five system flags or as a keyword that is a valid
IMAP atom (RFC 3501 §9). Everything a source hands us is checked here first: an Exchange category such as
``Red category``, ``Client (VIP)`` or ``Priorité``, or an odd keyword from an IMAP server, is carried as a
keyword in a reversible, deterministic encoding instead of being dropped or, worse, sent raw:

    X-Cat.<the name, UTF-8, with every byte that is not an atom character, and '=', written =XX>

``Red category`` → ``X-Cat.Red=20category``; ``Client (VIP)`` → ``X-Cat.Client=20=28VIP=29``;
``Priorité`` → ``X-Cat.Priorit=C3=A9``. A name that is already an atom is sent as is, unless it starts
with the prefix itself (then it is encoded too, so that decoding is never ambiguous). :func:`decode` gives
the original back.

The central host limits a keyword's length (Dovecot: ``mail_max_keyword_length``, 50 by default;
``central.max_keyword_length`` in the project file). A keyword that would be longer keeps as much of its
encoded name as fits and ends in ``~`` and 8 hex digits of the name's SHA-256; the engine records each such
keyword with its original name in the state store, so that it, too, can be reversed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

PREFIX = "X-Cat."
SYSTEM_FLAGS = {f.lower(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")}
#: Session flags the server sets itself: never sent, never compared.
SESSION_FLAGS = frozenset({"\\Recent"})

# ATOM-CHAR: any CHAR (0x01-0x7F) except atom-specials: ( ) { SP CTL % * " \ ]
_ATOM = re.compile(r'^[^\x00-\x20\x7f(){%*"\\\]\x80-\U0010ffff]+$')
_SAFE = frozenset(chr(c) for c in range(0x21, 0x7F)) - set('(){%*"\\]=')
_ESCAPE = re.compile(r"=([0-9A-F]{2})")
#: Dovecot's default mail_max_keyword_length: the length a central host accepts unless told otherwise.
DEFAULT_MAX_LENGTH = 50
#: No keyword longer than this is ever put into a command, whatever the project file says.
MAX_KEYWORD = 1000


class UnsafeFlag(ValueError):
    """A flag that may not be sent to a server as it is (the code that builds a command refuses it)."""


def is_atom(text: str) -> bool:
    return bool(text) and _ATOM.match(text) is not None


def sendable(flag: str) -> bool:
    """A flag that can go into an APPEND or STORE flag list exactly as it is."""
    if flag.startswith("\\"):
        return flag.lower() in SYSTEM_FLAGS
    return is_atom(flag) and len(flag) <= MAX_KEYWORD


def encode(name: str, max_length: int = MAX_KEYWORD) -> str:
    """A category or keyword name as a keyword that is an atom (see the module docstring)."""
    if is_atom(name) and not name.lower().startswith(PREFIX.lower()) and len(name) <= max_length:
        return name
    out = []
    for ch in name:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"={b:02X}" for b in ch.encode("utf-8"))
    keyword = PREFIX + "".join(out)
    if len(keyword) <= max_length:
        return keyword
    digest = "~" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    keep = keyword[:max(len(PREFIX), max_length - len(digest))]
    if "=" in keep[-2:]:                      # never cut an =XX escape in half
        keep = keep[:keep.rindex("=")]
    return keep + digest


def shortened(keyword: str) -> bool:
    """A keyword cut to the central host's length limit (its original name is in the state store)."""
    return keyword.startswith(PREFIX) and re.search(r"~[0-9a-f]{8}$", keyword) is not None


def decode(keyword: str) -> str:
    """The original name of an encoded keyword (other keywords are returned unchanged)."""
    if not keyword.startswith(PREFIX):
        return keyword
    return _unescape(keyword[len(PREFIX):])


def _unescape(text: str) -> str:
    data = bytearray()
    i = 0
    while i < len(text):
        m = _ESCAPE.match(text, i)
        if m:
            data.append(int(m.group(1), 16))
            i = m.end()
        else:
            data.extend(text[i].encode("utf-8"))
            i += 1
    return data.decode("utf-8", "replace")


def for_central(flags: Iterable[str], max_length: int = DEFAULT_MAX_LENGTH,
                long_names: dict[str, str] | None = None) -> tuple[tuple[str, ...], bool]:
    """Source flags as the central host gets them: system flags in their canonical spelling, keywords
    that are atoms as they are, everything else encoded; session flags dropped. Returns the sorted flags
    and whether any of them had to be encoded. Keywords cut to ``max_length`` are added to ``long_names``
    (keyword → original name) for the caller to record."""
    out: set[str] = set()
    encoded = False
    for flag in flags:
        if not flag or flag in SESSION_FLAGS:
            continue
        if flag.startswith("\\") and flag.lower() in SYSTEM_FLAGS:
            out.add(SYSTEM_FLAGS[flag.lower()])
            continue
        keyword = encode(flag, max_length)
        if keyword != flag:
            encoded = True
            if long_names is not None and shortened(keyword):
                long_names[keyword] = flag
        out.add(keyword)
    return tuple(sorted(out)), encoded


def flag_list(flags: Iterable[str]) -> bytes:
    """``(\\Seen X-Cat.Red=20category)`` for a command; refuses (before anything is sent) any flag that is
    not sendable, so a source can never put a space, a bracket or a line break into a command."""
    chosen = [f for f in flags if f not in SESSION_FLAGS]
    bad = [f for f in chosen if not sendable(f)]
    if bad:
        raise UnsafeFlag(f"refusing to send flag(s) that are not IMAP atoms: {', '.join(map(repr, bad))}")
    return b"(" + " ".join(chosen).encode("ascii") + b")"
