"""EWS sources: reading Exchange mailboxes through Exchange Web Services, for inventory and the sync engine.

One service account opens each user's mailbox by impersonation or delegate access; this module lists mail
folders, pages items, reads incremental changes (SyncFolderItems) and fetches exact MIME bytes. exchangelib
does the protocol; this module decides how to connect, what to ask for, and what a failure means. Importing it
costs about 0.3 s (exchangelib), so callers import it lazily.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests.exceptions
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    UTC,
    Account,
    Configuration,
    Credentials,
    FaultTolerance,
)
from exchangelib import errors as ews_errors
from exchangelib.extended_properties import ExtendedProperty
from exchangelib.fields import ExtendedPropertyField, FieldPath
from exchangelib.folders import Folder
from exchangelib.items import ID_ONLY, Item, Message
from exchangelib.properties import (
    ENTRY_ID,
    EWS_ID,
    AlternateId,
    DistinguishedFolderId,
    FolderId,
    ItemId,
    Mailbox,
)
from exchangelib.protocol import Protocol
from exchangelib.services import ConvertId, FindFolder, FindItem, GetFolder, GetItem, SyncFolderItems
from exchangelib.services.common import EWSService
from exchangelib.version import Version

import migrate
from migrate.core.config import EwsServer
from migrate.core.errors import (
    ConnectFailed,
    FolderFailed,
    LoginFailed,
    MigrateError,
    RemoteError,
    SyncStateInvalid,
    Throttled,
    TlsFailed,
    TransientError,
)
from migrate.core.secrets import Secret, redact, register
from migrate.mailbox.unexportable import Unreadable

log = logging.getLogger(__name__)
T = TypeVar("T")

TNS = "http://schemas.microsoft.com/exchange/services/2006/types"
MNS = "http://schemas.microsoft.com/exchange/services/2006/messages"
#: Distinguished mail folders and the IMAP special-use attribute each becomes (the inbox has none).
WELL_KNOWN = {"inbox": None, "sentitems": "\\Sent", "deleteditems": "\\Trash", "drafts": "\\Drafts",
              "junkemail": "\\Junk"}
#: Folders every Exchange mailbox has that hold no user mail, by distinguished id: not migrated, but counted by
#: the inventory (their subfolders with them). RSS Feeds has no distinguished id and is known by its class.
SYSTEM_FOLDERS = {"outbox": "mail waiting to be sent from Outlook; it is sent, or lost, before the cut-over",
                  "syncissues": "Outlook's synchronisation logs and conflicts, not user mail",
                  "conflicts": "Outlook's synchronisation conflicts, not user mail",
                  "localfailures": "items Outlook could not synchronise, not user mail",
                  "serverfailures": "items the server could not synchronise, not user mail"}
RSS_CLASS = "ipf.note.outlookhomepage"
#: Folder classes (and distinguished ids) the inventory counts as calendars, contacts and tasks.
NON_MAIL_KINDS = {"ipf.appointment": "calendar", "ipf.contact": "contacts", "ipf.task": "tasks"}
#: The smallest FindItem page asked for when the server's policy refuses bigger ones.
MIN_PAGE_SIZE = 1
#: SyncFolderItems refuses more than this many changes per call (EWS schema limit).
MAX_SYNC_CHANGES = 512


# -- records that leave this module ----------------------------------------------------------------------

@dataclass(frozen=True)
class EwsFolderInfo:
    folder_id: str
    path: tuple[str, ...]          # display names below the message folder root, e.g. ("Inbox",)
    well_known: str | None         # "inbox", "sentitems", "deleteditems", "drafts", "junkemail" or None
    special_use: str | None        # "\\Sent", "\\Trash", "\\Drafts", "\\Junk" (None for inbox and ordinary)
    total_count: int
    size: int | None               # bytes, if the server reports the folder size
    #: mail (migrated) | calendar | contacts | tasks | system (not migrated as mail; counted by the inventory)
    kind: str = "mail"


@dataclass(frozen=True)
class EwsItem:
    item_id: str
    change_key: str
    size: int
    flags: tuple[str, ...]         # IMAP-style: \Seen, \Flagged, \Draft, then keywords from categories
    received: dt.datetime          # aware, UTC
    item_class: str = "IPM.Note"   # IPM.Note, IPM.Schedule.Meeting.Request, REPORT.IPM.Note.NDR, IPM.Contact, ...

    @property
    def not_migrated(self) -> str | None:
        """Why this item is not copied into an IMAP folder (None: it is copied as MIME); see
        :data:`NOT_MIGRATED_CLASSES`."""
        return not_migrated_reason(self.item_class)


#: Item classes found in mail folders that are listed as not migrated rather than copied as MIME, with the
#: reason people read. Everything else is copied as MIME: mail (IPM.Note and its S/MIME, voicemail, rights-
#: protected subclasses), meeting requests, responses and cancellations (IPM.Schedule.Meeting.*, which keep
#: their text/calendar part), non-delivery reports and read or delivery receipts (REPORT.*), posts, sharing
#: invitations and task requests. An item Exchange then cannot convert is recorded as failed with its reason.
NOT_MIGRATED_CLASSES = {
    "ipm.appointment": "a calendar item kept in a mail folder; an IMAP folder cannot hold it (calendars are "
                       "copied from the Calendar folder)",
    "ipm.contact": "a contact kept in a mail folder; an IMAP folder cannot hold it (contacts are copied from the "
                   "Contacts folder)",
    "ipm.distlist": "a contact group kept in a mail folder; an IMAP folder cannot hold it",
    "ipm.task": "a task kept in a mail folder; an IMAP folder cannot hold it",
    "ipm.stickynote": "an Outlook note; IMAP has no notes",
    "ipm.activity": "an Outlook journal entry; IMAP has no journal",
}


def not_migrated_reason(item_class: str | None) -> str | None:
    cls = (item_class or "IPM.Note").strip().lower()
    for prefix, reason in NOT_MIGRATED_CLASSES.items():
        if cls == prefix or cls.startswith(prefix + "."):
            return f"not migrated by policy ({_CONTROL.sub(' ', item_class or '')[:60]}): {reason}"
    return None


#: Per-item answers to a GetItem for MIME that mean "this item cannot be exported", not "try again".
UNEXPORTABLE = (ews_errors.ErrorMimeContentConversionFailed, ews_errors.ErrorItemCorrupt,
                ews_errors.ErrorCorruptData)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: How often items a batch left unprocessed (ErrorBatchProcessingStopped) are asked for again.
BATCH_STOPPED_ROUNDS = 3


@dataclass
class EwsChanges:
    state: str                     # the new SyncFolderItems state to store
    creates: list[EwsItem] = field(default_factory=list)
    updates: list[EwsItem] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    more: bool = False             # the server has more changes: call sync() again with ``state``


# -- MAPI properties read as extended properties (defined here, never registered on exchangelib's classes) --

class _MessageSizeExtended(ExtendedProperty):
    """PR_MESSAGE_SIZE_EXTENDED: on a folder, the bytes of its items."""

    property_tag = 0x0E08
    property_type = "Long"


class _FlagStatus(ExtendedProperty):
    """PR_FLAG_STATUS: 2 = flagged for follow-up, 1 = completed, absent = not flagged (works on every EWS
    version, unlike item:Flag, which needs Exchange 2013)."""

    property_tag = 0x1090
    property_type = "Integer"


class _ProhibitSendQuota(ExtendedProperty):
    """PR_PROHIBIT_SEND_QUOTA on the mailbox root, in kilobytes: the practical mailbox limit."""

    property_tag = 0x666E
    property_type = "Integer"


class _StorageQuotaLimit(ExtendedProperty):
    """PR_STORAGE_QUOTA_LIMIT on the mailbox root, in kilobytes (used when the send quota is not set)."""

    property_tag = 0x3FF5
    property_type = "Integer"


def _ext(prop: type[ExtendedProperty]) -> FieldPath:
    return FieldPath(field=ExtendedPropertyField(prop.__name__.strip("_").lower(), value_cls=prop))


FOLDER_FIELDS = [FieldPath(field=Folder.get_field_by_fieldname(n))
                 for n in ("parent_folder_id", "name", "folder_class", "total_count")] + [_ext(_MessageSizeExtended)]
ITEM_FIELDS = [FieldPath(field=Item.get_field_by_fieldname(n))
               for n in ("size", "datetime_received", "is_draft", "categories", "item_class")] + \
              [FieldPath(field=Message.get_field_by_fieldname("is_read")), _ext(_FlagStatus)]
MIME_FIELDS = [FieldPath(field=Item.get_field_by_fieldname("mime_content"))]
DESCRIBE_FIELDS = [FieldPath(field=Item.get_field_by_fieldname(n)) for n in ("subject", "datetime_received", "size")]
SIZE_FIELDS = [_ext(_MessageSizeExtended)]
QUOTA_FIELDS = [_ext(_ProhibitSendQuota), _ext(_StorageQuotaLimit)]


# -- exchangelib services that hand back the XML, so this module parses exactly what it asked for ----------

class _WholeBody:
    """A response whose ``iter_content()`` is the whole body as bytes (see :class:`_ParseWhole`)."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    def iter_content(self) -> bytes:
        return self._content


