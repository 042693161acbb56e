"""Content fingerprints that both sides can compute cheaply and identically.

A fingerprint is a hash of the message size and its first 8 KiB: the whole of most messages and all of
the headers of nearly every one. It is what reconciliation matches on when the state store cannot say
which destination message came from which source message (after a crash between an APPEND and its
record, a lost state store, or a changed UIDVALIDITY), and it needs only ``BODY.PEEK[]<0.8192>`` and
``RFC822.SIZE`` from a server. Matching is by multiset, so identical messages are counted, not merged.

Exchange keeps MAPI properties, not MIME, and builds a message's MIME again on every read: the headers in
:data:`REGENERATED` come from properties a user changes in Outlook (categories, importance, sensitivity), so
the bytes of an Exchange item change while the message does not. For EWS sources the engine therefore uses
:func:`stable`, the same fingerprint over the message with those header fields left out, on both sides: the
central copy (carrying the headers as they were when it was copied) and the source item (as Exchange builds
it today) then still match. The size hashed is the size without those fields, and the prefix hashed is
:data:`STABLE_PREFIX` bytes of what is left, so a copy whose rebuilt fields were up to :data:`HEADROOM` bytes
longer or shorter still covers the same bytes. Where the header block does not end within the first 8 KiB,
or the rebuilt fields are longer than that, :func:`stable` falls back to the plain fingerprint.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

PREFIX = 8192
#: Header fields Exchange builds from MAPI properties on every read (lower case).
REGENERATED = frozenset({b"keywords", b"importance", b"x-priority", b"priority", b"x-msmail-priority",
                         b"sensitivity"})
#: How much longer the rebuilt fields of one side may be than the other's and still match.
HEADROOM = 2048
STABLE_PREFIX = PREFIX - HEADROOM
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD_START = re.compile(rb"(?m)^(?=[^ \t\r\n])")

#: (size, first bytes) → fingerprint.
Fingerprinter = Callable[[int, bytes], str]


def fingerprint(size: int, prefix: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(size.to_bytes(8, "big"))
    h.update(prefix[:PREFIX])
    return h.hexdigest()


def of_message(raw: bytes) -> str:
    return fingerprint(len(raw), raw[:PREFIX])


def without_regenerated(data: bytes) -> tuple[bytes, int] | None:
    """``data`` (a message or its first bytes) without the :data:`REGENERATED` header fields, and how many
    bytes were left out; None when the header block does not end within ``data``."""
    end = _HEADER_END.search(data)
    if end is None:
        return None
    head = data[:end.start() + (2 if data[end.start():end.start() + 2] == b"\r\n" else 1)]
    kept: list[bytes] = []
    removed = 0
    for field in _FIELD_START.split(head):
        if field.split(b":", 1)[0].strip().lower() in REGENERATED:
            removed += len(field)
        else:
            kept.append(field)
    return b"".join(kept) + data[len(head):], removed


def stable(size: int, prefix: bytes) -> str:
    """The fingerprint that survives Exchange building a message's MIME again (see the module text)."""
    prefix = prefix[:PREFIX]
    cut = without_regenerated(prefix)
    if cut is None:
        return fingerprint(size, prefix)
    normal, removed = cut
    if removed > HEADROOM and size > len(prefix):
        return fingerprint(size, prefix)
    h = hashlib.blake2b(digest_size=16, person=b"stable")
    h.update((size - removed).to_bytes(8, "big"))
    h.update(normal[:STABLE_PREFIX])
    return h.hexdigest()


def stable_content(raw: bytes) -> bytes:
    """The whole message without the fields Exchange rebuilds: what ``verify --deep`` compares for EWS."""
    cut = without_regenerated(raw)
    return raw if cut is None else cut[0]
