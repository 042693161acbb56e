"""IMAP commands the migration needs that imapclient does not offer as such, built on its connection.

Range FETCH (``UID FETCH 1:* ...``), LIST with RETURN (SUBSCRIBED SPECIAL-USE STATUS) (RFC 5258/5819),
MULTIAPPEND with LITERAL+ returning the APPENDUID set (RFC 3502/4315), and an APPEND whose literal is
streamed in chunks so that a large message never has to sit in memory whole. Everything here reuses
imapclient's parser and imaplib's command plumbing; nothing re-implements the protocol.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from imapclient import IMAPClient
from imapclient.datetime_util import datetime_to_INTERNALDATE
from imapclient.imap_utf7 import decode as utf7_decode
from imapclient.imap_utf7 import encode as utf7_encode
from imapclient.response_parser import parse_fetch_response, parse_response

_APPENDUID_RE = re.compile(rb"\[APPENDUID (\d+) ([0-9:,]+)\]", re.IGNORECASE)
SESSION_FLAGS = frozenset({"\\Recent"})


class CommandFailed(Exception):
    """The server answered NO or BAD; ``text`` is its reason."""

    def __init__(self, command: str, status: str, text: str) -> None:
        super().__init__(f"{command} {status}: {text}")
        self.command = command
        self.status = status
        self.text = text


def clean_flags(raw) -> tuple[str, ...]:
    """Flags as sorted text without session flags (\\Recent cannot be set and means nothing later)."""
    out = set()
    for f in raw or ():
        text = f.decode("utf-8", "replace") if isinstance(f, bytes) else str(f)
        if text not in SESSION_FLAGS:
            out.add(text)
    return tuple(sorted(out))


def uid_set(uids: Iterable[int]) -> str:
    """``[1,2,3,7,9,10]`` → ``"1:3,7,9:10"`` (short command lines for long UID lists)."""
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("empty UID set")
    parts = []
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if start != prev else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(parts)


def parse_uid_set(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if ":" in part:
            a, b = (int(x) for x in part.split(":"))
            lo, hi = min(a, b), max(a, b)
            out.extend(range(lo, hi + 1))
        else:
            out.append(int(part))
    return out


def quote_mailbox(name: str) -> bytes:
    """A folder name as an IMAP quoted string in modified UTF-7."""
    encoded = utf7_encode(name)
    return b'"' + encoded.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _text(data: Sequence) -> str:
    for item in data or ():
        if isinstance(item, bytes):
            return item.decode("utf-8", "replace")
        if isinstance(item, tuple) and item and isinstance(item[0], bytes):
            return item[0].decode("utf-8", "replace")
    return ""


def _complete(client: IMAPClient, name: str, tag: bytes) -> list:
    typ, data = client._imap._command_complete(name, tag)
    if typ != "OK":
        raise CommandFailed(name, typ, _text(data))
    return data


def fetch(client: IMAPClient, uids: str, items: Sequence[str], *, modifiers: str | None = None) -> dict[int, dict]:
    """``UID FETCH <uids> (<items>)``; ``uids`` may be a range like ``"1:*"``. Keyed by UID."""
    args = ["UID", "FETCH", uids, "(" + " ".join(items) + ")"]
    if modifiers:
        args.append(f"({modifiers})")
    tag = client._imap._command(*args)
    data = _complete(client, "FETCH", tag)
    _typ, data = client._imap._untagged_response("OK", data, "FETCH")
    if not data or data == [None]:
        return {}
    fast = _fast_fetch(data)
    return fast if fast is not None else dict(parse_fetch_response(data, False, True))


# The two reply shapes that carry nearly all of a migration's traffic, parsed without the general lexer:
#   * 7 FETCH (UID 12 BODY[] {5311}<literal>)                       (bodies; also BODY[]<0> for prefixes)
#   * 7 FETCH (UID 12 RFC822.SIZE 5311 FLAGS (\Seen) INTERNALDATE "...")   (metadata, any order)
_BODY_HEAD = re.compile(rb"^\d+ \(UID (\d+) (?:RFC822\.SIZE (\d+) )?(?:FLAGS \(([^()]*)\) )?(BODY\[\](?:<\d+>)?) \{\d+\}$")
_META = re.compile(rb"^\d+ \((.*)\)$")
_META_ITEM = re.compile(rb'(UID|RFC822\.SIZE|MODSEQ) (\d+|\(\d+\))|FLAGS \(([^()]*)\)|INTERNALDATE "([^"]*)"')


def _fast_fetch(data: list) -> dict[int, dict] | None:
    """Parse common FETCH replies directly; ``None`` for anything unusual (the general parser takes it)."""
    from imapclient.datetime_util import parse_to_datetime

    out: dict[int, dict] = {}
    i, n = 0, len(data)
    while i < n:
        item = data[i]
        if isinstance(item, tuple):
            m = _BODY_HEAD.match(item[0])
            if not m or i + 1 >= n or data[i + 1] != b")":
                return None
            values: dict = {b"UID": int(m.group(1)), m.group(4): item[1]}
            if m.group(2):
                values[b"RFC822.SIZE"] = int(m.group(2))
            if m.group(3) is not None:
                values[b"FLAGS"] = tuple(m.group(3).split())
            out.setdefault(int(m.group(1)), {}).update(values)
            i += 2
            continue
        m = _META.match(item) if isinstance(item, bytes) else None
        if not m:
            return None
        values = {}
        consumed = 0
        for part in _META_ITEM.finditer(m.group(1)):
            consumed += len(part.group(0)) + 1
            if part.group(1):
                number = part.group(2).strip(b"()")
                values[part.group(1)] = int(number)
            elif part.group(3) is not None:
                values[b"FLAGS"] = tuple(part.group(3).split())
            else:
                values[b"INTERNALDATE"] = parse_to_datetime(part.group(4), normalise=False)
        if b"UID" not in values or consumed < len(m.group(1)):
            return None  # an item this parser does not know: let the general parser read the reply
        out.setdefault(values[b"UID"], {}).update(values)
        i += 1
    return out


@dataclass(frozen=True)
class ListedFolder:
    name: str
    attributes: frozenset[str]
    delimiter: str | None
    subscribed: bool
    status: dict[str, int]

    @property
    def selectable(self) -> bool:
        return not ({"\\Noselect", "\\NonExistent"} & {a.title() if a.startswith("\\") else a
                                                      for a in self.attributes})

    @property
    def special_use(self) -> str | None:
        for attr in self.attributes:
            if attr.lower() in _SPECIAL_USE_LOWER:
                return _SPECIAL_USE_LOWER[attr.lower()]
        return None


_SPECIAL_USE_LOWER = {a.lower(): a for a in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent",
                                               "\\Trash")}
STATUS_ITEMS = ("MESSAGES", "UIDNEXT", "UIDVALIDITY")


def list_folders(client: IMAPClient, capabilities: frozenset[str], *, with_status: bool = True) -> list[ListedFolder]:
    """Every folder with its attributes, subscription and (if asked) status, in as few round trips as the
    server allows: one with LIST-STATUS, else LIST + LSUB + one STATUS per folder."""
    status_items = list(STATUS_ITEMS)
    if "CONDSTORE" in capabilities:
        status_items.append("HIGHESTMODSEQ")
    extended = "LIST-EXTENDED" in capabilities
    use_list_status = with_status and "LIST-STATUS" in capabilities and extended
    if extended:
        returns = ["SUBSCRIBED"]
        if "SPECIAL-USE" in capabilities:
            returns.append("SPECIAL-USE")
        if use_list_status:
            returns.append(f"STATUS ({' '.join(status_items)})")
        typ, data = client._imap._simple_command("LIST", '""', '"*"', "RETURN", f"({' '.join(returns)})")
    else:
        typ, data = client._imap._simple_command("LIST", '""', '"*"')
    if typ != "OK":
        raise CommandFailed("LIST", typ, _text(data))
    statuses: dict[str, dict[str, int]] = {}
    if use_list_status:  # (the STATUS replies arrive among the LIST replies; imaplib files them apart)
        for raw in client._imap.untagged_responses.pop("STATUS", []):
            name, values = _parse_status(raw)
            statuses[name] = values
    typ, data = client._imap._untagged_response(typ, data, "LIST")
    listed = _parse_list(data)
    if extended:
        subscribed = {name for name, attrs, _ in listed if "\\subscribed" in {a.lower() for a in attrs}}
    else:
        typ, sub = client._imap._simple_command("LSUB", '""', '"*"')
        typ, sub = client._imap._untagged_response(typ, sub, "LSUB")
        subscribed = {name for name, _, _ in _parse_list(sub)}
    folders = []
    for name, attrs, delim in listed:
        status = statuses.get(name, {})
        folders.append(ListedFolder(name, frozenset(a for a in attrs if a.lower() != "\\subscribed"), delim,
                                    name in subscribed, status))
    if with_status and not use_list_status:
        filled = []
        for f in folders:
            if f.selectable:
                try:
                    values = folder_status(client, f.name, status_items)
                    f = ListedFolder(f.name, f.attributes, f.delimiter, f.subscribed, values)
                except CommandFailed:
                    pass  # the caller sees an empty status and reports the folder
            filled.append(f)
        folders = filled
    return folders


def folder_status(client: IMAPClient, name: str, items: Sequence[str]) -> dict[str, int]:
    typ, data = client._imap._simple_command("STATUS", quote_mailbox(name).decode("ascii"), f"({' '.join(items)})")
    if typ != "OK":
        raise CommandFailed("STATUS", typ, _text(data))
    typ, data = client._imap._untagged_response(typ, data, "STATUS")
    _, values = _parse_status(data[-1])
    return values


def _parse_status(raw) -> tuple[str, dict[str, int]]:
    parsed = parse_response([raw] if not isinstance(raw, list) else raw)
    name, items = parsed[0], parsed[1]
    name = utf7_decode(name) if isinstance(name, bytes) else str(name)
    values = {}
    for i in range(0, len(items) - 1, 2):
        key = items[i].decode().upper() if isinstance(items[i], bytes) else str(items[i]).upper()
        values[key] = int(items[i + 1])
    return name, values


def _parse_list(data) -> list[tuple[str, tuple[str, ...], str | None]]:
    """LIST/LSUB replies, one reply at a time (LIST-EXTENDED may append extended data to each)."""
    out = []
    for item in data:
        if item in (b"", None):
            continue
        parsed = parse_response([item])
        if len(parsed) < 3:
            continue
        flags, delim, name = parsed[0], parsed[1], parsed[2]
        if isinstance(name, int):
            name = str(name)
        name = utf7_decode(name) if isinstance(name, bytes) else name
        attrs = tuple(f.decode() if isinstance(f, bytes) else str(f) for f in flags)
        out.append((name, attrs, delim.decode() if isinstance(delim, bytes) else delim))
    return out


@dataclass(frozen=True)
class Appendable:
    raw: bytes
    flags: tuple[str, ...]
    internaldate: datetime | None


def _append_head(msg: Appendable) -> bytes:
    head = b"(" + " ".join(f for f in msg.flags if f not in SESSION_FLAGS).encode("ascii") + b")"
    if msg.internaldate is not None:
        head += b' "' + datetime_to_INTERNALDATE(msg.internaldate).encode("ascii") + b'"'
    return head


def multiappend(client: IMAPClient, folder: str, messages: Sequence[Appendable],
                literal_plus: bool) -> tuple[int | None, list[int]]:
    """Append ``messages`` in one command (MULTIAPPEND); returns (UIDVALIDITY, UIDs) from APPENDUID.

    With LITERAL+ the whole batch goes out without waiting for the server between messages. RFC 3502
    makes the command atomic: if the server refuses one message, none is appended and CommandFailed says
    why; the caller then appends one by one to find and record the refused message.
    """
    imap = client._imap
    tag = imap._new_tag()
    sock_send = imap.send
    sock_send(tag + b" APPEND " + quote_mailbox(folder))
    for msg in messages:
        sock_send(b" " + _append_head(msg))
        _send_literal(client, tag, msg.raw, literal_plus)
    sock_send(b"\r\n")
    data = _complete(client, "APPEND", tag)
    return _appenduid(data, len(messages))


def append_stream(client: IMAPClient, folder: str, flags: tuple[str, ...], internaldate: datetime | None,
                  size: int, chunks: Iterator[bytes], literal_plus: bool) -> tuple[int | None, list[int]]:
    """APPEND one message whose bytes arrive in ``chunks`` (exactly ``size`` bytes in total)."""
    imap = client._imap
    tag = imap._new_tag()
    imap.send(tag + b" APPEND " + quote_mailbox(folder) + b" "
              + _append_head(Appendable(b"", flags, internaldate)))
    sent = 0
    first = True
    for chunk in chunks:
        if first:
            _send_literal_header(client, tag, size, literal_plus)
            first = False
        imap.send(chunk)
        sent += len(chunk)
    if first:
        _send_literal_header(client, tag, size, literal_plus)
    if sent != size:
        # The server is waiting for more literal bytes: the connection is unusable now.
        raise ConnectionAbortedError(f"message changed size while streaming ({sent} of {size} bytes)")
    imap.send(b"\r\n")
    data = _complete(client, "APPEND", tag)
    return _appenduid(data, 1)


def _send_literal_header(client: IMAPClient, tag: bytes, size: int, literal_plus: bool) -> None:
    imap = client._imap
    if literal_plus:
        imap.send(b" {" + str(size).encode() + b"+}\r\n")
        return
    imap.send(b" {" + str(size).encode() + b"}\r\n")
    while imap._get_response():  # wait for the continuation request
        if imap.tagged_commands.get(tag):
            typ, data = imap.tagged_commands.pop(tag)
            raise CommandFailed("APPEND", typ, _text(data))


def _send_literal(client: IMAPClient, tag: bytes, raw: bytes, literal_plus: bool) -> None:
    _send_literal_header(client, tag, len(raw), literal_plus)
    client._imap.send(raw)


def _appenduid(data, count: int) -> tuple[int | None, list[int]]:
    for item in data or ():
        text = item if isinstance(item, bytes) else (item[0] if isinstance(item, tuple) else b"")
        m = _APPENDUID_RE.search(text or b"")
        if m:
            uids = parse_uid_set(m.group(2).decode())
            if len(uids) == count:
                return int(m.group(1)), uids
    return None, []


def store_flags(client: IMAPClient, uids: Iterable[int], op: str, flags: Iterable[str]) -> None:
    """``UID STORE <uids> +FLAGS.SILENT (...)`` (op is "+" or "-")."""
    flag_text = " ".join(f for f in flags if f not in SESSION_FLAGS)
    if not flag_text:
        return
    tag = client._imap._command("UID", "STORE", uid_set(uids), f"{op}FLAGS.SILENT", f"({flag_text})")
    _complete(client, "STORE", tag)


def uid_expunge(client: IMAPClient, uids: Iterable[int]) -> None:
    tag = client._imap._command("UID", "EXPUNGE", uid_set(uids))
    _complete(client, "EXPUNGE", tag)
