"""migrate.mailbox.ews against the lab's EWS responder: folders, items, exact MIME, incremental sync, access
failures with reasons, throttling retried with the server's own back-off, and TLS verification."""

from __future__ import annotations

import base64
import logging
import threading
from pathlib import Path

import pytest
from exchangelib.errors import RateLimitError

from migrate.core.config import EwsServer
from migrate.core.errors import (
    ConnectFailed,
    FolderFailed,
    LoginFailed,
    RemoteError,
    Throttled,
    TlsFailed,
    TransientError,
)
from migrate.core.secrets import MASK, Secret, redact
from migrate.mailbox.ews import EwsSource, SyncStateInvalid
from tests.lab import corpus
from tests.lab.base import free_port
from tests.lab.certs import LabCA
from tests.lab.ews import EXCHANGE_2010_SP2, EwsResponder
from tests.lab.ews_store import corpus_mime, ews_folder_path
from tests.lab.proxy import FlakyProxy

pytestmark = pytest.mark.lab

DOMAIN = "finance.gov.bz"
SERVICE = "svc-migrate@finance.gov.bz"
PASSWORD = "ews-Service-Pw-9x!"


@pytest.fixture(scope="module")
def boxes() -> list[corpus.CorpusMailbox]:
    return corpus.ministry(seed="ews-source", domain=DOMAIN, users=2, layout="legacy", messages=30)


@pytest.fixture
def responder(boxes):
    with EwsResponder(boxes, service_user=SERVICE, service_password=PASSWORD, page_limit=9) as server:
        yield server


def source(url: str, *, password: str = PASSWORD, base_dir: Path = Path("."), **kwargs) -> EwsSource:
    fields = {"type": "ews", "url": url, "auth": "basic", "user": SERVICE, "password": "env:EWS_PASSWORD"}
    options = {k: kwargs.pop(k) for k in ("max_wait", "retries", "retry_wait", "page_size", "mime_batch")
               if k in kwargs}
    options.setdefault("retry_wait", 0.05)
    options.setdefault("page_size", 20)
    return EwsSource(EwsServer(**fields, **kwargs), Secret(password), base_dir=base_dir, label="source finance",
                     **options)


@pytest.fixture
def src(responder):
    with source(responder.url) as s:
        yield s


def expected_flags(flags: tuple[str, ...]) -> tuple[str, ...]:
    """What an EWS item can carry of IMAP flags (no \\Answered), in EwsItem's order."""
    order = [f for f in ("\\Seen", "\\Flagged", "\\Draft") if f in flags]
    return (*order, *[f for f in flags if not f.startswith("\\")])


def test_folders_match_the_corpus_folder_by_folder(src, boxes):
    box = boxes[0]
    folders = {f.path: f for f in src.mailbox(box.email).folders()}
    for cf in box.folders:
        info = folders[ews_folder_path(box, cf.path)]
        assert info.total_count == len(cf.messages), cf.path
        assert info.size == cf.size, cf.path
    assert folders[("Inbox",)].well_known == "inbox" and folders[("Inbox",)].special_use is None
    assert (folders[("Sent Items",)].well_known, folders[("Sent Items",)].special_use) == ("sentitems", "\\Sent")
    assert folders[("Deleted Items",)].special_use == "\\Trash"
    assert folders[("Junk Email",)].special_use == "\\Junk"
    assert folders[("Drafts",)].special_use == "\\Drafts"
    assert folders[("Archives",)].well_known is None
    assert ("Projects", "Budget 2025", "Q1 Reviews") in folders


def test_non_mail_folders_are_left_out(src, boxes):
    paths = {f.path for f in src.mailbox(boxes[0].email).folders()}
    assert not paths & {("Calendar",), ("Contacts",), ("Tasks",)}
    corpus_paths = {ews_folder_path(boxes[0], cf.path) for cf in boxes[0].folders}
    parents = {p[:n] for p in corpus_paths for n in range(1, len(p))}       # e.g. ("Correspondence",)
    assert paths == corpus_paths | parents


