"""Hostile input on the mail path, against the real lab servers: nothing read from a source ever becomes a
command on the central host, a session that may be out of step is never used again, and a state store that
goes back in time never causes a duplicate."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest

from migrate.core.config import load_project
from migrate.core.store import open_store
from migrate.mailbox.central import Destination, LazyDestination
from migrate.mailbox.imap import Endpoint, credentials_for_central
from migrate.mailbox.keywords import PREFIX, UnsafeFlag, decode, for_central
from migrate.mailbox.protocol import (
    Appendable,
    CommandFailed,
    append_stream,
    folder_status,
    is_broken,
    multiappend,
)
from tests.lab import corpus, scenario
from tests.lab.corpus import CorpusMessage
from tests.lab.ews_store import corpus_mime
from tests.lab.inspect import read_mailbox

INJECTED = "InjectedFromBody"
CATEGORIES = ["Red category", "Plain_Atom", "Client (VIP)", "Priorité",
              "Evil\r\nZZ2 CREATE InjectedFromCategory\r\nZZ3 NOOP"]


def _hostile_box() -> corpus.CorpusMailbox:
    box = corpus.ministry(seed="hostile", domain="finance.gov.bz", users=1, messages=30, login_style="email",
                          edge_cases=False)[0]
    inbox = box.folder("INBOX")
    when = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
    body = (b"Subject: read me\r\nMessage-ID: <inject@x>\r\n\r\nhello\r\n"
            + f"ZZ1 CREATE {INJECTED}\r\nZZ9 EXPUNGE\r\n".encode())
    messages = [dataclasses.replace(m, flags=(*m.flags, CATEGORIES[i % len(CATEGORIES)]))
                for i, m in enumerate(inbox.messages)]
    # The body line that tried to become a command sits right after a message whose categories used to
    # make the APPEND fail half-way.
    messages.insert(1, CorpusMessage(body, ("\\Seen", "Red category"), when))
    inbox.messages[:] = messages
    assert len(inbox.messages) > len(CATEGORIES), "every category must be on some message"
    return box


def _central_folders(lab, email: str) -> set[str]:
    conn = lab.central.connect(email)
    try:
        _typ, listed = conn.list()
        return {line.decode(errors="replace") for line in listed}
    finally:
        conn.logout()


@pytest.fixture
def hostile_ews(tmp_path):
    box = _hostile_box()
    ws = tmp_path / "ws"
    lab = scenario.ews_lab(ws, [box])
    yield lab, ws, box
    lab.stop()


def test_outlook_categories_arrive_encoded_and_no_body_line_becomes_a_command(govmigrate, hostile_ews):
    lab, ws, box = hostile_ews
    rows = json.loads(govmigrate("-w", ws, "sync", box.email, "--json").stdout)
    assert rows[0]["result"] == "ok", rows
    listed = _central_folders(lab, box.email)
    assert not any(INJECTED in line or "InjectedFromCategory" in line for line in listed), listed
    inbox = read_mailbox(lab.central, box.email)["INBOX"].messages
    source = box.folder("INBOX").messages
    assert sorted(m.raw for m in inbox) == sorted(corpus_mime(m) for m in source), "every message arrived, once"
    store = open_store(ws / "state.db")
    long_names = store.keyword_names()
    store.close()
    assert long_names and all(len(k) <= 50 for k in long_names), "a long category is shortened, and recorded"
    encoded_messages = 0
    for m in source:
        got = next(g for g in inbox if g.raw == corpus_mime(m))
        # (XML turns CR LF into LF: that is what Exchange hands out, and what must come back)
        categories = {f.replace("\r\n", "\n") for f in m.flags if not f.startswith("\\")}
        keywords = {f for f in got.flags if not f.startswith("\\")}
        # Reversible: every category comes back from its keyword, and each keyword is an atom.
        assert {long_names.get(k) or decode(k) for k in keywords} == categories, (m.flags, got.flags)
        assert all(" " not in k and "(" not in k and "\r" not in k for k in keywords)
        if any(k.startswith(PREFIX) for k in keywords):
            encoded_messages += 1
    assert "X-Cat.Red=20category" in {k for g in inbox for k in g.flags}
    assert "X-Cat.Client=20=28VIP=29" in {k for g in inbox for k in g.flags}
    assert "X-Cat.Priorit=C3=A9" in {k for g in inbox for k in g.flags}
    assert "Plain_Atom" in {k for g in inbox for k in g.flags}
    assert rows[0]["keywords_encoded"] == encoded_messages > 0
    results = json.loads(govmigrate("-w", ws, "verify", box.email, "--json").stdout)
    assert results[0]["matches"], results


def test_a_category_added_later_is_carried_encoded_as_a_flag_change(govmigrate, hostile_ews):
    lab, ws, box = hostile_ews
    govmigrate("-w", ws, "sync", box.email)
    responder = lab.extra[0]
    item = responder.item_ids(box.email, ("INBOX",))[0]
    responder.set_flags(box.email, item, ["\\Seen", "Needs (review)"])
    rows = json.loads(govmigrate("-w", ws, "sync", box.email, "--json").stdout)
    assert rows[0]["flag_updates"] >= 1 and rows[0]["keywords_encoded"] >= 1
    keywords = {k for m in read_mailbox(lab.central, box.email)["INBOX"].messages for k in m.flags}
    assert "X-Cat.Needs=20=28review=29" in keywords


# -- the protocol layer against the real central host ------------------------------------------------------

@pytest.fixture
def central_session(workspace, central_server):
    email = "probe.user@health.gov.bz"
    central_server.add_user(email, "central-probe-password")
    project = load_project(workspace / "migration.yaml")
    endpoint = Endpoint.from_config(project.config.central.imap, base_dir=workspace, label="central host")
    creds = credentials_for_central(project.config.central, project)
    dest = Destination.open(endpoint, creds, email)
    yield central_server, dest, endpoint, creds, email
    dest.close()


def _inbox_count(server, email: str) -> int:
    return len(read_mailbox(server, email)["INBOX"].messages)


def test_a_flag_that_is_not_an_atom_is_refused_before_a_byte_is_sent(central_session):
    server, dest, *_rest, email = central_session
    good = Appendable(b"Subject: one\r\n\r\nfine\r\n", ("\\Seen",), None)
    evil = Appendable(b"Subject: two\r\n\r\nZZ1 CREATE Injected\r\n", ("Red category",), None)
    with pytest.raises(UnsafeFlag):
        multiappend(dest.client, "INBOX", [good, evil], literal_plus=True)
    # Nothing was sent: the session is in step and usable, and nothing landed.
    assert not is_broken(dest.client)
    assert folder_status(dest.client, "INBOX", ["MESSAGES"])["MESSAGES"] == 0
    assert _inbox_count(server, email) == 0
    assert for_central(["Red category"]) == (("X-Cat.Red=20category",), True)


def test_a_command_that_fails_half_way_closes_its_session_and_the_next_call_reconnects(central_session):
    server, dest, endpoint, creds, email = central_session

    def chunks():
        yield b"Subject: half\r\n\r\n"
        raise ConnectionResetError("the source dropped in the middle of a message")

    with pytest.raises(ConnectionResetError):
        append_stream(dest.client, "INBOX", ("\\Seen",), None, 5000, chunks(), literal_plus=True)
    assert dest.broken, "a session left in the middle of a literal must never be used again"
    lazy = LazyDestination(endpoint, creds, email)
    lazy._dest = dest
    result = lazy.append_one("INBOX", Appendable(b"Subject: after\r\n\r\nok\r\n", (), None))
    assert result.uids and not lazy._dest.broken and lazy._dest is not dest
    lazy.close()
    messages = read_mailbox(server, email)["INBOX"].messages
    assert [m.raw for m in messages] == [b"Subject: after\r\n\r\nok\r\n"]


def test_a_multiappend_refused_after_its_literals_were_sent_closes_the_session(tmp_path, lab_sources):
    """With LITERAL+ the server may stop reading in the middle of a refused batch: never trust that session."""
    server = scenario.start_central(max_mail_size=1000)
    try:
        email = "big.sender@health.gov.bz"
        server.add_user(email, "central-big-password")
        ws = tmp_path / "ws"
        scenario.write_workspace(ws, scenario.Lab(dict(lab_sources), server))
        project = load_project(ws / "migration.yaml")
        endpoint = Endpoint.from_config(project.config.central.imap, base_dir=ws, label="central host")
        dest = Destination.open(endpoint, credentials_for_central(project.config.central, project), email)
        small = Appendable(b"Subject: small\r\n\r\nok\r\n", (), None)
        big = Appendable(b"Subject: big\r\n\r\n" + b"x" * 5000 + b"\r\n", (), None)
        with pytest.raises(CommandFailed):
            multiappend(dest.client, "INBOX", [small, big], literal_plus=True)
        assert dest.broken
        dest.close()
        assert _inbox_count(server, email) == 0, "MULTIAPPEND is atomic: nothing of the batch landed"
    finally:
        server.cleanup()


# -- folder names the server sends as literals -------------------------------------------------------------

# Dovecot sends a name as a literal when it holds more than four of " and \ (imap_append_nstring).
LITERAL_NAME = 'Say "hi" \\ and "bye" \\'


def test_a_folder_whose_name_arrives_as_a_literal_is_listed_measured_and_copied(govmigrate, tmp_path):
    box = corpus.ministry(seed="literal", domain=scenario.MODERN_DOMAIN, users=1, messages=10,
                          edge_cases=False)[0]
    box.folders.append(corpus.CorpusFolder((LITERAL_NAME,), [CorpusMessage(
        b"Subject: in an odd folder\r\n\r\nhi\r\n", ("\\Seen",), dt.datetime(2026, 1, 5, tzinfo=dt.UTC))]))
    ws = tmp_path / "ws"
    lab, _ = scenario.small_lab(ws, seed="literal", boxes=[box], source_kw={"maildir_layout": "index"})
    try:
        conn = lab.sources["health"].server.connect(box.login)
        _typ, listed = conn.list()
        conn.logout()
        assert any(isinstance(item, tuple) for item in listed), "the server must send this name as a literal"
        govmigrate("-w", ws, "inventory", "mail")
        folders = json.loads(govmigrate("-w", ws, "inventory", "show", "--folders", "--json").stdout)
        text = json.dumps(folders, ensure_ascii=False)
        assert "IndexError" not in text and LITERAL_NAME.replace("\\", "\\\\").replace('"', '\\"') in text
        rows = json.loads(govmigrate("-w", ws, "sync", box.email, "--json").stdout)
        assert rows[0]["result"] == "ok", rows
        conn = lab.central.connect(box.email)
        quoted = '"' + LITERAL_NAME.replace("\\", "\\\\").replace('"', '\\"') + '"'
        typ, data = conn.select(quoted, readonly=True)
        conn.logout()
        assert typ == "OK" and data == [b"1"]
    finally:
        lab.stop()


# -- a state store that goes back in time ------------------------------------------------------------------

def _backup(ws: Path, to: Path) -> None:
    src = sqlite3.connect(ws / "state.db")
    dst = sqlite3.connect(to)
    src.backup(dst)
    src.close()
    dst.close()


def _restore(ws: Path, backup: Path) -> None:
    for suffix in ("-wal", "-shm"):
        (ws / f"state.db{suffix}").unlink(missing_ok=True)
    (ws / "state.db").write_bytes(backup.read_bytes())


def _append(server, login: str, count: int, tag: str) -> None:
    conn = server.connect(login)
    for i in range(count):
        conn.append("INBOX", "(\\Seen)", '"01-Feb-2026 10:00:00 +0000"',
                    f"Subject: {tag} {i}\r\nMessage-ID: <{tag}-{i}@x>\r\n\r\nbody {i}\r\n".encode())
    conn.logout()


def test_a_state_store_restored_from_last_nights_backup_copies_nothing_twice(govmigrate, tmp_path):
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="restore", messages=30)
    box, source = boxes[0], lab.sources["health"].server
    try:
        govmigrate("-w", ws, "sync", box.email)
        _backup(ws, tmp_path / "last-night.db")
        _append(source, box.login, 12, "after the backup")
        rows = json.loads(govmigrate("-w", ws, "sync", box.email, "--json").stdout)
        assert rows[0]["copied"] == 12
        _restore(ws, tmp_path / "last-night.db")
        _append(source, box.login, 3, "after the restore")
        rows = json.loads(govmigrate("-w", ws, "sync", box.email, "--json").stdout)
        assert rows[0]["copied"] == 3, rows
        assert rows[0]["reconciled"] == 12, rows
        src_inbox = read_mailbox(source, box.login)["INBOX"].messages
        dest_inbox = read_mailbox(lab.central, box.email)["INBOX"].messages
        assert sorted(m.raw for m in dest_inbox) == sorted(m.raw for m in src_inbox)
        results = json.loads(govmigrate("-w", ws, "verify", box.email, "--json").stdout)
        assert results[0]["matches"] and results[0]["duplicates"] == 0, results
    finally:
        lab.stop()


def test_an_exchange_state_store_restored_from_backup_copies_nothing_twice(govmigrate, tmp_path):
    boxes = corpus.ministry(seed="ews-restore", domain="finance.gov.bz", users=1, messages=20, login_style="email",
                            edge_cases=False)
    ws = tmp_path / "ws"
    lab = scenario.ews_lab(ws, boxes)
    responder, box = lab.extra[0], boxes[0]
    try:
        govmigrate("-w", ws, "sync", box.email)
        _backup(ws, tmp_path / "last-night.db")
        for i in range(6):
            responder.add_message(box.email, ("INBOX",), CorpusMessage(
                f"Subject: new {i}\r\n\r\nafter the backup {i}\r\n".encode(), ("\\Seen",),
                dt.datetime(2026, 11, 20, 9, i, tzinfo=dt.UTC)))
        assert json.loads(govmigrate("-w", ws, "sync", box.email, "--json").stdout)[0]["copied"] == 6
        _restore(ws, tmp_path / "last-night.db")
        rows = json.loads(govmigrate("-w", ws, "sync", box.email, "--json").stdout)
        assert rows[0]["copied"] == 0 and rows[0]["reconciled"] == 6, rows
        results = json.loads(govmigrate("-w", ws, "verify", box.email, "--json").stdout)
        assert results[0]["matches"] and results[0]["duplicates"] == 0, results
    finally:
        lab.stop()


def test_mail_delivered_to_the_central_host_meanwhile_is_looked_at_once_and_left_alone(govmigrate, tmp_path):
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="meanwhile", messages=15)
    box = boxes[0]
    try:
        govmigrate("-w", ws, "sync", box.email)
        conn = lab.central.connect(box.email)
        conn.append("INBOX", "()", None, b"Subject: delivered after the MX switch\r\n\r\nnew\r\n")
        conn.logout()
        rows = json.loads(govmigrate("-w", ws, "-v", "sync", box.email, "--json").stdout)
        assert rows[0]["copied"] == 0 and rows[0]["reconciled"] == 0
        inbox = read_mailbox(lab.central, box.email)["INBOX"].messages
        assert inbox[-1].raw == b"Subject: delivered after the MX switch\r\n\r\nnew\r\n"
        assert len(inbox) == len(box.folder("INBOX").messages) + 1
    finally:
        lab.stop()
