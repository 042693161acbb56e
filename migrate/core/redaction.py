"""The one redaction point: every secret value resolved in this process, and NTLM authenticate messages, are
masked in whatever text passes :func:`redact` (log records, error messages, everything the CLI prints).

It imports nothing of govmigrate's, so that errors, logging and secrets can all use it.
"""

from __future__ import annotations

import re
import threading

MASK = "***"

_known: set[str] = set()
_known_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None


def register(value: str) -> None:
    """Remember a secret value so :func:`redact` hides it everywhere."""
    global _pattern
    if not value or len(value) < 3:
        # Too short to redact without mangling ordinary text. No password this short gets here:
        # resolve() refuses any value shorter than MIN_LENGTH before it becomes a Secret.
        return
    with _known_lock:
        if value in _known:
            return
        _known.add(value)
        _pattern = re.compile("|".join(re.escape(v) for v in sorted(_known, key=len, reverse=True)))


#: An NTLM authenticate message in base64 ("NTLMSSP\0" and type 3), as HTTP headers and pyspnego's debug log
#: carry it: its answer to the server's challenge is a hash of the password, crackable offline.
_NTLM_AUTHENTICATE = re.compile(r"TlRMTVNTUAAD[A-Za-z0-9+/]*=*")


def redact(text: str) -> str:
    """Replace every registered secret value in ``text``, and any NTLM authenticate message, with the mask."""
    pattern = _pattern
    if not text:
        return text
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return _NTLM_AUTHENTICATE.sub(MASK, text)


class RedactingWriter:
    """A text stream whose every write passes :func:`redact`: the CLI's stdout and stderr, so that what a
    command prints is masked at one point, like what it logs."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)
