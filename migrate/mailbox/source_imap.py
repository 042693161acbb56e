"""An IMAP ministry server as a sync source: its folders, message metadata, bodies and fingerprints.

Reads only: every folder is opened with EXAMINE and every body fetched with BODY.PEEK, so the
migration never marks a user's mail as read or changes anything on the ministry server.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from migrate.core.errors import FolderFailed
from migrate.mailbox.fingerprint import PREFIX, fingerprint
from migrate.mailbox.folders import SourceFolderInfo, source_path
from migrate.mailbox.imap import Session, describe_failure, guarded, imap_date
from migrate.mailbox.protocol import CommandFailed, ListedFolder, clean_flags, fetch, list_folders, uid_set


@dataclass(frozen=True)
class MessageMeta:
    uid: int
    size: int
    flags: tuple[str, ...]
    internaldate: datetime | None


class ImapSourceMailbox:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.client = session.client
        self._selected: str | None = None

    def close(self) -> None:
        self.session.close()

    @guarded
    def folders(self) -> list[tuple[SourceFolderInfo, ListedFolder]]:
        listed = list_folders(self.client, self.session.capabilities, with_status=True)
        out = []
        for f in listed:
            if not f.selectable or not self.session.personal(f.name):
                continue
            info = SourceFolderInfo(f.name, source_path(f.name, f.delimiter or self.session.separator,
                                                        self.session.prefix), f.special_use, f.subscribed)
            out.append((info, f))
        return out

    @guarded
    def examine(self, name: str) -> dict:
        self._selected = None                  # a failed EXAMINE leaves no folder selected (RFC 3501, 6.3.1)
        try:
            info = self.client.select_folder(name, readonly=True)
        except Exception as exc:
            error = describe_failure(exc, self.session.endpoint)
            if error.transient:
                raise error  # the connection is gone, not the folder: the mailbox is retried
            raise FolderFailed(f"cannot open source folder {name!r}: {error.message}")
        self._selected = name
        return info

    def reopen(self, name: str) -> None:
        """Select ``name`` again for reading unless it is the folder selected now (read last, nothing since)."""
        if self._selected != name:
            self.examine(name)

    @guarded
    def metadata(self, first_uid: int = 1) -> dict[int, MessageMeta]:
        """Every message of the selected folder from ``first_uid`` on: UID, size, flags, internal date (no
        bodies)."""
        try:
            data = fetch(self.client, f"{first_uid}:*", ["FLAGS", "RFC822.SIZE", "INTERNALDATE"])
        except CommandFailed as exc:
            if "no messages" in exc.text.lower() or "invalid messageset" in exc.text.lower():
                return {}
            raise FolderFailed(f"reading {self._selected!r}: {exc.text}")
        # "N:*" always names the last message, even one below N.
        return {uid: MessageMeta(uid, v.get(b"RFC822.SIZE", 0), clean_flags(v.get(b"FLAGS")),
                                 imap_date(v.get(b"INTERNALDATE")))
                for uid, v in data.items() if uid >= first_uid}

    @guarded
    def flags_changed_since(self, modseq: int) -> dict[int, tuple[str, ...]]:
        """CONDSTORE (RFC 7162): UID → flags of every message of the selected folder whose mod-sequence is
        above ``modseq``: the messages whose flags changed since, and the messages that arrived since."""
        try:
            data = fetch(self.client, "1:*", ["FLAGS"], modifiers=f"CHANGEDSINCE {int(modseq)}")
        except CommandFailed as exc:
            if "no messages" in exc.text.lower() or "invalid messageset" in exc.text.lower():
                return {}
            raise FolderFailed(f"reading {self._selected!r}: {exc.text}")
        return {uid: clean_flags(v.get(b"FLAGS")) for uid, v in data.items()}

    @guarded
    def uids(self) -> set[int]:
        """The UIDs of every message of the selected folder (UID SEARCH ALL)."""
        try:
            return set(self.client.search(["ALL"]))
        except Exception as exc:
            error = describe_failure(exc, self.session.endpoint)
            if error.transient:
                raise error
            raise FolderFailed(f"searching {self._selected!r}: {error.message}")

    @guarded
    def bodies(self, uids: list[int]) -> dict[int, bytes]:
        data = fetch(self.client, uid_set(uids), ["BODY.PEEK[]"])
        return {uid: v[b"BODY[]"] for uid, v in data.items() if uid in set(uids) and v.get(b"BODY[]") is not None}

    def chunks(self, uid: int, size: int, chunk_size: int) -> Iterator[bytes]:
        """A large message in pieces (BODY.PEEK[]<offset.length>), never whole in memory."""
        offset = 0
        while offset < size:
            piece = self._piece(uid, offset, min(chunk_size, size - offset))
            yield piece
            offset += len(piece)
            if not piece:
                break

    @guarded
    def _piece(self, uid: int, offset: int, length: int) -> bytes:
        data = fetch(self.client, str(uid), [f"BODY.PEEK[]<{offset}.{length}>"])
        piece = data.get(uid, {}).get(f"BODY[]<{offset}>".encode())
        if piece is None:
            raise FolderFailed(f"message UID {uid} vanished from {self._selected!r} while being copied")
        return piece

    @guarded
    def fingerprints(self) -> dict[int, tuple[str, int]]:
        """UID → (fingerprint, size) for the selected folder, from the first 8 KiB of each message."""
        try:
            data = fetch(self.client, "1:*", ["RFC822.SIZE", f"BODY.PEEK[]<0.{PREFIX}>"])
        except CommandFailed as exc:
            raise FolderFailed(f"reading {self._selected!r}: {exc.text}")
        return {uid: (fingerprint(v.get(b"RFC822.SIZE", 0), v.get(b"BODY[]<0>") or b""), v.get(b"RFC822.SIZE", 0))
                for uid, v in data.items()}
