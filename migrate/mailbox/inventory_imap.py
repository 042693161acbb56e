"""The IMAP side of the inventory: probe a ministry IMAP server and measure one user's mailbox on it.

The probe looks at the server without touching mail (TLS, certificate, capabilities, ID, namespace) and
tries the project file's login method; the measurement takes every folder's STATUS (``SIZE`` where the
server has it; all folders in one LIST-STATUS where it has that) and, for folders holding mail, one FETCH of
RFC822.SIZE and INTERNALDATE for the largest, oldest and newest message.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import replace
from typing import Any

from imapclient import IMAPClient
from imapclient.imap_utf7 import decode as utf7_decode
from imapclient.response_parser import parse_response

from migrate import __version__
from migrate.core.config import ImapServer, Project, Source
from migrate.core.errors import LoginFailed, RemoteError, SecretError, TlsFailed
from migrate.core.retry import call_with_retry
from migrate.core.userlist import UserEntry
from migrate.mailbox.imap import (
    MIGRATION_CAPABILITIES,
    SPECIAL_USE,
    Credentials,
    Session,
    connect,
    describe_failure,
    imap_date,
    storage_quota,
    tls_details,
)
from migrate.mailbox.measurements import Extremes, FolderMeasurement, MailboxMeasurement, SourceProbe
from migrate.mailbox.protocol import fetch
from migrate.mailbox.sources import Sources

log = logging.getLogger(__name__)

#: How many users the probe tries before it calls the admin login refused (the first may just be wrong).
PROBE_LOGIN_USERS = 2
_SPECIAL = {s.lower(): s for s in SPECIAL_USE}
_ALTERNATIVE = {"master_user": "sasl_plain", "sasl_plain": "master_user"}
_NONEXISTENT = re.compile(r"NONEXISTENT|does ?n[o']t exist|not selectable|isn't selectable|no such mailbox", re.I)


class ImapReader:
    """Inventory of one IMAP source; thread-safe (every call opens its own connection)."""

    def __init__(self, source: Source, project: Project, sources: Sources) -> None:
        assert isinstance(source.server, ImapServer)
        self.source = source
        self.project = project
        self.sources = sources
        self.server: ImapServer = source.server
        self.endpoint = sources.endpoint(source)
        self.creds: Credentials = sources.credentials(source)  # SecretError if unresolvable
        #: The source's login names (lower case) → addresses, from the user list (set by the probe).
        self.logins: dict[str, str] = {}

    def close(self) -> None:
        """Nothing held between calls."""

    # -- probe ------------------------------------------------------------------------------------

    def probe(self, entries: list[UserEntry]) -> SourceProbe:
        self.logins = {e.login.lower(): e.email for e in entries}
        ep = self.endpoint
        detail: dict[str, Any] = {"kind": "imap", "endpoint": f"{ep.host}:{ep.port}", "tls_mode": ep.tls,
                                  "verify_certificate": ep.verify}
        try:
            client = call_with_retry(f"{ep.label}: connect", lambda: connect(ep), attempts=2)
        except TlsFailed as exc:
            detail["reachable"] = True
            # Show the certificate that was refused, read over a handshake that sends nothing.
            detail["tls"] = self._peek_certificate()
            detail["tls"]["verify_error"] = exc.message
            return SourceProbe(self.source.id, False, exc.message, detail, blocked=exc.message)
        except RemoteError as exc:
            detail["reachable"] = False
            return SourceProbe(self.source.id, False, exc.message, detail, blocked=exc.message)
        detail["reachable"] = True
        try:
            detail["tls"] = self._tls(client)
            detail.update(_greeting_and_id(client))
        finally:
            try:
                client.logout()
            except Exception:
                client.shutdown()
        error, blocked = self._probe_login(entries, detail)
        return SourceProbe(self.source.id, error is None, error, detail, blocked=blocked)

    def _tls(self, client: IMAPClient) -> dict[str, Any]:
        details = tls_details(client)
        if not details.get("tls"):
            return details
        details["name_match"] = name_matches(self.endpoint.host, details.get("names", []))
        if self.endpoint.verify:
            details["verified"] = True
        else:
            # Connected without checking; say whether a check would have passed, for the record.
            details["verified"] = False
            details["verify_error"] = self._verification_error()
        return details

    def _peek_certificate(self) -> dict[str, Any]:
        try:
            client = connect(replace(self.endpoint, verify=False))
        except RemoteError as exc:
            return {"tls": None, "error": exc.message}
        try:
            details = tls_details(client)
            details["name_match"] = name_matches(self.endpoint.host, details.get("names", []))
            details["verified"] = False
            return details
        finally:
            client.shutdown()

    def _verification_error(self) -> str | None:
        try:
            client = connect(replace(self.endpoint, verify=True))
        except TlsFailed as exc:
            return exc.message
        except RemoteError:
            return None
        client.shutdown()
        return None

    def _probe_login(self, entries: list[UserEntry], detail: dict[str, Any]) -> tuple[str | None, str | None]:
        """Try the configured login; returns (error, blocked). ``blocked`` only when no mailbox could work."""
        method = self.creds.method
        login: dict[str, Any] = {"method": method, "admin_user": self.creds.admin_user}
        detail["login"] = login
        if not entries:
            login.update(ok=None, error="not tested: the user list has no usable rows")
            return None, None
        # One refusal is ambiguous (that user may not exist, or has a wrong password in the list), so a
        # second user is tried before the source's admin credentials are called wrong.
        tries = entries[:PROBE_LOGIN_USERS]
        first_error: str | None = None
        for entry in tries:
            try:
                session = self._session(entry, self.creds)
            except (LoginFailed, SecretError) as exc:
                first_error = first_error or exc.message
                continue
            except RemoteError as exc:
                login.update(ok=False, user=entry.login, error=exc.message)
                return exc.message, None
            with session:
                login.update(ok=True, user=entry.login)
                detail.update(_session_facts(session))
            return None, None
        login.update(ok=False, user=tries[0].login, error=first_error)
        users = f"{len(tries)} user{'s' if len(tries) != 1 else ''}"
        if method == "user_password":
            # Each user has their own password: the other mailboxes may still work, so none is blocked.
            return f"login with the users' own passwords was refused for the first {users}: {first_error}", None
        alternative = _ALTERNATIVE[method]
        alt_creds = replace(self.creds, method=alternative)
        try:
            with self._session(tries[0], alt_creds) as session:
                login["alternative"] = {"method": alternative, "ok": True}
                detail.update(_session_facts(session))
            reason = (f"login method {method} was refused but {alternative} works with the same admin "
                      f"credentials; set server.login.method: {alternative} ({first_error})")
        except RemoteError as exc:
            login["alternative"] = {"method": alternative, "ok": False, "error": exc.message}
            reason = (f"the admin login ({method} as {self.creds.admin_user}) was refused for the first "
                      f"{users} of the user list: {first_error}")
        return reason, reason

    def _session(self, entry: UserEntry, creds: Credentials) -> Session:
        return call_with_retry(f"{self.endpoint.label}: login as {entry.login}",
                               lambda: self.sources.session(self.source, entry.email, entry.login, creds), attempts=2)

    # -- one mailbox --------------------------------------------------------------------------------

    def measure(self, entry: UserEntry) -> MailboxMeasurement:
        with self.sources.session(self.source, entry.email, entry.login) as session:
            try:
                measured = measure_session(session, entry.email)
            except Exception as exc:
                raise describe_failure(exc, self.endpoint)
            from migrate.mailbox.settings import inventory_items
            from migrate.mailbox.source_imap import ImapSourceMailbox

            measured.settings = inventory_items(self.project, self.sources, self.source, entry.email, entry.login,
                                                self.logins, ImapSourceMailbox(session))
            return measured


def measure_session(session: Session, email: str) -> MailboxMeasurement:
    """Every selectable folder's count and size, the extremes, and the quota, over a logged-in session."""
    client = session.client
    extremes = Extremes()
    folders: list[FolderMeasurement] = []
    listing = client.list_folders()
    statuses = _list_status(session)
    for flags, _sep, name in listing:
        attrs = {(f.decode() if isinstance(f, bytes) else f).lower() for f in flags}
        if "\\nonexistent" in attrs or not session.personal(name.decode() if isinstance(name, bytes) else name):
            continue
        noselect = "\\noselect" in attrs
        if noselect and "\\haschildren" in attrs:
            continue  # a hierarchy placeholder holds no mail
        special = next((_SPECIAL[a] for a in attrs if a in _SPECIAL), None)
        name = name.decode() if isinstance(name, bytes) else name
        try:
            folders.append(_measure_folder(session, name, special, extremes, statuses.get(name)))
        except Exception as exc:
            error = describe_failure(exc, session.endpoint)
            if error.transient:
                raise error  # the connection is gone: the whole mailbox is measured again
            # A \Noselect leaf is either a leftover placeholder or a folder the server cannot open (Dovecot
            # lists an unreadable maildir so): only the server saying it does not exist makes it harmless.
            if noselect and _NONEXISTENT.search(error.message):
                continue
            log.warning("%s: folder %s: %s", email, name, error.message, extra={"mailbox": email, "folder": name})
            folders.append(FolderMeasurement(name, special, error=_folder_reason(error.message)))
    folders.sort(key=lambda f: (f.name != "INBOX", f.name))
    return MailboxMeasurement.from_folders(email, folders, extremes, storage_quota(session))


