"""The test lab itself: servers start on loopback, corpora load exactly, and a failure says why."""

from __future__ import annotations

import socket

import pytest
from imapclient import IMAPClient

from tests.lab import corpus
from tests.lab.base import LabError
from tests.lab.dovecot import DovecotConfig, DovecotServer


def test_corpus_is_deterministic():
    a = corpus.ministry(seed="x", domain="health.gov.bz", users=2)
    b = corpus.ministry(seed="x", domain="health.gov.bz", users=2)
    assert [m.sha256 for box in a for f in box.folders for m in f.messages] == \
        [m.sha256 for box in b for f in box.folders for m in f.messages]


def test_corpus_has_the_edge_cases():
    box = corpus.ministry(seed="x", domain="health.gov.bz", users=1)[0]
    messages = [m for f in box.folders for m in f.messages]
    sizes = [m.size for m in messages]
    assert min(sizes) < 2_000 and max(sizes) > 2_000_000
    inbox = box.folder("INBOX").messages
    assert len({m.raw for m in inbox}) < len(inbox), "an exact duplicate"
    assert any(b"Message-ID" not in m.raw for m in messages)
    assert any(not m.raw.isascii() for m in messages), "raw 8-bit content"
    assert any(b"=?utf-8?" in m.raw for m in messages), "RFC 2047 headers"
    assert any(b"multipart/mixed" in m.raw and b"Content-Disposition: attachment" in m.raw for m in messages)
    assert any("$Forwarded" in m.flags for m in messages)
    assert any(f.messages == [] for f in box.folders)
    assert any(not f.subscribed for f in box.folders)
    assert any(not "/".join(f.path).isascii() for f in box.folders)
    assert any(len(f.path) == 3 for f in box.folders)
    for m in messages:
        assert m.raw.count(b"\n") == m.raw.count(b"\r\n"), "canonical CRLF, as IMAP servers return it"


def test_sources_serve_the_corpus_byte_for_byte(lab_sources):
    for source in lab_sources.values():
        box = source.mailboxes[0]
        client = IMAPClient("127.0.0.1", source.server.port, ssl=False)
        client.login(f"{box.login}*{source.server.config.master_user}", source.server.config.master_password)
        try:
            for folder in box.folders:
                client.select_folder(source.server.server_name(folder.path), readonly=True)
                uids = client.search("ALL")
                assert len(uids) == len(folder.messages)
                if not uids:
                    continue
                data = client.fetch(uids, ["BODY.PEEK[]", "FLAGS"])
                got = [data[u][b"BODY[]"] for u in sorted(uids)]
                assert got == [m.raw for m in folder.messages], folder.path
                flags = [set(f.decode() for f in data[u][b"FLAGS"]) - {"\\Recent"} for u in sorted(uids)]
                assert flags == [set(m.flags) for m in folder.messages]
        finally:
            client.logout()


def test_legacy_source_puts_everything_under_inbox(lab_sources):
    source = lab_sources["education"]
    box = source.mailboxes[0]
    client = IMAPClient("127.0.0.1", source.server.port, ssl=False)
    client.login(f"{box.login}*migrator", source.server.config.master_password)
    try:
        names = [name for _, _, name in client.list_folders()]
        assert all(n == "INBOX" or n.startswith("INBOX.") for n in names)
        assert b"SPECIAL-USE" not in client.capabilities()
        assert client.namespace().personal[0] == ("INBOX.", ".")
    finally:
        client.logout()


def test_central_host_has_special_use_folders(central_server):
    central_server.add_user("someone@health.gov.bz", "pw")
    client = central_server.connect("someone@health.gov.bz")
    try:
        _typ, data = client.list()
        listing = b"\n".join(data)
        for attr, name in (("Sent", "Sent"), ("Drafts", "Drafts"), ("Trash", "Trash"), ("Junk", "Junk"),
                           ("Archive", "Archive")):
            assert f"\\{attr}) \"/\" {name}".encode() in listing
    finally:
        client.logout()


def test_a_server_that_fails_to_start_reports_its_log(monkeypatch):
    """A port taken every time: Dovecot cannot bind, and after its tries the error carries Dovecot's own words."""
    import tests.lab.dovecot as dovecot

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        monkeypatch.setattr(dovecot, "free_port", lambda: taken)
        server = DovecotServer(DovecotConfig(name="broken", tls=False, sieve=False))
        with pytest.raises(LabError) as info:
            server.start()
        server.cleanup()
    assert "Address already in use" in str(info.value)


def test_a_port_taken_between_its_pick_and_the_start_is_picked_again():
    """Another test's connection can get a port the lab picked free before Dovecot binds it: the server starts
    again on fresh ports instead of failing the test."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = DovecotServer(DovecotConfig(name="retried"))
        server.port = squatter.getsockname()[1]
        try:
            server.start()
            assert server.port != squatter.getsockname()[1] and server.process.proc.poll() is None
        finally:
            server.stop()
            server.cleanup()
