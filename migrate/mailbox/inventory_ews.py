"""The EWS side of the inventory: probe an Exchange server and measure one mailbox through EWS.

The service account opens mailboxes with the access the project file names (impersonation by default);
when the server refuses that for a mailbox, the other kind of access (delegate, or impersonation) is tried
before the mailbox is called failed. Throttling is waited out inside :mod:`migrate.mailbox.ews` with the
server's own back-off; this module only decides what to measure. Imported only when an EWS source is
inventoried, because exchangelib is slow to import.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from migrate.core.config import EwsServer, Project, Source
from migrate.core.errors import LoginFailed, RemoteError, TlsFailed, TransientError
from migrate.core.userlist import UserEntry
from migrate.mailbox.ews import EwsMailbox, EwsSource
from migrate.mailbox.imap import Endpoint, tls_context, tls_details
from migrate.mailbox.inventory_imap import name_matches
from migrate.mailbox.measurements import Extremes, FolderMeasurement, MailboxMeasurement, SourceProbe
from migrate.mailbox.sources import ARCHIVE_NAME, OTHER_ACCESS, Sources

log = logging.getLogger(__name__)



class EwsReader:
    """Inventory of one EWS source; thread-safe (exchangelib pools connections up to the source's limit)."""

    def __init__(self, source: Source, project: Project, sources: Sources) -> None:
        assert isinstance(source.server, EwsServer)
        self.source = source
        self.project = project
        self.server: EwsServer = source.server
        self.label = f"source {source.id}"
        self.sources = sources
        self.ews = sources.ews(source)  # SecretError if the service account's secret does not resolve

    @property
    def fallback(self) -> EwsSource:
        """The same service account with the other kind of access, opened on first need."""
        return self.sources.ews(self.source, access=OTHER_ACCESS[self.server.access])

    def close(self) -> None:
        """The Sources that opened the servers closes them."""

    # -- probe ------------------------------------------------------------------------------------

    def probe(self, entries: list[UserEntry]) -> SourceProbe:
        detail: dict[str, Any] = {"kind": "ews", "endpoint": self.server.url or "autodiscover",
                                  "auth": self.server.auth, "verify_certificate": self.server.verify_certificate}
        login: dict[str, Any] = {"method": self.server.access, "admin_user": self.server.user}
        try:
            info = self.ews.probe()
        except TlsFailed as exc:
            detail["reachable"] = True
            detail["tls"] = {**self._peek_certificate(), "verify_error": exc.message}
            return SourceProbe(self.source.id, False, exc.message, detail, blocked=exc.message)
        except LoginFailed as exc:
            # The service account itself was refused: every mailbox would be refused the same way.
            detail["reachable"] = True
            detail["login"] = {**login, "ok": False, "error": exc.message}
            return SourceProbe(self.source.id, False, exc.message, detail, blocked=exc.message)
        except RemoteError as exc:
            detail["reachable"] = not isinstance(exc, TransientError) and "connection refused" not in exc.message \
                and "not found" not in exc.message
            return SourceProbe(self.source.id, False, exc.message, detail, blocked=exc.message)
        detail["reachable"] = True
        detail["endpoint"] = info.get("endpoint") or detail["endpoint"]
        detail["version"] = info.get("version")
        detail["build"] = info.get("build")
        detail["software"] = info.get("product") or (f"Exchange (EWS schema {info['version']})"
                                                     if info.get("version") else None)
        tls = dict(info.get("tls") or {})
        if tls.get("tls"):
            tls["name_match"] = name_matches(urlsplit(detail["endpoint"]).hostname or "", tls.get("names", []))
            tls["verified"] = bool(self.server.verify_certificate)
        detail["tls"] = tls
        detail["login"] = login
        if not entries:
            login.update(ok=None, error="not tested: the user list has no usable rows")
            return SourceProbe(self.source.id, True, None, detail)
        email = entries[0].email
        login["user"] = email
        try:
            self.ews.mailbox(email)
            login["ok"] = True
            return SourceProbe(self.source.id, True, None, detail)
        except LoginFailed as exc:
            login.update(ok=False, error=exc.message)
        except RemoteError as exc:
            login.update(ok=False, error=exc.message)
            return SourceProbe(self.source.id, False, exc.message, detail)
        other = OTHER_ACCESS[self.server.access]
        try:
            self.fallback.mailbox(email)
            login["alternative"] = {"method": other, "ok": True}
            # The fallback is part of the design: mailboxes are measured with it, so the source is usable.
            return SourceProbe(self.source.id, True, None, detail)
        except RemoteError as exc:
            login["alternative"] = {"method": other, "ok": False, "error": exc.message}
            return SourceProbe(self.source.id, False, f"{login['error']}; {other} access refused too", detail)

    def _peek_certificate(self) -> dict[str, Any]:
        """The refused certificate, read over a handshake that sends nothing."""
        parts = urlsplit(self.server.url or "")
        if parts.scheme != "https" or not parts.hostname:
            return {}
        endpoint = Endpoint(parts.hostname, parts.port or 443, "implicit", None, False, self.server.timeout,
                            self.label)
        try:
            with socket.create_connection((endpoint.host, endpoint.port), timeout=endpoint.timeout) as raw, \
                    tls_context(endpoint).wrap_socket(raw, server_hostname=endpoint.host) as sock:
                details = tls_details(_Holder(sock))  # type: ignore[arg-type]
        except (OSError, ssl.SSLError) as exc:
            return {"tls": None, "error": str(exc)}
        details["name_match"] = name_matches(endpoint.host, details.get("names", []))
        details["verified"] = False
        return details

    # -- one mailbox --------------------------------------------------------------------------------

    def measure(self, entry: UserEntry) -> MailboxMeasurement:
        # Throttling was waited out by the EWS client and arrives as Throttled (not retried again); a lost
        # connection is transient and retried by the inventory's one per-mailbox retry layer.
        from migrate.mailbox.settings import inventory_items

        box = self._open_mailbox(entry.email)
        measured = measure_mailbox(box, entry.email)
        measured.settings = inventory_items(self.project, self.sources, self.source, entry.email, entry.login, {},
                                            box)
        return measured

    def _open_mailbox(self, email: str) -> EwsMailbox:
        try:
            return self.ews.mailbox(email)
        except LoginFailed as exc:
            if "HTTP 401" in exc.message:
                raise  # the password itself: trying again with other access would only risk a lockout
            try:
                box = self.fallback.mailbox(email)
            except RemoteError as other:
                raise LoginFailed(f"{exc.message}; {OTHER_ACCESS[self.server.access]} access refused too: "
                                  f"{other.message}")
            log.info("%s: %s opened with %s access (%s refused)", self.label, email,
                     OTHER_ACCESS[self.server.access], self.server.access)
            return box


def measure_mailbox(box: EwsMailbox, email: str) -> MailboxMeasurement:
    """Every mail folder's count and size, the extremes over all items, the folders not migrated as mail
    (counted), and the quota."""
    extremes = Extremes()
    folders: list[FolderMeasurement] = []
    tree = box.folder_tree()            # one listing serves the mail folders and the others
    recoverable = box.recoverable_folders()
    for info in (f for f in tree if f.kind == "mail"):
        name = "/".join(info.path)
        if info.total_count == 0:  # nothing to list: spare the server a FindItem
            folders.append(FolderMeasurement(name, info.special_use, 0, info.size or 0))
            continue
        try:
            summed, count = 0, 0
            for item in box.items(info.folder_id):
                summed += item.size
                count += 1
                extremes.add(item.size, item.received)
            folders.append(FolderMeasurement(name, info.special_use, info.total_count,
                                             info.size if info.size is not None else summed))
            if count != info.total_count:
                log.info("%s: folder %s: %d items listed, TotalCount says %d", email, name, count, info.total_count)
        except RemoteError as exc:
            if exc.transient:
                raise
            folders.append(FolderMeasurement(name, info.special_use, error=exc.message))
    # Calendars, contacts, tasks, and the folders not migrated (Outbox, Sync Issues, RSS Feeds, Recoverable
    # Items): counted from the folder list alone, without a FindItem.
    folders += [FolderMeasurement("/".join(info.path), None, info.total_count, info.size or 0, kind=info.kind)
                for info in [*(f for f in tree if f.kind != "mail"), *recoverable]]
    # The archive mailbox: moved below the source's archive_folder (kind archive), or only counted (null).
    migrated = bool(box.source.server.archive_folder)
    folders += [FolderMeasurement(ARCHIVE_NAME + "/".join(info.path), None, info.total_count, info.size or 0,
                                  kind=("archive" if migrated else "system") if info.kind == "mail" else info.kind)
                for info in box.archive_folders()]
    try:
        quota = box.quota(recoverable)
    except RemoteError as exc:
        if exc.transient:
            raise
        log.info("%s: no quota: %s", email, exc.message)
        quota = None
    return MailboxMeasurement.from_folders(email, folders, extremes, quota)


class _Holder:
    """Gives tls_details the ``socket()`` accessor it expects of an IMAP client."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._sock = sock

    def socket(self) -> ssl.SSLSocket:
        return self._sock