class _ParseWhole:
    """exchangelib parses every response through requests' ``iter_content()``, one byte per step: about a
    second of CPU, with the GIL held, per 5 MB of MIME. These services never stream, so the body is already
    in memory; lxml gets it whole."""

    def _get_soap_parts(self, response):
        header, body = super()._get_soap_parts(response=_WholeBody(response.content))
        policy = self.protocol.retry_policy
        if response.status_code == 200 and body is not None and isinstance(policy, _BoundedFaultTolerance) \
                and not _busy_inside(body):
            policy.answered()      # a normal answer (no busy one inside it) ends a run of back-offs
        return header, body

    @staticmethod
    def _get_exception(code, text, msg_xml=None, rule_errors=None):
        """exchangelib's mapping, keeping the server's BackOffMilliseconds where a busy answer arrives inside a
        response message (HTTP 200: ErrorServerBusy, or ErrorInternalServerError around an inner ErrorServerBusy,
        table 4 of "EWS throttling in Exchange"): exchangelib would otherwise wait its own 10 s, doubling."""
        exc = EWSService._get_exception(code=code, text=text, msg_xml=msg_xml, rule_errors=rule_errors)
        if isinstance(exc, ews_errors.ErrorServerBusy) and not exc.back_off and msg_xml is not None:
            for value in msg_xml.findall(f"{{{TNS}}}Value"):
                if value.get("Name") == "BackOffMilliseconds" and (value.text or "").strip().isdigit():
                    exc.back_off = int(value.text.strip()) / 1000.0
        return exc


class _RawGetFolder(_ParseWhole, GetFolder):
    def _elems_to_objs(self, elems):
        yield from elems


class _RawFindFolder(_ParseWhole, FindFolder):
    def _elem_to_obj(self, elem):
        return elem


class _RawFindItem(_ParseWhole, FindItem):
    def _elem_to_obj(self, elem):
        return elem


class _RawGetItem(_ParseWhole, GetItem):
    def _elem_to_obj(self, elem):
        return elem


class _RawConvertId(_ParseWhole, ConvertId):
    """How the server's version is asked (exchangelib's Version.guess, with this module's parsing)."""


def _guess_version(protocol: Protocol) -> Version:
    """exchangelib's ``Version.guess``: a minimal request whose answer's SOAP header carries the server's version
    (a request naming a version the server does not have is tried with the next older one)."""
    protocol.config.version = Version(build=None, api_version=ConvertId.supported_api_versions()[0])
    try:
        list(_RawConvertId(protocol=protocol).call([AlternateId(id="DUMMY", format=EWS_ID, mailbox="DUMMY")],
                                                   ENTRY_ID))
    except ews_errors.ResponseMessageError:
        if not protocol.config.version.build:
            raise          # no answer at all (a lost connection is one of these): the caller says why
    if not protocol.config.version.build:
        raise ews_errors.TransportError("No valid version headers found in response")
    return protocol.config.version


class _RawSyncFolderItems(_ParseWhole, SyncFolderItems):
    def _elem_to_obj(self, elem):
        return elem.tag.rsplit("}", 1)[-1], elem


def _busy_inside(body: Any) -> bool:
    """An HTTP 200 that is a busy answer all the same: a response message ErrorServerBusy, or one whose MessageXml
    names an inner ErrorServerBusy (Exchange's two shapes of throttling inside a response)."""
    for code in body.iter(f"{{{MNS}}}ResponseCode"):
        if (code.text or "").strip() == "ErrorServerBusy":
            return True
    return any(v.get("Name") == "InnerErrorResponseCode" and (v.text or "").strip() == "ErrorServerBusy"
               for v in body.iter(f"{{{TNS}}}Value"))


def _distinguished(name: str, email: str) -> Folder:
    # A Folder without a root: the raw services only need its id element.
    return Folder(_distinguished_id=DistinguishedFolderId(id=name, mailbox=Mailbox(email_address=email)))


