"""Exchange sources: the sync engine reads the lab's EWS responder (real SOAP over HTTP) into real Dovecot."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from migrate.core.errors import ExitCode
from migrate.core.store import open_store
from tests.lab import corpus, scenario
from tests.lab.corpus import CorpusMessage
from tests.lab.ews_store import corpus_mime, ews_folder_path
from tests.lab.inspect import read_mailbox

EWS_FLAGS = {"\\Seen", "\\Flagged", "\\Draft"}
CENTRAL_NAME = {"Inbox": "INBOX", "Sent Items": "Sent", "Deleted Items": "Trash", "Junk Email": "Junk",
                "Drafts": "Drafts"}


def ews_flags(flags) -> frozenset[str]:
    """What an Exchange item can carry of a message's IMAP flags (\\Answered has no EWS equivalent)."""
    return frozenset(f for f in flags if f in EWS_FLAGS or not f.startswith("\\"))


@pytest.fixture
def ews_lab(tmp_path):
    boxes = corpus.ministry(seed="ews", domain="finance.gov.bz", users=2, messages=30, login_style="email")
    ws = tmp_path / "ws"
    lab = scenario.ews_lab(ws, boxes)
    yield lab, ws, boxes, lab.extra[0]
    lab.stop()


def _expected(box: corpus.CorpusMailbox) -> dict[str, list[tuple[bytes, frozenset[str], float]]]:
    out = {}
    for folder in box.folders:
        path = ews_folder_path(box, folder.path)
        name = "/".join((CENTRAL_NAME.get(path[0], path[0]), *path[1:]))
        out[name] = [(corpus_mime(m), ews_flags(m.flags), m.internaldate.timestamp()) for m in folder.messages]
    return out


def test_exchange_mailboxes_arrive_exactly(govmigrate, ews_lab):
    lab, ws, boxes, _ = ews_lab
    govmigrate("-w", ws, "sync", "--all")
    for box in boxes:
        got = read_mailbox(lab.central, box.email)
        for name, messages in _expected(box).items():
            assert name in got, f"{box.email}: {name} missing"
            have = sorted((m.raw, m.flags, m.internaldate.timestamp()) for m in got[name].messages)
            assert have == sorted(messages), f"{box.email}: {name}"
    results = json.loads(govmigrate("-w", ws, "verify", "--all", "--deep", "--json").stdout)
    assert all(r["matches"] for r in results)


def test_exchange_changes_are_carried_incrementally(govmigrate, ews_lab):
    lab, ws, boxes, responder = ews_lab
    box = boxes[0]
    govmigrate("-w", ws, "sync", box.email)
    inbox_ids = responder.item_ids(box.email, ("INBOX",))
    responder.set_flags(box.email, inbox_ids[0], ["\\Flagged", "ProjectY"])
    responder.delete_message(box.email, inbox_ids[1])
    new = CorpusMessage(b"Subject: after the first pass\r\n\r\nnew\r\n", ("\\Seen",),
                        dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC))
    responder.add_message(box.email, ("INBOX",), new)
    rows = json.loads(govmigrate("-w", ws, "sync", box.email, "--propagate-deletes", "--json").stdout)
    assert rows[0]["copied"] == 1
    assert rows[0]["flag_updates"] >= 1
    assert rows[0]["deleted"] == 1
    inbox = read_mailbox(lab.central, box.email)["INBOX"].messages
    assert any(m.raw == new.raw for m in inbox)
    assert len(inbox) == len(box.folder("INBOX").messages)  # one deleted, one added
    results = json.loads(govmigrate("-w", ws, "verify", box.email, "--json").stdout)
    assert results[0]["matches"], results


def test_exchange_throttling_is_honoured(govmigrate, ews_lab):
    _lab, ws, boxes, responder = ews_lab
    responder.inject("server_busy", count=2, operation="GetItem", back_off_ms=50)
    responder.inject("http_503", count=1, operation="SyncFolderItems", retry_after=1)
    rows = json.loads(govmigrate("-w", ws, "sync", boxes[0].email, "--json").stdout)
    assert rows[0]["result"] == "ok"
    assert any(r.code == "ErrorServerBusy" for r in responder.request_log)
    results = json.loads(govmigrate("-w", ws, "verify", boxes[0].email, "--json").stdout)
    assert results[0]["matches"]


def test_exchange_mailbox_the_service_account_may_not_open_fails_alone(govmigrate, ews_lab, tmp_path):
    _lab, ws, boxes, responder = ews_lab
    responder.impersonation_allowed = {boxes[0].email}
    result = govmigrate("-w", ws, "sync", "--all", "--json", expect=int(ExitCode.PARTIAL))
    rows = {r["mailbox"]: r for r in json.loads(result.stdout)}
    assert rows[boxes[0].email]["result"] == "ok"
    assert rows[boxes[1].email]["result"].startswith("failed")
    assert "Traceback" not in result.stderr


def test_exchange_lost_state_store_duplicates_nothing(govmigrate, ews_lab):
    _lab, ws, boxes, _ = ews_lab
    box = boxes[0]
    govmigrate("-w", ws, "sync", box.email)
    for suffix in ("", "-wal", "-shm"):
        Path(ws / f"state.db{suffix}").unlink(missing_ok=True)
    open_store(ws / "state.db", create=True).close()
    rows = json.loads(govmigrate("-w", ws, "sync", box.email, "--json").stdout)
    assert rows[0]["copied"] == 0
    results = json.loads(govmigrate("-w", ws, "verify", box.email, "--deep", "--json").stdout)
    assert results[0]["matches"] and results[0]["duplicates"] == 0
