"""An Exchange Web Services responder for the lab: real EWS SOAP 1.1 over HTTP(S) on 127.0.0.1.

No open-source Exchange exists, so this speaks the subset of Microsoft's EWS schema (messages.xsd, types.xsd)
that a mailbox migration uses, closely enough that unmodified exchangelib talks to it: GetFolder, FindFolder,
FindItem, GetItem (MimeContent), SyncFolderItems, ResolveNames and ConvertId (exchangelib's version probe),
with Basic and NTLM authentication (:mod:`tests.lab.ews_auth`), impersonation and delegate access, paging, and injectable throttling faults. It serves the
same :mod:`tests.lab.corpus` mailboxes the Dovecot sources serve, so inventories can be compared.

What IMAP flags look like here: ``\\Seen`` is IsRead, ``\\Flagged`` is Flag/FlagStatus (and the MAPI
PR_FLAG_STATUS property), ``\\Draft`` is IsDraft and keywords are Categories. ``\\Answered`` has no
equivalent in this responder (Exchange keeps it in PR_LAST_VERB_EXECUTED, which is not modelled).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.header
import email.utils
import functools
import logging
import socket
import ssl
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.lab import ews_settings
from tests.lab.base import LOOPBACK, free_port
from tests.lab.certs import CertFiles
from tests.lab.corpus import CorpusMailbox, CorpusMessage
from tests.lab.ews_auth import ConnectionAuth, LabAuth
from tests.lab.ews_store import LabFolder, LabItem, LabMailbox, LabStore, ews_folder_path

log = logging.getLogger(__name__)

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"
for _prefix, _uri in (("s", SOAP), ("m", M), ("t", T), ("e", E)):
    ET.register_namespace(_prefix, _uri)

EWS_PATH = "/ews/exchange.asmx"
#: EWS schema versions, oldest first; a request naming a newer one than the server has is refused.
API_VERSIONS = ("Exchange2007", "Exchange2007_SP1", "Exchange2010", "Exchange2010_SP1", "Exchange2010_SP2",
                "Exchange2013", "Exchange2013_SP1", "Exchange2015", "Exchange2016")


@dataclass(frozen=True)
class ServerVersion:
    """What the SOAP header's ServerVersionInfo says; exchangelib reads the build to pick field support."""

    major: int = 15
    minor: int = 1
    build: int = 2507
    revision: int = 6
    api: str = "Exchange2016"


EXCHANGE_2016 = ServerVersion()
EXCHANGE_2010_SP2 = ServerVersion(14, 2, 247, 5, "Exchange2010_SP2")

FAULT_KINDS = ("server_busy", "busy_in_200", "http_503", "connection_count", "unauthorized")


@dataclass
class Fault:
    kind: str
    remaining: int
    operation: str | None
    mailbox: str | None
    back_off_ms: int
    retry_after: int

    def matches(self, operation: str, mailbox: str | None) -> bool:
        if self.remaining <= 0:
            return False
        if self.operation and self.operation != operation:
            return False
        return not (self.mailbox and (mailbox or "").lower() != self.mailbox.lower())


@dataclass(frozen=True)
class RequestRecord:
    """One request as the responder saw it, for tests to assert on (paging, retries, impersonation)."""

    operation: str
    mailbox: str | None
    status: int
    code: str                      # NoError, or the EWS error / fault code, or "HTTP 401"
    impersonated: bool = False


class EwsFailure(Exception):
    """An EWS error for one response message (``ResponseClass="Error"``, or ``"Warning"``)."""

    def __init__(self, code: str, text: str, *, response_class: str = "Error",
                 message_xml: dict[str, str] | None = None) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.response_class = response_class
        self.message_xml = message_xml or {}


def busy_inside(back_off_ms: int) -> EwsFailure:
    """Exchange's other throttling shape ("EWS throttling in Exchange", table 4): HTTP 200, and in one response
    message an ErrorInternalServerError whose MessageXml names the inner ErrorServerBusy and its back-off."""
    return EwsFailure("ErrorInternalServerError", "An internal server error occurred. The operation failed.",
                      message_xml={"InnerErrorResponseCode": "ErrorServerBusy",
                                   "InnerErrorMessageText": "The server cannot service this request right now. "
                                                            "Try again later.",
                                   "BackOffMilliseconds": str(back_off_ms)})


#: How :meth:`EwsResponder.break_item` makes an item unexportable, as real Exchange servers do: a meeting
#: request or S/MIME item whose MIME cannot be produced, a corrupt item, an item without MimeContent.
BROKEN_ITEMS = {
    "conversion-failed": ("ErrorMimeContentConversionFailed",
                          "Mime conversion failed for this item: the content could not be converted."),
    "corrupt": ("ErrorItemCorrupt", "The item is corrupt."),
    "no-mime": (None, ""),
}


class SoapFault(Exception):
    """An error for the whole request, sent as a SOAP fault with HTTP 500 (how Exchange reports them)."""

    def __init__(self, code: str, text: str, message_xml: dict[str, str] | None = None) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.message_xml = message_xml or {}


# -- XML helpers ------------------------------------------------------------------------------------------

