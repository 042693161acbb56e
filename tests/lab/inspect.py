"""Read a whole mailbox from a lab server with plain imaplib: the tests' own view, independent of govmigrate."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from imapclient.imap_utf7 import decode as utf7_decode
from imapclient.imap_utf7 import encode as utf7_encode

from tests.lab.corpus import CorpusMailbox
from tests.lab.dovecot import DovecotServer

_LIST_RE = re.compile(rb'^\((?P<attrs>[^)]*)\) (?:"(?P<sep>.)"|NIL) (?P<name>.+)$')
_FETCH_RE = re.compile(rb"UID (\d+)")
_DATE_RE = re.compile(rb'INTERNALDATE "([^"]+)"')
_FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")


@dataclass(frozen=True)
class Seen:
    raw: bytes
    flags: frozenset[str]
    internaldate: datetime


@dataclass
class FolderView:
    name: str
    subscribed: bool
    attributes: frozenset[str]
    messages: list[Seen]


def _unquote(name: bytes) -> str:
    if name.startswith(b'"') and name.endswith(b'"'):
        name = name[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
    return utf7_decode(name)


def _q(name: str) -> str:
    return '"' + utf7_encode(name).decode().replace("\\", "\\\\").replace('"', '\\"') + '"'


def read_mailbox(server: DovecotServer, login: str) -> dict[str, FolderView]:
    conn = server.connect(login)
    try:
        _, listed = conn.list()
        _, subscribed = conn.lsub()
        subs = set()
        for line in subscribed:
            m = _LIST_RE.match(line)
            if m:
                subs.add(_unquote(m.group("name")))
        out: dict[str, FolderView] = {}
        for line in listed:
            m = _LIST_RE.match(line)
            if not m:
                continue
            name = _unquote(m.group("name"))
            attrs = frozenset(a.decode() for a in m.group("attrs").split())
            if "\\Noselect" in attrs or "\\NonExistent" in attrs:
                continue
            conn.select(_q(name), readonly=True)
            _typ, data = conn.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
            messages = []
            for item in data:
                if not isinstance(item, tuple):
                    continue
                head, body = item
                flags = frozenset(f.decode() for f in _FLAGS_RE.search(head).group(1).split()) - {"\\Recent"}
                date = datetime.strptime(_DATE_RE.search(head).group(1).decode(), "%d-%b-%Y %H:%M:%S %z")
                uid = int(_FETCH_RE.search(head).group(1))
                messages.append((uid, Seen(body, flags, date)))
            out[name] = FolderView(name, name in subs, attrs, [m for _, m in sorted(messages, key=lambda x: x[0])])
        return out
    finally:
        conn.logout()


LEGACY_TO_CENTRAL = {"Sent Items": "Sent", "Deleted Items": "Trash", "Junk E-mail": "Junk", "Archives": "Archive",
                     "Drafts": "Drafts"}


def expected_central(box: CorpusMailbox, layout: str) -> dict[str, list[tuple[bytes, frozenset[str], float]]]:
    """What the central host should hold for a corpus mailbox: folder → messages in order."""
    out = {}
    for folder in box.folders:
        path = list(folder.path)
        if layout == "legacy" and len(path) == 1 and path[0] in LEGACY_TO_CENTRAL:
            path = [LEGACY_TO_CENTRAL[path[0]]]
        name = "INBOX" if folder.is_inbox else "/".join(path)
        out[name] = [(m.raw, frozenset(m.flags), m.internaldate.timestamp()) for m in folder.messages]
        # The lab created missing parents as ordinary empty folders; they are copied as such.
        for depth in range(1, len(path)):
            out.setdefault("/".join(path[:depth]), [])
    return out


def as_comparable(view: dict[str, FolderView]) -> dict[str, list[tuple[bytes, frozenset[str], float]]]:
    return {name: [(m.raw, m.flags, m.internaldate.timestamp()) for m in f.messages] for name, f in view.items()}
