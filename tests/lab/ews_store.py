"""The mailboxes behind the lab's EWS responder: corpus folders placed in Exchange's folder tree, items with
stable ids and change keys, and the change journal that SyncFolderItems reads.

Kept apart from the HTTP/SOAP code in :mod:`tests.lab.ews` so the model can be read (and mutated by tests)
without any XML in the way. All access goes through :class:`LabStore`'s lock.
"""

from __future__ import annotations

import base64
import re
import threading
from dataclasses import dataclass, field
from email.header import Header

from tests.lab.corpus import CorpusFolder, CorpusMailbox, CorpusMessage

#: Distinguished ids of the mail folders every Exchange mailbox has, with their English display names.
WELL_KNOWN_MAIL = {
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "deleteditems": "Deleted Items",
    "drafts": "Drafts",
    "junkemail": "Junk Email",
}
#: Non-mail folders every mailbox has under Top of Information Store; a client must skip them.
NON_MAIL = (("calendar", "Calendar", "IPF.Appointment"), ("contacts", "Contacts", "IPF.Contact"),
            ("tasks", "Tasks", "IPF.Task"))
MAIL_CLASS = "IPF.Note"
#: Folders every Exchange mailbox has that hold no user mail: (distinguished id or None, name, class, parent:
#: "top" (Top of Information Store), "root" (the non-IPM subtree) or the distinguished id of its parent).
SYSTEM_FOLDERS = (("outbox", "Outbox", MAIL_CLASS, "top"), ("syncissues", "Sync Issues", MAIL_CLASS, "top"),
                  ("conflicts", "Conflicts", MAIL_CLASS, "syncissues"),
                  ("localfailures", "Local Failures", MAIL_CLASS, "syncissues"),
                  ("serverfailures", "Server Failures", MAIL_CLASS, "syncissues"),
                  (None, "RSS Feeds", "IPF.Note.OutlookHomepage", "top"),
                  ("recoverableitemsroot", "Recoverable Items", None, "root"),
                  ("recoverableitemsdeletions", "Deletions", None, "recoverableitemsroot"),
                  ("recoverableitemspurges", "Purges", None, "recoverableitemsroot"))

# IMAP special-use attribute or well-known source folder name → distinguished folder id.
_BY_SPECIAL_USE = {"\\Sent": "sentitems", "\\Trash": "deleteditems", "\\Drafts": "drafts", "\\Junk": "junkemail"}
_BY_NAME = {"sent": "sentitems", "sent items": "sentitems", "trash": "deleteditems",
            "deleted items": "deleteditems", "drafts": "drafts", "junk": "junkemail",
            "junk e-mail": "junkemail", "junk email": "junkemail"}


def well_known_for(folder: CorpusFolder) -> str | None:
    """The distinguished folder a corpus folder lands in on Exchange, or None for an ordinary folder.

    Only top-level folders map; "Archive" stays an ordinary folder (Exchange's archive is a separate mailbox).
    """
    if folder.is_inbox:
        return "inbox"
    if len(folder.path) != 1:
        return None
    if folder.special_use in _BY_SPECIAL_USE:
        return _BY_SPECIAL_USE[folder.special_use]
    return _BY_NAME.get(folder.path[0].lower())


def ews_folder_path(box: CorpusMailbox, corpus_path: tuple[str, ...]) -> tuple[str, ...]:
    """The display-name path (below Top of Information Store) of a corpus folder on the EWS responder."""
    head = next((f for f in box.folders if f.path == corpus_path[:1]), CorpusFolder(corpus_path[:1]))
    wk = well_known_for(head)
    if wk is None:
        return tuple(corpus_path)
    return (WELL_KNOWN_MAIL[wk], *corpus_path[1:])


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def imap_flags_ews(flags: tuple[str, ...]) -> dict:
    """What EWS shows of IMAP flags. ``\\Answered`` has no EWS property here (real Exchange keeps it in
    PR_LAST_VERB_EXECUTED, which the lab does not model), and ``\\Recent``/``\\Deleted`` do not exist."""
    return {
        "is_read": "\\Seen" in flags,
        "is_flagged": "\\Flagged" in flags,
        "is_draft": "\\Draft" in flags,
        "categories": [f for f in flags if not f.startswith("\\")],
    }


