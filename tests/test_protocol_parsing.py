"""The fast readers of LIST and STATUS replies give exactly what imapclient's general parser gives, and leave
anything unusual to it."""

from __future__ import annotations

import pytest
from imapclient.imap_utf7 import encode as utf7_encode

from migrate.mailbox import protocol

STATUS_LINES = [
    b'"INBOX" (MESSAGES 12 UIDNEXT 13 UIDVALIDITY 1700000000 HIGHESTMODSEQ 40)',
    b'INBOX (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 7)',
    b'"Sent Items" (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 9 SIZE 12345)',
    b'"a \\"quoted\\" \\\\ name" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 3)',
    b'"' + utf7_encode("Presupuesto/Año 2025 – 政府") + b'" (MESSAGES 5 UIDNEXT 6 UIDVALIDITY 7)',
    b'2019 (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 3)',
    b'"Empty" ()',
]
LIST_LINES = [
    b'(\\HasNoChildren) "/" "INBOX"',
    b'(\\HasNoChildren \\Subscribed \\Sent) "/" "Sent Items"',
    b'() "." "INBOX.Projects.Budget"',
    b'(\\Noselect \\HasChildren) NIL "Archive"',
    b'(\\HasNoChildren) "\\\\" "back\\\\slash"',
    b'(\\HasChildren \\Subscribed) "/" "Projects" ("CHILDINFO" ("SUBSCRIBED"))',
    b'(\\HasNoChildren) "/" "' + utf7_encode("Año/Ñandú") + b'"',
    b'(\\HasNoChildren) "/" Drafts',
    b'(\\HasNoChildren $Custom) "/" "x"',
]


@pytest.mark.parametrize("line", STATUS_LINES)
def test_status_replies_read_fast_as_the_general_parser_reads_them(line):
    fast = protocol._fast_status([line])
    assert fast is not None, "this shape has a fast reading"
    assert fast == _slow(protocol._parse_status, [line])


@pytest.mark.parametrize("line", LIST_LINES)
def test_list_replies_read_fast_as_the_general_parser_reads_them(line):
    fast = protocol._fast_list([line])
    assert fast is not None, "this shape has a fast reading"
    assert [fast] == _slow(protocol._parse_list, [line])


@pytest.mark.parametrize("reply", [
    [(b'(\\HasNoChildren) "/" {11}', b'with"quote\\'), b""],   # a literal
    [b'(\\HasNoChildren) "/" "unterminated'],
    [b'"INBOX" (MESSAGES twelve)'],
])
def test_anything_unusual_goes_to_the_general_parser(reply):
    assert protocol._fast_list(reply) is None and protocol._fast_status(reply) is None


def _slow(parse, reply):
    """The general parser's answer, with the fast readers out of the way."""
    saved = protocol._fast_list, protocol._fast_status
    protocol._fast_list = protocol._fast_status = lambda reply: None
    try:
        return parse(reply)
    finally:
        protocol._fast_list, protocol._fast_status = saved