def _text(elem: Any, tag: str) -> str | None:
    child = elem.find(f"{{{TNS}}}{tag}")
    return None if child is None else (child.text or "")


def _extended_values(elem: Any) -> dict[int, str]:
    values: dict[int, str] = {}
    for prop in elem.findall(f"{{{TNS}}}ExtendedProperty"):
        uri = prop.find(f"{{{TNS}}}ExtendedFieldURI")
        tag = uri.get("PropertyTag") if uri is not None else None
        if tag:
            with suppress(ValueError):
                values[int(tag, 16) if tag.lower().startswith("0x") else int(tag)] = _text(prop, "Value") or ""
    return values


def _parse_time(text: str | None) -> dt.datetime:
    if not text:
        return dt.datetime.fromtimestamp(0, dt.UTC)
    value = dt.datetime.fromisoformat(text)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def item_from_xml(elem: Any) -> EwsItem:
    """An item element (``t:Message`` or another item type) with ITEM_FIELDS → an :class:`EwsItem`."""
    ident = elem.find(f"{{{TNS}}}ItemId")
    flags: list[str] = []
    if _text(elem, "IsRead") == "true":
        flags.append("\\Seen")
    flag_status = _extended_values(elem).get(_FlagStatus.property_tag)
    if flag_status == "2" or (elem.findtext(f"{{{TNS}}}Flag/{{{TNS}}}FlagStatus") or "") == "Flagged":
        flags.append("\\Flagged")
    if _text(elem, "IsDraft") == "true":
        flags.append("\\Draft")
    categories = elem.find(f"{{{TNS}}}Categories")
    if categories is not None:
        flags.extend(s.text for s in categories.findall(f"{{{TNS}}}String") if s.text)
    return EwsItem(item_id=ident.get("Id"), change_key=ident.get("ChangeKey") or "",
                   size=int(_text(elem, "Size") or 0), flags=tuple(flags),
                   received=_parse_time(_text(elem, "DateTimeReceived")),
                   item_class=_text(elem, "ItemClass") or "IPM.Note")


# -- retries, TLS and failures ---------------------------------------------------------------------------

class _BoundedFaultTolerance(FaultTolerance):
    """exchangelib's fault tolerance (honours ErrorServerBusy BackOffMilliseconds and HTTP 503 Retry-After),
    with every back-off logged, one budget of consecutive back-offs per server, and no retrying of HTTP 401.

    One instance serves every thread (and both kinds of access) that talks to one server: exchangelib makes
    every request of those threads wait while a back-off the server asked for runs, and the count of busy
    answers since the server last answered normally is shared, so ten threads do not get ten budgets. When the
    server asks for a longer back-off than ``max_wait``, or the budget is spent, the server is *blocked* for
    what it asked: every thread's next call is refused at once as Throttled (see :meth:`EwsSource.call`), and
    the mailboxes are left for the next pass instead of pressing a server that asked for minutes of quiet.

    exchangelib treats 401 as possible throttling and retries it for up to ``max_wait``; for a migration a 401
    almost always means a wrong password, and repeating it can lock the service account out of the domain.
    """

    def __init__(self, *, max_wait: float, max_retries: int, label: str) -> None:
        super().__init__(max_wait=max_wait)
        self.max_retries = max_retries
        self.label = label
        self._busy_lock = threading.Lock()
        self.busy = 0                              # busy answers since the server last answered normally
        self.blocked_until = 0.0                   # time.monotonic() before which no request is sent

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_busy_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._busy_lock = threading.Lock()

    def raise_response_errors(self, response: Any) -> None:
        if response.status_code == 401:
            raise AuthRefused(f"HTTP 401 from {response.url}", offered_schemes(response.headers))
        # HTTP 200 is not yet a normal answer: Exchange also throttles inside one (ErrorServerBusy in a response
        # message). The parsed response decides (:meth:`answered`, from ``_ParseWhole``).
        return super().raise_response_errors(response)

    def answered(self) -> None:
        """The server answered normally (no busy answer in it): a run of back-offs ends."""
        with self._busy_lock:
            self.busy = 0

    def blocked_for(self) -> float:
        """Seconds this server still asked every client to keep quiet (0: none)."""
        return max(0.0, self.blocked_until - time.monotonic())

    def back_off(self, seconds: float | None) -> None:
        # exchangelib also backs off after a lost connection (ErrorTimeoutExpired). Lost connections have one
        # retry layer of their own, the caller's (a sync reconnects the mailbox and resumes from its records),
        # so here they leave at once; only the server's own busy answers are waited out.
        current = sys.exc_info()[1]
        if isinstance(current, ews_errors.ErrorTimeoutExpired):
            raise current
        seconds = self.DEFAULT_BACKOFF if seconds is None else float(seconds)
        with self._busy_lock:
            self.busy += 1
            busy = self.busy
            if busy > self.max_retries or seconds > self.max_wait:
                self.busy = 0
                self.blocked_until = max(self.blocked_until, time.monotonic() + seconds)
                log.warning("%s: the server asked to back off for %.1fs%s; no request goes to it until then",
                            self.label, seconds, f" after {busy - 1} waits" if busy > self.max_retries else "")
                raise ews_errors.RateLimitError("the server kept asking to back off", wait=seconds)
        log.warning("%s: server busy; waiting %.2fs as it asked (back-off %d of %d for this server)", self.label,
                    seconds, busy, self.max_retries)
        super().back_off(seconds)


class AuthRefused(ews_errors.UnauthorizedError):
    """HTTP 401, with the authentication methods the server offered in its answer (WWW-Authenticate)."""

    def __init__(self, message: str, offered: tuple[str, ...]) -> None:
        super().__init__(message)
        self.offered = offered


def offered_schemes(headers: Any) -> tuple[str, ...]:
    """The schemes of a 401's WWW-Authenticate headers (requests joins several with commas), as sent:
    ``('Negotiate', 'NTLM')``. A challenge's parameters (``realm="x"``) and tokens are left out."""
    schemes: list[str] = []
    for part in (headers.get("WWW-Authenticate") or "").split(","):
        word = part.strip().split(" ", 1)[0]
        if _TOKEN.fullmatch(word) and word.lower() not in {s.lower() for s in schemes}:
            schemes.append(word)
    return tuple(schemes)


#: An auth scheme is an HTTP token (RFC 9110 5.6.2); anything else from the server is not repeated to people.
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,40}")
#: How requests_ntlm reports a server that answers an NTLM token under Negotiate without an NTLM challenge:
#: Negotiate there means Kerberos only.
_NO_NTLM_CHALLENGE = "did not respond with NTLM challenge"


