"""Content fingerprints that both sides can compute cheaply and identically.

A fingerprint is a hash of the message size and its first 8 KiB: the whole of most messages and all of
the headers of nearly every one. It is what reconciliation matches on when the state store cannot say
which destination message came from which source message (after a crash between an APPEND and its
record, a lost state store, or a changed UIDVALIDITY), and it needs only ``BODY.PEEK[]<0.8192>`` and
``RFC822.SIZE`` from a server. Matching is by multiset, so identical messages are counted, not merged.
"""

from __future__ import annotations

import hashlib

PREFIX = 8192


def fingerprint(size: int, prefix: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(size.to_bytes(8, "big"))
    h.update(prefix[:PREFIX])
    return h.hexdigest()


def of_message(raw: bytes) -> str:
    return fingerprint(len(raw), raw[:PREFIX])