def _status_items(session: Session) -> list[str]:
    return ["MESSAGES", "SIZE"] if session.has("STATUS=SIZE") else ["MESSAGES"]


def _list_status(session: Session) -> dict[str, dict[bytes, int]]:
    """Every folder's STATUS from one ``LIST ... RETURN (STATUS ...)`` (RFC 5819) where the server offers it,
    instead of one STATUS per folder. A folder the server cannot read is left out of the answer and gets
    its own STATUS later, which then fails with the server's reason."""
    if not (session.has("LIST-STATUS") and session.has("LIST-EXTENDED")):
        return {}
    imap = session.client._imap  # imapclient has no RETURN options; imaplib's plumbing carries them
    imap.untagged_responses.pop("STATUS", None)
    try:
        typ, _data = imap._simple_command("LIST", '""', '"*"', "RETURN",
                                          f"(STATUS ({' '.join(_status_items(session))}))")
    except Exception as exc:
        error = describe_failure(exc, session.endpoint)
        if error.transient:
            raise error
        log.info("%s: LIST-STATUS failed (%s); asking each folder", session.login, error.message)
        return {}
    finally:
        replies = imap.untagged_responses.pop("STATUS", [])
        imap.untagged_responses.pop("LIST", None)
    if typ != "OK":
        return {}
    statuses: dict[str, dict[bytes, int]] = {}
    for reply in replies:
        try:
            parsed = parse_response([reply])
            name = utf7_decode(parsed[0]) if isinstance(parsed[0], bytes) else str(parsed[0])
            values = parsed[1]
            statuses[name] = {(values[i].upper() if isinstance(values[i], bytes) else str(values[i]).encode()):
                              int(values[i + 1]) for i in range(0, len(values) - 1, 2)}
        except Exception:  # an odd reply only costs that folder a STATUS of its own
            log.debug("unparsed LIST-STATUS reply %r", reply)
    return statuses


