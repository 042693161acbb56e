"""The one way to open a ministry mailbox for reading, IMAP or Exchange alike.

:class:`Sources` resolves each source's credentials once, keeps one :class:`~migrate.mailbox.ews.EwsSource` (and
so one connection pool) per Exchange server and kind of access, and finds each user's own password in the user
list where a source logs in that way. Sync, verify, the pre-flight and the inventory all open mailboxes here.
Thread-safe.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from migrate.core.config import EwsServer, ImapServer, Project, Source
from migrate.core.errors import LoginFailed
from migrate.core.secrets import Secret, SecretRef, resolve
from migrate.mailbox.folders import SourceFolderInfo
from migrate.mailbox.imap import Credentials, Endpoint, Session, credentials_for_source, open_session
from migrate.mailbox.protocol import ListedFolder
from migrate.mailbox.source_imap import ImapSourceMailbox

if TYPE_CHECKING:
    from migrate.mailbox.ews import EwsMailbox, EwsSource

#: What a source mailbox is: an IMAP session opened read-only, or an Exchange mailbox.
SourceMailbox = Any  # ImapSourceMailbox | EwsMailbox (EWS is imported lazily: exchangelib is slow to import)

OTHER_ACCESS = {"impersonation": "delegate", "delegate": "impersonation"}


class Sources:
    def __init__(self, project: Project) -> None:
        self.project = project
        self._lock = threading.Lock()
        self._creds: dict[str, Credentials] = {}
        self._ews: dict[tuple[str, str], EwsSource] = {}
        self._ews_password: dict[str, Secret] = {}
        self._password_refs: dict[str, dict[str, tuple[str, int]]] = {}

    # -- what a source needs -------------------------------------------------------------------------------

    def endpoint(self, source: Source) -> Endpoint:
        assert isinstance(source.server, ImapServer)
        return Endpoint.from_config(source.server, base_dir=self.project.base_dir, label=f"source {source.id}")

    def credentials(self, source: Source) -> Credentials:
        """The admin login of an IMAP source (SecretError if its secret does not resolve)."""
        assert isinstance(source.server, ImapServer)
        with self._lock:
            if source.id not in self._creds:
                self._creds[source.id] = credentials_for_source(source.server, self.project)
            return self._creds[source.id]

    def user_password(self, source: Source, email: str) -> Secret | None:
        """The user's own password, for sources whose login method is user_password (else None)."""
        if not isinstance(source.server, ImapServer) or source.server.login.method != "user_password":
            return None
        with self._lock:
            if source.id not in self._password_refs:  # the user list, read once per source
                from migrate.core.registry import read_users

                self._password_refs[source.id] = {e.email.lower(): (e.password_ref, e.line)
                                                  for e in read_users(self.project, source)[0] if e.password_ref}
            found = self._password_refs[source.id].get(email.lower())
        if found is None:
            raise LoginFailed(f"no password reference for {email} in the user list of {source.id}")
        ref, line = found
        return resolve(SecretRef(ref), base_dir=self.project.base_dir,
                       label=f"password of {email} (user list line {line})")

    def ews(self, source: Source, *, access: str | None = None) -> EwsSource:
        """The Exchange server of ``source`` with its configured access, or the other kind (``access``)."""
        from migrate.mailbox.ews import EwsSource

        assert isinstance(source.server, EwsServer)
        access = access or source.server.access
        with self._lock:
            key = (source.id, access)
            if key not in self._ews:
                if source.id not in self._ews_password:
                    self._ews_password[source.id] = resolve(
                        SecretRef(source.server.password), base_dir=self.project.base_dir,
                        label=f"source {source.id} EWS service account password")
                server = source.server if access == source.server.access else \
                    source.server.model_copy(update={"access": access})
                # Both kinds of access talk to one server: they share its back-off budget.
                sibling = self._ews.get((source.id, OTHER_ACCESS[access]))
                self._ews[key] = EwsSource(server, self._ews_password[source.id], base_dir=self.project.base_dir,
                                           label=f"source {source.id}", max_connections=source.connections,
                                           budget=sibling._policy if sibling else None)
            return self._ews[key]

    # -- opening a mailbox ---------------------------------------------------------------------------------

    def session(self, source: Source, email: str, login: str, creds: Credentials | None = None) -> Session:
        """A logged-in IMAP session on ``login``'s mailbox (with the source's credentials unless given)."""
        creds = creds or self.credentials(source)
        password = self.user_password(source, email) if creds.method == "user_password" else None
        return open_session(self.endpoint(source), creds, login, password)

    def open(self, source: Source, email: str, login: str) -> SourceMailbox:
        """The mailbox for reading: an :class:`ImapSourceMailbox` (EXAMINE and BODY.PEEK only) or an
        :class:`EwsMailbox`. Raises LoginFailed, ConnectFailed, TlsFailed or TransientError saying why not."""
        if isinstance(source.server, ImapServer):
            return ImapSourceMailbox(self.session(source, email, login))
        return self.ews(source).mailbox(email)

    def close(self) -> None:
        with self._lock:
            sources, self._ews = list(self._ews.values()), {}
        for ews in sources:
            try:
                ews.close()
            except Exception:
                pass


def folder_list(mailbox: SourceMailbox) -> list[tuple[SourceFolderInfo, ListedFolder | None]]:
    """Every mail folder of a source mailbox, with what IMAP's LIST said of it (None for Exchange)."""
    if isinstance(mailbox, ImapSourceMailbox):
        return mailbox.folders()
    return [(info, None) for info in ews_folder_infos(mailbox)]


#: How the folders of a user's archive mailbox are named in the state store, logs and reports (their
#: destination is below the source's ``archive_folder``).
ARCHIVE_NAME = "Archive mailbox/"


def ews_folder_infos(mailbox: EwsMailbox) -> list[SourceFolderInfo]:
    """EWS folders are selected by id and named by their display path; the inbox becomes INBOX. The mail
    folders of the user's archive mailbox follow, below the source's ``archive_folder`` (unless null)."""
    infos = []
    for f in mailbox.folders():
        path = ("INBOX", *f.path[1:]) if f.well_known == "inbox" else tuple(f.path)
        infos.append(SourceFolderInfo("/".join(f.path), path, f.special_use, True, folder_id=f.folder_id,
                                      messages=f.total_count, size=f.size))
    prefix = mailbox.source.server.archive_folder
    if prefix:
        for f in mailbox.archive_folders():
            if f.kind == "mail":
                infos.append(SourceFolderInfo(ARCHIVE_NAME + "/".join(f.path), (*prefix.split("/"), *f.path), None,
                                              True, folder_id=f.folder_id, messages=f.total_count, size=f.size))
    return infos
