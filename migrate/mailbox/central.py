"""The central host side of a mailbox: its folders, and the writes the sync engine makes there.

One ``Destination`` per user session. It appends in batches (MULTIAPPEND with LITERAL+ when offered,
else one APPEND at a time), streams large messages, carries flag changes, moves copies between folders (MOVE,
RFC 6851, else COPY and expunge), renames and deletes folders with their subscriptions, and reads fingerprints
for reconciliation. The central host must offer UIDPLUS: without APPENDUID the engine could not know where a
message landed, and could not resume exactly. ``CentralServer`` is the one way every command opens the host.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from migrate.core.config import Project
from migrate.core.crashpoints import crashpoint
from migrate.core.errors import (
    AuthenticationFailed,
    ConnectFailed,
    LoginFailed,
    RemoteError,
    ServerUnreachable,
    TlsFailed,
)
from migrate.mailbox.fingerprint import PREFIX, Fingerprinter, fingerprint
from migrate.mailbox.folders import DEFAULT_CENTRAL_SPECIAL, CentralLayout
from migrate.mailbox.imap import (
    Credentials,
    Endpoint,
    Session,
    connect,
    credentials_for_central,
    describe_failure,
    guarded,
    open_session,
    storage_quota,
)
from migrate.mailbox.protocol import (
    Appendable,
    CommandFailed,
    ListedFolder,
    append_stream,
    clean_flags,
    fetch,
    folder_status,
    is_broken,
    list_folders,
    multiappend,
    store_flags,
    uid_copy,
    uid_expunge,
    uid_move,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppendResult:
    uidvalidity: int | None
    uids: list[int]


class Destination:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.client = session.client
        if not session.has("UIDPLUS"):
            raise RemoteError(f"{session.endpoint.label}: the central host does not offer UIDPLUS; govmigrate "
                              "needs APPENDUID to copy exactly and resume")
        self.literal_plus = session.has("LITERAL+")
        self.multiappend_ok = session.has("MULTIAPPEND")
        self._folders: dict[str, ListedFolder] | None = None
        self._selected: str | None = None

    @classmethod
    def open(cls, endpoint: Endpoint, creds: Credentials, email: str) -> Destination:
        session = open_session(endpoint, creds, email)
        try:
            return cls(session)
        except BaseException:
            session.close()
            raise

    def close(self) -> None:
        self.session.close()

    @property
    def broken(self) -> bool:
        """True once a command failed half-way: the session is closed and must not be used again."""
        return is_broken(self.client)

    # -- folders --------------------------------------------------------------------------------------

    @guarded
    def folders(self, refresh: bool = False) -> dict[str, ListedFolder]:
        if self._folders is None or refresh:
            listed = list_folders(self.client, self.session.capabilities, with_status=False)
            self._folders = {f.name: f for f in listed if self.session.personal(f.name)}
        return self._folders

    def layout(self) -> CentralLayout:
        special = dict(DEFAULT_CENTRAL_SPECIAL)
        prefix = self.session.prefix
        for f in self.folders().values():
            if f.special_use in special:
                name = f.name[len(prefix):] if prefix and f.name.startswith(prefix) else f.name
                special[f.special_use] = name
        return CentralLayout(self.session.separator, prefix, tuple(special.items()))

    @guarded
    def ensure_folder(self, name: str, subscribe: bool) -> bool:
        """Create ``name`` (and missing parents) if needed; subscribe when the source folder was."""
        existing = self.folders()
        created = False
        if name not in existing or not existing[name].selectable:
            sep = self.session.separator
            parts = name.split(sep) if sep else [name]
            for depth in range(1, len(parts) + 1):
                partial = sep.join(parts[:depth])
                if partial in existing and existing[partial].selectable:
                    continue
                try:
                    self.client.create_folder(partial)
                except Exception as exc:
                    if "ALREADYEXISTS" not in str(exc).upper() and "already exists" not in str(exc).lower():
                        raise describe_failure(exc, self.session.endpoint)
                existing[partial] = ListedFolder(partial, frozenset(), sep, False, {})
            created = True
        if subscribe and not existing[name].subscribed:
            try:
                self.client.subscribe_folder(name)
            except Exception as exc:
                raise describe_failure(exc, self.session.endpoint)
            existing[name] = ListedFolder(name, existing[name].attributes, existing[name].delimiter, True, {})
        return created

    @guarded
    def status(self, name: str) -> dict[str, int]:
        return folder_status(self.client, name, ("MESSAGES", "UIDNEXT", "UIDVALIDITY"))

    @guarded
    def select(self, name: str) -> dict:
        if self._selected == name:
            return {}
        info = self.client.select_folder(name)
        self._selected = name
        return info

    # -- writes ---------------------------------------------------------------------------------------

    @guarded
    def append_batch(self, folder: str, messages: Sequence[Appendable]) -> AppendResult:
        """All of ``messages`` in one MULTIAPPEND, or raises CommandFailed (then none was appended and the
        session may have been closed: the next call through :class:`LazyDestination` reconnects)."""
        if not self.multiappend_ok and len(messages) > 1:
            raise ValueError("the central host has no MULTIAPPEND; append one message at a time")
        validity, uids = multiappend(self.client, folder, messages, self.literal_plus)
        return self._result(validity, uids, len(messages))

    @guarded
    def append_one(self, folder: str, message: Appendable, *, careful: bool = False) -> AppendResult:
        """One message. ``careful`` sends a synchronizing literal (the server may refuse before it is sent,
        and the session stays usable); otherwise LITERAL+ where offered."""
        validity, uids = multiappend(self.client, folder, [message], self.literal_plus and not careful)
        return self._result(validity, uids, 1)

    def _result(self, validity: int | None, uids: list[int], count: int) -> AppendResult:
        if len(uids) != count:
            raise RemoteError(f"{self.session.endpoint.label}: the central host did not report where "
                              f"{count} appended message(s) landed (no APPENDUID)")
        return AppendResult(validity, uids)

    @guarded
    def append_streamed(self, folder: str, flags: tuple[str, ...], internaldate: datetime | None, size: int,
                        chunks: Iterator[bytes]) -> AppendResult:
        validity, uids = append_stream(self.client, folder, flags, internaldate, size, chunks, self.literal_plus)
        return self._result(validity, uids, 1)

    @guarded
    def change_flags(self, folder: str, add: dict[frozenset[str], list[int]],
                     remove: dict[frozenset[str], list[int]]) -> None:
        """Apply flag additions/removals grouped by identical flag sets (few commands for many messages)."""
        self.select(folder)
        for flags, uids in add.items():
            store_flags(self.client, uids, "+", flags)
        for flags, uids in remove.items():
            store_flags(self.client, uids, "-", flags)

    @guarded
    def expunge(self, folder: str, uids: list[int]) -> None:
        self.select(folder)
        store_flags(self.client, uids, "+", ["\\Deleted"])
        uid_expunge(self.client, uids)

    @guarded
    def move(self, folder: str, uids: list[int], target: str) -> dict[int, int]:
        """Move messages of ``folder`` to ``target``: UID in ``folder`` → UID in ``target``, for those moved (a
        UID no longer there is not). UID MOVE where the central host offers it (one atomic command); otherwise
        UID COPY, then the copied originals flagged \\Deleted and expunged by UID (UIDPLUS), never anything else."""
        self.select(folder)
        if self.session.has("MOVE"):
            return uid_move(self.client, uids, target)
        moved = uid_copy(self.client, uids, target)
        crashpoint("mid-move")
        if moved:
            store_flags(self.client, list(moved), "+", ["\\Deleted"])
            uid_expunge(self.client, list(moved))
        return moved

    def _unselect_if(self, name: str) -> None:
        """Leave ``name`` (or a folder below it) before it is renamed or deleted."""
        sep = self.session.separator
        selected = self._selected
        if selected is not None and (selected == name or (sep and selected.startswith(name + sep))):
            if self.session.has("UNSELECT"):
                self.client.unselect_folder()
            else:  # never CLOSE: it would expunge what the user flagged \Deleted there
                self.client.select_folder("INBOX", readonly=True)
            self._selected = None

    def _subscriptions(self, name: str) -> list[str]:
        """``name`` and the folders below it that are subscribed (whether or not they exist)."""
        sep = self.session.separator
        found = list(self.client.list_sub_folders("", name))
        if sep:
            found += list(self.client.list_sub_folders("", name + sep + "*"))
        return sorted({n for _flags, _delim, n in found})

    @guarded
    def rename_folder(self, old: str, new: str) -> None:
        """RENAME ``old`` (and the folders below it) to ``new``; their subscriptions go with them (IMAP leaves
        them behind). Raises CommandFailed when the host refuses (``new`` exists, say)."""
        subscribed = self._subscriptions(old)
        self._unselect_if(old)
        try:
            self.client.rename_folder(old, new)
        except Exception as exc:
            error = describe_failure(exc, self.session.endpoint)
            if error.transient:
                raise error
            raise CommandFailed("RENAME", "NO", error.message) from None
        for name in subscribed:
            renamed = new + name[len(old):]
            self.client.unsubscribe_folder(name)
            self.client.subscribe_folder(renamed)
        self._folders = None

    @guarded
    def delete_folder(self, name: str) -> None:
        """DELETE ``name`` and UNSUBSCRIBE it (IMAP leaves the subscription behind)."""
        self._unselect_if(name)
        try:
            self.client.delete_folder(name)
        except Exception as exc:
            error = describe_failure(exc, self.session.endpoint)
            if error.transient:
                raise error
            raise CommandFailed("DELETE", "NO", error.message) from None
        if name in self._subscriptions(name):
            self.client.unsubscribe_folder(name)
        self._folders = None

    @guarded
    def set_subscribed(self, name: str, subscribed: bool) -> None:
        if subscribed:
            self.client.subscribe_folder(name)
        else:
            self.client.unsubscribe_folder(name)
        self._folders = None

    @guarded
    def has_children(self, name: str) -> bool:
        sep = self.session.separator
        return bool(sep) and any(n != name for _f, _d, n in self.client.list_folders("", name + sep + "*"))

    # -- reads for reconciliation and verification ----------------------------------------------------

    @guarded
    def fingerprints(self, folder: str, since_uid: int = 1, fp: Fingerprinter = fingerprint
                     ) -> dict[int, tuple[str, int, tuple[str, ...]]]:
        """UID → (fingerprint, size, flags) for the folder's messages with UID ≥ ``since_uid`` (``fp``: the
        plain fingerprint, or the one that survives Exchange's MIME regeneration for an EWS source's copies)."""
        self.select(folder)
        try:
            data = fetch(self.client, f"{since_uid}:*", ["RFC822.SIZE", "FLAGS", f"BODY.PEEK[]<0.{PREFIX}>"])
        except CommandFailed as exc:
            raise RemoteError(f"{self.session.endpoint.label}: reading {folder}: {exc.text}")
        out = {}
        for uid, values in data.items():
            if uid < since_uid:
                continue  # "N:*" always returns the last message, even below N
            size = values.get(b"RFC822.SIZE", 0)
            prefix = values.get(b"BODY[]<0>", b"") or b""
            out[uid] = (fp(size, prefix), size, clean_flags(values.get(b"FLAGS")))
        return out


class LazyDestination:
    """The central host session, opened on first use (a pass that finds nothing to do never logs in there),
    and opened again after a command failed half-way closed it. ``opener`` opens another server's session as a
    destination instead (the ministry server, for the copy back of a rollback)."""

    def __init__(self, endpoint: Endpoint | None, creds: Credentials | None, email: str, *,
                 opener: Callable[[], Destination] | None = None) -> None:
        self._args = (endpoint, creds, email)
        self._opener = opener
        self._dest: Destination | None = None

    def __getattr__(self, name: str):
        if self._dest is None or self._dest.broken:
            if self._dest is not None:
                log.info("%s: reconnecting after an interrupted command", self._args[2])
                self._dest.close()
            self._dest = self._opener() if self._opener is not None else Destination.open(*self._args)
        return getattr(self._dest, name)

    def close(self) -> None:
        if self._dest is not None:
            self._dest.close()

    def quota_read(self) -> tuple[int | None, int | None] | None:
        """The STORAGE quota, (used, limit), where this pass has logged in and the session still works; (None,
        None) where the server sets no storage limit (or would not say); None where nothing was logged in."""
        if self._dest is None or self._dest.broken:
            return None
        return storage_quota(self._dest.session) or (None, None)


class CentralServer:
    """The central host as sync, verify and pre-flight open it: its endpoint, built once from the project file,
    and the migration account's credentials, resolved once when first needed (safe across threads)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.endpoint = Endpoint.from_config(project.config.central.imap, base_dir=project.base_dir,
                                             label="central host")
        self._creds: Credentials | None = None
        self._lock = threading.Lock()

    def credentials(self) -> Credentials:
        with self._lock:
            if self._creds is None:
                self._creds = credentials_for_central(self.project.config.central, self.project)
            return self._creds

    def open(self, email: str) -> Destination:
        """``email``'s mailbox on the central host, logged in now."""
        return Destination.open(self.endpoint, self.credentials(), email)

    def lazy(self, email: str) -> LazyDestination:
        """``email``'s mailbox on the central host, logged in on first use."""
        return LazyDestination(self.endpoint, self.credentials(), email)

    def quota(self, email: str) -> tuple[int, int] | None:
        """Log in as ``email``, read its STORAGE (used, limit) and log out; None without a storage limit."""
        with open_session(self.endpoint, self.credentials(), email) as session:
            return storage_quota(session)

    def check_access(self, emails: list[str]) -> None:
        """Before any source mailbox is read: the migration account's secret must resolve (else exit 2), the
        central host must answer (else ServerUnreachable, exit 4) and accept the account's login (else
        AuthenticationFailed, exit 5). The login is tried for up to two of ``emails``: one refusal may be a
        mailbox the central mail team has not created yet, two in a row are the credentials. Without
        ``emails`` only the connection is tried. A transient fault is left to the per-mailbox retries."""
        creds = self.credentials()
        hint_connect = "check the central host's address, port and TLS settings in migration.yaml, and that it is up"
        if not emails:
            try:
                connect(self.endpoint).shutdown()
            except (ConnectFailed, TlsFailed) as exc:
                raise ServerUnreachable(exc.message, hint=hint_connect)
            return
        refused: list[str] = []
        for email in emails[:2]:
            try:
                open_session(self.endpoint, creds, email).close()
                return
            except (ConnectFailed, TlsFailed) as exc:
                raise ServerUnreachable(exc.message, hint=hint_connect)
            except LoginFailed as exc:
                refused.append(f"{email}: {exc.message}")
            except RemoteError:
                return
        raise AuthenticationFailed(
            f"the central host refused the migration account's login for {len(refused)} mailbox(es); nothing was "
            f"copied. {refused[0]}",
            hint="check central.login in migration.yaml (method, user, password reference) and that these mailboxes "
                 "exist on the central host")
