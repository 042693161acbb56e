"""What the sync engine is told and what it reports (options, per-mailbox and per-folder reports), and the small
records its modules pass each other: a message's key, one message to copy, the stop signal."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from migrate.core.config import Project
from migrate.core.store import MessageRecord
from migrate.core.store.rows import age_s

Key = int | str  # IMAP source UID, or EWS item id


@dataclass
class SyncOptions:
    dry_run: bool = False
    #: Carry deletions: remove from the central host the copies of messages deleted at the source, and the
    #: folders deleted there (only what govmigrate copied). Moves and renames are carried by every pass.
    propagate_deletes: bool = False
    #: A batch is fetched with one FETCH and appended with one MULTIAPPEND.
    batch_bytes: int = 2_000_000
    batch_messages: int = 250
    #: Messages larger than this are streamed in chunks instead of held whole in memory.
    stream_threshold: int = 8_000_000
    chunk_size: int = 1_000_000
    #: Parallel mailboxes (default: bounded by the sources' and the central host's connection limits).
    workers: int | None = None
    #: Retries of a mailbox after transient faults before it is recorded as failed.
    attempts: int = 5
    #: A lock directory (the workspace's); None disables per-mailbox locks (library use, tests).
    lock_dir: Any = None
    #: Seconds: a mailbox's settings (rules, out-of-office, sharing, delegates) read in full less long ago than
    #: this are not read again by this pass; None: read them whatever (the final pass, ``sync --settings``).
    settings_max_age: float | None = None

    @classmethod
    def from_project(cls, project: Project, **kwargs: Any) -> SyncOptions:
        tuning = project.config.sync
        kwargs.setdefault("settings_max_age", tuning.settings_interval_hours * 3600.0)
        return cls(batch_bytes=int(tuning.batch_bytes), batch_messages=tuning.batch_messages,
                   stream_threshold=int(tuning.stream_threshold), workers=tuning.workers, **kwargs)

    def settings_due(self, read_at: str | None, now: float) -> bool:
        """Whether this pass reads the settings of a mailbox last read in full at ``read_at`` (the store's UTC
        stamp; ``now``: seconds since the epoch). A stamp in the future (a clock or a store gone back in time)
        is as good as none."""
        age = age_s(read_at, now)
        return self.settings_max_age is None or age is None or age >= self.settings_max_age

    @classmethod
    def for_pass(cls, project: Project, pass_name: str, *, carry_deletes: bool = False,
                 **kwargs: Any) -> SyncOptions:
        """A wave pass's options: the final pass (and the cut-over's last delta, a final pass too) carries
        deletions; a delta pass when the project file (``sync.carry_deletes_in_delta``) or ``carry_deletes``
        (``run --carry-deletes``) says so; a prestage never needs to (nothing was copied before it)."""
        carry = pass_name == "final" or (pass_name == "delta" and (
            carry_deletes or project.config.sync.carry_deletes_in_delta))
        if pass_name == "final":
            kwargs.setdefault("settings_max_age", None)   # what users have set at the cut-over, read now
        return cls.from_project(project, propagate_deletes=carry, **kwargs)


@dataclass
class FolderReport:
    source: str
    dest: str | None
    note: str | None = None
    created: bool = False
    unchanged: bool = False
    copied: int = 0
    copied_bytes: int = 0
    reconciled: int = 0
    #: Copies an interrupted pass made and could not record (its pending records), found on the destination.
    resumed: int = 0
    flag_updates: int = 0
    #: Copies removed because their source message was deleted (a pass carrying deletions).
    deleted: int = 0
    #: Copies moved into this folder on the central host: their message was moved here at the source.
    moved: int = 0
    #: The folder's name at the source before the user renamed it (and its central name before, if it changed).
    renamed_from: str | None = None
    renamed_dest_from: str | None = None
    #: The folder was deleted at the source: its copies are removed (a pass carrying deletions) and the central
    #: folder deleted too when nothing else is in it (``removed``).
    deleted_at_source: bool = False
    removed: bool = False
    #: Why the central folder of a folder deleted at the source stays (it holds mail govmigrate did not copy).
    kept: str | None = None
    #: Messages copied or re-flagged whose keywords (Exchange categories) had to be encoded as atoms.
    keywords_encoded: int = 0
    to_copy: int = 0          # dry-run: would copy
    to_copy_bytes: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (message, reason)
    #: Items not migrated by policy (an Exchange contact or note kept in a mail folder): (item, reason).
    not_migrated: list[tuple[str, str]] = field(default_factory=list)
    #: Something people should know that did not fail the folder (e.g. a server whose sync state stalled).
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class MailboxReport:
    email: str
    source_id: str
    ok: bool = True
    error: str | None = None
    folders: list[FolderReport] = field(default_factory=list)
    src_messages: int = 0
    src_bytes: int = 0
    seconds: float = 0.0
    attempts: int = 1
    #: Not synced: another process holds this mailbox's lock (``error`` names it).
    locked: bool = False
    #: Given up: this host lost the mailbox to another (its lease lapsed: a pause, a lost database) and wrote
    #: nothing more for it; its new holder finishes it.
    given_up: bool = False
    #: What this host appended after it lost the mailbox (see migrate.core.errors.ClaimLost.appended).
    appended: tuple | None = None
    #: Exchange calendars and contacts (migrate.mailbox.groupware.GroupwareReport), one per kind.
    groupware: list = field(default_factory=list)
    #: Mail rules, out-of-office, shared folders and delegates (migrate.mailbox.settings.SettingsReport).
    settings: Any = None
    #: The central host's STORAGE quota after the pass, (used, limit or None), read where the pass logged in there.
    central_quota: tuple[int | None, int | None] | None = None

    @property
    def copied(self) -> int:
        return sum(f.copied for f in self.folders)

    @property
    def copied_bytes(self) -> int:
        return sum(f.copied_bytes for f in self.folders)

    @property
    def failed_messages(self) -> int:
        return sum(len(f.failed) for f in self.folders)

    @property
    def moved(self) -> int:
        return sum(f.moved for f in self.folders)

    @property
    def keywords_encoded(self) -> int:
        return sum(f.keywords_encoded for f in self.folders)

    @property
    def folder_errors(self) -> int:
        return sum(1 for f in self.folders if f.error)

    @property
    def complete(self) -> bool:
        """Everything at the source is at the destination (as far as this pass knows)."""
        return self.ok and not self.failed_messages and not self.folder_errors and \
            not any(g.failed or g.error for g in self.groupware)


def cols(key: Key) -> tuple[int | None, str | None]:
    """A key as the store's (src_uid, src_item) columns."""
    return (key, None) if isinstance(key, int) else (None, key)


def split_keys(keys) -> tuple[list[int], list[str]]:
    """Keys as the store takes them: (IMAP source UIDs, EWS item ids)."""
    keys = list(keys)
    return [k for k in keys if isinstance(k, int)], [k for k in keys if isinstance(k, str)]


def record_key(record: MessageRecord) -> Key:
    return record.src_uid if record.src_uid is not None else record.src_item  # type: ignore[return-value]


def flagstr(flags) -> str:
    return " ".join(sorted(flags))


@dataclass
class Item:
    """One message to copy."""

    key: Key
    size: int
    flags: tuple[str, ...]
    internaldate: datetime | None
    #: Some keyword had to be encoded to be sent (see migrate.mailbox.keywords).
    encoded: bool = False


class Stopped(Exception):
    """The run was asked to stop: the mailbox ends at the next batch or folder boundary."""
