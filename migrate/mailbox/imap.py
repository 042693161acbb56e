"""IMAP connections: TLS set-up and verification, the three ways of logging into a user's mailbox, and the
translation of socket, TLS and protocol failures into govmigrate's error types.

Used by every IMAP-speaking part: the inventory probe, the sync engine's source and destination, and
verification. imapclient does the protocol; this module decides how to connect and what a failure means.
"""

from __future__ import annotations

import functools
import imaplib
import logging
import os
import re
import socket
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imapclient import IMAPClient
from imapclient import exceptions as imapclient_errors

from migrate.core.config import AdminLogin, CentralHost, ImapServer, Project, TlsEndpoint
from migrate.core.errors import (
    ConnectFailed,
    LoginFailed,
    RemoteError,
    TlsFailed,
    TransientError,
)
from migrate.core.secrets import Secret, SecretRef, redact, resolve

log = logging.getLogger(__name__)

#: Capabilities that matter for a migration, in the order the inventory shows them.
MIGRATION_CAPABILITIES = ("IMAP4REV1", "IMAP4REV2", "UIDPLUS", "LITERAL+", "LITERAL-", "MULTIAPPEND",
                          "SPECIAL-USE", "NAMESPACE", "STATUS=SIZE", "LIST-STATUS", "QUOTA", "ID", "CONDSTORE",
                          "QRESYNC", "COMPRESS=DEFLATE", "ENABLE", "UTF8=ACCEPT", "MOVE", "BINARY")
SPECIAL_USE = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")


@dataclass(frozen=True)
class Endpoint:
    """Where an IMAP server is and how to check its TLS; built from the project file."""

    host: str
    port: int
    tls: str  # implicit | starttls | none
    ca_file: Path | None
    verify: bool
    timeout: float
    label: str

    @classmethod
    def from_config(cls, cfg: TlsEndpoint, *, base_dir: Path, label: str) -> Endpoint:
        ca = None
        if cfg.ca_file:
            ca = Path(cfg.ca_file).expanduser()
            ca = ca if ca.is_absolute() else base_dir / ca
        return cls(cfg.host, cfg.effective_port, cfg.tls, ca, cfg.verify_certificate, cfg.timeout, label)


@dataclass(frozen=True)
class Credentials:
    """How to log into a user's mailbox: master user, SASL PLAIN authorization identity, or own password."""

    method: str  # master_user | sasl_plain | user_password
    admin_user: str | None = None
    admin_password: Secret | None = None
    separator: str = "*"


@dataclass
class Session:
    """A logged-in IMAP session with what the migration needs to know about the server."""

    client: IMAPClient
    endpoint: Endpoint
    login: str
    capabilities: frozenset[str]
    separator: str = "/"
    prefix: str = ""
    greeting: str = ""
    tls: dict[str, Any] = field(default_factory=dict)
    #: The prefixes of the other users' and shared namespaces (RFC 2342): folders there are not this mailbox's.
    foreign: tuple[str, ...] = ()

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    def personal(self, name: str) -> bool:
        """Whether a listed folder is the user's own: not in another user's or a shared namespace (a server
        with a shared namespace lists there the folders others shared with the user)."""
        return not any(name.startswith(p) or name == p.rstrip(self.separator) for p in self.foreign)

    def close(self) -> None:
        try:
            self.client.logout()
        except Exception:
            try:
                self.client.shutdown()
            except Exception:
                pass

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tls_context(endpoint: Endpoint) -> ssl.SSLContext:
    """Verified by default; unverified only when the project file says so for this host. One context per
    CA file (as it is now) and setting, shared by every connection: loading the CAs cost more than the rest of
    a no-change pass's client work for a mailbox."""
    ca = str(endpoint.ca_file) if endpoint.ca_file else None
    try:
        stamp = os.stat(ca).st_mtime_ns if ca else 0
    except OSError:
        stamp = -1          # let the context creation report the missing file
    return _tls_context(endpoint.verify, ca, stamp)


@functools.lru_cache(maxsize=32)
def _tls_context(verify: bool, ca_file: str | None, _stamp: int) -> ssl.SSLContext:
    if verify:
        ctx = ssl.create_default_context(cafile=ca_file)
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def describe_failure(exc: BaseException, endpoint: Endpoint) -> RemoteError:
    """Map any exception from connecting or talking to a server onto a govmigrate error with a reason."""
    where = f"{endpoint.label} ({endpoint.host}:{endpoint.port})"
    if isinstance(exc, RemoteError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        return TlsFailed(f"{where}: TLS certificate refused: {reason}")
    if isinstance(exc, ssl.SSLError):
        return TlsFailed(f"{where}: TLS failed: {exc.reason or exc}")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectFailed(f"{where}: connection refused (nothing listening)")
    if isinstance(exc, socket.gaierror):
        return ConnectFailed(f"{where}: host name not found ({exc.strerror})")
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return TransientError(f"{where}: timed out")
    if isinstance(exc, imapclient_errors.LoginError):
        return LoginFailed(f"{where}: login refused: {_server_text(exc)}")
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, EOFError, imaplib.IMAP4.abort)):
        return TransientError(f"{where}: connection lost: {_server_text(exc) or type(exc).__name__}")
    if isinstance(exc, OSError):
        return ConnectFailed(f"{where}: {exc.strerror or exc}")
    if isinstance(exc, (imaplib.IMAP4.error, imapclient_errors.IMAPClientError)):
        return RemoteError(f"{where}: server said: {_server_text(exc)}")
    if isinstance(exc, UnicodeError):  # its text quotes the character and its position: maybe a password's
        return RemoteError(f"{where}: a text could not be encoded for the server ({type(exc).__name__})")
    return RemoteError(f"{where}: {type(exc).__name__}: {redact(str(exc))}")


