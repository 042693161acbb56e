"""The central groupware server (CalDAV/CardDAV) as the target of Exchange calendars and contacts.

One :class:`DavTarget` per run logs in as the project file's ``central.dav`` account (caldav's client: TLS
verified unless the project file says otherwise for this host) and keeps, per user, a calendar collection and
an address book below the user's home (``central.dav.home``). Objects are written with PUT at a name made
from their UID, so writing the same UID again replaces it: a second copy can never appear beside the first.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

from migrate.core.config import CentralDav, Project
from migrate.core.errors import (
    AuthenticationFailed,
    ConnectFailed,
    LoginFailed,
    MigrateError,
    RemoteError,
    ServerUnreachable,
    TlsFailed,
    TransientError,
)
from migrate.core.secrets import Secret, SecretRef, redact, register, resolve

log = logging.getLogger(__name__)

#: What each kind is called on the DAV server: collection name, file suffix, content type.
COLLECTIONS = {
    "calendar": ("calendar", ".ics", "text/calendar; charset=utf-8"),
    "contacts": ("contacts", ".vcf", "text/vcard; charset=utf-8"),
}
_ADDRESSBOOK_MKCOL = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<D:mkcol xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><D:set><D:prop>'
    "<D:resourcetype><D:collection/><C:addressbook/></D:resourcetype><D:displayname>Contacts</D:displayname>"
    "</D:prop></D:set></D:mkcol>"
)


_QUERY = {
    "calendar": '<?xml version="1.0" encoding="utf-8"?><C:calendar-query xmlns:D="DAV:" '
                'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/><C:calendar-data/></D:prop>'
                '<C:filter><C:comp-filter name="VCALENDAR"/></C:filter></C:calendar-query>',
    "contacts": '<?xml version="1.0" encoding="utf-8"?><C:addressbook-query xmlns:D="DAV:" '
                'xmlns:C="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/><C:address-data/></D:prop>'
                '</C:addressbook-query>',
}
_DATA = {"calendar": "{urn:ietf:params:xml:ns:caldav}calendar-data",
         "contacts": "{urn:ietf:params:xml:ns:carddav}address-data"}


def object_name(uid: str) -> str:
    """The file name of a UID's object: a hash, so no UID (slashes, dots, control characters) can shape a
    URL, and one UID always lands on one name."""
    return hashlib.sha256(uid.encode("utf-8")).hexdigest()[:40]


@dataclass(frozen=True)
class Written:
    href: str
    etag: str | None


class DavTarget:
    """The data centre's CalDAV/CardDAV server, as the migration account."""

    def __init__(self, config: CentralDav, password: Secret, *, base_dir: Path) -> None:
        import caldav

        self.config = config
        verify: bool | str = config.verify_certificate
        if verify and config.ca_file:
            ca = Path(config.ca_file).expanduser()
            verify = str(ca if ca.is_absolute() else base_dir / ca)
        if urlsplit(config.url).scheme == "http":
            log.warning("central DAV server: %s is http://; the DAV login and the calendars are not encrypted",
                        config.url)
        # The Basic header carries user:password in base64; registered so a debug log of it is masked too.
        pair = f"{config.user}:{password.reveal()}"
        for encoding in ("latin-1", "utf-8"):
            try:
                register(base64.b64encode(pair.encode(encoding)).decode())
            except UnicodeEncodeError:
                pass
        self._client = caldav.DAVClient(url=config.url, username=config.user, password=password.reveal(),
                                        ssl_verify_cert=verify, timeout=int(config.timeout))
        self._ready: set[str] = set()

    @classmethod
    def from_project(cls, project: Project) -> DavTarget | None:
        """The project's DAV target, or None when ``central.dav`` is not set (calendars go to files)."""
        cfg = project.config.central.dav
        if cfg is None:
            return None
        password = resolve(SecretRef(cfg.password), base_dir=project.base_dir, label="central DAV password")
        return cls(cfg, password, base_dir=project.base_dir)

    # -- failures ------------------------------------------------------------------------------------------

    def _describe(self, exc: BaseException, what: str) -> MigrateError:
        from caldav.lib import error as dav_errors

        where = f"central DAV server ({self.config.url})"
        if isinstance(exc, MigrateError):
            return exc
        if isinstance(exc, dav_errors.AuthorizationError):
            return LoginFailed(f"{where}: the server refused the password of {self.config.user} (HTTP 401) "
                               f"while trying to {what}")
        seen: set[int] = set()
        todo: list[BaseException] = [exc]
        while todo:
            cause = todo.pop(0)
            if id(cause) in seen:
                continue
            seen.add(id(cause))
            if isinstance(cause, ssl.SSLCertVerificationError):
                return TlsFailed(f"{where}: TLS certificate refused: {cause.verify_message or cause.reason}")
            if isinstance(cause, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(cause):
                return TlsFailed(f"{where}: TLS failed: {redact(str(cause))[:200]}")
            if isinstance(cause, ConnectionRefusedError) or "Connection refused" in str(cause):
                return ConnectFailed(f"{where}: connection refused (nothing listening)")
            if isinstance(cause, socket.gaierror):
                return ConnectFailed(f"{where}: host name not found")
            if isinstance(cause, (TimeoutError, socket.timeout)):
                return TransientError(f"{where}: timed out while trying to {what}")
            todo.extend(c for c in (cause.__cause__, cause.__context__, *getattr(cause, "args", ()))
                        if isinstance(c, BaseException))
        if isinstance(exc, dav_errors.DAVError):
            return RemoteError(f"{where}: could not {what}: {type(exc).__name__}: {redact(str(exc))[:300]}")
        if isinstance(exc, OSError):
            return ConnectFailed(f"{where}: {type(exc).__name__}: {redact(str(exc))[:200]}")
        return RemoteError(f"{where}: could not {what}: {type(exc).__name__}: {redact(str(exc))[:300]}")

    def _request(self, what: str, url: str, method: str, body: str = "", headers: dict | None = None):
        try:
            response = self._client.request(url, method, body, headers or {})
        except Exception as exc:
            raise self._describe(exc, what) from None
        if response.status == 401:
            raise LoginFailed(f"central DAV server ({self.config.url}): the server refused the password of "
                              f"{self.config.user} (HTTP 401)")
        return response

    # -- access, collections, objects --------------------------------------------------------------------

    def check_access(self) -> None:
        """Before any mailbox is read: the server must answer (else exit 4) and accept the login (else 5)."""
        try:
            self._request("log in", self.config.url, "PROPFIND", "", {"Depth": "0"})
        except LoginFailed as exc:
            raise AuthenticationFailed(f"{exc.message}; no calendar or contact was copied",
                                       hint="check central.dav in migration.yaml (user, password reference)")
        except (ConnectFailed, TlsFailed, TransientError) as exc:
            raise ServerUnreachable(exc.message, hint="check central.dav's url and TLS settings in migration.yaml, "
                                                      "and that the DAV server is up")

    def home(self, email: str) -> str:
        return urljoin(self.config.url, self.config.home.format(email=quote(email.lower(), safe="@")))

    def collection(self, email: str, kind: str) -> str:
        return urljoin(self.home(email), COLLECTIONS[kind][0] + "/")

    def ensure(self, email: str, kind: str) -> str:
        """The user's collection of ``kind``, created (with the home above it) when it does not exist yet."""
        url = self.collection(email, kind)
        if url in self._ready:
            return url
        if self._request(f"look for {url}", url, "PROPFIND", "", {"Depth": "0"}).status == 404:
            home = self.home(email)
            if self._request(f"look for {home}", home, "PROPFIND", "", {"Depth": "0"}).status == 404:
                self._checked(self._request(f"create {home}", home, "MKCOL"), f"create {home}")
            if kind == "calendar":
                self._checked(self._request(f"create {url}", url, "MKCALENDAR"), f"create {url}")
            else:
                self._checked(self._request(f"create {url}", url, "MKCOL", _ADDRESSBOOK_MKCOL,
                                            {"Content-Type": "application/xml; charset=utf-8"}), f"create {url}")
        self._ready.add(url)
        return url

    def put(self, email: str, kind: str, uid: str, body: bytes) -> Written:
        """Write one object under its UID's name (replacing an earlier copy of the same UID)."""
        collection = self.ensure(email, kind)
        href = collection + object_name(uid) + COLLECTIONS[kind][1]
        response = self._request(f"write {href}", href, "PUT", body.decode("utf-8"),
                                 {"Content-Type": COLLECTIONS[kind][2]})
        self._checked(response, f"write {uid!r}")
        return Written(href, response.headers.get("etag"))

    def uids(self, email: str, kind: str) -> dict[str, str] | None:
        """UID → href of every object in the user's collection (None when the collection does not exist), read
        with one calendar-query or addressbook-query REPORT (RFC 4791 §7.8, RFC 6352 §8.6)."""
        from migrate.mailbox.groupware import NotGroupware, uid_of

        url = self.collection(email, kind)
        report = self._request(f"list {url}", url, "REPORT", _QUERY[kind],
                               {"Depth": "1", "Content-Type": "application/xml; charset=utf-8"})
        if report.status == 404:
            return None
        self._checked(report, f"list {url}")
        out: dict[str, str] = {}
        for response in report.tree.iter("{DAV:}response"):
            href = response.findtext("{DAV:}href") or ""
            data = response.findtext(f".//{_DATA[kind]}")
            if not data:
                continue
            try:
                uid = uid_of(kind, data.encode("utf-8"))
            except NotGroupware:
                uid = None
            if uid:
                out[uid] = urljoin(url, href)
        return out

    @staticmethod
    def _checked(response, what: str) -> None:
        if response.status >= 300:
            raise RemoteError(f"central DAV server: could not {what}: HTTP {response.status} {response.reason}")

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:
            pass