#: Header fields Exchange builds again from MAPI properties on every read of an item's MIME (lower case).
REBUILT_FIELDS = (b"keywords", b"importance")
_FIELD_START = re.compile(rb"(?m)^(?=[^ \t\r\n])")


def exchange_mime(raw: bytes, categories: list[str] | tuple[str, ...], importance: str = "Normal") -> bytes:
    """The MIME Exchange gives for a stored message: the fields it keeps as properties (Keywords from the
    categories, Importance) are dropped from the header and written again, after the others, as they are now.
    A category change or a new importance therefore changes the bytes (and the length) of every later read."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return raw
    head, rest = raw[:end + 2], raw[end + 2:]
    kept = [f for f in _FIELD_START.split(head) if f.split(b":", 1)[0].strip().lower() not in REBUILT_FIELDS]
    rebuilt = []
    if categories:
        rebuilt.append(b"Keywords: " + Header(", ".join(categories), "utf-8", header_name="Keywords")
                       .encode(linesep="\r\n").encode("ascii") + b"\r\n")
    if importance != "Normal":
        rebuilt.append(b"Importance: " + importance.lower().encode("ascii") + b"\r\n")
    return b"".join(kept) + b"".join(rebuilt) + rest


def corpus_mime(message: CorpusMessage) -> bytes:
    """What the responder serves for a corpus message as it was loaded (its keywords as categories)."""
    return exchange_mime(message.raw, imap_flags_ews(message.flags)["categories"])


@dataclass(eq=False)
class LabItem:
    serial: int
    item_id: str
    folder: LabFolder
    message: CorpusMessage
    flags: tuple[str, ...]
    created_seq: int
    changed_seq: int        # last change of any kind (journal order)
    content_seq: int        # last change other than the read flag (Update rather than ReadFlagChange)
    version: int = 1
    deleted_seq: int | None = None
    importance: str = "Normal"      # Low | Normal | High
    item_class: str = "IPM.Note"

    @property
    def change_key(self) -> str:
        return _b64(f"CQAAABYA|{self.serial}|{self.version}")

    @property
    def categories(self) -> list[str]:
        return imap_flags_ews(self.flags)["categories"]

    @property
    def mime(self) -> bytes:
        """The MIME as Exchange builds it for this read (see :func:`exchange_mime`)."""
        return exchange_mime(self.message.raw, self.categories, self.importance)

    @property
    def alive(self) -> bool:
        return self.deleted_seq is None

    @property
    def size(self) -> int:
        return len(self.message.raw)

    @property
    def mailbox(self) -> LabMailbox:
        return self.folder.mailbox


@dataclass(eq=False)
class LabFolder:
    mailbox: LabMailbox
    serial: int
    folder_id: str
    name: str
    folder_class: str | None
    parent: LabFolder | None
    distinguished: str | None = None
    children: list[LabFolder] = field(default_factory=list)
    items: list[LabItem] = field(default_factory=list)
    tombstones: list[LabItem] = field(default_factory=list)
    version: int = 1
    #: Its PermissionSet (tests.lab.ews_settings.LabPermission): empty means Default and Anonymous with None.
    permissions: list = field(default_factory=list)

    @property
    def change_key(self) -> str:
        return _b64(f"AQAAABYA|F{self.serial}|{self.version}")

    @property
    def path(self) -> tuple[str, ...]:
        """Display names below Top of Information Store (empty for the root and that folder itself)."""
        names: list[str] = []
        f: LabFolder | None = self
        while f is not None and f.distinguished not in ("msgfolderroot", "root", "archivemsgfolderroot",
                                                           "archiveroot"):
            names.insert(0, f.name)
            f = f.parent
        return tuple(names)

    @property
    def is_mail(self) -> bool:
        return self.folder_class == MAIL_CLASS

    @property
    def total(self) -> int:
        return len(self.items)

    @property
    def unread(self) -> int:
        return sum(1 for i in self.items if "\\Seen" not in i.flags)

    @property
    def size(self) -> int:
        return sum(i.size for i in self.items)

    def descendants(self) -> list[LabFolder]:
        """Pre-order, the order a Deep FindFolder lists them in."""
        out: list[LabFolder] = []
        for child in self.children:
            out.append(child)
            out.extend(child.descendants())
        return out

    def touch(self) -> None:
        self.version += 1


class LabMailbox:
    """One Exchange mailbox built from a corpus mailbox."""

    def __init__(self, store: LabStore, corpus: CorpusMailbox) -> None:
        self.store = store
        self.corpus = corpus
        self.email = corpus.email
        self.folders_by_id: dict[str, LabFolder] = {}
        self.distinguished: dict[str, LabFolder] = {}
        self._folder_serial = 0
        #: Inbox rules, out-of-office settings and delegates (tests.lab.ews_settings), served by GetInboxRules,
        #: GetUserOofSettings and GetDelegate.
        self.rules: list = []
        self.oof = None
        self.delegates: list = []
        self.root = self._new_folder("Root", None, None, "root")
        self.top = self._new_folder("Top of Information Store", None, self.root, "msgfolderroot")
        for wk, name in WELL_KNOWN_MAIL.items():
            self._new_folder(name, MAIL_CLASS, self.top, wk)
        for wk, name, cls in NON_MAIL:
            self._new_folder(name, cls, self.top, wk)
        for wk, name, cls, parent in SYSTEM_FOLDERS:
            self._new_folder(name, cls, {"top": self.top, "root": self.root}.get(parent)
                             or self.distinguished[parent], wk)
        corpus_by_path = {cf.path: cf for cf in corpus.folders}
        by_corpus: dict[tuple[str, ...], LabFolder] = {}
        claimed: set[str] = set()

        def place(path: tuple[str, ...]) -> LabFolder:
            if path in by_corpus:
                return by_corpus[path]
            wk = well_known_for(corpus_by_path.get(path) or CorpusFolder(path))
            if wk is not None and wk not in claimed:
                claimed.add(wk)             # a second "Trash"-like folder stays an ordinary folder
                folder = self.distinguished[wk]
            else:
                parent = self.top if len(path) == 1 else place(path[:-1])
                folder = self._child(parent, path[-1])
            by_corpus[path] = folder
            return folder

        for cf in corpus.folders:
            folder = place(cf.path)
            for message in cf.messages:
                store._append(folder, message, message.flags)

    def enable_archive(self) -> LabFolder:
        """Give the mailbox an archive mailbox (In-Place/Online Archive): its own root, message folder root,
        Inbox and Deleted Items, under the archive* distinguished ids. Returns its message folder root."""
        if "archivemsgfolderroot" not in self.distinguished:
            root = self._new_folder("Archive Root", None, None, "archiveroot")
            top = self._new_folder("Top of Information Store", None, root, "archivemsgfolderroot")
            self._new_folder("Inbox", MAIL_CLASS, top, "archiveinbox")
            self._new_folder("Deleted Items", MAIL_CLASS, top, "archivedeleteditems")
        return self.distinguished["archivemsgfolderroot"]

    def archive_folder(self, *path: str) -> LabFolder:
        """A folder of the archive mailbox by its display path below its message folder root (made if new)."""
        folder = self.enable_archive()
        for name in path:
            folder = self._child(folder, name)
        return folder

    def _new_folder(self, name: str, folder_class: str | None, parent: LabFolder | None,
                    distinguished: str | None = None) -> LabFolder:
        self._folder_serial += 1
        folder_id = _b64(f"AAMkAG|{self.email}|folder|{self._folder_serial}")
        folder = LabFolder(self, self._folder_serial, folder_id, name, folder_class, parent, distinguished)
        if parent is not None:
            parent.children.append(folder)
        self.folders_by_id[folder_id] = folder
        self.store.folders[folder_id] = folder
        if distinguished:
            self.distinguished[distinguished] = folder
        return folder

    def _child(self, parent: LabFolder, name: str) -> LabFolder:
        for child in parent.children:
            if child.name == name:
                return child
        return self._new_folder(name, MAIL_CLASS, parent)

    # -- look-ups ---------------------------------------------------------------------------------------

    def all_folders(self) -> list[LabFolder]:
        return [self.root, *self.root.descendants()]

    def mail_folders(self) -> list[LabFolder]:
        return [f for f in self.top.descendants() if f.is_mail]

    def folder(self, *path: str) -> LabFolder:
        """A folder by its EWS display path (("Inbox",), ("Projects", "Budget 2025"), ("Recoverable Items",
        "Deletions")) or by its corpus path (("INBOX",), ("Sent",)), whichever matches."""
        for f in self.root.descendants():
            if f.path == tuple(path):
                return f
        mapped = ews_folder_path(self.corpus, tuple(path))
        for f in self.top.descendants():
            if f.path == mapped:
                return f
        raise KeyError(path)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.all_folders())


class LabStore:
    """Every mailbox of the responder, the global change sequence and the id indexes."""

    def __init__(self, mailboxes: list[CorpusMailbox]) -> None:
        self.lock = threading.RLock()
        self.seq = 0
        self.sync_generation = 0
        self._item_serial = 0
        self.folders: dict[str, LabFolder] = {}
        self.items: dict[str, LabItem] = {}
        self.mailboxes: dict[str, LabMailbox] = {}
        for box in mailboxes:
            self.mailboxes[box.email.lower()] = LabMailbox(self, box)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def mailbox(self, email: str) -> LabMailbox:
        try:
            return self.mailboxes[email.strip().lower()]
        except KeyError:
            raise KeyError(f"no mailbox {email} on the EWS responder") from None

    def _append(self, folder: LabFolder, message: CorpusMessage, flags: tuple[str, ...],
                item_class: str = "IPM.Note") -> LabItem:
        self._item_serial += 1
        seq = self.next_seq()
        item_id = _b64(f"AAMkAG|{folder.mailbox.email}|item|{self._item_serial}")
        item = LabItem(self._item_serial, item_id, folder, message, tuple(flags), seq, seq, seq,
                       item_class=item_class)
        folder.items.append(item)
        folder.touch()
        self.items[item_id] = item
        return item

    # -- mutations tests make between syncs -------------------------------------------------------------

    def add_message(self, email: str, folder_path: tuple[str, ...], message: CorpusMessage,
                    item_class: str = "IPM.Note") -> str:
        """A new item (of ``item_class``: a meeting request, an NDR, a contact dragged into the Inbox...)."""
        with self.lock:
            folder = self.mailbox(email).folder(*folder_path)
            return self._append(folder, message, message.flags, item_class).item_id

    def set_flags(self, email: str, item_id: str, flags: tuple[str, ...] | list[str]) -> None:
        with self.lock:
            item = self._live_item(email, item_id)
            flags = tuple(flags)
            read_only = set(item.flags) ^ set(flags) <= {"\\Seen"}
            seq = self.next_seq()
            item.flags = flags
            item.changed_seq = seq
            if not read_only:
                item.content_seq = seq
            item.version += 1
            item.folder.touch()

    def add_archive_message(self, email: str, folder_path: tuple[str, ...], message: CorpusMessage) -> str:
        with self.lock:
            folder = self.mailbox(email).archive_folder(*folder_path)
            return self._append(folder, message, message.flags).item_id

    def set_importance(self, email: str, item_id: str, importance: str) -> None:
        """A user changes an item's importance in Outlook: a content change (Update), a new MIME."""
        with self.lock:
            item = self._live_item(email, item_id)
            item.importance = importance
            item.changed_seq = item.content_seq = self.next_seq()
            item.version += 1
            item.folder.touch()

    def delete_message(self, email: str, item_id: str) -> None:
        with self.lock:
            item = self._live_item(email, item_id)
            item.deleted_seq = item.changed_seq = self.next_seq()
            item.folder.items.remove(item)
            item.folder.tombstones.append(item)
            item.folder.touch()

    def move_message(self, email: str, item_id: str, to_path: tuple[str, ...]) -> str:
        """A user moves an item to another folder: Exchange records a Delete in the folder it left and a Create,
        with a new ItemId, in the one it arrives in (a move between folders is not an update). Returns the id."""
        with self.lock:
            item = self._live_item(email, item_id)
            target = self.mailbox(email).folder(*to_path)
            self.delete_message(email, item_id)
            moved = self._append(target, item.message, item.flags, item.item_class)
            moved.importance = item.importance
            return moved.item_id

    def create_folder(self, email: str, path: tuple[str, ...]) -> str:
        """A new mail folder (and any missing parent) by display path below Top of Information Store."""
        with self.lock:
            box = self.mailbox(email)
            folder = box.top
            for name in path:
                folder = box._child(folder, name)
            return folder.folder_id

    def rename_folder(self, email: str, path: tuple[str, ...], new_name: str) -> str:
        """A user renames a folder: its display name changes, its FolderId (and its items' ids) stay."""
        with self.lock:
            folder = self.mailbox(email).folder(*path)
            folder.name = new_name
            folder.touch()
            return folder.folder_id

    def delete_folder(self, email: str, path: tuple[str, ...]) -> None:
        """A user deletes a folder for good (Shift+Delete): it, the folders below it and their items are gone."""
        with self.lock:
            box = self.mailbox(email)
            folder = box.folder(*path)
            for gone in [folder, *folder.descendants()]:
                for item in gone.items:
                    self.items.pop(item.item_id, None)
                box.folders_by_id.pop(gone.folder_id, None)
                self.folders.pop(gone.folder_id, None)
            if folder.parent is not None:
                folder.parent.children.remove(folder)
                folder.parent.touch()

    def _live_item(self, email: str, item_id: str) -> LabItem:
        item = self.items.get(item_id)
        if item is None or not item.alive or item.mailbox is not self.mailbox(email):
            raise KeyError(f"no item {item_id} in {email}")
        return item

    # -- SyncFolderItems --------------------------------------------------------------------------------

    def sync_token(self, folder: LabFolder, seq: int) -> str:
        return _b64(f"lab-sync|{folder.folder_id}|{seq}|{self.sync_generation}")

    def parse_sync_token(self, folder: LabFolder, token: str) -> int:
        """The sequence number a state was issued at; ``ValueError`` if it is not ours, not this folder's, or
        issued before :meth:`reject_sync_states`."""
        try:
            kind, folder_id, seq, generation = base64.b64decode(token.strip(), validate=True).decode().split("|")
        except Exception:
            raise ValueError("malformed sync state") from None
        if kind != "lab-sync" or folder_id != folder.folder_id:
            raise ValueError("sync state belongs to another folder")
        if int(generation) != self.sync_generation:
            raise ValueError("sync state no longer valid")
        return int(seq)

    def reject_sync_states(self) -> None:
        """Every SyncFolderItems state issued so far is refused from now on (ErrorInvalidSyncStateData), as
        Exchange does after a mailbox move between databases or a server upgrade."""
        with self.lock:
            self.sync_generation += 1

    def changes_since(self, folder: LabFolder, since: int, max_changes: int
                      ) -> tuple[list[tuple[str, LabItem]], int, bool]:
        """One SyncFolderItems page: (change kind, item) pairs, the new state's sequence, and whether this is
        the last page. Kinds: Create, Update, ReadFlagChange, Delete."""
        candidates = sorted((i for i in [*folder.items, *folder.tombstones] if i.changed_seq > since),
                            key=lambda i: i.changed_seq)
        changes: list[tuple[str, LabItem]] = []
        for n, item in enumerate(candidates):
            if item.created_seq > since:
                kind = "Create" if item.alive else None     # created and deleted in between: nothing to say
            elif not item.alive:
                kind = "Delete"
            else:
                kind = "Update" if item.content_seq > since else "ReadFlagChange"
            if kind is None:
                continue
            if len(changes) == max_changes:
                return changes, candidates[n - 1].changed_seq, False
            changes.append((kind, item))
        return changes, self.seq, True
