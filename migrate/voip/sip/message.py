"""SIP messages for the hand-written client: requests built as text, responses parsed into SipResponse.

sipmessage (0.7) parses what it fits: a response's header lines (compact forms expanded), Via, CSeq and
Contact. It does not fit everywhere, so these parts are done here:

* the status line is checked here first: sipmessage takes ``int()`` of the code, which accepts ``+200``,
  ``2_00`` and non-ASCII digits, and it lets control characters through in the reason phrase and headers;
* folded header lines (RFC 3261 §7.3.1) are unfolded here, sipmessage would refuse them;
* requests are built as text: every part is checked for CR, LF and NUL, which is all a header needs.

Digest challenges and credentials are in :mod:`migrate.voip.sip.digest` (sipmessage cannot parse a quoted
``qop="auth,auth-int"`` and always quotes ``qop`` in credentials).
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import sipmessage
from sipmessage.message import COMPACT_FORMS

from migrate.core.errors import RemoteError

#: The largest response accepted (start line, headers and body).
MAX_MESSAGE = 64 * 1024
#: RFC 3261 §8.1.1.7: every branch of an RFC 3261 client starts with this.
BRANCH_MAGIC = "z9hG4bK"

_STATUS_LINE = re.compile(r"SIP/2\.0 ([1-6][0-9][0-9]) ([^\x00-\x08\x0a-\x1f\x7f]*)")
_REQUEST_LINE = re.compile(r"[A-Za-z]+ \S+ SIP/2\.0")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters other than HTAB
_UNSAFE = re.compile(r"[\r\n\x00]")
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # control characters other than HTAB and LF
_FOLD = re.compile(rb"\r\n[ \t]+")


class SipError(RemoteError):
    """Base of every failure of the SIP client (one check of one target fails; the command goes on)."""


class SipProtocolError(SipError):
    """A response that is not SIP, is too large, or cannot be matched to a request (no CSeq or Via)."""


def quote_line(line: str) -> str:
    """The first 80 characters of a line a server sent, as ``repr()``: no control character gets through."""
    return repr(line[:80])


def printable(text: str) -> str:
    """A message for the trace log: line ends as ``\\n``, other control characters escaped."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", text.replace("\r\n", "\n"))


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(12)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class OutgoingRequest:
    """A request ready to send, with what its response must echo (RFC 3261 §17.1.3)."""

    method: str
    cseq: int
    branch: str
    text: str


def build_request(method: str, uri: str, headers: Sequence[tuple[str, str]], *, cseq: int,
                  branch: str) -> OutgoingRequest:
    """The request line, ``headers`` in order and ``Content-Length: 0``; ``ValueError`` for a URI sipmessage
    cannot parse or any part holding CR, LF or NUL."""
    sipmessage.URI.parse(uri)
    parts = [method, uri, *(p for pair in headers for p in pair)]
    if any(_UNSAFE.search(p) for p in parts):
        raise ValueError("a SIP request part holds CR, LF or NUL")
    lines = [f"{method} {uri} SIP/2.0", *(f"{name}: {value}" for name, value in headers), "Content-Length: 0"]
    return OutgoingRequest(method, cseq, branch, "\r\n".join(lines) + "\r\n\r\n")


@dataclass
class SipResponse:
    """One response: status, reason and headers as the server sent them (data, never interpreted here)."""

    status: int
    reason: str
    cseq: int = 0
    method: str = ""
    #: The top Via's branch: with ``cseq`` and ``method``, what matches the response to its request.
    branch: str = ""
    raw: sipmessage.Response | None = field(default=None, repr=False, compare=False)

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive name, compact forms understood)."""
        values = self.headers(name)
        return values[0] if values else None

    def headers(self, name: str) -> list[str]:
        """Every value of a header, one per header line, in order."""
        if self.raw is None:
            return []
        return list(self.raw.headers.getlist(COMPACT_FORMS.get(name.lower(), name)))

    def answers(self, request: OutgoingRequest) -> bool:
        return (self.branch, self.cseq, self.method) == (request.branch, request.cseq, request.method)


def parse_response(data: bytes) -> SipResponse:
    """A response as :class:`SipResponse`; :class:`SipProtocolError` for anything else."""
    if len(data) > MAX_MESSAGE:
        raise SipProtocolError(f"response of {len(data)} bytes is larger than the limit of "
                               f"{MAX_MESSAGE // 1024} KiB")
    head, sep, body = data.partition(b"\r\n\r\n")
    head = _FOLD.sub(b" ", head)
    lines = [_decode(line) for line in head.split(b"\r\n")]
    if not sep:
        raise SipProtocolError(f"incomplete response (no empty line after the headers): "
                               f"{quote_line(lines[0])}")
    _check_lines(lines)
    try:
        message = sipmessage.Message.parse(head + sep + body)
    except (ValueError, UnicodeDecodeError, IndexError):
        raise SipProtocolError(f"malformed response: {quote_line(lines[0])}") from None
    if not isinstance(message, sipmessage.Response):
        raise SipProtocolError(f"a request where a response was expected: {quote_line(lines[0])}")
    cseq = _cseq(message)
    return SipResponse(message.code, message.phrase, cseq.sequence, cseq.method, _branch(message), message)


def message_length(buffer: bytes) -> int | None:
    """Stream framing (RFC 3261 §18.3): the length of the message at the start of ``buffer`` by its
    Content-Length (none: no body), None while it is incomplete; SipProtocolError when it would exceed
    :data:`MAX_MESSAGE` or its Content-Length is not a number."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_MESSAGE:
            raise SipProtocolError(f"no end of the headers within {MAX_MESSAGE // 1024} KiB")
        return None
    length = 0
    for line in buffer[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"content-length", b"l"):
            if not value.strip().isdigit():
                raise SipProtocolError(f"invalid Content-Length: {quote_line(_decode(line))}")
            length = int(value.strip())
    total = end + 4 + length
    if total > MAX_MESSAGE:
        raise SipProtocolError(f"response of {total} bytes is larger than the limit of "
                               f"{MAX_MESSAGE // 1024} KiB")
    return total if len(buffer) >= total else None


def _decode(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise SipProtocolError(f"not UTF-8: {quote_line(line.decode('utf-8', errors='replace'))}") from None


def _check_lines(lines: list[str]) -> None:
    if not _STATUS_LINE.fullmatch(lines[0]):
        what = "a request where a response was expected" if _REQUEST_LINE.fullmatch(lines[0]) else \
            "not a SIP status line"
        raise SipProtocolError(f"{what}: {quote_line(lines[0])}")
    for line in lines[1:]:
        if ":" not in line or _CONTROL.search(line):
            raise SipProtocolError(f"malformed header line: {quote_line(line)}")


def _cseq(message: sipmessage.Response) -> sipmessage.CSeq:
    value = message.headers.get("CSeq")
    if value is None:
        raise SipProtocolError("response without a CSeq header")
    try:
        return sipmessage.CSeq.parse(value)
    except ValueError:
        raise SipProtocolError(f"invalid CSeq: {quote_line(value)}") from None


def _branch(message: sipmessage.Response) -> str:
    values = message.headers.getlist("Via")
    if not values:
        raise SipProtocolError("response without a Via header")
    try:
        top = sipmessage.Via.parse_many(values[0])[0]
    except (ValueError, IndexError):
        raise SipProtocolError(f"invalid Via: {quote_line(values[0])}") from None
    return top.parameters.get("branch") or ""
