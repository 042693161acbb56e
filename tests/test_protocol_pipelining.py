"""Commands sent together before their replies are read (pipelining) give what one command at a time gives, and
leave the session in step, a refused one included: GETACL of every folder, as the settings pass reads them."""

from __future__ import annotations

import pytest
from imapclient import IMAPClient

from migrate.mailbox import protocol
from tests.lab import corpus
from tests.lab.base import LOOPBACK
from tests.lab.dovecot import DovecotServer, modern_source


@pytest.fixture(scope="module")
def session():
    boxes = corpus.ministry(seed="pipelining", domain="health.gov.bz", users=2, messages=3, edge_cases=True,
                            pilot=0, vip=0)
    server = DovecotServer(modern_source("health")).start()
    try:
        server.load(boxes)
        client = IMAPClient(LOOPBACK, server.port, ssl=False, timeout=30)
        client.login(f"{boxes[0].login}*{server.config.master_user}", server.config.master_password)
        names = [name for _flags, _delim, name in client.list_folders()]
        client.setacl(names[1], boxes[1].login, "lrs")
        client.setacl(names[2], "anyone", "lr")
        client.setacl(names[3], '"john smith"', "lr")
        yield client, names
        client.logout()
    finally:
        server.cleanup()


def test_getacl_of_every_folder_at_once_is_what_one_at_a_time_gives(session):
    client, names = session
    many = protocol.getacl_many(client, names)
    assert list(many) == names
    for name in names:
        assert many[name] == [(w.decode(), r.decode()) for w, r in client.getacl(name)], name
    assert any(len(entries) > 1 for entries in many.values() if not isinstance(entries, protocol.CommandFailed))


def test_a_refused_folder_among_them_is_its_own_answer_and_the_session_stays_in_step(session):
    client, names = session
    many = protocol.getacl_many(client, [names[0], "No such folder", names[1]])
    assert isinstance(many["No such folder"], protocol.CommandFailed)
    assert many["No such folder"].status == "NO"
    assert many[names[1]] == [(w.decode(), r.decode()) for w, r in client.getacl(names[1])]
    assert not protocol.is_broken(client)
    assert client.noop()[0]


def test_replies_that_name_other_folders_are_asked_again_one_at_a_time(session, monkeypatch):
    """A server may run commands out of order; the reply says which folder it is for, and a mismatch is not
    trusted: every folder is asked again on its own."""
    client, names = session
    real = protocol._unquoted
    monkeypatch.setattr(protocol, "_unquoted", lambda token: real(token) + "?")
    many = protocol.getacl_many(client, [*names[:3], "No such folder"])
    assert [many[n] for n in names[:3]] == [[(w.decode(), r.decode()) for w, r in client.getacl(n)]
                                            for n in names[:3]]
    assert isinstance(many["No such folder"], protocol.CommandFailed)
    assert not protocol.is_broken(client)