def _server_text(exc: BaseException) -> str:
    """The server's words from an imaplib/imapclient exception, without Python's bytes/list decoration:
    ``[b'[AUTHENTICATIONFAILED] Authentication failed.']`` → ``[AUTHENTICATIONFAILED] Authentication failed.``"""
    text = str(exc).strip()
    m = re.fullmatch(r"""\[?b?(['"])(.*)\1\]?""", text, re.S)
    if m:
        text = m.group(2)
    return redact(text)


def guarded(method):
    """Decorator for methods of objects holding ``self.session``: any socket, TLS or protocol failure
    leaves as a govmigrate error naming that server (transient ones are then retried by the caller).
    ``CommandFailed`` (a NO/BAD the caller handles itself) and govmigrate errors pass through."""
    import functools

    from migrate.core.errors import MigrateError

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except MigrateError:
            raise
        except Exception as exc:
            from migrate.mailbox.protocol import CommandFailed

            if isinstance(exc, CommandFailed):
                raise
            raise describe_failure(exc, self.session.endpoint) from exc

    return wrapper


_cleartext_warned: set[tuple[str, int]] = set()


def warn_cleartext(label: str, where: tuple[str, int], what: str) -> None:
    """Once per server and process: the project file allowed clear text there (allow_cleartext: true)."""
    if where not in _cleartext_warned:
        _cleartext_warned.add(where)
        log.warning("%s (%s:%s): no TLS, as allow_cleartext permits: %s and every message cross the network in "
                    "clear text", label, where[0], where[1], what)


def connect(endpoint: Endpoint) -> IMAPClient:
    """Open the connection (TLS as configured), not yet logged in."""
    if endpoint.tls == "none":  # refused by the project-file checks unless the server's entry opts in
        warn_cleartext(endpoint.label, (endpoint.host, endpoint.port), "the login password")
    try:
        if endpoint.tls == "implicit":
            client = IMAPClient(endpoint.host, port=endpoint.port, ssl=True, ssl_context=tls_context(endpoint),
                                timeout=endpoint.timeout)
        else:
            client = IMAPClient(endpoint.host, port=endpoint.port, ssl=False, timeout=endpoint.timeout)
            if endpoint.tls == "starttls":
                if not client.has_capability("STARTTLS"):
                    client.shutdown()
                    raise TlsFailed(f"{endpoint.label} ({endpoint.host}:{endpoint.port}): the server does not "
                                    "offer STARTTLS; refusing to send credentials in clear text")
                client.starttls(tls_context(endpoint))
        client.normalise_times = False
        # imapclient turns imaplib's debug output on, which formats every reply, message bodies included,
        # into a string even when nobody logs it: a third of the CPU of a sync, and bodies in debug logs.
        client._imap.debug = 0
        return client
    except Exception as exc:
        raise describe_failure(exc, endpoint)


def tls_details(client: IMAPClient) -> dict[str, Any]:
    """TLS version, cipher and the server certificate's subject, issuer, expiry and names."""
    return socket_tls_details(client.socket())


def socket_tls_details(sock: Any) -> dict[str, Any]:
    """As :func:`tls_details`, for any socket (the EWS probe opens its own)."""
    if not isinstance(sock, ssl.SSLSocket):
        return {"tls": False}
    details: dict[str, Any] = {"tls": True, "version": sock.version(), "cipher": (sock.cipher() or ("",))[0]}
    der = sock.getpeercert(binary_form=True)
    if der:
        from cryptography import x509

        cert = x509.load_der_x509_certificate(der)
        details["subject"] = cert.subject.rfc4514_string()
        details["issuer"] = cert.issuer.rfc4514_string()
        not_after = cert.not_valid_after_utc
        details["not_after"] = not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
        details["days_left"] = (not_after - datetime.now(UTC)).days
        details["self_signed"] = cert.issuer == cert.subject
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            details["names"] = [str(n.value) for n in san]
        except x509.ExtensionNotFound:
            details["names"] = []
    return details


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def authenticate(client: IMAPClient, creds: Credentials, user_login: str, user_password: Secret | None,
                 endpoint: Endpoint) -> None:
    """Log into ``user_login``'s mailbox with the configured method.

    A login name is checked before anything is sent: no control characters (a user list's CR LF would end
    the LOGIN command and start another), and for master-user logins not the separator itself. ASCII
    credentials use LOGIN; a password or name with other characters uses AUTHENTICATE PLAIN (UTF-8, RFC
    4616) where the server offers it, since LOGIN can only carry ASCII.
    """
    if _CONTROL.search(user_login):
        raise LoginFailed(f"{endpoint.label}: refusing to log in as {user_login!r}: the login name holds "
                          "control characters")
    if creds.method == "master_user" and creds.separator in user_login:
        raise LoginFailed(f"{endpoint.label}: refusing to log in as {user_login!r}: the login name holds the "
                          f"master-user separator {creds.separator!r}")
    try:
        if creds.method == "master_user":
            assert creds.admin_password is not None
            _login(client, f"{user_login}{creds.separator}{creds.admin_user}", creds.admin_password, endpoint)
        elif creds.method == "sasl_plain":
            assert creds.admin_password is not None
            client.plain_login(creds.admin_user, creds.admin_password.reveal(), authorization_identity=user_login)
        else:
            if user_password is None:
                raise LoginFailed(f"{endpoint.label}: no password for {user_login} in the user list")
            _login(client, user_login, user_password, endpoint)
    except Exception as exc:
        raise describe_failure(exc, endpoint)