def _el(parent: ET.Element | None, ns: str, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.Element(f"{{{ns}}}{tag}", attrs) if parent is None else ET.SubElement(parent, f"{{{ns}}}{tag}", attrs)
    if text is not None:
        element.text = text
    return element


def _children(parent: ET.Element, tag: str) -> list[ET.Element]:
    """The child elements of ``parent``'s ``m:<tag>`` (an empty list when it is absent or empty)."""
    element = parent.find(f"{{{M}}}{tag}")
    return [] if element is None else list(element)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _ews_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Shape:
    """An ItemShape or FolderShape: the base shape plus additional FieldURIs and extended properties."""

    base: str
    field_uris: set[str]
    extended: list[dict[str, str]]
    include_mime: bool = False

    @classmethod
    def parse(cls, element: ET.Element | None) -> Shape:
        if element is None:
            raise SoapFault("ErrorSchemaValidation", "The request failed schema validation: shape missing.")
        base = (element.findtext(f"{{{T}}}BaseShape") or "").strip()
        if base not in ("IdOnly", "Default", "AllProperties"):
            raise SoapFault("ErrorSchemaValidation", f"The request failed schema validation: BaseShape {base!r}.")
        uris: set[str] = set()
        extended: list[dict[str, str]] = []
        props = element.find(f"{{{T}}}AdditionalProperties")
        for p in props if props is not None else ():
            if _local(p.tag) in ("FieldURI", "IndexedFieldURI"):
                uris.add(p.get("FieldURI", ""))
            elif _local(p.tag) == "ExtendedFieldURI":
                extended.append(dict(p.attrib))
        include_mime = (element.findtext(f"{{{T}}}IncludeMimeContent") or "").strip().lower() == "true"
        return cls(base, uris, extended, include_mime)

    def wants(self, uri: str, default: Iterable[str], all_properties: Iterable[str]) -> bool:
        if uri in self.field_uris:
            return True
        if self.base == "Default":
            return uri in default
        if self.base == "AllProperties":
            return uri in all_properties or uri in default
        return False


def _tag_value(attrs: dict[str, str]) -> int | None:
    tag = attrs.get("PropertyTag")
    if tag is None:
        return None
    try:
        return int(tag, 16) if tag.lower().startswith("0x") else int(tag)
    except ValueError:
        return None


def _extended(parent: ET.Element, attrs: dict[str, str], value: str) -> None:
    # Echo the request's ExtendedFieldURI verbatim: clients match the answer to the question by its attributes.
    prop = _el(parent, T, "ExtendedProperty")
    _el(prop, T, "ExtendedFieldURI", **attrs)
    _el(prop, T, "Value", value)


# -- folders ----------------------------------------------------------------------------------------------

FOLDER_DEFAULT = ("folder:FolderId", "folder:DisplayName", "folder:TotalCount", "folder:ChildFolderCount",
                  "folder:UnreadCount")
FOLDER_ALL = (*FOLDER_DEFAULT, "folder:ParentFolderId", "folder:FolderClass", "folder:EffectiveRights")
_FOLDER_ELEMENT = {"IPF.Appointment": "CalendarFolder", "IPF.Contact": "ContactsFolder", "IPF.Task": "TasksFolder"}
PR_MESSAGE_SIZE_EXTENDED = 0x0E08
PR_FLAG_STATUS = 0x1090
PR_MESSAGE_FLAGS = 0x0E07
PR_CONTAINER_CLASS = 0x3613
PR_PROHIBIT_SEND_QUOTA = 0x666E
PR_STORAGE_QUOTA_LIMIT = 0x3FF5


def folder_value(folder: LabFolder, uri: str) -> str | None:
    """A folder property as text, for restrictions and sorting."""
    return {
        "folder:DisplayName": folder.name,
        "folder:FolderClass": folder.folder_class,
        "folder:TotalCount": str(folder.total),
        "folder:ChildFolderCount": str(len(folder.children)),
        "folder:UnreadCount": str(folder.unread),
        "folder:FolderId": folder.folder_id,
    }.get(uri)


# -- items ------------------------------------------------------------------------------------------------

ITEM_DEFAULT = ("item:ItemId", "item:ParentFolderId", "item:ItemClass", "item:Subject", "item:DateTimeReceived",
                "item:Size", "item:HasAttachments", "item:DateTimeSent", "message:From", "message:IsRead")
ITEM_ALL = (*ITEM_DEFAULT, "item:Sensitivity", "item:Categories", "item:Importance", "item:IsDraft",
            "item:DateTimeCreated", "item:LastModifiedTime", "item:Flag", "message:InternetMessageId")


class _Headers:
    """The few header values EWS shows (Subject, From, Message-ID, Date), decoded from the raw message."""

    def __init__(self, raw: bytes) -> None:
        head = BytesHeaderParser(policy=compat32).parsebytes(raw, headersonly=True)
        self.subject = self._decode(head.get("Subject", ""))
        self.message_id = (head.get("Message-ID") or "").strip() or None
        name, addr = email.utils.parseaddr(self._decode(head.get("From", "")))
        self.from_name, self.from_addr = name, addr
        try:
            self.date = email.utils.parsedate_to_datetime(head.get("Date", ""))
        except (TypeError, ValueError):
            self.date = None
        content_type = (head.get("Content-Type") or "").lower()
        self.has_attachments = b"content-disposition: attachment" in raw.lower() or "multipart/mixed" in content_type

    @staticmethod
    def _decode(value: object) -> str:
        try:
            return str(email.header.make_header(email.header.decode_header(str(value))))
        except Exception:
            return str(value)

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def of(message: CorpusMessage) -> _Headers:
        # Keyed by the (frozen, hashable) message itself: Default-shape FindItem pages re-read the same messages.
        return _Headers(message.raw)


def item_value(item: LabItem, uri: str) -> str | list[str] | None:
    """An item property as text (a list for Categories), for restrictions and sorting."""
    flags = item.flags
    if uri == "item:Size":
        return str(item.size)
    if uri == "item:DateTimeReceived":
        return _ews_time(item.message.internaldate)
    if uri == "message:IsRead":
        return _bool("\\Seen" in flags)
    if uri == "item:IsDraft":
        return _bool("\\Draft" in flags)
    if uri == "item:Categories":
        return [f for f in flags if not f.startswith("\\")]
    if uri == "item:ItemClass":
        return item.item_class
    if uri == "item:Subject":
        return _Headers.of(item.message).subject
    if uri == "message:InternetMessageId":
        return _Headers.of(item.message).message_id
    if uri == "item:ItemId":
        return item.item_id
    return None


#: The element Exchange answers an item of a class with (by class prefix, longest first); else t:Message.
ITEM_ELEMENTS = (("IPM.Schedule.Meeting.Request", "MeetingRequest"), ("IPM.Schedule.Meeting.Resp", "MeetingResponse"),
                 ("IPM.Schedule.Meeting.Canceled", "MeetingCancellation"), ("IPM.Appointment", "CalendarItem"),
                 ("IPM.Contact", "Contact"), ("IPM.DistList", "DistributionList"), ("IPM.Task", "Task"))


def element_for(item_class: str) -> str:
    return next((tag for prefix, tag in ITEM_ELEMENTS if item_class.startswith(prefix)), "Message")


def render_item(parent: ET.Element, item: LabItem, shape: Shape, api: int, *, mime: bool = True) -> ET.Element:
    """A ``t:Message`` with the properties the shape asks for, in schema order (``mime=False``: without
    MimeContent even when asked, as Exchange answers for some items)."""
    element = element_for(item.item_class)
    msg = _el(parent, T, element)
    flags = item.flags

    def wants(uri: str) -> bool:
        return shape.wants(uri, ITEM_DEFAULT, ITEM_ALL)

    head = _Headers.of(item.message)
    if mime and (wants("item:MimeContent") or shape.include_mime):
        _el(msg, T, "MimeContent", base64.b64encode(item.mime).decode("ascii"), CharacterSet="UTF-8")
    _el(msg, T, "ItemId", Id=item.item_id, ChangeKey=item.change_key)
    if wants("item:ParentFolderId"):
        _el(msg, T, "ParentFolderId", Id=item.folder.folder_id, ChangeKey=item.folder.change_key)
    if wants("item:ItemClass"):
        _el(msg, T, "ItemClass", item.item_class)
    if wants("item:Subject"):
        _el(msg, T, "Subject", head.subject)
    if wants("item:Sensitivity"):
        _el(msg, T, "Sensitivity", "Normal")
    if wants("item:DateTimeReceived"):
        _el(msg, T, "DateTimeReceived", _ews_time(item.message.internaldate))
    if wants("item:Size"):
        _el(msg, T, "Size", str(item.size))
    categories = [f for f in flags if not f.startswith("\\")]
    if wants("item:Categories") and categories:
        cats = _el(msg, T, "Categories")
        for c in categories:
            _el(cats, T, "String", c)
    if wants("item:Importance"):
        _el(msg, T, "Importance", item.importance)
    if wants("item:IsDraft"):
        _el(msg, T, "IsDraft", _bool("\\Draft" in flags))
    if wants("item:DateTimeSent") and head.date is not None:
        _el(msg, T, "DateTimeSent", _ews_time(head.date))
    if wants("item:DateTimeCreated"):
        _el(msg, T, "DateTimeCreated", _ews_time(item.message.internaldate))
    if wants("item:HasAttachments"):
        _el(msg, T, "HasAttachments", _bool(head.has_attachments))
    for attrs in shape.extended:
        tag = _tag_value(attrs)
        if tag == PR_FLAG_STATUS and "\\Flagged" in flags:
            _extended(msg, attrs, "2")            # followupFlagged; the property is absent when not flagged
        elif tag == PR_MESSAGE_SIZE_EXTENDED:
            _extended(msg, attrs, str(item.size))
        elif tag == PR_MESSAGE_FLAGS:
            value = (0x1 if "\\Seen" in flags else 0) | (0x8 if "\\Draft" in flags else 0)
            _extended(msg, attrs, str(value | (0x10 if head.has_attachments else 0)))
    if wants("item:LastModifiedTime"):
        _el(msg, T, "LastModifiedTime", _ews_time(item.message.internaldate))
    if wants("item:Flag") and api >= API_VERSIONS.index("Exchange2013"):
        flag = _el(msg, T, "Flag")
        _el(flag, T, "FlagStatus", "Flagged" if "\\Flagged" in flags else "NotFlagged")
    if element in ("CalendarItem", "Contact", "DistributionList", "Task"):
        return msg                       # calendar items, contacts and tasks have no message: properties
    if wants("message:From") and head.from_addr:
        frm = _el(_el(msg, T, "From"), T, "Mailbox")
        _el(frm, T, "Name", head.from_name or head.from_addr)
        _el(frm, T, "EmailAddress", head.from_addr)
        _el(frm, T, "RoutingType", "SMTP")
    if wants("message:InternetMessageId") and head.message_id:
        _el(msg, T, "InternetMessageId", head.message_id)
    if wants("message:IsRead"):
        _el(msg, T, "IsRead", _bool("\\Seen" in flags))
    return msg


# -- restrictions and sorting -----------------------------------------------------------------------------

_COMPARISONS: dict[str, Callable[[object, object], bool]] = {
    "IsEqualTo": lambda a, b: a == b,
    "IsNotEqualTo": lambda a, b: a != b,
    "IsGreaterThan": lambda a, b: a > b,  # type: ignore[operator]
    "IsGreaterThanOrEqualTo": lambda a, b: a >= b,  # type: ignore[operator]
    "IsLessThan": lambda a, b: a < b,  # type: ignore[operator]
    "IsLessThanOrEqualTo": lambda a, b: a <= b,  # type: ignore[operator]
}


def _comparable(value: str) -> object:
    """Numbers compare as numbers and times as times; everything else as case-insensitive text."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(value).astimezone(dt.UTC)
    except ValueError:
        return value.lower()


def evaluate(restriction: ET.Element, getter: Callable[[str], str | list[str] | None]) -> bool:
    """Evaluate a Restriction's search expression (the common subset) against one folder or item."""
    name = _local(restriction.tag)
    children = list(restriction)
    if name == "Restriction":
        return evaluate(children[0], getter)
    if name == "And":
        return all(evaluate(c, getter) for c in children)
    if name == "Or":
        return any(evaluate(c, getter) for c in children)
    if name == "Not":
        return not evaluate(children[0], getter)
    uri_elem = restriction.find(f"{{{T}}}FieldURI")
    if uri_elem is None:
        raise EwsFailure("ErrorUnsupportedPathForQuery", "The property can not be used with this type of restriction.")
    value = getter(uri_elem.get("FieldURI", ""))
    if name == "Exists":
        return value is not None
    constant = restriction.find(f".//{{{T}}}Constant")
    wanted = constant.get("Value", "") if constant is not None else ""
    if name == "Contains":
        texts = value if isinstance(value, list) else [value or ""]
        mode = restriction.get("ContainmentMode", "Substring")
        ignore_case = "Ignore" in restriction.get("ContainmentComparison", "")
        for text in texts:
            a, b = (text.lower(), wanted.lower()) if ignore_case else (text, wanted)
            if (mode == "FullString" and a == b) or (mode == "Prefixed" and a.startswith(b)) or \
                    (mode not in ("FullString", "Prefixed") and b in a):
                return True
        return False
    if name in _COMPARISONS:
        if value is None:
            return False
        values = value if isinstance(value, list) else [value]
        if values and values[0] in ("true", "false"):
            wanted = {"1": "true", "0": "false"}.get(wanted.strip().lower(), wanted)    # xs:boolean allows 1/0
        try:
            return any(_COMPARISONS[name](_comparable(v), _comparable(wanted)) for v in values)
        except TypeError:
            return False
    raise EwsFailure("ErrorUnsupportedQueryFilter", f"The restriction {name} is not supported by this server.")


def _sort(objects: list, sort_order: ET.Element | None, getter: Callable[[object, str], object]) -> list:
    if sort_order is None:
        return objects
    for order in reversed(list(sort_order)):
        uri = order.find(f"{{{T}}}FieldURI")
        if uri is None:
            continue
        key = uri.get("FieldURI", "")
        objects = sorted(objects, key=lambda o, k=key: _comparable(str(getter(o, k) or "")),
                         reverse=order.get("Order") == "Descending")
    return objects


# -- the request handler ----------------------------------------------------------------------------------

class _Context:
    """Who a request acts as: the service account, optionally impersonating one mailbox."""

    def __init__(self, responder: EwsResponder, impersonated: LabMailbox | None, api: int) -> None:
        self.responder = responder
        self.impersonated = impersonated
        self.api = api

    @property
    def store(self) -> LabStore:
        return self.responder.store

    def check_access(self, box: LabMailbox) -> None:
        if self.impersonated is not None:
            if box is not self.impersonated:
                raise EwsFailure("ErrorAccessDenied", "Access is denied. Check credentials and try again.")
            return
        own = self.responder.service_user.lower()
        if box.email.lower() == own or box.email.lower() in self.responder.delegates:
            return
        raise EwsFailure("ErrorAccessDenied", "Access is denied. Check credentials and try again.")

    def own_mailbox(self) -> LabMailbox:
        if self.impersonated is not None:
            return self.impersonated
        try:
            return self.store.mailbox(self.responder.service_user)
        except KeyError:
            raise EwsFailure("ErrorNonExistentMailbox", "The SMTP address has no mailbox associated with it.")

    def folder(self, ref: ET.Element) -> LabFolder:
        """A FolderId or DistinguishedFolderId element → the folder, with access checked."""
        kind = _local(ref.tag)
        if kind == "FolderId":
            folder = self.store.folders.get(ref.get("Id", ""))
            if folder is None:
                self._check_id(ref.get("Id", ""))
                raise EwsFailure("ErrorFolderNotFound", "The specified folder could not be found in the store.")
            self.check_access(folder.mailbox)
            return folder
        if kind == "DistinguishedFolderId":
            address = ref.findtext(f"{{{T}}}Mailbox/{{{T}}}EmailAddress")
            if address:
                try:
                    box = self.store.mailbox(address)
                except KeyError:
                    raise EwsFailure("ErrorNonExistentMailbox",
                                     "The SMTP address has no mailbox associated with it.") from None
            else:
                box = self.own_mailbox()
            self.check_access(box)
            folder = box.distinguished.get(ref.get("Id", ""))
            if folder is None:
                raise EwsFailure("ErrorFolderNotFound", "The specified folder could not be found in the store.")
            return folder
        raise EwsFailure("ErrorInvalidIdMalformed", "Id is malformed.")

    def item(self, ref: ET.Element) -> LabItem:
        if _local(ref.tag) != "ItemId":
            raise EwsFailure("ErrorInvalidIdMalformed", "Id is malformed.")
        item = self.store.items.get(ref.get("Id", ""))
        if item is None or not item.alive:
            self._check_id(ref.get("Id", ""))
            raise EwsFailure("ErrorItemNotFound", "The specified object was not found in the store.")
        self.check_access(item.mailbox)
        return item

    @staticmethod
    def _check_id(value: str) -> None:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise EwsFailure("ErrorInvalidIdMalformed", "Id is malformed.") from None
        if not value:
            raise EwsFailure("ErrorInvalidIdMalformed", "Id is malformed.")


def _answered(response: ET.Element, failure: EwsFailure | None = None) -> ET.Element:
    """A response that is its own response message (GetInboxRules, GetDelegate): its class and code on it."""
    response.set("ResponseClass", "Error" if failure else "Success")
    if failure is not None:
        _el(response, M, "MessageText", failure.text)
    _el(response, M, "ResponseCode", failure.code if failure else "NoError")
    return response


def _message(parent: ET.Element, operation: str, failure: EwsFailure | None = None) -> ET.Element:
    msg = _el(parent, M, f"{operation}ResponseMessage",
              ResponseClass=failure.response_class if failure else "Success")
    if failure is not None:
        _el(msg, M, "MessageText", failure.text)
        _el(msg, M, "ResponseCode", failure.code)
        _el(msg, M, "DescriptiveLinkKey", "0")
        if failure.message_xml:
            xml = _el(msg, M, "MessageXml")
            for name, value in failure.message_xml.items():
                _el(xml, T, "Value", value, Name=name)
    else:
        _el(msg, M, "ResponseCode", "NoError")
    return msg


def _paging(view: ET.Element | None, total: int, limit: int) -> tuple[int, int]:
    """(start, count) of an IndexedPage*View, capped by the server's page limit."""
    if view is None:
        return 0, min(total, limit)
    try:
        max_entries = int(view.get("MaxEntriesReturned") or limit)
        offset = int(view.get("Offset") or 0)
    except ValueError:
        raise SoapFault("ErrorSchemaValidation", "The request failed schema validation: bad paging view.")
    if max_entries < 1 or offset < 0:
        raise SoapFault("ErrorSchemaValidation", "The request failed schema validation: bad paging view.")
    count = min(max_entries, limit)
    if view.get("BasePoint", "Beginning") == "End":
        end = max(0, total - offset)
        return max(0, end - count), min(count, end)
    return offset, max(0, min(count, total - offset))


class _Operations:
    """One method per EWS operation; each returns the ``m:<Operation>Response`` element."""

    def __init__(self, ctx: _Context) -> None:
        self.ctx = ctx

    def GetFolder(self, req: ET.Element) -> ET.Element:
        shape = Shape.parse(req.find(f"{{{M}}}FolderShape"))
        response = _el(None, M, "GetFolderResponse")
        messages = _el(response, M, "ResponseMessages")
        for ref in _children(req, "FolderIds"):
            try:
                folder = self.ctx.folder(ref)
            except EwsFailure as failure:
                _el(_message(messages, "GetFolder", failure), M, "Folders")
                continue
            self._render_folder(_el(_message(messages, "GetFolder"), M, "Folders"), folder, shape)
        return response

    def FindFolder(self, req: ET.Element) -> ET.Element:
        shape = Shape.parse(req.find(f"{{{M}}}FolderShape"))
        traversal = req.get("Traversal", "Shallow")
        restriction = req.find(f"{{{M}}}Restriction")
        view = req.find(f"{{{M}}}IndexedPageFolderView")
        response = _el(None, M, "FindFolderResponse")
        messages = _el(response, M, "ResponseMessages")
        for ref in _children(req, "ParentFolderIds"):
            try:
                parent = self.ctx.folder(ref)
                if traversal == "Deep":
                    found = parent.descendants()
                elif traversal == "Shallow":
                    found = list(parent.children)
                else:                                   # SoftDeleted: the lab keeps no soft-deleted folders
                    found = []
                if restriction is not None:
                    found = [f for f in found if evaluate(restriction, lambda uri, f=f: folder_value(f, uri))]
                start, count = _paging(view, len(found), self.ctx.responder.page_limit)
            except EwsFailure as failure:
                _message(messages, "FindFolder", failure)
                continue
            page = found[start:start + count]
            root = _el(_message(messages, "FindFolder"), M, "RootFolder",
                       IndexedPagingOffset=str(start + len(page)), TotalItemsInView=str(len(found)),
                       IncludesLastItemInRange=_bool(start + len(page) >= len(found)))
            container = _el(root, T, "Folders")
            for folder in page:
                self._render_folder(container, folder, shape)
        return response

    def _render_folder(self, parent: ET.Element, folder: LabFolder, shape: Shape) -> None:
        element = _el(parent, T, _FOLDER_ELEMENT.get(folder.folder_class or "", "Folder"))

        def wants(uri: str) -> bool:
            return shape.wants(uri, FOLDER_DEFAULT, FOLDER_ALL)

        _el(element, T, "FolderId", Id=folder.folder_id, ChangeKey=folder.change_key)
        if wants("folder:ParentFolderId") and folder.parent is not None:
            _el(element, T, "ParentFolderId", Id=folder.parent.folder_id, ChangeKey=folder.parent.change_key)
        if wants("folder:FolderClass") and folder.folder_class:
            _el(element, T, "FolderClass", folder.folder_class)
        if wants("folder:DisplayName"):
            _el(element, T, "DisplayName", folder.name)
        if wants("folder:TotalCount"):
            _el(element, T, "TotalCount", str(folder.total))
        if wants("folder:ChildFolderCount"):
            _el(element, T, "ChildFolderCount", str(len(folder.children)))
        quota = self.ctx.responder.quota_bytes
        for attrs in shape.extended:
            tag = _tag_value(attrs)
            if tag == PR_MESSAGE_SIZE_EXTENDED:
                _extended(element, attrs, str(folder.size))
            elif tag == PR_CONTAINER_CLASS and folder.folder_class:
                _extended(element, attrs, folder.folder_class)
            elif tag in (PR_PROHIBIT_SEND_QUOTA, PR_STORAGE_QUOTA_LIMIT) and quota and \
                    folder.distinguished == "root":
                _extended(element, attrs, str(quota // 1024))          # MAPI quotas are in kilobytes
        if wants("folder:EffectiveRights"):
            rights = _el(element, T, "EffectiveRights")
            for right in ("CreateAssociated", "CreateContents", "CreateHierarchy", "Delete", "Modify", "Read"):
                _el(rights, T, right, "true")
        if wants("folder:UnreadCount") and folder.folder_class not in ("IPF.Appointment", "IPF.Contact"):
            _el(element, T, "UnreadCount", str(folder.unread))
        if "folder:DistinguishedFolderId" in shape.field_uris and folder.distinguished and \
                self.ctx.api >= API_VERSIONS.index("Exchange2016"):
            _el(element, T, "DistinguishedFolderId", folder.distinguished)
        if "folder:PermissionSet" in shape.field_uris:
            ews_settings.render_permissions(element, folder)

    def FindItem(self, req: ET.Element) -> ET.Element:
        shape = Shape.parse(req.find(f"{{{M}}}ItemShape"))
        traversal = req.get("Traversal", "Shallow")
        restriction = req.find(f"{{{M}}}Restriction")
        view = req.find(f"{{{M}}}IndexedPageItemView")
        response = _el(None, M, "FindItemResponse")
        messages = _el(response, M, "ResponseMessages")
        if req.find(f"{{{M}}}QueryString") is not None:
            raise SoapFault("ErrorInvalidRequest", "The request is invalid: QueryString is not supported here.")
        for ref in _children(req, "ParentFolderIds"):
            try:
                folder = self.ctx.folder(ref)
                found = list(folder.items) if traversal == "Shallow" else []   # no associated/soft-deleted items
                if restriction is not None:
                    found = [i for i in found if evaluate(restriction, lambda uri, i=i: item_value(i, uri))]
                found = _sort(found, req.find(f"{{{M}}}SortOrder"), item_value)
                limit = self.ctx.responder.find_count_limit
                if limit is not None and view is not None and int(view.get("MaxEntriesReturned") or 0) > limit:
                    raise EwsFailure("ErrorExceededFindCountLimit", "The find operation exceeded the allowed "
                                     "maximum number of items for a page; use a smaller page.")
                start, count = _paging(view, len(found), self.ctx.responder.page_limit)
            except EwsFailure as failure:
                _message(messages, "FindItem", failure)
                continue
            page = found[start:start + count]
            root = _el(_message(messages, "FindItem"), M, "RootFolder",
                       IndexedPagingOffset=str(start + len(page)), TotalItemsInView=str(len(found)),
                       IncludesLastItemInRange=_bool(start + len(page) >= len(found)))
            container = _el(root, T, "Items")
            for item in page:
                render_item(container, item, shape, self.ctx.api)
        return response

    def GetItem(self, req: ET.Element) -> ET.Element:
        shape = Shape.parse(req.find(f"{{{M}}}ItemShape"))
        response = _el(None, M, "GetItemResponse")
        messages = _el(response, M, "ResponseMessages")
        responder = self.ctx.responder
        wants_mime = shape.include_mime or shape.wants("item:MimeContent", ITEM_DEFAULT, ITEM_ALL)
        stopped = False
        answers = []
        for ref in _children(req, "ItemIds"):
            try:
                if stopped:
                    raise EwsFailure("ErrorBatchProcessingStopped", "Batch processing stopped: a previous item "
                                     "of the batch failed.", response_class="Warning")
                item = self.ctx.item(ref)
                broken = responder.broken_items.get(item.item_id) if wants_mime else None
                if broken and BROKEN_ITEMS[broken][0]:
                    stopped = responder.stop_batches
                    raise EwsFailure(*BROKEN_ITEMS[broken])
            except EwsFailure as failure:
                answers.append((failure, None))
                continue
            answers.append((None, (item, broken)))
        if wants_mime and responder.take_misorder():
            answers.reverse()  # a server that re-sent items after a throttled answer: replies out of place
        busy = responder.take_busy_inside() if len(answers) > 2 else None
        if busy is not None:
            answers[2] = (busy_inside(busy), None)  # HTTP 200; the first two items are answered, then "busy"
        for failure, found in answers:
            if failure is not None:
                _el(_message(messages, "GetItem", failure), M, "Items")
                continue
            item, broken = found
            render_item(_el(_message(messages, "GetItem"), M, "Items"), item, shape, self.ctx.api,
                        mime=broken != "no-mime")
        return response

    def SyncFolderItems(self, req: ET.Element) -> ET.Element:
        shape = Shape.parse(req.find(f"{{{M}}}ItemShape"))
        try:
            max_changes = int(req.findtext(f"{{{M}}}MaxChangesReturned") or "")
        except ValueError:
            raise SoapFault("ErrorSchemaValidation", "The request failed schema validation: MaxChangesReturned.")
        if not 1 <= max_changes <= 512:
            raise SoapFault("ErrorSchemaValidation",
                            "The request failed schema validation: MaxChangesReturned must be 1 to 512.")
        ignore = {i.get("Id") for i in _children(req, "Ignore")}
        response = _el(None, M, "SyncFolderItemsResponse")
        messages = _el(response, M, "ResponseMessages")
        store = self.ctx.store
        try:
            ref = next(iter(_children(req, "SyncFolderId")), None)
            if ref is None:
                raise SoapFault("ErrorSchemaValidation", "The request failed schema validation: SyncFolderId.")
            folder = self.ctx.folder(ref)
            token = (req.findtext(f"{{{M}}}SyncState") or "").strip()
            try:
                since = store.parse_sync_token(folder, token) if token else 0
            except ValueError:
                raise EwsFailure("ErrorInvalidSyncStateData", "Synchronization state data is corrupt or otherwise "
                                 "invalid.") from None
            if token and self.ctx.responder.take_stall(folder.folder_id):
                # Exchange, sometimes: "more to come", the same state, and no change.
                msg = _message(messages, "SyncFolderItems")
                _el(msg, M, "SyncState", token)
                _el(msg, M, "IncludesLastItemInRange", "false")
                _el(msg, M, "Changes")
                return response
            changes, seq, last = store.changes_since(folder, since, max_changes)
        except EwsFailure as failure:
            msg = _message(messages, "SyncFolderItems", failure)
            _el(msg, M, "SyncState", "")
            _el(msg, M, "IncludesLastItemInRange", "true")
            return response
        msg = _message(messages, "SyncFolderItems")
        _el(msg, M, "SyncState", store.sync_token(folder, seq))
        _el(msg, M, "IncludesLastItemInRange", _bool(last))
        container = _el(msg, M, "Changes")
        for kind, item in changes:
            if item.item_id in ignore:
                continue
            change = _el(container, T, kind)
            if kind in ("Create", "Update"):
                render_item(change, item, shape, self.ctx.api)
            elif kind == "Delete":
                _el(change, T, "ItemId", Id=item.item_id, ChangeKey=item.change_key)
            else:
                _el(change, T, "ItemId", Id=item.item_id, ChangeKey=item.change_key)
                _el(change, T, "IsRead", _bool("\\Seen" in item.flags))
        return response

    def ResolveNames(self, req: ET.Element) -> ET.Element:
        response = _el(None, M, "ResolveNamesResponse")
        messages = _el(response, M, "ResponseMessages")
        for entry in req.findall(f"{{{M}}}UnresolvedEntry"):
            text = (entry.text or "").strip().lower().removeprefix("smtp:")
            found = [b for b in self.ctx.store.mailboxes.values()
                     if b.email.lower() == text or (text and (b.email.lower().startswith(text)
                                                              or b.corpus.display_name.lower().startswith(text)))]
            if not found:
                _message(messages, "ResolveNames", EwsFailure("ErrorNameResolutionNoResults",
                                                              "No results were found."))
                continue
            if len(found) > 1:
                msg = _el(messages, M, "ResolveNamesResponseMessage", ResponseClass="Warning")
                _el(msg, M, "MessageText", "Multiple results were found.")
                _el(msg, M, "ResponseCode", "ErrorNameResolutionMultipleResults")
                _el(msg, M, "DescriptiveLinkKey", "0")
            else:
                msg = _message(messages, "ResolveNames")
            rset = _el(msg, M, "ResolutionSet", TotalItemsInView=str(len(found)), IncludesLastItemInRange="true")
            for box in found:
                mailbox = _el(_el(rset, T, "Resolution"), T, "Mailbox")
                _el(mailbox, T, "Name", box.corpus.display_name)
                _el(mailbox, T, "EmailAddress", box.email)
                _el(mailbox, T, "RoutingType", "SMTP")
                _el(mailbox, T, "MailboxType", "Mailbox")
        return response

    def _addressed(self, address: str | None) -> LabMailbox:
        """The mailbox a request names by address (its own without one), with access checked."""
        if address:
            try:
                box = self.ctx.store.mailbox(address)
            except KeyError:
                raise EwsFailure("ErrorNonExistentMailbox", "The SMTP address has no mailbox associated with it.") \
                    from None
        else:
            box = self.ctx.own_mailbox()
        self.ctx.check_access(box)
        return box

    def GetInboxRules(self, req: ET.Element) -> ET.Element:
        response = _el(None, M, "GetInboxRulesResponse")
        try:
            box = self._addressed((req.findtext(f"{{{M}}}MailboxSmtpAddress") or "").strip())
        except EwsFailure as failure:
            return _answered(response, failure)
        _answered(response)
        _el(response, M, "OutlookRuleBlobExists", _bool(bool(box.rules)))
        if box.rules:
            ews_settings.render_rules(response, box)
        return response

    def GetUserOofSettingsRequest(self, req: ET.Element) -> ET.Element:
        response = _el(None, M, "GetUserOofSettingsResponse")
        address = (req.findtext(f"{{{T}}}Mailbox/{{{T}}}Address") or "").strip()
        try:
            box = self._addressed(address)
        except EwsFailure as failure:
            _message(response, "", failure)
            return response
        _message(response, "")
        ews_settings.render_oof(response, box.oof)
        return response

    def GetDelegate(self, req: ET.Element) -> ET.Element:
        response = _el(None, M, "GetDelegateResponse")
        address = (req.findtext(f"{{{M}}}Mailbox/{{{T}}}EmailAddress") or "").strip()
        try:
            box = self._addressed(address)
        except EwsFailure as failure:
            return _answered(response, failure)
        _answered(response)
        ews_settings.render_delegates(response, box)
        return response

    def ConvertId(self, req: ET.Element) -> ET.Element:
        # exchangelib's version probe converts a dummy id; the lab converts nothing and says so per id.
        response = _el(None, M, "ConvertIdResponse")
        messages = _el(response, M, "ResponseMessages")
        for _ in _children(req, "SourceIds"):
            _message(messages, "ConvertId", EwsFailure("ErrorInvalidIdMalformed", "Id is malformed."))
        return response


def request_mailbox(store: LabStore, header: ET.Element | None, body: ET.Element) -> tuple[str | None, bool]:
    """The mailbox a request is about (for the request log and fault filters), and whether it impersonates."""
    if header is not None:
        sid = header.find(f"{{{T}}}ExchangeImpersonation/{{{T}}}ConnectingSID")
        if sid is not None:
            for child in sid:
                if child.text:
                    return child.text.strip(), True
    address = body.findtext(f".//{{{T}}}Mailbox/{{{T}}}EmailAddress")
    if address:
        return address.strip(), False
    for ref in body.iter():
        if _local(ref.tag) in ("FolderId", "ItemId") and ref.get("Id"):
            obj = store.folders.get(ref.get("Id", "")) or store.items.get(ref.get("Id", ""))
            if obj is not None:
                return obj.mailbox.email, False
    return None, False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"          # keep-alive, as exchangelib's session pool expects
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    timeout = 30
    responder: EwsResponder                # set on the per-server subclass

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle plus the client's delayed ACK
        # stalls every keep-alive response by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.responder._connections.add(self.connection)
        self._auth = ConnectionAuth(self.responder.auth)     # per connection, as IIS keeps NTLM's

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.responder._connections.discard(self.connection)

    def do_GET(self) -> None:
        self._read_body()
        if self.path.lower().split("?")[0] != EWS_PATH:
            return self._send(404, b"Not found", "text/plain")
        if not self._authorised():
            return self._unauthorised()
        self._send(200, b"<html><body>Exchange Web Services (govmigrate lab)</body></html>", "text/html")

    def do_POST(self) -> None:
        body = self._read_body()
        if self.path.lower().split("?")[0] != EWS_PATH:
            return self._send(404, b"Not found", "text/plain")
        if not self._authorised():
            self.responder._record("(unauthenticated)", None, 401, "HTTP 401")
            return self._unauthorised()
        status, payload, retry_after = self.responder._handle(body)
        if status == 401:
            return self._unauthorised()
        if status == 503:
            self.send_response(503, "Service Unavailable")
            self.send_header("Retry-After", str(retry_after))
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return None
        self._send(status, payload, "text/xml; charset=utf-8")
        return None

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _authorised(self) -> bool:
        return self._auth.check(self.headers.get("Authorization", ""))

    def _unauthorised(self) -> None:
        self.send_response(401, "Unauthorized")
        for value in self._auth.reply:
            self.send_header("WWW-Authenticate", value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class EwsResponder:
    """An EWS endpoint at ``{url}`` serving ``mailboxes`` to one service account.

    ``impersonation_allowed``: True (the ApplicationImpersonation role for every mailbox), False, or a set of
    addresses it may impersonate. ``delegates``: mailboxes the service account has full access to without
    impersonation. ``page_limit`` caps every FindItem/FindFolder page, as Exchange's throttling policy does.
    ``auth``: the HTTP authentication methods offered, some of ``basic``, ``ntlm`` and ``negotiate``
    (:mod:`tests.lab.ews_auth`).
    """

    def __init__(self, mailboxes: list[CorpusMailbox], *, service_user: str = "svc-migrate@finance.gov.bz",
                 service_password: str = "lab-ews-secret", impersonation_allowed: bool | set[str] = True,
                 delegates: set[str] | None = None, page_limit: int = 1000, tls: CertFiles | None = None,
                 version: ServerVersion = EXCHANGE_2016, quota_bytes: int | None = 10 * 1024**3,
                 auth: tuple[str, ...] = ("basic",)) -> None:
        self.store = LabStore(mailboxes)
        self.service_user = service_user
        self.service_password = service_password
        self.auth = LabAuth(auth, service_user, service_password)
        self.impersonation_allowed = impersonation_allowed
        self.delegates = {d.lower() for d in (delegates or set())}
        self.page_limit = page_limit
        self.tls = tls
        self.version = version
        self.quota_bytes = quota_bytes
        self.port = free_port()
        self._faults: list[Fault] = []
        #: FindItem pages asking for more items than this are refused with ErrorExceededFindCountLimit (a
        #: throttling policy's limit), where ``page_limit`` silently shortens them.
        self.find_count_limit: int | None = None
        #: item id → a key of BROKEN_ITEMS: what GetItem for its MIME answers.
        self.broken_items: dict[str, str] = {}
        #: After a broken item, the rest of its GetItem batch gets the Warning ErrorBatchProcessingStopped.
        self.stop_batches = False
        self._stalls: dict[str, int] = {}
        self._misorders = 0
        self._log: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._busy_inside = (0, 0)
        self._connections: set = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{LOOPBACK}:{self.port}/EWS/Exchange.asmx"

    def start(self) -> EwsResponder:
        handler = type("EwsHandler", (_Handler,), {"responder": self})
        server = ThreadingHTTPServer((LOOPBACK, self.port), handler)
        server.daemon_threads = True
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(str(self.tls.cert), str(self.tls.key))
            # The handshake happens in the handler thread, so one slow client cannot stall the listener.
            server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"ews-responder-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        for conn in list(self._connections):   # idle keep-alive connections would otherwise linger
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    cleanup = stop

    def __enter__(self) -> EwsResponder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test-side API ----------------------------------------------------------------------------------

    def mailbox(self, email: str) -> LabMailbox:
        return self.store.mailbox(email)

    def folder_path(self, email: str, corpus_path: tuple[str, ...]) -> tuple[str, ...]:
        """Where a corpus folder appears on this server, e.g. ("Sent",) → ("Sent Items",)."""
        return ews_folder_path(self.store.mailbox(email).corpus, corpus_path)

    def add_message(self, email: str, folder_path: tuple[str, ...], message: CorpusMessage,
                    item_class: str = "IPM.Note") -> str:
        return self.store.add_message(email, folder_path, message, item_class)

    def set_flags(self, email: str, item_id: str, flags: tuple[str, ...] | list[str]) -> None:
        self.store.set_flags(email, item_id, flags)

    def set_importance(self, email: str, item_id: str, importance: str) -> None:
        self.store.set_importance(email, item_id, importance)

    def add_archive_message(self, email: str, folder_path: tuple[str, ...], message: CorpusMessage) -> str:
        """A message in the user's archive mailbox (made on first use), e.g. ("Inbox",) or ("2019", "Budget")."""
        return self.store.add_archive_message(email, folder_path, message)

    def delete_message(self, email: str, item_id: str) -> None:
        self.store.delete_message(email, item_id)

    def move_message(self, email: str, item_id: str, to_path: tuple[str, ...]) -> str:
        return self.store.move_message(email, item_id, to_path)

    def create_folder(self, email: str, path: tuple[str, ...]) -> str:
        return self.store.create_folder(email, path)

    def rename_folder(self, email: str, path: tuple[str, ...], new_name: str) -> str:
        return self.store.rename_folder(email, path, new_name)

    def delete_folder(self, email: str, path: tuple[str, ...]) -> None:
        self.store.delete_folder(email, path)
    # Inbox rules, out-of-office, folder permissions and delegates (tests.lab.ews_settings).

    def set_rules(self, email: str, rules: list) -> None:
        with self.store.lock:
            self.store.mailbox(email).rules = list(rules)

    def set_oof(self, email: str, oof) -> None:
        with self.store.lock:
            self.store.mailbox(email).oof = oof

    def set_permissions(self, email: str, folder_path: tuple[str, ...], permissions: list) -> None:
        with self.store.lock:
            folder = self.store.mailbox(email).folder(*folder_path)
            folder.permissions = list(permissions)
            folder.touch()

    def set_delegates(self, email: str, delegates: list) -> None:
        with self.store.lock:
            self.store.mailbox(email).delegates = list(delegates)

    def add_settings(self, email: str) -> dict:
        """Give a mailbox the typical settings of :func:`tests.lab.ews_settings.corpus_for`; returns them."""
        found = ews_settings.corpus_for(email)
        self.set_rules(email, found["rules"])
        self.set_oof(email, found["oof"])
        self.set_delegates(email, found["delegates"])
        return found

    def item_ids(self, email: str, folder_path: tuple[str, ...]) -> list[str]:
        with self.store.lock:
            return [i.item_id for i in self.store.mailbox(email).folder(*folder_path).items]

    def inject(self, fault: str, *, count: int = 1, operation: str | None = None, mailbox: str | None = None,
               back_off_ms: int = 50, retry_after: int = 1) -> None:
        """Answer the next ``count`` matching requests with ``fault``, then serve normally again.

        server_busy: ErrorServerBusy SOAP fault with BackOffMilliseconds; busy_in_200: HTTP 200 whose response
        message is ErrorServerBusy with BackOffMilliseconds in its MessageXml (Exchange's other shape); http_503:
        HTTP 503 with Retry-After (whole seconds, as HTTP allows); connection_count: ErrorExceededConnectionCount;
        unauthorized: HTTP 401. A large ``count`` makes a server that answers busy to everything.
        """
        if fault not in FAULT_KINDS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._faults.append(Fault(fault, count, operation, mailbox, back_off_ms, retry_after))

    def break_item(self, item_id: str, how: str) -> None:
        """Make GetItem for this item's MIME fail as Exchange does for some items (:data:`BROKEN_ITEMS`)."""
        if how not in BROKEN_ITEMS:
            raise ValueError(f"unknown way to break an item {how!r}; one of {', '.join(BROKEN_ITEMS)}")
        self.broken_items[item_id] = how

    def stall_sync(self, email: str, folder_path: tuple[str, ...], times: int) -> None:
        """The next ``times`` SyncFolderItems of this folder that carry a state answer "more changes follow"
        with the same state and no change (as Exchange sometimes does)."""
        with self.store.lock:
            folder_id = self.store.mailbox(email).folder(*folder_path).folder_id
        with self._lock:
            self._stalls[folder_id] = times

    def take_stall(self, folder_id: str) -> bool:
        with self._lock:
            if self._stalls.get(folder_id, 0) > 0:
                self._stalls[folder_id] -= 1
                return True
            return False

    def misorder_get_items(self, times: int = 1) -> None:
        """The next ``times`` GetItem for MIME answer their items in reverse order."""
        with self._lock:
            self._misorders = times

    def take_misorder(self) -> bool:
        with self._lock:
            if self._misorders > 0:
                self._misorders -= 1
                return True
            return False

    def busy_inside_get_items(self, times: int = 1, back_off_ms: int = 150) -> None:
        """The next ``times`` GetItem requests of three or more items answer HTTP 200 with the third item's
        message an ErrorInternalServerError around an inner ErrorServerBusy (:func:`busy_inside`)."""
        with self._lock:
            self._busy_inside = (times, back_off_ms)

    def take_busy_inside(self) -> int | None:
        with self._lock:
            times, back_off_ms = self._busy_inside
            if times <= 0:
                return None
            self._busy_inside = (times - 1, back_off_ms)
            return back_off_ms

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._busy_inside = (0, 0)

    @property
    def request_log(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def requests_for(self, operation: str, mailbox: str | None = None) -> list[RequestRecord]:
        return [r for r in self.request_log if r.operation == operation
                and (mailbox is None or (r.mailbox or "").lower() == mailbox.lower())]

    # -- request processing -----------------------------------------------------------------------------

    def _record(self, operation: str, mailbox: str | None, status: int, code: str,
                impersonated: bool = False) -> None:
        with self._lock:
            self._log.append(RequestRecord(operation, mailbox, status, code, impersonated))

    def _take_fault(self, operation: str, mailbox: str | None) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(operation, mailbox):
                    fault.remaining -= 1
                    return fault
        return None

    def _handle(self, body: bytes) -> tuple[int, bytes, object]:
        """(HTTP status, payload, extra) for one authenticated POST; never raises."""
        operation, mailbox, impersonated = "(unparsed)", None, False
        try:
            try:
                envelope = ET.fromstring(body)
            except ET.ParseError as exc:
                raise SoapFault("ErrorSchemaValidation", f"The request failed schema validation: {exc}.") from None
            header = envelope.find(f"{{{SOAP}}}Header")
            soap_body = envelope.find(f"{{{SOAP}}}Body")
            if soap_body is None or len(soap_body) == 0:
                raise SoapFault("ErrorSchemaValidation", "The request failed schema validation: no SOAP Body.")
            request = soap_body[0]
            operation = _local(request.tag)
            with self.store.lock:
                mailbox, impersonated = request_mailbox(self.store, header, soap_body)
            fault = self._take_fault(operation, mailbox)
            if fault is not None:
                return self._fault_response(fault, operation, mailbox, impersonated)
            api = self._api_version(header)
            method = getattr(_Operations, operation, None) if operation[:1].isupper() else None
            if request.tag != f"{{{M}}}{operation}" or method is None:
                raise SoapFault("ErrorInvalidRequest", f"The request is invalid: operation {operation} is not "
                                                       "supported by this server.")
            with self.store.lock:
                ctx = _Context(self, self._impersonation(header), api)
                response = method(_Operations(ctx), request)
            codes = [el.text for el in response.iter(f"{{{M}}}ResponseCode")]
            code = next((c for c in codes if c and c != "NoError"), "NoError")
            self._record(operation, mailbox, 200, code or "NoError", impersonated)
            return 200, self._envelope(response), None
        except SoapFault as fault:
            self._record(operation, mailbox, 500, fault.code, impersonated)
            return 500, self._soap_fault(fault), None
        except Exception as exc:  # a lab bug must reach the client as a fault, never as a dropped connection
            log.exception("EWS responder failed on %s", operation)
            self._record(operation, mailbox, 500, "ErrorInternalServerError", impersonated)
            return 500, self._soap_fault(SoapFault("ErrorInternalServerError",
                                                   f"An internal server error occurred: {type(exc).__name__}.")), None

    def _fault_response(self, fault: Fault, operation: str, mailbox: str | None,
                        impersonated: bool) -> tuple[int, bytes, object]:
        if fault.kind == "unauthorized":
            self._record(operation, mailbox, 401, "HTTP 401", impersonated)
            return 401, b"", None
        if fault.kind == "http_503":
            self._record(operation, mailbox, 503, "HTTP 503", impersonated)
            return 503, b"<html><body>Service Unavailable</body></html>", fault.retry_after
        if fault.kind == "server_busy":
            self._record(operation, mailbox, 500, "ErrorServerBusy", impersonated)
            return 500, self._soap_fault(SoapFault(
                "ErrorServerBusy", "The server cannot service this request right now. Try again later.",
                {"BackOffMilliseconds": str(fault.back_off_ms)})), None
        # busy_in_200 and connection_count: Exchange answers in the operation's response message, not with a fault.
        if fault.kind == "busy_in_200":
            failure = EwsFailure("ErrorServerBusy", "The server cannot service this request right now. Try again "
                                 "later.", message_xml={"BackOffMilliseconds": str(fault.back_off_ms)})
        else:
            failure = EwsFailure("ErrorExceededConnectionCount", "You have exceeded the available concurrent "
                                 "connections for your account. Try again once your other requests have completed.")
        self._record(operation, mailbox, 200, failure.code, impersonated)
        response = _el(None, M, f"{operation}Response")
        _message(_el(response, M, "ResponseMessages"), operation, failure)
        return 200, self._envelope(response), None

    def _api_version(self, header: ET.Element | None) -> int:
        requested = None
        if header is not None:
            rsv = header.find(f"{{{T}}}RequestServerVersion")
            if rsv is not None:
                requested = rsv.get("Version")
        requested = requested or "Exchange2007_SP1"
        ours = API_VERSIONS.index(self.version.api)
        if requested not in API_VERSIONS or API_VERSIONS.index(requested) > ours:
            raise SoapFault("ErrorInvalidServerVersion", "The specified server version is invalid.")
        return API_VERSIONS.index(requested)

    def _impersonation(self, header: ET.Element | None) -> LabMailbox | None:
        sid = header.find(f"{{{T}}}ExchangeImpersonation/{{{T}}}ConnectingSID") if header is not None else None
        if sid is None:
            return None
        address = next((c.text.strip() for c in sid if c.text and _local(c.tag) in
                        ("PrimarySmtpAddress", "SmtpAddress", "PrincipalName")), None)
        if address is None:
            raise SoapFault("ErrorImpersonationFailed", "Impersonation failed: the lab resolves SMTP addresses "
                                                        "and user principal names only.")
        try:
            box = self.store.mailbox(address)
        except KeyError:
            raise SoapFault("ErrorNonExistentMailbox", "The SMTP address has no mailbox associated with it.") from None
        allowed = self.impersonation_allowed
        if allowed is False or (isinstance(allowed, set) and box.email.lower() not in {a.lower() for a in allowed}):
            raise SoapFault("ErrorImpersonateUserDenied",
                            "The account does not have permission to impersonate the requested user.")
        return box

    def _server_version_header(self, envelope: ET.Element) -> None:
        v = self.version
        header = _el(envelope, SOAP, "Header")
        _el(header, T, "ServerVersionInfo", MajorVersion=str(v.major), MinorVersion=str(v.minor),
            MajorBuildNumber=str(v.build), MinorBuildNumber=str(v.revision), Version=v.api)

    def _envelope(self, response: ET.Element) -> bytes:
        envelope = _el(None, SOAP, "Envelope")
        self._server_version_header(envelope)
        _el(envelope, SOAP, "Body").append(response)
        return ET.tostring(envelope, encoding="utf-8", xml_declaration=True)

    def _soap_fault(self, fault: SoapFault) -> bytes:
        envelope = _el(None, SOAP, "Envelope")
        self._server_version_header(envelope)
        element = _el(_el(envelope, SOAP, "Body"), SOAP, "Fault")
        # faultcode/faultstring/detail are unqualified in SOAP 1.1; the code's prefix is bound by hand.
        code = ET.SubElement(element, "faultcode", {"xmlns:a": T})
        code.text = f"a:{fault.code}"
        ET.SubElement(element, "faultstring", {"xml:lang": "en-US"}).text = fault.text
        detail = ET.SubElement(element, "detail")
        _el(detail, E, "ResponseCode", fault.code)
        _el(detail, E, "Message", fault.text)
        if fault.message_xml:
            mxml = _el(detail, T, "MessageXml")
            for name, value in fault.message_xml.items():
                _el(mxml, T, "Value", value, Name=name)
        return ET.tostring(envelope, encoding="utf-8", xml_declaration=True)