def test_items_carry_flags_dates_and_sizes_in_folder_order(src, responder, boxes):
    box = boxes[1]
    mailbox = src.mailbox(box.email)
    responder.clear_log()
    total = 0
    for info in mailbox.folders():
        cf = next((f for f in box.folders if ews_folder_path(box, f.path) == info.path),
                  corpus.CorpusFolder(info.path))                  # a parent the corpus only implies
        items = list(mailbox.items(info.folder_id))
        assert [i.size for i in items] == [m.size for m in cf.messages], info.path
        assert [i.received for i in items] == [m.internaldate.astimezone() for m in cf.messages]
        assert all(i.received.utcoffset().total_seconds() == 0 for i in items)
        assert [i.flags for i in items] == [expected_flags(m.flags) for m in cf.messages], info.path
        total += len(items)
    assert total == box.messages
    inbox_pages = -(-len(box.folder("INBOX").messages) // 9)
    assert inbox_pages > 1 and len(responder.requests_for("FindItem")) >= inbox_pages


def test_mime_returns_the_exact_bytes_in_the_order_asked(src, responder, boxes):
    box = boxes[0]
    mailbox = src.mailbox(box.email)
    ids, raws = [], []
    for cf in box.folders:
        ids += responder.item_ids(box.email, cf.path)
        raws += [corpus_mime(m) for m in cf.messages]
    ids.reverse()
    raws.reverse()
    got = list(mailbox.mime(ids))
    assert [i for i, _ in got] == ids
    assert [raw for _, raw in got] == raws
    assert max(len(r) for r in raws) > 2_000_000


def test_mime_leaves_out_items_deleted_meanwhile(src, responder, boxes):
    box = boxes[0]
    ids = responder.item_ids(box.email, ("INBOX",))[:3]
    responder.delete_message(box.email, ids[1])
    assert [i for i, _ in src.mailbox(box.email).mime(ids)] == [ids[0], ids[2]]


def test_sync_lists_everything_first_then_only_what_changed(src, responder, boxes):
    box = boxes[0]
    mailbox = src.mailbox(box.email)
    inbox = next(f for f in mailbox.folders() if f.well_known == "inbox")
    state, creates, pages = None, [], 0
    while True:
        changes = mailbox.sync(inbox.folder_id, state, max_changes=4)
        creates += changes.creates
        state, pages = changes.state, pages + 1
        assert not changes.updates and not changes.deletes
        if not changes.more:
            break
    assert [c.item_id for c in creates] == responder.item_ids(box.email, ("INBOX",))
    assert pages == -(-len(creates) // 4)
    quiet = mailbox.sync(inbox.folder_id, state)
    assert (quiet.creates, quiet.updates, quiet.deletes, quiet.more) == ([], [], [], False)

    items = {c.item_id: c for c in creates}
    ids = list(items)
    read = next(i for i in ids[1:] if "\\Seen" in items[i].flags)
    flagged = next(i for i in ids[1:] if i != read and "\\Flagged" not in items[i].flags)
    new_id = responder.add_message(box.email, ("INBOX",), box.folder("Personal").messages[0])
    responder.set_flags(box.email, read, ())                        # a read-flag-only change
    responder.set_flags(box.email, flagged, ("\\Flagged", "Urgent_Review"))
    responder.delete_message(box.email, ids[0])
    changes = mailbox.sync(inbox.folder_id, state)
    assert [c.item_id for c in changes.creates] == [new_id]
    assert changes.creates[0].size == box.folder("Personal").messages[0].size
    assert {u.item_id: u.flags for u in changes.updates} == {read: (), flagged: ("\\Flagged", "Urgent_Review")}
    assert changes.deletes == [ids[0]]
    assert all(u.change_key != items[u.item_id].change_key for u in changes.updates)
    assert mailbox.sync(inbox.folder_id, changes.state).creates == []


def test_a_sync_state_the_server_refuses_means_start_again(src, boxes):
    mailbox = src.mailbox(boxes[0].email)
    folders = mailbox.folders()
    state = mailbox.sync(folders[0].folder_id, None).state
    with pytest.raises(SyncStateInvalid, match=boxes[0].email):
        mailbox.sync(folders[1].folder_id, state)


def test_a_folder_that_is_gone_is_folder_failed(src, boxes):
    mailbox = src.mailbox(boxes[0].email)
    gone = base64.b64encode(b"a folder id the server never issued").decode()
    with pytest.raises(FolderFailed, match=boxes[0].email):
        list(mailbox.items(gone))
    with pytest.raises(FolderFailed):
        mailbox.sync(gone, None)


def test_wrong_password_is_login_failed_without_the_password_anywhere(responder, boxes, caplog):
    caplog.set_level(logging.DEBUG, logger="migrate")
    with source(responder.url, password="wrong-Password-1") as s, pytest.raises(LoginFailed) as failure:
        s.mailbox(boxes[0].email)
    assert "refused the password" in str(failure.value) and SERVICE in str(failure.value)
    assert "wrong-Password-1" not in str(failure.value) and "wrong-Password-1" not in caplog.text
    assert len(responder.request_log) == 1, "a refused password is never retried (account lock-out)"
    token = base64.b64encode(f"{SERVICE}:wrong-Password-1".encode()).decode()
    assert redact(f"Authorization: Basic {token}") == f"Authorization: Basic {MASK}"


def test_unknown_mailbox_is_a_remote_error_naming_it(src):
    with pytest.raises(RemoteError, match=f"no mailbox nobody@{DOMAIN}") as failure:
        src.mailbox(f"nobody@{DOMAIN}")
    assert not isinstance(failure.value, (LoginFailed, TransientError))


def test_impersonation_refused_is_login_failed(boxes):
    with EwsResponder(boxes, service_user=SERVICE, service_password=PASSWORD, impersonation_allowed=False) as r, \
            source(r.url) as s, pytest.raises(LoginFailed, match="ApplicationImpersonation"):
        s.mailbox(boxes[0].email)


def test_delegate_access_to_delegated_mailboxes_only(boxes):
    with EwsResponder(boxes, service_user=SERVICE, service_password=PASSWORD,
                      delegates={boxes[1].email}) as r, source(r.url, access="delegate") as s:
        folders = s.mailbox(boxes[1].email).folders()
        assert sum(f.total_count for f in folders) == boxes[1].messages
        assert not any(rec.impersonated for rec in r.request_log)
        with pytest.raises(LoginFailed, match=f"no access to mailbox {boxes[0].email}"):
            s.mailbox(boxes[0].email)


def test_server_busy_is_retried_after_the_servers_back_off_and_logged(src, responder, boxes, caplog,
                                                                     exchangelib_sleeps):
    mailbox = src.mailbox(boxes[0].email)
    inbox = mailbox.folders()[0]
    responder.inject("server_busy", count=2, operation="FindItem", back_off_ms=200)
    caplog.set_level(logging.WARNING, logger="migrate")
    items = list(mailbox.items(inbox.folder_id))
    assert len(items) == inbox.total_count
    assert len(exchangelib_sleeps) == 2 and all(0.1 < s <= 0.2 for s in exchangelib_sleeps), exchangelib_sleeps
    retries = [r for r in caplog.records if r.name == "migrate.mailbox.ews" and "server busy" in r.message]
    assert [r.message.split("(")[-1] for r in retries] == ["back-off 1 of 5 for this server)",
                                                          "back-off 2 of 5 for this server)"]
    assert "waiting 0.20s" in retries[0].message


def test_http_503_is_retried_after_retry_after_and_logged(src, responder, boxes, caplog, exchangelib_sleeps):
    mailbox = src.mailbox(boxes[0].email)
    inbox = mailbox.folders()[0]
    responder.inject("http_503", count=1, operation="SyncFolderItems", retry_after=1)
    caplog.set_level(logging.WARNING, logger="migrate")
    assert len(mailbox.sync(inbox.folder_id, None).creates) == inbox.total_count
    assert len(exchangelib_sleeps) == 1 and 0.5 < exchangelib_sleeps[0] <= 1.0
    assert any("waiting 1.00s" in r.message for r in caplog.records if r.name == "migrate.mailbox.ews")


def test_throttling_that_outlasts_the_policy_is_throttled_and_not_retried_again(responder, boxes,
                                                                                exchangelib_sleeps):
    with source(responder.url, retries=2) as s:
        mailbox = s.mailbox(boxes[0].email)
        responder.inject("server_busy", count=10, operation="FindFolder", back_off_ms=40)
        with pytest.raises(Throttled, match=r"kept throttling .* 2 times in a row") as failure:
            mailbox.folders()
        assert not failure.value.transient, "the caller must not retry it again in this run"
        assert len(responder.requests_for("FindFolder")) == 3, "two back-offs, then give up; no extra retries"
    exchangelib_sleeps.clear()
    with source(responder.url, max_wait=1) as s:
        mailbox = s.mailbox(boxes[0].email)
        responder.clear_faults()
        responder.inject("server_busy", count=1, operation="FindFolder", back_off_ms=120_000)
        with pytest.raises(Throttled, match=r"120\.0s"):
            mailbox.folders()
        assert exchangelib_sleeps == [], "a back-off longer than max_wait is not waited for at all"
        # ...and it holds for every thread that talks to this server: nothing more is sent until it ends.
        before = len(responder.request_log)
        other = threading.Thread(target=lambda: errors.append(_throttled(lambda: s.mailbox(boxes[1].email))))
        errors: list[str] = []
        other.start()
        other.join()
        assert errors and "back off for 1" in errors[0] and "left for the next pass" in errors[0], errors
        assert len(responder.request_log) == before, "no request reached the server while it asked for quiet"


def _throttled(fn) -> str:
    try:
        fn()
    except Throttled as exc:
        return exc.message
    return "not throttled"


def test_one_back_off_budget_per_server_across_threads_and_kinds_of_access(tmp_path):
    """Two threads that each meet two busy answers spend one budget of three, not two budgets."""
    from migrate.core.config import load_project
    from migrate.mailbox.ews import _BoundedFaultTolerance
    from migrate.mailbox.sources import Sources

    budget = _BoundedFaultTolerance(max_wait=10, max_retries=3, label="source finance")
    outcomes: list[str] = []

    def busy_twice() -> None:
        for _ in range(2):
            try:
                budget.back_off(0.001)
                outcomes.append("waited")
            except RateLimitError:
                outcomes.append("throttled")

    threads = [threading.Thread(target=busy_twice) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["throttled", "waited", "waited", "waited"]
    assert budget.blocked_for() == 0 or budget.blocked_for() < 0.01
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "pw").write_text("lab-budget-secret")
    (ws / "pw").chmod(0o600)
    (ws / "users.csv").write_text("email\n")
    (ws / "migration.yaml").write_text(
        "version: 1\nname: budget\ncentral:\n  imap: {host: 127.0.0.1, port: 993}\n"
        "  login: {method: master_user, user: admin, password: 'file:pw'}\n"
        "sources:\n  - id: finance\n    ministry: Finance\n    domains: [finance.gov.bz]\n    server:\n"
        "      type: ews\n      url: https://127.0.0.1:1/EWS/Exchange.asmx\n      user: svc\n"
        "      password: 'file:pw'\n    users: users.csv\n")
    sources = Sources(load_project(ws / "migration.yaml"))
    assert sources.ews(sources.project.config.sources[0])._policy is \
        sources.ews(sources.project.config.sources[0], access="delegate")._policy


def test_a_lost_connection_is_not_retried_by_the_ews_client(responder, boxes, exchangelib_sleeps):
    """Lost connections have one retry layer, the caller's (the sync retries the mailbox and resumes): the
    EWS client neither backs off nor tries again by itself."""
    proxy = FlakyProxy(responder.port, cut_after=None).start()
    try:
        with source(f"http://127.0.0.1:{proxy.port}/EWS/Exchange.asmx") as s:
            mailbox = s.mailbox(boxes[0].email)
            # Several sessions in the pool: that is when exchangelib would otherwise back off and try again.
            s._protocol.close()
            s._protocol.increase_poolsize()
            s._protocol.increase_poolsize()
            proxy.cut_after, proxy.cuts_left = 1, 1
            before = len(responder.request_log)
            with pytest.raises(TransientError, match=r"connection lost|timed out"):
                mailbox.folders()
            assert proxy.cuts_done == 1
            assert exchangelib_sleeps == []
            assert len(responder.request_log) == before + 1, "one attempt, no second"
            assert mailbox.folders(), "the next attempt (the caller's) goes through"
    finally:
        proxy.stop()


def test_exceeded_connection_count_is_left_to_the_callers_retry(src, responder, boxes):
    mailbox = src.mailbox(boxes[0].email)
    ids = responder.item_ids(boxes[0].email, ("INBOX",))[:4]
    responder.inject("connection_count", count=1, operation="GetItem")
    with pytest.raises(TransientError, match="ErrorExceededConnectionCount"):
        list(mailbox.mime(ids))
    assert len(list(mailbox.mime(ids))) == 4
    assert [r.code for r in responder.requests_for("GetItem")] == ["ErrorExceededConnectionCount", "NoError"]


def test_a_401_in_the_middle_is_login_failed_not_retried(src, responder, boxes):
    mailbox = src.mailbox(boxes[0].email)
    responder.inject("unauthorized", count=3, operation="FindFolder")
    with pytest.raises(LoginFailed):
        mailbox.folders()
    assert len(responder.requests_for("FindFolder")) == 1


def test_an_older_exchange_still_names_the_well_known_folders(boxes):
    with EwsResponder(boxes, service_user=SERVICE, service_password=PASSWORD, version=EXCHANGE_2010_SP2) as r, \
            source(r.url) as s:
        assert s.probe()["version"] == "Exchange2010_SP2"
        known = {f.well_known for f in s.mailbox(boxes[0].email).folders()}
        assert known >= {"inbox", "sentitems", "deleteditems", "drafts", "junkemail"}


def test_probe_reports_version_and_tls_and_quota(tmp_path, boxes):
    ca = LabCA(tmp_path / "ca")
    with EwsResponder(boxes, service_user=SERVICE, service_password=PASSWORD, tls=ca.issue("ews"),
                      quota_bytes=2 * 1024**3) as r, source(r.url, ca_file=str(ca.ca_file)) as s:
        info = s.probe()
        assert info["auth_ok"] and info["build"] == "15.1.2507.6" and info["version"] == "Exchange2016"
        assert info["tls"]["tls"] and "govmigrate lab CA" in info["tls"]["issuer"]
        assert "127.0.0.1" in info["tls"]["names"]
        used, limit = s.mailbox(boxes[0].email).quota()
        assert (used, limit) == (boxes[0].size, 2 * 1024**3)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_untrusted_certificate_is_tls_failed_unless_verification_is_off(tmp_path, boxes):
    ca = LabCA(tmp_path / "ca")
    with EwsResponder(boxes, service_user=SERVICE, service_password=PASSWORD, tls=ca.issue("ews")) as r:
        with source(r.url) as s, pytest.raises(TlsFailed, match="certificate"):
            s.mailbox(boxes[0].email)
        with source(r.url) as s, pytest.raises(TlsFailed):
            s.probe()
        with source(r.url, verify_certificate=False) as s:
            assert s.mailbox(boxes[0].email).folders()


def test_ca_file_relative_to_the_project_directory(tmp_path, boxes):
    ca = LabCA(tmp_path / "ca")
    with EwsResponder(boxes, service_user=SERVICE, service_password=PASSWORD, tls=ca.issue("ews")) as r, \
            source(r.url, ca_file="ca/ca.crt", base_dir=tmp_path) as s:
        assert s.mailbox(boxes[1].email).folders()


def test_nothing_listening_is_connect_failed(boxes):
    with source(f"http://127.0.0.1:{free_port()}/EWS/Exchange.asmx") as s, \
            pytest.raises(ConnectFailed, match="connection refused"):
        s.mailbox(boxes[0].email)


def test_quota_is_none_when_the_server_does_not_show_it(boxes):
    with EwsResponder(boxes, service_user=SERVICE, service_password=PASSWORD, quota_bytes=None) as r, \
            source(r.url) as s:
        assert s.mailbox(boxes[0].email).quota() is None


def test_busy_inside_an_http_200_answer_is_waited_out_as_asked_and_never_pairs_the_wrong_bytes(
        src, responder, boxes, exchangelib_sleeps):
    """HTTP 200 whose third response message is ErrorInternalServerError around an inner ErrorServerBusy:
    the client waits the BackOffMilliseconds the server named (not exchangelib's own 10 s), and exchangelib's
    second reading of the request (after it already yielded two answers) gives each id its own bytes."""
    box = boxes[0]
    mailbox = src.mailbox(box.email)
    ids = responder.item_ids(box.email, ("INBOX",))[:6]
    responder.busy_inside_get_items(1, back_off_ms=400)
    got = list(mailbox.mime(ids))
    assert [i for i, _ in got] == ids
    assert all(raw == responder.store.items[i].mime for i, raw in got)
    assert len(exchangelib_sleeps) == 1 and 0.2 < exchangelib_sleeps[0] <= 0.4, exchangelib_sleeps
    assert [r.code for r in responder.requests_for("GetItem")][-2:] == ["ErrorInternalServerError", "NoError"]