def _login(client: IMAPClient, identity: str, password: Secret, endpoint: Endpoint) -> None:
    secret = password.reveal()
    if identity.isascii() and secret.isascii():
        client.login(identity, secret)
        return
    if not client.has_capability("AUTH=PLAIN"):
        raise LoginFailed(f"{endpoint.label}: the password (or login name) for {identity} holds non-ASCII "
                          "characters, which IMAP LOGIN cannot carry, and the server does not offer AUTHENTICATE "
                          "PLAIN; use an ASCII password for the migration account")
    client.plain_login(identity, secret)


def open_session(endpoint: Endpoint, creds: Credentials, user_login: str,
                 user_password: Secret | None = None, *, want_tls_details: bool = False) -> Session:
    """Connect and log into ``user_login``'s mailbox; learn capabilities, separator and namespace."""
    client = connect(endpoint)
    try:
        greeting = client.welcome.decode(errors="replace") if isinstance(client.welcome, bytes) else ""
        tls = tls_details(client) if want_tls_details else {}
        authenticate(client, creds, user_login, user_password, endpoint)
        caps = frozenset(c.decode().upper() for c in client.capabilities())
        session = Session(client, endpoint, user_login, caps, greeting=greeting, tls=tls)
        _learn_namespace(session)
        return session
    except BaseException as exc:
        try:
            client.shutdown()
        except Exception:
            pass
        if isinstance(exc, Exception):
            raise describe_failure(exc, endpoint)
        raise


def _learn_namespace(session: Session) -> None:
    client = session.client
    if session.has("NAMESPACE"):
        namespaces = client.namespace()
        personal = namespaces.personal
        session.foreign = tuple(_text(prefix) for prefix, _sep in (*(namespaces.other or ()),
                                                                  *(namespaces.shared or ())) if prefix)
        if personal:
            prefix, sep = personal[0]
            session.prefix = prefix or ""
            session.separator = sep or "/"
            return
    # No NAMESPACE: ask LIST "" "" for the separator and guess the prefix from INBOX's children.
    listing = client.list_folders("", "")
    if listing and listing[0][1]:
        session.separator = listing[0][1].decode() if isinstance(listing[0][1], bytes) else listing[0][1]
    names = [name for _, _, name in client.list_folders()]
    sep = session.separator
    if names and all(n == "INBOX" or n.startswith(f"INBOX{sep}") for n in names) and len(names) > 1:
        session.prefix = f"INBOX{sep}"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def storage_quota(session: Session) -> tuple[int, int] | None:
    """STORAGE (used, limit) in bytes from GETQUOTAROOT INBOX (RFC 2087 counts in units of 1024 octets);
    None where the server has no QUOTA or sets no storage limit."""
    if not session.has("QUOTA"):
        return None
    try:
        _roots, quotas = session.client.get_quota_root("INBOX")
    except Exception as exc:
        log.info("%s: GETQUOTAROOT failed: %s", session.login, exc)
        return None
    for quota in quotas:
        if quota.resource.upper() == "STORAGE":
            return int(quota.usage) * 1024, int(quota.limit) * 1024
    return None


def credentials_for_source(server: ImapServer, project: Project) -> Credentials:
    return _credentials(server.login, project, f"source {server.host} login password")


def credentials_for_central(central: CentralHost, project: Project) -> Credentials:
    return _credentials(central.login, project, "central host login password")


def _credentials(login: AdminLogin | Any, project: Project, label: str) -> Credentials:
    password = None
    if login.password:
        password = resolve(SecretRef(login.password), base_dir=project.base_dir, label=label)
    return Credentials(login.method, login.user, password, getattr(login, "separator", "*"))


def imap_date(value: Any) -> datetime | None:
    """INTERNALDATE as an aware UTC datetime (imapclient gives aware datetimes with normalise_times off)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