class _NoNtlmChallengeIsNotAnError(logging.Filter):
    """exchangelib logs any exception from requests at ERROR with the whole request; for a Negotiate that gave
    no NTLM challenge, :meth:`EwsSource.describe` reports the reason, so exchangelib's record becomes DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if record.levelno == logging.ERROR and len(args) > 1 and _NO_NTLM_CHALLENGE in str(args[1]):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


logging.getLogger("exchangelib.util").addFilter(_NoNtlmChallengeIsNotAnError())


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and what urllib3/requests wrap in ``reason`` and ``args``."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for nxt in (e.__cause__, e.__context__, getattr(e, "reason", None), *getattr(e, "args", ())):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


# -- the source and its mailboxes -------------------------------------------------------------------------

class EwsSource:
    """One ministry's Exchange server, reached through EWS as the project file's service account.

    ``max_wait`` bounds any single server-requested back-off and ``retries`` the consecutive back-offs and
    the retries of transient failures (each retry is logged). ``retry_wait`` is the first pause when the
    server named none. The password is used only to authenticate and is never logged.
    """

    def __init__(self, server: EwsServer, password: Secret, *, base_dir: Path, label: str,
                 max_connections: int = 4, max_wait: float = 300.0, retries: int = 5, retry_wait: float = 10.0,
                 page_size: int = 500, mime_batch: int = 10, budget: _BoundedFaultTolerance | None = None) -> None:
        self.server = server
        self.label = label
        self.max_connections = max_connections
        self.max_wait = max_wait
        self.retries = retries
        self.retry_wait = retry_wait
        self.page_size = page_size
        self.mime_batch = mime_batch
        self._ca_file: Path | None = None
        if server.ca_file:
            ca = Path(server.ca_file).expanduser()
            self._ca_file = ca if ca.is_absolute() else base_dir / ca
        # The Basic header carries user:password in base64, encoded as requests encodes it (Latin-1); register
        # that form (and UTF-8's, for servers that expect it) so DEBUG logs of exchangelib's request headers are
        # masked by the same redaction point as the password itself.
        pair = f"{server.user}:{password.reveal()}"
        for encoding in ("latin-1", "utf-8"):
            try:
                register(base64.b64encode(pair.encode(encoding)).decode())
            except UnicodeEncodeError:
                if server.auth == "basic" and encoding == "latin-1":
                    raise LoginFailed(f"{label}: the service account's password holds characters HTTP Basic "
                                      "authentication cannot carry (only Latin-1); use auth: ntlm or another "
                                      "password") from None
        self._credentials = Credentials(server.user, password.reveal())
        #: The server's back-off budget: shared with the other EwsSource of the same server (``budget``).
        self._policy = budget or _BoundedFaultTolerance(max_wait=max_wait, max_retries=retries, label=label)
        self._lock = threading.Lock()
        self._protocol: Protocol | None = None
        self._config: Configuration | None = None
        self._url = server.url

    # -- connection ---------------------------------------------------------------------------------------

    @property
    def url(self) -> str | None:
        return self._url

    def _where(self) -> str:
        return f"{self.label} ({self._url or 'autodiscover'})"

    def _verify(self) -> bool | str:
        """What requests should trust: the configured CA file, else the system's store (certifi as a last
        resort), or nothing when the project file turns verification off for this host."""
        if not self.server.verify_certificate:
            return False
        if self._ca_file is not None:
            return str(self._ca_file)
        paths = ssl.get_default_verify_paths()
        return paths.cafile or paths.capath or True

    def _protocol_now(self, email: str | None = None) -> Protocol:
        with self._lock:
            if self._protocol is not None:
                return self._protocol
            if not self._url:
                self._url = self._autodiscover(email or self.server.user)
            parts = urlsplit(self._url)
            if parts.scheme == "http":  # refused by the project-file checks unless the entry opts in
                from migrate.mailbox.imap import warn_cleartext

                warn_cleartext(self.label, (parts.hostname or "", parts.port or 80),
                               f"the {self.server.auth} login of the service account")
            verify, timeout = self._verify(), self.server.timeout

            class _SourceProtocol(Protocol):
                TIMEOUT = timeout
                RETRY_WAIT = self.retry_wait
                USERAGENT = f"govmigrate/{migrate.__version__}"

                @classmethod
                def raw_session(cls, prefix, oauth2_client=None, oauth2_session_params=None,
                                oauth2_token_endpoint=None):
                    session = super().raw_session(prefix, oauth2_client, oauth2_session_params,
                                                  oauth2_token_endpoint)
                    session.verify = verify
                    # Proxies and CA bundles from the environment must not override the project file.
                    session.trust_env = False
                    return session

                @property
                def version(self):
                    # exchangelib asks the server's version with its own ConvertId, which neither honours a
                    # BackOffMilliseconds inside a response message nor tells the budget a normal answer came.
                    if not self.config.version or not self.config.version.build:
                        with self._version_lock:
                            if not self.config.version or not self.config.version.build:
                                self.config.version = _guess_version(self)
                    return self.config.version

            self._config = Configuration(service_endpoint=self._url, credentials=self._credentials,
                                         auth_type=NTLM if self.server.auth == "ntlm" else BASIC,
                                         retry_policy=self._policy, max_connections=self.max_connections)
            # Built past exchangelib's process-wide protocol cache: that cache keys on endpoint and
            # credentials only, so two sources would otherwise share one TLS and retry configuration.
            self._protocol = type.__call__(_SourceProtocol, config=self._config)
            return self._protocol

    def _autodiscover(self, email: str) -> str:
        from exchangelib.autodiscover import Autodiscovery

        if "@" not in email:
            raise ConnectFailed(f"{self.label}: autodiscover needs an email address; set the EWS url instead")
        try:
            _, protocol = Autodiscovery(email=email, credentials=self._credentials).discover()
        except Exception as exc:
            raise ConnectFailed(f"{self.label}: autodiscover for {email} failed: {redact(str(exc))}; "
                                "set the EWS url in the project file") from None
        log.info("%s: autodiscover found %s", self.label, protocol.service_endpoint)
        return protocol.service_endpoint

    def describe(self, exc: BaseException, *, mailbox: str | None = None) -> MigrateError:
        """Map an exchangelib, requests or socket failure onto a govmigrate error with a plain reason."""
        if isinstance(exc, MigrateError):
            return exc
        where = self._where()
        who = f"service account {self.server.user}"
        box = f"mailbox {mailbox}" if mailbox else "the mailbox"
        method_off = self._auth_method_off(exc)
        if method_off is not None:
            return LoginFailed(f"{where}: {method_off}")
        if isinstance(exc, ews_errors.UnauthorizedError):
            return LoginFailed(f"{where}: the server refused the password of {who} (HTTP 401)")
        if isinstance(exc, ews_errors.ErrorImpersonateUserDenied):
            return LoginFailed(f"{where}: {who} may not impersonate {box}; give it the ApplicationImpersonation "
                               "role, or use access: delegate")
        if isinstance(exc, ews_errors.ErrorAccessDenied):
            return LoginFailed(f"{where}: {who} has no access to {box}; grant it full access to the mailbox, "
                               "or use access: impersonation")
        if isinstance(exc, ews_errors.ErrorImpersonationFailed):
            return LoginFailed(f"{where}: impersonating {box} failed: {redact(str(exc))}")
        if isinstance(exc, ews_errors.ErrorNonExistentMailbox):
            return RemoteError(f"{where}: there is no {box} on this server")
        if isinstance(exc, ews_errors.ErrorInvalidSyncStateData):
            return SyncStateInvalid(f"{where}: the server no longer accepts the stored sync state of a folder in "
                                    f"{box}; it will be read again from the start")
        if isinstance(exc, (ews_errors.ErrorFolderNotFound, ews_errors.ErrorItemNotFound)):
            return FolderFailed(f"{where}: {redact(str(exc)) or 'folder not found'} ({box})")
        if isinstance(exc, ews_errors.RateLimitError):
            return Throttled(f"{where}: the server kept throttling (it last asked for a back-off of {exc.wait:.1f}s, "
                             f"this client waits up to {self.max_wait:.0f}s and {self.retries} times in a row); "
                             f"{box} is left for the next pass")
        if isinstance(exc, ews_errors.ErrorServerBusy):
            return TransientError(f"{where}: server busy", retry_after=exc.back_off)
        for cause in _chain(exc):
            if isinstance(cause, ssl.SSLCertVerificationError):
                return TlsFailed(f"{where}: TLS certificate refused: {cause.verify_message or cause.reason}")
            if isinstance(cause, (ssl.SSLError, requests.exceptions.SSLError)):
                return TlsFailed(f"{where}: TLS failed: {redact(str(cause))}")
        for cause in _chain(exc):
            if isinstance(cause, ConnectionRefusedError):
                return ConnectFailed(f"{where}: connection refused (nothing listening)")
            if isinstance(cause, socket.gaierror):
                return ConnectFailed(f"{where}: host name not found ({cause.strerror})")
        for cause in _chain(exc):
            if isinstance(cause, (TimeoutError, socket.timeout, requests.exceptions.Timeout)):
                return TransientError(f"{where}: timed out")
            if isinstance(cause, (ConnectionResetError, BrokenPipeError, requests.exceptions.ConnectionError)):
                return TransientError(f"{where}: connection lost: {type(cause).__name__}")
        if isinstance(exc, (ews_errors.ErrorExceededConnectionCount, ews_errors.ErrorTooManyObjectsOpened,
                            ews_errors.ErrorTimeoutExpired, ews_errors.ErrorInternalServerTransientError,
                            ews_errors.SessionPoolMinSizeReached)):
            return TransientError(f"{where}: {type(exc).__name__}: {redact(str(exc))}")
        if isinstance(exc, ews_errors.ResponseMessageError):
            return RemoteError(f"{where}: server said {type(exc).__name__}: {redact(str(exc))} ({box})")
        if isinstance(exc, ews_errors.EWSError):
            return RemoteError(f"{where}: {type(exc).__name__}: {redact(str(exc))}")
        if isinstance(exc, OSError):
            return ConnectFailed(f"{where}: {exc.strerror or exc}")
        if isinstance(exc, UnicodeError):  # its text quotes the character and its position: maybe a password's
            return RemoteError(f"{where}: a text could not be encoded for the server ({type(exc).__name__})")
        return RemoteError(f"{where}: {type(exc).__name__}: {redact(str(exc))}")

    def _auth_method_off(self, exc: BaseException) -> str | None:
        """Why the server refused, when it is the method (``auth`` in the project file), not the password: the
        401 offers only other methods, or a Negotiate that gave no NTLM challenge (Kerberos only)."""
        ours = "NTLM" if self.server.auth == "ntlm" else "Basic"
        if isinstance(exc, AuthRefused):
            offered = exc.offered
            # requests_ntlm also speaks NTLM inside Negotiate; a 401 after that handshake is a refused password.
            accepting = {"ntlm", "negotiate"} if ours == "NTLM" else {"basic"}
            if not offered or accepting & {o.lower() for o in offered}:
                return None
        elif ours == "NTLM" and any(isinstance(c, PermissionError) and _NO_NTLM_CHALLENGE in str(c)
                                    for c in _chain(exc)):
            offered = ("Negotiate (Kerberos)",)
        else:
            return None
        usable = [o.lower() for o in offered if o.lower() in ("ntlm", "basic")]
        if usable:
            return f"the server does not accept {ours} here; it offers {', '.join(offered)}: set auth: {usable[0]}"
        return (f"the server does not accept {ours} here; it offers {', '.join(offered)}, which govmigrate does "
                "not speak: turn on NTLM or Basic authentication for EWS on the server, and set auth to match")

    def call(self, what: str, fn: Callable[[], T], *, mailbox: str | None = None) -> T:
        """Run one unit of EWS work and translate any failure. Nothing is retried here: the server's busy
        answers were already waited out by exchangelib under this source's bounded policy, and lost
        connections are retried by the caller (docs/architecture.md: "Retries")."""
        blocked = self._policy.blocked_for()
        if blocked:
            raise Throttled(f"{self._where()}: the server asked every client to back off for {blocked:.0f}s more; "
                            f"{f'mailbox {mailbox}' if mailbox else 'this'} is left for the next pass")
        try:
            return fn()
        except Exception as exc:
            error = self.describe(exc, mailbox=mailbox)
            log.debug("%s: %s: %s", self.label, what, error.message)
            raise error from None

    # -- public API ---------------------------------------------------------------------------------------

    def probe(self) -> dict[str, Any]:
        """Endpoint, server version and build, TLS details (https) and whether the service account's password
        is accepted. Raises LoginFailed, ConnectFailed or TlsFailed with the reason when it is not usable."""
        protocol = self.call("probe", lambda: self._protocol_now())
        info: dict[str, Any] = {"endpoint": self._url, "auth": self.server.auth, "access": self.server.access,
                                "user": self.server.user}
        if urlsplit(self._url or "").scheme == "https":
            info["tls"] = self._tls_details()
        else:
            info["tls"] = {"tls": False}
        # exchangelib learns the version from the SOAP header of an authenticated request (ConvertId).
        version = self.call("probe", lambda: protocol.version)
        info["version"] = version.api_version
        info["build"] = str(version.build) if version.build else None
        info["product"] = version.fullname if version.build else None
        info["auth_ok"] = True
        return info

    def _tls_details(self) -> dict[str, Any]:
        from migrate.mailbox.imap import Endpoint, describe_failure, socket_tls_details, tls_context

        parts = urlsplit(self._url or "")
        endpoint = Endpoint(parts.hostname or "", parts.port or 443, "implicit", self._ca_file,
                            self.server.verify_certificate, self.server.timeout, self.label)
        try:
            with socket.create_connection((endpoint.host, endpoint.port), timeout=endpoint.timeout) as raw, \
                    tls_context(endpoint).wrap_socket(raw, server_hostname=endpoint.host) as sock:
                return socket_tls_details(sock)
        except Exception as exc:
            raise describe_failure(exc, endpoint)

    def mailbox(self, email: str) -> EwsMailbox:
        """Open ``email``'s mailbox (impersonation or delegate access, as configured) and check that the
        service account may read it; raises LoginFailed or RemoteError naming the mailbox if not."""
        if "@" not in email:
            raise RemoteError(f"{self.label}: {email!r} is not an email address; EWS opens mailboxes by address")
        protocol = self.call("connect", lambda: self._protocol_now(email), mailbox=email)
        account = Account(primary_smtp_address=email, config=self._config, locale="en_US",
                          access_type=IMPERSONATION if self.server.access == "impersonation" else DELEGATE,
                          default_timezone=UTC)   # EWS times are read as UTC; no local-zone guessing
        account.protocol = protocol
        box = EwsMailbox(self, account)
        self.call("open mailbox", box._resolve_well_known, mailbox=email)
        return box

    def close(self) -> None:
        with self._lock:
            if self._protocol is not None:
                self._protocol.close()
                self._protocol = None
            if self._config is not None:
                # Account() also registered a (never used) protocol in exchangelib's cache; drop it.
                with suppress(KeyError):
                    del Protocol[self._config]

    def __enter__(self) -> EwsSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EwsMailbox:
    """One user's mailbox on an :class:`EwsSource`. Every method does its own retries and error mapping."""

    def __init__(self, source: EwsSource, account: Account) -> None:
        self.source = source
        self.account = account
        self.email: str = account.primary_smtp_address
        self._well_known: dict[str, str] = {}      # folder id → distinguished name
        self._root_id: str | None = None
        self._system: dict[str, str] | None = None  # folder id → distinguished name of a system folder

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return self.source.call(f"{self.email}: {what}", fn, mailbox=self.email)

    def _resolve_well_known(self) -> None:
        """One GetFolder for the message folder root and the five well-known mail folders: checks access, and
        identifies the well-known folders on every Exchange version (the DistinguishedFolderId property needs
        2016)."""
        names = ["msgfolderroot", *WELL_KNOWN]
        folders = [_distinguished(n, self.email) for n in names]
        results = list(_RawGetFolder(account=self.account).call(folders=folders, additional_fields=[],
                                                                shape=ID_ONLY))
        for name, result in zip(names, results, strict=True):
            if isinstance(result, Exception):
                if name == "msgfolderroot" or not isinstance(result, (ews_errors.ErrorFolderNotFound,
                                                                      ews_errors.ErrorItemNotFound)):
                    raise result
                continue
            folder_id = result.find(f"{{{TNS}}}FolderId").get("Id")
            if name == "msgfolderroot":
                self._root_id = folder_id
            else:
                self._well_known[folder_id] = name

    def folders(self) -> list[EwsFolderInfo]:
        """Mail folders (IPF.Note, or no class as IMAP-created folders have) under the message folder root,
        at any depth, in the server's order: the folders that are migrated. Calendars, contacts, tasks and the
        system folders (:data:`SYSTEM_FOLDERS`, RSS Feeds) are left out; :meth:`folder_tree` has them too."""
        return [f for f in self.folder_tree() if f.kind == "mail"]

    def folder_tree(self) -> list[EwsFolderInfo]:
        """Every folder under the message folder root with its kind: mail, calendar, contacts, tasks, system
        (not migrated as mail, counted by the inventory) or other."""
        return self._folder_tree("msgfolderroot")

    def recoverable_folders(self) -> list[EwsFolderInfo]:
        """The Recoverable Items tree (kind system, paths from "Recoverable Items"): not migrated, counted, and
        left out of the quota figure. Empty where the server has none (before Exchange 2010)."""
        try:
            return [replace(f, path=("Recoverable Items", *f.path), kind="system")
                    for f in self._folder_tree("recoverableitemsroot")]
        except FolderFailed as exc:
            log.info("%s: %s: no Recoverable Items: %s", self.source.label, self.email, exc.message)
            return []

    def archive_folders(self) -> list[EwsFolderInfo]:
        """The folders of the user's archive mailbox (In-Place/Online Archive, below archivemsgfolderroot), with
        paths relative to its root; empty when the user has no archive."""
        try:
            return self._folder_tree("archivemsgfolderroot")
        except FolderFailed as exc:
            log.debug("%s: %s: no archive mailbox: %s", self.source.label, self.email, exc.message)
            return []

    def _system_ids(self) -> dict[str, str]:
        """Folder id → distinguished id of the system folders, asked once; a server that does not know those
        names (Exchange 2007) has none of them."""
        if self._system is None:
            names = list(SYSTEM_FOLDERS)
            try:
                results = self._call("find system folders", lambda: list(_RawGetFolder(account=self.account).call(
                    folders=[_distinguished(n, self.email) for n in names], additional_fields=[], shape=ID_ONLY)))
            except MigrateError as exc:
                if exc.transient:
                    raise
                log.info("%s: %s: system folders not found: %s", self.source.label, self.email, exc.message)
                results = []
            self._system = {r.find(f"{{{TNS}}}FolderId").get("Id"): name
                            for name, r in zip(names, results, strict=False) if not isinstance(r, Exception)}
        return self._system

    def _folder_tree(self, root: str) -> list[EwsFolderInfo]:
        """Every folder below a distinguished root (Deep FindFolder), classified by :meth:`_kind`."""
        elems = self._call("list folders", lambda: list(_RawFindFolder(
            account=self.account, page_size=self.source.page_size).call(
            folders=[_distinguished(root, self.email)], additional_fields=set(FOLDER_FIELDS),
            restriction=None, shape=ID_ONLY, depth="Deep", max_items=None, offset=0)))
        nodes: dict[str, tuple[str, str | None, str | None, int, int | None]] = {}
        order: list[str] = []
        for elem in elems:
            if isinstance(elem, Exception):
                if root != "msgfolderroot" and isinstance(elem, (ews_errors.ErrorFolderNotFound,
                                                                 ews_errors.ErrorInvalidRequest)):
                    raise FolderFailed(f"{root}: {type(elem).__name__}")
                raise self.source.describe(elem, mailbox=self.email)
            folder_id = elem.find(f"{{{TNS}}}FolderId").get("Id")
            parent = elem.find(f"{{{TNS}}}ParentFolderId")
            size = _extended_values(elem).get(_MessageSizeExtended.property_tag)
            nodes[folder_id] = (_text(elem, "DisplayName") or "", parent.get("Id") if parent is not None else None,
                                _text(elem, "FolderClass"), int(_text(elem, "TotalCount") or 0),
                                int(size) if size else None)
            order.append(folder_id)

        def ancestry(folder_id: str) -> list[str]:
            """The folder and its parents up to (not including) the root asked for."""
            chain: list[str] = []
            current: str | None = folder_id
            while current in nodes and len(chain) <= len(nodes):
                chain.insert(0, current)
                current = nodes[current][1]
            return chain

        system = self._system_ids() if root == "msgfolderroot" else {}
        out = []
        for folder_id in order:
            chain = ancestry(folder_id)
            _name, _parent, _class, total, size = nodes[folder_id]
            well_known = self._well_known.get(folder_id)
            out.append(EwsFolderInfo(folder_id=folder_id, path=tuple(nodes[f][0] for f in chain),
                                     well_known=well_known,
                                     special_use=WELL_KNOWN.get(well_known) if well_known else None,
                                     total_count=total, size=size,
                                     kind=self._kind([nodes[f][2] for f in chain], [f in system for f in chain])))
        return out

    @staticmethod
    def _kind(classes: list[str | None], system: list[bool]) -> str:
        """A folder's kind from its own class and its ancestors' (a folder inside Sync Issues is a system
        folder; a class-less folder an IMAP client made inside the Inbox is mail)."""
        if any(system):
            return "system"
        for folder_class in reversed(classes):
            cls = (folder_class or "").lower()
            if cls == RSS_CLASS or cls.startswith(RSS_CLASS + "."):
                return "system"
            for prefix, kind in NON_MAIL_KINDS.items():
                if cls == prefix or cls.startswith(prefix + "."):
                    return kind
            if cls == "ipf.note" or cls.startswith("ipf.note."):
                return "mail"
            if cls:
                return "other"
        return "mail"

    def items(self, folder_id: str) -> Iterator[EwsItem]:
        """Every item of a folder, a page at a time; each page is retried on its own."""
        offset = 0
        page_size = self.source.page_size
        while True:
            def page(offset: int = offset, size: int = page_size) -> list:
                try:
                    return list(_RawFindItem(account=self.account, page_size=size).call(
                        folders=[FolderId(id=folder_id)], additional_fields=set(ITEM_FIELDS), restriction=None,
                        order_fields=None, shape=ID_ONLY, query_string=None, depth="Shallow", calendar_view=None,
                        max_items=size, offset=offset))
                except ews_errors.ErrorExceededFindCountLimit as exc:  # raised, or answered per folder below
                    return [exc]
            elems = self._call(f"list items at {offset}", page)
            limited = next((e for e in elems if isinstance(e, ews_errors.ErrorExceededFindCountLimit)), None)
            if limited is not None:
                # The server's policy allows fewer items per FindItem than asked: smaller pages, never a failure.
                if page_size <= MIN_PAGE_SIZE:
                    raise self.source.describe(limited, mailbox=self.email)
                page_size = max(MIN_PAGE_SIZE, page_size // 2)
                log.info("%s: %s: the server allows fewer items per page; asking for %d", self.source.label,
                         self.email, page_size)
                continue
            for elem in elems:
                if isinstance(elem, Exception):
                    raise self.source.describe(elem, mailbox=self.email)
                yield item_from_xml(elem)
            # exchangelib keeps paging until page_size items or the end, so a short page is the last one.
            if len(elems) < page_size:
                return
            offset += len(elems)

    def sync(self, folder_id: str, state: str | None, max_changes: int = MAX_SYNC_CHANGES) -> EwsChanges:
        """One SyncFolderItems page: what changed in the folder since ``state`` (None: everything, as creates).
        Store ``state`` from the result only after acting on it; call again while ``more``."""
        max_changes = max(1, min(max_changes, MAX_SYNC_CHANGES))

        def call() -> tuple[list, str, bool]:
            svc = _RawSyncFolderItems(account=self.account)
            changes = list(svc.call(folder=FolderId(id=folder_id), shape=ID_ONLY, additional_fields=set(ITEM_FIELDS),
                                    sync_state=state, ignore=None, max_changes_returned=max_changes,
                                    sync_scope="NormalItems"))
            return changes, svc.sync_state, bool(svc.includes_last_item_in_range)

        changes, new_state, last = self._call("sync folder", call)
        result = EwsChanges(state=new_state, more=not last)
        read_changed: list[str] = []
        for change in changes:
            if isinstance(change, Exception):
                raise self.source.describe(change, mailbox=self.email)
            kind, elem = change
            if kind == "Create":
                result.creates.append(item_from_xml(elem[0]))
            elif kind == "Update":
                result.updates.append(item_from_xml(elem[0]))
            elif kind == "Delete":
                result.deletes.append(elem.find(f"{{{TNS}}}ItemId").get("Id"))
            elif kind == "ReadFlagChange":
                read_changed.append(elem.find(f"{{{TNS}}}ItemId").get("Id"))
        # A ReadFlagChange carries only the id and IsRead; fetch the item so an update is complete.
        read_changed = [i for i in read_changed if i not in set(result.deletes)]
        if read_changed:
            result.updates.extend(self._get_items(read_changed))
        return result

    def items_by_id(self, item_ids: list[str]) -> list[EwsItem]:
        """The items of ``item_ids`` the mailbox still holds (deleted ones are left out), as SyncFolderItems
        describes them."""
        return self._get_items(item_ids) if item_ids else []

    def _get_items(self, item_ids: list[str]) -> list[EwsItem]:
        elems = self._call("read items", lambda: list(_RawGetItem(account=self.account).call(
            items=[ItemId(id=i) for i in item_ids], additional_fields=set(ITEM_FIELDS), shape=ID_ONLY)))
        items = []
        for elem in elems:
            if isinstance(elem, ews_errors.ErrorItemNotFound):
                continue            # deleted since the change was recorded; the next sync reports that
            self._raise_if_error(elem)
            items.append(item_from_xml(elem))
        return items

    def _raise_if_error(self, elem: Any) -> None:
        if isinstance(elem, Exception):
            raise self.source.describe(elem, mailbox=self.email)

    def mime(self, item_ids: list[str]) -> Iterator[tuple[str, bytes | Unreadable]]:
        """(item id, exact MIME bytes, or :class:`Unreadable` with the server's reason) for the ids asked, in
        GetItem batches. Items deleted meanwhile are left out (logged); callers compare the ids they get with
        the ids they asked for. Items a batch left unprocessed (the Warning ErrorBatchProcessingStopped, after
        another item of the batch failed) are asked for again, up to :data:`BATCH_STOPPED_ROUNDS` times."""
        batch = self.source.mime_batch
        for start in range(0, len(item_ids), batch):
            pending = item_ids[start:start + batch]
            for _round in range(BATCH_STOPPED_ROUNDS):
                stopped: list[str] = []
                unreadable: dict[str, str] = {}
                for item_id, answer in self._mime_batch(pending):
                    if isinstance(answer, ews_errors.ErrorBatchProcessingStopped):
                        stopped.append(item_id)
                    elif isinstance(answer, str):
                        unreadable[item_id] = answer
                    else:
                        yield item_id, answer
                if unreadable:
                    described = self.describe_items(list(unreadable))
                    for item_id, reason in unreadable.items():
                        log.warning("%s: %s: %s cannot be exported: %s", self.source.label, self.email,
                                    described.get(item_id, f"item {item_id[:16]}…"), reason)
                        yield item_id, Unreadable(reason, described.get(item_id, f"item {item_id[:16]}…"))
                if not stopped:
                    break
                pending = stopped
            else:
                raise TransientError(f"{self.source.label}: {self.email}: the server stopped processing a batch "
                                     f"{BATCH_STOPPED_ROUNDS} times (ErrorBatchProcessingStopped)")

    def _mime_batch(self, ids: list[str]) -> Iterator[tuple[str, Any]]:
        """One GetItem for MIME: per id its bytes, the reason it cannot be exported (str), or the
        ErrorBatchProcessingStopped warning. A success answer must carry the ItemId asked for in its place:
        replies are never paired with requests by position alone (a server that re-sends items after a
        throttled answer would otherwise pair an item with another message's bytes)."""
        batch = self.source.mime_batch
        elems = self._call(f"read {len(ids)} messages", lambda: list(_RawGetItem(
            account=self.account, chunk_size=batch).call(items=[ItemId(id=i) for i in ids],
                                                         additional_fields=set(MIME_FIELDS), shape=ID_ONLY)))
        if len(elems) > len(ids):
            # exchangelib waited out a busy answer that came inside the response (after some items) and asked
            # again: it yields the first answers, then the whole second response. Only that one is used; the
            # ItemId check below still refuses anything out of place.
            elems = elems[-len(ids):]
        if len(elems) != len(ids):
            raise TransientError(f"{self.source.label}: {self.email}: asked for {len(ids)} items, the server "
                                 f"answered {len(elems)}")
        for item_id, elem in zip(ids, elems, strict=True):
            if isinstance(elem, ews_errors.ErrorItemNotFound):
                log.info("%s: %s: item %s is gone (deleted since it was listed)", self.source.label, self.email,
                         item_id)
                continue
            if isinstance(elem, ews_errors.ErrorBatchProcessingStopped):
                yield item_id, elem
                continue
            if isinstance(elem, UNEXPORTABLE):
                yield item_id, f"the server cannot export it ({type(elem).__name__}: {redact(str(elem))[:200]})"
                continue
            self._raise_if_error(elem)
            answered = elem.find(f"{{{TNS}}}ItemId")
            if answered is None or answered.get("Id") != item_id:
                raise TransientError(f"{self.source.label}: {self.email}: the server answered a GetItem with "
                                     "another item than the one asked for in its place; nothing of this batch "
                                     "was used")
            mime = elem.find(f"{{{TNS}}}MimeContent")
            if mime is None or not mime.text:
                yield item_id, "the server gave no MIME content for it"
                continue
            yield item_id, base64.b64decode(mime.text)

    def describe_items(self, item_ids: list[str]) -> dict[str, str]:
        """Subject, date received and size of items, for people ('' fields where the server gives none)."""
        try:
            elems = self._call("describe items", lambda: list(_RawGetItem(account=self.account).call(
                items=[ItemId(id=i) for i in item_ids], additional_fields=set(DESCRIBE_FIELDS), shape=ID_ONLY)))
        except MigrateError:
            return {}
        out = {}
        for item_id, elem in zip(item_ids, elems, strict=False):
            if isinstance(elem, Exception):
                continue
            subject = _CONTROL.sub(" ", _text(elem, "Subject") or "")[:80]
            received = (_text(elem, "DateTimeReceived") or "")[:16].replace("T", " ")
            size = _text(elem, "Size") or "?"
            out[item_id] = f"\"{subject}\" received {received or '?'} ({size} bytes)"
        return out

    def quota(self, recoverable: list[EwsFolderInfo] | None = None) -> tuple[int, int] | None:
        """(used, limit) in bytes, when the server shows the mailbox quota on its root folder; else None.
        ``recoverable``: :meth:`recoverable_folders`, when the caller already read them."""
        def call() -> tuple[list, list]:
            root = list(_RawGetFolder(account=self.account).call(
                folders=[_distinguished("root", self.email)], additional_fields=QUOTA_FIELDS, shape=ID_ONLY))
            sizes = list(_RawFindFolder(account=self.account, page_size=self.source.page_size).call(
                folders=[_distinguished("root", self.email)], additional_fields=set(SIZE_FIELDS),
                restriction=None, shape=ID_ONLY, depth="Deep", max_items=None, offset=0))
            return root, sizes

        root, sizes = self._call("read quota", call)
        for elem in [*root, *sizes]:
            self._raise_if_error(elem)
        values = _extended_values(root[0])
        limit_kb = values.get(_ProhibitSendQuota.property_tag) or values.get(_StorageQuotaLimit.property_tag)
        if not limit_kb:
            return None
        # Recoverable Items has a quota of its own (Exchange: RecoverableItemsQuota): left out of this figure.
        left_out = {f.folder_id for f in (self.recoverable_folders() if recoverable is None else recoverable)}
        used = sum(int(_extended_values(e).get(_MessageSizeExtended.property_tag) or 0) for e in sizes
                   if e.find(f"{{{TNS}}}FolderId").get("Id") not in left_out)
        return used, int(limit_kb) * 1024