def _measure_folder(session: Session, name: str, special: str | None, extremes: Extremes,
                    status: dict[bytes, int] | None) -> FolderMeasurement:
    client = session.client
    want = _status_items(session)
    if status is None or any(item.encode() not in status for item in want):
        status = client.folder_status(name, want)
    count = int(status[b"MESSAGES"])
    size = int(status[b"SIZE"]) if b"SIZE" in status else None
    if count == 0:
        return FolderMeasurement(name, special, 0, size or 0)
    client.select_folder(name, readonly=True)
    summed = 0
    for item in fetch(client, "1:*", ["RFC822.SIZE", "INTERNALDATE"]).values():
        msg_size = item.get(b"RFC822.SIZE")
        summed += int(msg_size or 0)
        extremes.add(int(msg_size) if msg_size is not None else None, imap_date(item.get(b"INTERNALDATE")))
    return FolderMeasurement(name, special, count, size if size is not None else summed)




def _folder_reason(message: str) -> str:
    # describe_failure names the server on every line; per folder that is noise.
    return message.split(": ", 1)[1] if message.startswith("source ") and ": " in message else message


def _greeting_and_id(client: IMAPClient) -> dict[str, Any]:
    """Pre-login capabilities, the greeting, and the server's ID (RFC 2971) where it answers one."""
    out: dict[str, Any] = {}
    welcome = client.welcome
    greeting = welcome.decode(errors="replace") if isinstance(welcome, bytes) else str(welcome or "")
    out["greeting"] = greeting
    try:
        out["capabilities_before_login"] = sorted(c.decode().upper() for c in client.capabilities())
    except Exception:
        out["capabilities_before_login"] = []
    server_id: dict[str, str] = {}
    if "ID" in out["capabilities_before_login"]:
        try:
            answer = client.id_({"name": "govmigrate", "version": __version__}) or ()
            pairs = answer.items() if isinstance(answer, dict) else answer
            server_id = {_text(k).lower(): _text(v) for k, v in pairs if v is not None}
        except Exception as exc:
            log.debug("ID refused: %s", exc)
    out["server_id"] = server_id
    out["software"] = _software(server_id, greeting)
    return out


def _software(server_id: dict[str, str], greeting: str) -> str | None:
    if server_id.get("name"):
        return " ".join(v for v in (server_id["name"], server_id.get("version")) if v)
    # "* OK [CAPABILITY ...] Dovecot (Debian) ready." → "Dovecot (Debian) ready."
    text = greeting.split("]", 1)[1] if "]" in greeting else greeting.removeprefix("* OK")
    return text.strip() or None


def _session_facts(session: Session) -> dict[str, Any]:
    caps = session.capabilities
    return {
        "capabilities": sorted(caps),
        "migration_capabilities": {cap: cap in caps or (cap == "COMPRESS=DEFLATE" and "COMPRESS" in caps)
                                   for cap in MIGRATION_CAPABILITIES},
        "separator": session.separator,
        "prefix": session.prefix,
    }


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def name_matches(host: str, names: list[str]) -> bool:
    """Whether a certificate's subject alternative names cover ``host`` (one-label wildcards allowed)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    host = host.lower().rstrip(".")
    for name in names:
        if address is not None:
            try:
                if ipaddress.ip_address(name) == address:
                    return True
            except ValueError:
                continue
            continue
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False
