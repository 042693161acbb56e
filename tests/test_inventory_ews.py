"""Inventory of an Exchange source through the lab's EWS responder: counts equal the corpus, access falls back
from impersonation to delegate, throttling is waited out, and refusals are recorded with their reason."""

from __future__ import annotations

import shutil
from pathlib import Path
from secrets import token_hex

import pytest
from exchangelib.protocol import close_connections

from migrate.core.errors import ExitCode
from tests.conftest import Runner
from tests.lab import corpus
from tests.lab.certs import CertFiles, LabCA, lab_ca
from tests.lab.ews import EwsResponder
from tests.lab.scenario import CA_FILE
from tests.test_inventory import (
    assert_matches_corpus,
    imap_source,
    iso,
    secret_file,
    stored,
    stored_probe,
    write_project,
)

pytestmark = pytest.mark.lab

DOMAIN = "finance.gov.bz"
SERVICE = "svc-migrate@finance.gov.bz"
PASSWORD = "lab-ews-Inventory-9k"
PARTIAL = int(ExitCode.PARTIAL)


@pytest.fixture(scope="module")
def boxes() -> list[corpus.CorpusMailbox]:
    return corpus.ministry(seed="ews-inventory", domain=DOMAIN, users=3, messages=30)


@pytest.fixture(autouse=True)
def _no_pooled_connections():
    yield
    close_connections()  # exchangelib keeps sessions per endpoint; responders come and go between tests


def lab_tls() -> CertFiles:
    """A certificate for a responder from the lab CA, which :func:`ews_source` tells govmigrate to trust."""
    return lab_ca().issue(f"ews-{token_hex(4)}")


def ews_source(ws: Path, url: str, *, password: str = PASSWORD, **server: object) -> dict:
    ws.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(lab_ca().ca_file, ws / CA_FILE)
    entry = {"id": "finance", "ministry": "Ministry of Finance", "domains": [DOMAIN],
             "server": {"type": "ews", "url": url, "auth": "basic", "user": SERVICE,
                        "password": secret_file(ws, "ews", password), "ca_file": CA_FILE, "timeout": 20},
             "users": "users/finance.csv", "connections": 3}
    entry["server"].update(server)
    return entry


def assert_ews_matches_corpus(doc: dict, box: corpus.CorpusMailbox, responder: EwsResponder) -> None:
    """Folder by folder, under the names Exchange gives them ("Sent" is "Sent Items" there)."""
    for folder in box.folders:
        name = "/".join(responder.folder_path(box.email, folder.path))
        got = doc["folders"].get(name)
        assert got is not None, f"{box.email}: folder {name!r} missing"
        assert (got["messages"], got["bytes"]) == (len(folder.messages), folder.size), name
    messages = [m for f in box.folders for m in f.messages]
    assert doc["ok"] is True and doc["error"] is None
    assert (doc["messages"], doc["bytes"]) == (len(messages), box.size)
    assert doc["largest"] == max(m.size for m in messages)
    assert doc["oldest"] == iso(min(m.internaldate for m in messages))
    assert doc["newest"] == iso(max(m.internaldate for m in messages))


@pytest.fixture(scope="module")
def mixed_run(boxes, lab_sources, tmp_path_factory):
    """The whole lab at once: both Dovecot sources and the Exchange source, one inventory run."""
    with EwsResponder(boxes, service_user=SERVICE, service_password=PASSWORD, page_limit=8,
                      tls=lab_tls()) as responder:
        ws = tmp_path_factory.mktemp("mixed") / "ws"
        sources = [imap_source(ws, s) for s in lab_sources.values()]
        users = {s.id: corpus.user_list_csv(s.mailboxes) for s in lab_sources.values()}
        write_project(ws, [*sources, ews_source(ws, responder.url)], {**users, "finance": corpus.user_list_csv(boxes)})
        result = Runner()("-w", ws, "inventory", "mail")
        yield ws, result, responder
    close_connections()


def test_inventory_of_imap_and_ews_sources_matches_the_corpus_folder_by_folder(mixed_run, boxes, lab_sources):
    ws, _, responder = mixed_run
    docs = stored(ws)
    for box in boxes:
        assert_ews_matches_corpus(docs[box.email], box, responder)
        assert docs[box.email]["quota_limit"] == 10 * 1024**3
        assert docs[box.email]["quota_used"] == box.size
    for source in lab_sources.values():
        for box in source.mailboxes:
            assert_matches_corpus(docs[box.email], box, source.server)


def test_ews_folders_carry_their_special_use(mixed_run, boxes):
    ws, _, _ = mixed_run
    folders = stored(ws)[boxes[0].email]["folders"]
    assert folders["Sent Items"]["special_use"] == "\\Sent"
    assert folders["Deleted Items"]["special_use"] == "\\Trash"
    assert folders["Inbox"]["special_use"] is None


def test_ews_probe_reports_endpoint_version_and_impersonation(mixed_run):
    ws, result, responder = mixed_run
    probe = stored_probe(ws, "finance")
    assert probe.ok is True
    d = probe.detail
    assert d["kind"] == "ews" and d["endpoint"] == responder.url and d["reachable"] is True
    assert d["version"] == "Exchange2016" and "Exchange" in d["software"]
    assert d["login"] == {"method": "impersonation", "admin_user": SERVICE, "ok": True, "user": corpus_first(ws)}
    assert "Ministry of Finance (finance)" in result.stdout
    assert f"login: impersonation as {SERVICE}: works" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr


def corpus_first(ws: Path) -> str:
    return (ws / "users" / "finance.csv").read_text().splitlines()[1].split(",")[0]


def test_impersonation_refused_falls_back_to_delegate_access(boxes, govmigrate, tmp_path):
    allowed, delegated, neither = boxes
    with EwsResponder(boxes, service_user=SERVICE, service_password=PASSWORD,
                      impersonation_allowed={allowed.email}, delegates={delegated.email},
                      tls=lab_tls()) as responder:
        ws = tmp_path / "ws"
        write_project(ws, [ews_source(ws, responder.url)], {"finance": corpus.user_list_csv(boxes)})
        result = govmigrate("-w", ws, "inventory", "mail", expect=PARTIAL)
        delegate_reads = responder.requests_for("FindItem", delegated.email)
    docs = stored(ws)
    assert_ews_matches_corpus(docs[allowed.email], allowed, responder)
    assert_ews_matches_corpus(docs[delegated.email], delegated, responder)
    assert delegate_reads and not any(r.impersonated for r in delegate_reads)
    assert docs[neither.email]["ok"] is False
    assert "may not impersonate" in docs[neither.email]["error"]
    assert "delegate access refused too" in docs[neither.email]["error"]
    assert "Traceback" not in result.stderr


def test_ews_throttling_is_waited_out_with_the_servers_back_off(boxes, govmigrate, tmp_path):
    box = boxes[0]
    with EwsResponder([box], service_user=SERVICE, service_password=PASSWORD, tls=lab_tls()) as responder:
        responder.inject("server_busy", count=3, operation="FindItem", mailbox=box.email, back_off_ms=20)
        responder.inject("http_503", count=1, operation="FindFolder", mailbox=box.email, retry_after=1)
        ws = tmp_path / "ws"
        write_project(ws, [ews_source(ws, responder.url)], {"finance": corpus.user_list_csv([box])})
        result = govmigrate("-w", ws, "inventory", "mail")
        busy = [r for r in responder.requests_for("FindItem", box.email) if r.code == "ErrorServerBusy"]
        unavailable = [r for r in responder.requests_for("FindFolder", box.email) if r.status == 503]
    assert len(busy) == 3 and len(unavailable) == 1, "the faults were served"
    assert_ews_matches_corpus(stored(ws)[box.email], box, responder)
    assert "server busy" in result.stderr  # each back-off is logged


def test_wrong_service_account_password_is_recorded_without_trying_every_mailbox(boxes, govmigrate, tmp_path):
    wrong = "not-the-service-password"
    with EwsResponder(boxes, service_user=SERVICE, service_password=PASSWORD, tls=lab_tls()) as responder:
        ws = tmp_path / "ws"
        write_project(ws, [ews_source(ws, responder.url, password=wrong)], {"finance": corpus.user_list_csv(boxes)})
        result = govmigrate("-w", ws, "inventory", "mail", expect=PARTIAL)
        mailbox_requests = [r for r in responder.request_log if r.mailbox]
    probe = stored_probe(ws, "finance")
    assert probe.ok is False and "refused the password of service account" in probe.error
    assert probe.detail["login"]["ok"] is False
    docs = stored(ws)
    for box in boxes:
        assert docs[box.email]["ok"] is False and docs[box.email]["error"].startswith("not measured:")
    assert mailbox_requests == [], "no mailbox was tried with a password the server refused"
    state = b"".join(p.read_bytes() for p in ws.glob("state.db*"))
    for secret in (wrong, PASSWORD):
        assert secret not in result.stdout + result.stderr and secret.encode() not in state
    assert "Traceback" not in result.stderr


def test_ews_endpoint_with_an_expired_certificate_is_refused(boxes, govmigrate, tmp_path):
    ca = LabCA(tmp_path / "ca")
    with EwsResponder(boxes[:1], service_user=SERVICE, service_password=PASSWORD,
                      tls=ca.issue("ews", expired=True)) as responder:
        ws = tmp_path / "ws"
        write_project(ws, [ews_source(ws, responder.url, ca_file=str(ca.ca_file))],
                      {"finance": corpus.user_list_csv(boxes[:1])})
        result = govmigrate("-w", ws, "inventory", "mail", expect=PARTIAL)
    probe = stored_probe(ws, "finance")
    assert probe.ok is False and "certificate has expired" in probe.error
    assert probe.detail["tls"]["days_left"] < 0 and probe.detail["tls"]["issuer"] == "CN=govmigrate lab CA"
    assert stored(ws)[boxes[0].email]["error"].startswith("not measured:")
    # The responder's HTTP thread prints its own traceback for the handshake govmigrate broke off; none of
    # the tracebacks in the captured stderr may be govmigrate's.
    blocks = result.stderr.split("Traceback (most recent call last):")[1:]
    assert all("socketserver.py" in block and "/migrate/" not in block for block in blocks)
