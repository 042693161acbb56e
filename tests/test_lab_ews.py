"""The lab's EWS responder speaks EWS well enough that unmodified exchangelib works against it: folders, paging,
exact MIME bytes, incremental SyncFolderItems, impersonation and delegate access, and every injected fault."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser

import pytest
import requests
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    UTC,
    Account,
    Configuration,
    Credentials,
    FailFast,
    FaultTolerance,
)
from exchangelib import errors as ews_errors
from exchangelib.extended_properties import ExtendedProperty, Flag
from exchangelib.folders import Folder
from exchangelib.items import Message
from exchangelib.protocol import close_connections

from tests.lab import corpus
from tests.lab.certs import LabCA
from tests.lab.ews import EXCHANGE_2010_SP2, EwsResponder
from tests.lab.ews_store import corpus_mime, ews_folder_path

pytestmark = pytest.mark.lab

DOMAIN = "finance.gov.bz"
SERVICE = "svc-migrate@finance.gov.bz"
PASSWORD = "lab-ews-Secret-7Q"
ENVELOPE = ('<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
            'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Header>'
            '<t:RequestServerVersion Version="Exchange2016"/></s:Header><s:Body>{}</s:Body></s:Envelope>')


class FolderSize(ExtendedProperty):
    property_tag = 0x0E08
    property_type = "Long"


@pytest.fixture(scope="module")
def boxes() -> list[corpus.CorpusMailbox]:
    return corpus.ministry(seed="ews-lab", domain=DOMAIN, users=2, layout="modern", messages=30)


@pytest.fixture
def responder(boxes):
    with EwsResponder(boxes, service_user=SERVICE, service_password=PASSWORD, page_limit=8,
                      delegates={boxes[1].email}) as server:
        yield server
    close_connections()


def account(server: EwsResponder, email: str, *, access: str = IMPERSONATION, password: str = PASSWORD,
            policy=None) -> Account:
    config = Configuration(service_endpoint=server.url, credentials=Credentials(SERVICE, password),
                           auth_type=BASIC, retry_policy=policy or FailFast())
    return Account(email, config=config, access_type=access, default_timezone=UTC)


def soap(server: EwsResponder, operation: str, *, impersonate: str | None = None) -> ET.Element:
    header = (f"<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{impersonate}"
              "</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>") if impersonate else ""
    body = ENVELOPE.replace("</s:Header>", header + "</s:Header>").format(operation)
    r = requests.post(server.url, data=body.encode(), auth=(SERVICE, PASSWORD), timeout=5)
    assert r.status_code == 200, r.text
    return ET.fromstring(r.content)


def ews_path(folder) -> tuple[str, ...]:
    names = [p.name for p in folder.parts]
    return tuple(names[names.index("Top of Information Store") + 1:])


def test_exchangelib_reads_the_server_version_from_the_soap_header(responder, boxes):
    version = account(responder, boxes[0].email).version
    assert (version.build.major_version, version.build.minor_version) == (15, 1)
    assert version.api_version == "Exchange2016"
    assert responder.request_log[0].operation == "ConvertId"      # exchangelib's version probe


def test_an_older_server_is_negotiated_down_to_its_schema_version(boxes):
    with EwsResponder(boxes, service_user=SERVICE, service_password=PASSWORD, version=EXCHANGE_2010_SP2) as server:
        a = account(server, boxes[0].email)
        assert a.version.api_version == "Exchange2010_SP2"
        assert a.inbox.total_count == len(boxes[0].folder("INBOX").messages)
        refused = [r for r in server.request_log if r.code == "ErrorInvalidServerVersion"]
        assert refused, "newer schema versions were refused before Exchange2010_SP2 was accepted"
    close_connections()


def test_wrong_password_gets_401_with_a_basic_challenge(responder, boxes):
    r = requests.post(responder.url, data=ENVELOPE.format("<m:GetFolder/>"), auth=(SERVICE, "wrong"), timeout=5)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].lower().startswith("basic")
    with pytest.raises(ews_errors.UnauthorizedError):
        account(responder, boxes[0].email, password="wrong").root  # noqa: B018


def test_unknown_operations_and_garbage_get_soap_faults_not_tracebacks(responder):
    r = requests.post(responder.url, data=ENVELOPE.format("<m:CreateItem/>"), auth=(SERVICE, PASSWORD), timeout=5)
    assert r.status_code == 500
    assert b"<faultcode" in r.content and b"ErrorInvalidRequest" in r.content
    assert b"ServerVersionInfo" in r.content
    r = requests.post(responder.url, data=b"<not xml", auth=(SERVICE, PASSWORD), timeout=5)
    assert r.status_code == 500 and b"ErrorSchemaValidation" in r.content
    assert b"Traceback" not in r.content
    assert requests.get(responder.url.replace("Exchange.asmx", "nothing"), timeout=5).status_code == 404


def test_folder_tree_maps_the_corpus_onto_exchange_folders(responder, boxes):
    box = boxes[0]
    a = account(responder, box.email)
    folders = {ews_path(f): f for f in a.msg_folder_root.walk()}
    for cf in box.folders:
        f = folders[ews_folder_path(box, cf.path)]
        assert f.total_count == len(cf.messages), cf.path
        assert f.unread_count == sum(1 for m in cf.messages if "\\Seen" not in m.flags), cf.path
        assert f.folder_class == "IPF.Note"
    assert folders[("Inbox",)].is_distinguished and a.inbox.id == folders[("Inbox",)].id
    assert a.sent.name == "Sent Items" and a.trash.name == "Deleted Items" and a.junk.name == "Junk Email"
    assert a.drafts.total_count == len(box.folder("Drafts").messages)
    assert ("Archive",) in folders, "Archive stays an ordinary folder"
    assert folders[("Projects", "Budget 2025", "Q1 Reviews")].parent.name == "Budget 2025"
    assert folders[("Projects",)].child_folder_count == 2
    assert (a.msg_folder_root // "Projects" // "Budget 2025").id == folders[("Projects", "Budget 2025")].id
    assert folders[("Calendar",)].folder_class == "IPF.Appointment"
    assert folders[("Contacts",)].folder_class == "IPF.Contact"


def test_deep_find_folder_is_paged(responder, boxes):
    a = account(responder, boxes[0].email)
    responder.clear_log()
    found = list(a.msg_folder_root.walk())
    pages = responder.requests_for("FindFolder")
    below_root = len(responder.mailbox(boxes[0].email).root.descendants())
    assert len(found) > 8 and len(pages) == -(-below_root // 8)


def test_find_item_pages_in_folder_order_with_additional_properties(responder, boxes):
    box = boxes[0]
    inbox = account(responder, box.email).inbox
    responder.clear_log()
    items = list(inbox.all().only("size", "datetime_received", "is_read", "categories", "is_draft", "item_class"))
    messages = box.folder("INBOX").messages
    assert len(responder.requests_for("FindItem")) == -(-len(messages) // 8)
    assert [i.id for i in items] == responder.item_ids(box.email, ("INBOX",))
    for item, m in zip(items, messages, strict=True):
        assert item.size == m.size
        assert item.datetime_received == m.internaldate
        assert item.is_read == ("\\Seen" in m.flags)
        assert (item.categories or []) == [f for f in m.flags if not f.startswith("\\")]
        assert item.is_draft is ("\\Draft" in m.flags)
        assert item.item_class == "IPM.Note"
    assert inbox.filter(is_read=False).count() == sum(1 for m in messages if "\\Seen" not in m.flags)
    assert inbox.filter(size__gt=10_000).count() == sum(1 for m in messages if m.size > 10_000)
    assert [i.size for i in inbox.all().order_by("-size").only("size")] == sorted((m.size for m in messages),
                                                                                  reverse=True)


def test_base_shapes_and_the_item_flag_property(responder, boxes):
    box = boxes[0]
    t = "{http://schemas.microsoft.com/exchange/services/2006/types}"
    ids = responder.item_ids(box.email, ("INBOX",))
    responder.set_flags(box.email, ids[0], ("\\Flagged",))
    find = ('<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>{}</t:BaseShape>{}</m:ItemShape>'
            '<m:IndexedPageItemView MaxEntriesReturned="3" Offset="0" BasePoint="Beginning"/><m:ParentFolderIds>'
            '<t:DistinguishedFolderId Id="inbox"/></m:ParentFolderIds></m:FindItem>')
    id_only = soap(responder, find.format("IdOnly", ""), impersonate=box.email).findall(f".//{t}Message")
    assert len(id_only) == 3 and all([c.tag for c in m] == [f"{t}ItemId"] for m in id_only)
    flag = '<t:AdditionalProperties><t:FieldURI FieldURI="item:Flag"/></t:AdditionalProperties>'
    default = soap(responder, find.format("Default", flag), impersonate=box.email).findall(f".//{t}Message")
    assert default[0].findtext(f"{t}Flag/{t}FlagStatus") == "Flagged"
    assert default[1].findtext(f"{t}Flag/{t}FlagStatus") == "NotFlagged"
    head = BytesHeaderParser().parsebytes(box.folder("INBOX").messages[0].raw)
    assert default[0].findtext(f"{t}Subject") == str(make_header(decode_header(head["Subject"])))
    assert default[0].findtext(f"{t}From/{t}Mailbox/{t}EmailAddress") in head["From"]
    assert default[0].find(f"{t}Categories") is None and default[0].find(f"{t}MimeContent") is None
    everything = soap(responder, find.format("AllProperties", ""), impersonate=box.email).findall(f".//{t}Message")
    assert everything[0].findtext(f"{t}IsDraft") == "false" and everything[0].findtext(f"{t}ItemClass") == "IPM.Note"
    # exchangelib's default query asks for every item field it knows; the unknown ones are simply not returned.
    items = list(account(responder, box.email).inbox.all())
    assert items[0].subject == default[0].findtext(f"{t}Subject") and items[0].size == ews_sizes(box)[0]


def ews_sizes(box: corpus.CorpusMailbox) -> list[int]:
    return [m.size for m in box.folder("INBOX").messages]


def test_flag_status_and_folder_size_are_served_as_extended_properties(responder, boxes):
    box = boxes[0]
    a = account(responder, box.email)
    ids = responder.item_ids(box.email, ("INBOX",))
    responder.set_flags(box.email, ids[1], ("\\Seen", "\\Flagged"))
    expected = [2 if "\\Flagged" in m.flags else None for m in box.folder("INBOX").messages]
    expected[1] = 2
    Message.register("flag", Flag)
    Folder.register("size_bytes", FolderSize)
    try:
        assert [i.flag for i in a.inbox.all().only("flag")] == expected
        sizes = {ews_path(f): f.size_bytes for f in a.msg_folder_root.walk() if f.folder_class == "IPF.Note"}
        for cf in box.folders:
            assert sizes[ews_folder_path(box, cf.path)] == cf.size, cf.path
    finally:
        Message.deregister("flag")
        Folder.deregister("size_bytes")


def test_get_item_mime_content_is_exactly_the_corpus_bytes(responder, boxes):
    box = boxes[1]
    a = account(responder, box.email)
    checked = 0
    for cf in box.folders:
        ids = responder.item_ids(box.email, cf.path)
        if not ids:
            continue
        fetched = list(a.fetch(ids=[(i, None) for i in ids], only_fields=["mime_content"]))
        assert [f.mime_content for f in fetched] == [corpus_mime(m) for m in cf.messages], cf.path
        checked += len(ids)
    assert checked == box.messages
    assert any(m.size > 2_000_000 for cf in box.folders for m in cf.messages)


def test_sync_folder_items_pages_then_reports_creates_updates_and_deletes(responder, boxes):
    box = boxes[0]
    inbox = account(responder, box.email).inbox
    responder.clear_log()
    first = list(inbox.sync_items(only_fields=["is_read", "size"], max_changes_returned=5))
    assert {kind for kind, _ in first} == {"create"}
    assert [item.id for _, item in first] == responder.item_ids(box.email, ("INBOX",))
    assert len(responder.requests_for("SyncFolderItems")) == -(-len(first) // 5)
    state = inbox.item_sync_state
    assert list(inbox.sync_items(sync_state=state, only_fields=["is_read"])) == []

    pairs = list(zip(responder.item_ids(box.email, ("INBOX",)), box.folder("INBOX").messages, strict=True))
    gone = pairs[0][0]
    seen = next(i for i, m in pairs[1:] if "\\Seen" in m.flags)
    unflagged = next(i for i, m in pairs[1:] if "\\Flagged" not in m.flags and i != seen)
    new_id = responder.add_message(box.email, ("INBOX",), box.folder("Personal").messages[0])
    responder.set_flags(box.email, seen, ())                                   # only the read flag changes
    responder.set_flags(box.email, unflagged, ("\\Seen", "\\Flagged"))
    responder.delete_message(box.email, gone)
    changes = list(inbox.sync_items(sync_state=state, only_fields=["is_read", "size"]))
    by_kind: dict[str, list] = {}
    for kind, item in changes:
        by_kind.setdefault(kind, []).append(item)
    assert [i.id for i in by_kind["create"]] == [new_id]
    assert [i[0].id for i in by_kind["read_flag_change"]] == [seen] and by_kind["read_flag_change"][0][1] is False
    assert [i.id for i in by_kind["update"]] == [unflagged]
    assert [i.id for i in by_kind["delete"]] == [gone]


def test_change_keys_change_when_an_item_changes(responder, boxes):
    box = boxes[0]
    inbox = account(responder, box.email).inbox
    before = {i.id: i.changekey for i in inbox.all().only("size")}
    item_id = next(iter(before))
    responder.set_flags(box.email, item_id, ("\\Seen", "ProjectX"))
    after = {i.id: i.changekey for i in inbox.all().only("size")}
    assert after[item_id] != before[item_id]
    assert {k: v for k, v in after.items() if k != item_id} == {k: v for k, v in before.items() if k != item_id}


def test_impersonation_denied_and_unknown_mailboxes(boxes):
    with EwsResponder(boxes, service_user=SERVICE, service_password=PASSWORD,
                      impersonation_allowed={boxes[1].email}) as server:
        with pytest.raises(ews_errors.ErrorImpersonateUserDenied):
            account(server, boxes[0].email).root  # noqa: B018
        assert account(server, boxes[1].email).inbox.total_count == len(boxes[1].folder("INBOX").messages)
        with pytest.raises(ews_errors.ErrorNonExistentMailbox):
            account(server, f"nobody@{DOMAIN}").root  # noqa: B018
    close_connections()


def test_delegate_access_only_to_mailboxes_delegated(responder, boxes):
    delegated = account(responder, boxes[1].email, access=DELEGATE)
    assert delegated.inbox.total_count == len(boxes[1].folder("INBOX").messages)
    assert not responder.request_log[-1].impersonated
    with pytest.raises(ews_errors.ErrorAccessDenied):
        account(responder, boxes[0].email, access=DELEGATE).root  # noqa: B018


def test_resolve_names_finds_mailboxes(responder, boxes):
    a = account(responder, boxes[0].email)
    assert a.protocol.version.build          # protocol-level services need the version learnt first
    [mailbox] = a.protocol.resolve_names([boxes[0].email])
    assert mailbox.email_address == boxes[0].email and mailbox.name == boxes[0].display_name


def test_server_busy_back_off_is_honoured_then_service_resumes(responder, boxes, exchangelib_sleeps):
    inbox = account(responder, boxes[0].email, policy=FaultTolerance(max_wait=5)).inbox
    responder.inject("server_busy", count=1, operation="FindItem", back_off_ms=300)
    assert len(list(inbox.all().only("size"))) == len(boxes[0].folder("INBOX").messages)
    assert len(exchangelib_sleeps) == 1 and 0.2 < exchangelib_sleeps[0] <= 0.3
    assert [r.code for r in responder.requests_for("FindItem")][:2] == ["ErrorServerBusy", "NoError"]


def test_http_503_retry_after_is_honoured(responder, boxes, exchangelib_sleeps):
    inbox = account(responder, boxes[0].email, policy=FaultTolerance(max_wait=5)).inbox
    responder.inject("http_503", count=1, operation="FindItem", retry_after=1)
    assert len(list(inbox.all().only("size"))) == len(boxes[0].folder("INBOX").messages)
    assert len(exchangelib_sleeps) == 1 and 0.5 < exchangelib_sleeps[0] <= 1.0
    assert responder.requests_for("FindItem")[0].status == 503


def test_connection_count_and_unauthorized_faults_fire_count_times(responder, boxes):
    a = account(responder, boxes[0].email)
    inbox = a.inbox
    responder.inject("connection_count", count=1, mailbox=boxes[0].email)
    with pytest.raises(ews_errors.ErrorExceededConnectionCount):
        list(inbox.all().only("size"))
    assert len(list(inbox.all().only("size"))) == inbox.total_count
    responder.inject("unauthorized", count=1, operation="GetItem")
    ids = [(i, None) for i in responder.item_ids(boxes[0].email, ("INBOX",))[:2]]
    with pytest.raises(ews_errors.UnauthorizedError):
        list(a.fetch(ids=ids, only_fields=["mime_content"]))
    assert len(list(a.fetch(ids=ids, only_fields=["mime_content"]))) == 2


def test_tls_is_served_with_a_lab_ca_certificate(tmp_path, boxes):
    ca = LabCA(tmp_path / "ca")
    with EwsResponder(boxes, service_user=SERVICE, service_password=PASSWORD, tls=ca.issue("ews")) as server:
        assert server.url.startswith("https://127.0.0.1:")
        r = requests.post(server.url, data=ENVELOPE.format("<m:GetFolder/>"), timeout=5, verify=str(ca.ca_file))
        assert r.status_code == 401
        with pytest.raises(requests.exceptions.SSLError):
            requests.post(server.url, data=b"", timeout=5, verify=True)
