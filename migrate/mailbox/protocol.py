"""IMAP commands the migration needs that imapclient does not offer as such, built on its connection.

Range FETCH (``UID FETCH 1:* ...``), LIST with RETURN (SUBSCRIBED SPECIAL-USE STATUS) (RFC 5258/5819),
MULTIAPPEND with LITERAL+ returning the APPENDUID set (RFC 3502/4315), and an APPEND whose literal is
streamed in chunks so that a large message never has to sit in memory whole. Everything here reuses
imapclient's parser and imaplib's command plumbing; nothing re-implements the protocol.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from imapclient import IMAPClient
from imapclient.datetime_util import datetime_to_INTERNALDATE
from imapclient.imap_utf7 import decode as utf7_decode
from imapclient.imap_utf7 import encode as utf7_encode
from imapclient.response_lexer import TokenSource
from imapclient.response_parser import parse_fetch_response, parse_response

from migrate.mailbox.keywords import SESSION_FLAGS, flag_list

_APPENDUID_RE = re.compile(rb"\[APPENDUID (\d+) ([0-9:,]+)\]", re.IGNORECASE)
_COPYUID_RE = re.compile(rb"\[COPYUID (\d+) ([0-9:,]+) ([0-9:,]+)\]", re.IGNORECASE)


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


def abandon(client: IMAPClient) -> None:
    """Close a session that may be out of step with its server, so that nothing is ever sent on it again
    (the server might read the rest of a message as commands). Callers reconnect."""
    client._govmigrate_broken = True
    try:
        client.shutdown()
    except Exception:
        pass


def is_broken(client: IMAPClient) -> bool:
    return bool(getattr(client, "_govmigrate_broken", False))


@contextmanager
def exchange(client: IMAPClient) -> Iterator[None]:
    """One command, from its first byte to its tagged reply. An error in between (a lost connection, a
    source that failed while its message was being streamed, a reply that cannot be parsed, Ctrl-C) may
    leave the session out of step: it is closed and never used again. A complete NO/BAD is not an error
    of the session (``CommandFailed`` passes through with the session intact)."""
    try:
        yield
    except CommandFailed:
        raise
    except BaseException:
        abandon(client)
        raise


def fetch(client: IMAPClient, uids: str, items: Sequence[str], *, modifiers: str | None = None) -> dict[int, dict]:
    """``UID FETCH <uids> (<items>)``; ``uids`` may be a range like ``"1:*"``. Keyed by UID."""
    args = ["UID", "FETCH", uids, "(" + " ".join(items) + ")"]
    if modifiers:
        args.append(f"({modifiers})")
    with exchange(client):
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
        args: tuple[str, ...] = ('""', '"*"', "RETURN", f"({' '.join(returns)})")
    else:
        args = ('""', '"*"')
    with exchange(client):
        typ, data = client._imap._simple_command("LIST", *args)
    if typ != "OK":
        raise CommandFailed("LIST", typ, _text(data))
    statuses: dict[str, dict[str, int]] = {}
    if use_list_status:  # (the STATUS replies arrive among the LIST replies; imaplib files them apart)
        for reply in _replies(client._imap.untagged_responses.pop("STATUS", [])):
            parsed = _parse_status(reply)
            if parsed is not None:
                statuses[parsed[0]] = parsed[1]
    typ, data = client._imap._untagged_response(typ, data, "LIST")
    listed = _parse_list(data)
    if extended:
        subscribed = {name for name, attrs, _ in listed if "\\subscribed" in {a.lower() for a in attrs}}
    else:
        with exchange(client):
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


def _unquoted(token: str) -> str:
    """A mailbox name as the lexer gives it (a quoted string keeps its quotes and escapes) → its text."""
    if len(token) >= 2 and token[0] == token[-1] == '"':
        return re.sub(r'\\(.)', r"\1", token[1:-1])
    return token


def getacl_many(client: IMAPClient, folders: Sequence[str]) -> dict[str, list[tuple[str, str]] | CommandFailed]:
    """GETACL (RFC 4314) of every folder in ``folders``, pipelined: every command goes out in one write before
    the first reply is read, one round trip for the lot instead of one per folder. Folder → its (identifier,
    rights) entries, or the CommandFailed the server answered for it; every reply is read before this returns,
    so the session stays in step. Each reply is read up to its own tagged response; should a server answer for
    another folder than asked (commands run out of order), the folders are asked again one at a time."""
    imap = client._imap
    tags: list[tuple[str, bytes]] = []
    lines = []
    for name in folders:
        tag = imap._new_tag()
        imap.tagged_commands[tag] = None
        tags.append((name, tag))
        lines.append(tag + b" GETACL " + quote_mailbox(name) + b"\r\n")
    out: dict[str, list[tuple[str, str]] | CommandFailed] = {}
    in_order = True
    with exchange(client):
        imap.untagged_responses.pop("ACL", None)
        if lines:
            imap.send(b"".join(lines))
        for name, tag in tags:
            typ, data = imap._command_complete("GETACL", tag)
            replies = imap.untagged_responses.pop("ACL", [])
            if typ != "OK":
                out[name] = CommandFailed("GETACL", typ, _text(data))
                continue
            parts = [p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p)
                     for p in TokenSource(replies)] if replies else []
            if not parts or _unquoted(parts[0]) != utf7_encode(name).decode("ascii", "replace"):
                in_order = False
                continue
            out[name] = [(parts[i], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]
    if not in_order:
        out = {}
        for name in folders:
            try:
                with exchange(client):
                    try:
                        entries = client.getacl(name)
                    except IMAPClient.Error as exc:  # NO or BAD: the session is in step
                        raise CommandFailed("GETACL", "NO", str(exc)) from exc
            except CommandFailed as exc:
                out[name] = exc
                continue
            out[name] = [(w.decode("utf-8", "replace") if isinstance(w, bytes) else str(w),
                          r.decode("ascii", "replace") if isinstance(r, bytes) else str(r)) for w, r in entries]
    return out


def folder_status(client: IMAPClient, name: str, items: Sequence[str]) -> dict[str, int]:
    with exchange(client):
        typ, data = client._imap._simple_command("STATUS", quote_mailbox(name).decode("ascii"),
                                                 f"({' '.join(items)})")
    if typ != "OK":
        raise CommandFailed("STATUS", typ, _text(data))
    typ, data = client._imap._untagged_response(typ, data, "STATUS")
    replies = _replies(data)
    parsed = _parse_status(replies[-1]) if replies else None
    if parsed is None:
        raise CommandFailed("STATUS", "BAD", f"unreadable STATUS reply for {name!r}")
    return parsed[1]


def _replies(data) -> list[list]:
    """imaplib's untagged data, one list per server reply. A reply holding a literal (a folder name with
    both ``"`` and ``\\``, or one the server chooses to send that way) arrives as ``(text, literal)``
    followed by the rest of the line; those pieces belong together."""
    replies: list[list] = []
    current: list = []
    for item in data or ():
        if item is None:
            continue
        current.append(item)
        if not isinstance(item, tuple):  # a plain line (or the rest of one after a literal) ends a reply
            if current != [b""]:
                replies.append(current)
            current = []
    if current:
        replies.append(current)
    return replies


# LIST and STATUS replies are parsed once per folder of every mailbox on every pass: the common shapes are read
# with one regular expression each (a no-change pass over thousands of mailboxes spent most of its client time
# in the general lexer); a literal, or anything unusual, goes to imapclient's parser.
_NAME = rb'(?:"((?:[^"\\\r\n]|\\["\\])*)"|([^\s"(){}%*\\\x00-\x1f]+))'
_STATUS_LINE = re.compile(rb"^" + _NAME + rb" \(((?:[A-Za-z0-9-]+ \d+)(?: [A-Za-z0-9-]+ \d+)*)?\)$")
_LIST_LINE = re.compile(rb"^\(((?:\\?[A-Za-z0-9$-]+(?: \\?[A-Za-z0-9$-]+)*)?)\) (?:NIL|\"(\\[\"\\]|[^\"\\])\") "
                        + _NAME + rb"(?: \(.*\))?$")
_UNQUOTE = re.compile(rb'\\(["\\])')


def _name_of(match: re.Match, quoted: int) -> str:
    raw = match.group(quoted)
    raw = _UNQUOTE.sub(rb"\1", raw) if raw is not None else match.group(quoted + 1)
    return utf7_decode(raw)


def _fast_status(reply: list) -> tuple[str, dict[str, int]] | None:
    if len(reply) != 1 or not isinstance(reply[0], bytes):
        return None
    m = _STATUS_LINE.match(reply[0])
    if m is None:
        return None
    words = (m.group(3) or b"").split()
    return _name_of(m, 1), {words[i].decode().upper(): int(words[i + 1]) for i in range(0, len(words), 2)}


def _fast_list(reply: list) -> tuple[str, tuple[str, ...], str | None] | None:
    if len(reply) != 1 or not isinstance(reply[0], bytes):
        return None
    m = _LIST_LINE.match(reply[0])
    if m is None:
        return None
    delim = m.group(2)
    if delim is not None and delim.startswith(b"\\"):
        delim = delim[1:]
    return _name_of(m, 3), tuple(m.group(1).decode().split()), delim.decode() if delim is not None else None


def _parse_status(reply: list) -> tuple[str, dict[str, int]] | None:
    fast = _fast_status(reply)
    if fast is not None:
        return fast
    try:
        parsed = parse_response(reply)
        name, items = parsed[0], parsed[1]
        name = utf7_decode(name) if isinstance(name, bytes) else str(name)
        values = {}
        for i in range(0, len(items) - 1, 2):
            key = items[i].decode().upper() if isinstance(items[i], bytes) else str(items[i]).upper()
            values[key] = int(items[i + 1])
        return name, values
    except Exception:  # a reply we cannot read is one folder's problem, never the whole mailbox's
        return None


def _parse_list(data) -> list[tuple[str, tuple[str, ...], str | None]]:
    """LIST/LSUB replies, one reply at a time (LIST-EXTENDED may append extended data to each)."""
    out = []
    for reply in _replies(data):
        fast = _fast_list(reply)
        if fast is not None:
            out.append(fast)
            continue
        try:
            parsed = parse_response(reply)
        except Exception:
            continue  # unreadable: the folder is left out here and reported by whoever misses it
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
    """`` (flags) "date"`` of one message, complete and checked before anything is sent."""
    head = b" " + flag_list(msg.flags)
    if msg.internaldate is not None:
        head += b' "' + datetime_to_INTERNALDATE(msg.internaldate).encode("ascii") + b'"'
    return head


def multiappend(client: IMAPClient, folder: str, messages: Sequence[Appendable],
                literal_plus: bool) -> tuple[int | None, list[int]]:
    """Append ``messages`` in one command (MULTIAPPEND); returns (UIDVALIDITY, UIDs) from APPENDUID.

    The whole command is built and checked before its first byte is sent. With LITERAL+ the batch goes out
    without waiting for the server between messages; RFC 3502 makes the command atomic: if the server
    refuses one message, none is appended and CommandFailed says why. After a refusal with LITERAL+ the
    session is closed all the same (the server may have stopped reading in the middle of the batch) and
    the caller reconnects; without LITERAL+ the server refuses before it is sent a literal, so the session
    stays usable.
    """
    heads = [_append_head(msg) for msg in messages]
    imap = client._imap
    with exchange(client):
        tag = imap._new_tag()
        imap.send(tag + b" APPEND " + quote_mailbox(folder))
        for head, msg in zip(heads, messages, strict=True):
            imap.send(head)
            _send_literal_header(client, tag, len(msg.raw), literal_plus)
            imap.send(msg.raw)
        data = _end_append(client, tag, literal_plus)
    return _appenduid(data, len(messages))


def append_stream(client: IMAPClient, folder: str, flags: tuple[str, ...], internaldate: datetime | None,
                  size: int, chunks: Iterator[bytes], literal_plus: bool) -> tuple[int | None, list[int]]:
    """APPEND one message whose bytes arrive in ``chunks`` (exactly ``size`` bytes in total). If the chunks
    fail or fall short (the source dropped, the message changed), the session is closed: the server is
    still waiting for the rest of the literal."""
    imap = client._imap
    head = _append_head(Appendable(b"", flags, internaldate))
    with exchange(client):
        tag = imap._new_tag()
        imap.send(tag + b" APPEND " + quote_mailbox(folder) + head)
        sent = 0
        first = True
        for chunk in chunks:
            if first:
                _send_literal_header(client, tag, size, literal_plus)
                first = False
            if sent + len(chunk) > size:
                raise ConnectionAbortedError(f"message grew while streaming (more than {size} bytes)")
            imap.send(chunk)
            sent += len(chunk)
        if first:
            _send_literal_header(client, tag, size, literal_plus)
        if sent != size:
            raise ConnectionAbortedError(f"message changed size while streaming ({sent} of {size} bytes)")
        data = _end_append(client, tag, literal_plus)
    return _appenduid(data, 1)


def _end_append(client: IMAPClient, tag: bytes, literal_plus: bool) -> list:
    """End an APPEND and read its reply. A refusal after LITERAL+ literals were sent closes the session: the
    server may have stopped reading in the middle of them."""
    client._imap.send(b"\r\n")
    try:
        return _complete(client, "APPEND", tag)
    except CommandFailed:
        if literal_plus:
            abandon(client)
        raise


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
    """``UID STORE <uids> +FLAGS.SILENT (...)`` (op is "+" or "-"); the flags are checked before sending."""
    listed = flag_list(flags)
    if listed == b"()":
        return
    with exchange(client):
        tag = client._imap._command("UID", "STORE", uid_set(uids), f"{op}FLAGS.SILENT", listed.decode("ascii"))
        _complete(client, "STORE", tag)


def uid_expunge(client: IMAPClient, uids: Iterable[int]) -> None:
    with exchange(client):
        tag = client._imap._command("UID", "EXPUNGE", uid_set(uids))
        _complete(client, "EXPUNGE", tag)


def uid_move(client: IMAPClient, uids: Iterable[int], folder: str) -> dict[int, int]:
    """``UID MOVE <uids> <folder>`` (RFC 6851) from the selected folder: source UID → its UID in ``folder``, from
    the COPYUID the server sends (RFC 4315). UIDs no longer there are not moved and not in the answer. A move
    the server made without saying where (messages expunged, no COPYUID) is a RemoteError for the caller to
    settle from its records."""
    imap = client._imap
    imap.untagged_responses.pop("COPYUID", None)
    imap.untagged_responses.pop("EXPUNGE", None)
    with exchange(client):
        tag = imap._command("UID", "MOVE", uid_set(uids), quote_mailbox(folder).decode("ascii"))
        data = _complete(client, "MOVE", tag)
    copied = [b"[COPYUID " + c + b"]" for c in imap.untagged_responses.pop("COPYUID", []) or [] if c]
    expunged = imap.untagged_responses.pop("EXPUNGE", None)
    moved = _copyuid([*copied, *data])
    if expunged and not moved:
        raise CommandFailed("MOVE", "OK", "the server moved messages without saying where (no COPYUID)")
    return moved


def uid_copy(client: IMAPClient, uids: Iterable[int], folder: str) -> dict[int, int]:
    """``UID COPY <uids> <folder>`` from the selected folder: source UID → its UID in ``folder`` (COPYUID)."""
    with exchange(client):
        tag = client._imap._command("UID", "COPY", uid_set(uids), quote_mailbox(folder).decode("ascii"))
        data = _complete(client, "COPY", tag)
    return _copyuid(data)


def _copyuid(data) -> dict[int, int]:
    """Source UID → destination UID, from every COPYUID response code in ``data``."""
    out: dict[int, int] = {}
    for item in data or ():
        text = item if isinstance(item, bytes) else (item[0] if isinstance(item, tuple) else b"")
        for m in _COPYUID_RE.finditer(text or b""):
            sources = parse_uid_set(m.group(2).decode())
            targets = parse_uid_set(m.group(3).decode())
            if len(sources) == len(targets):
                out.update(zip(sources, targets, strict=True))
    return out
