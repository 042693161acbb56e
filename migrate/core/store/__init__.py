"""The state store, and the only package that speaks SQL.

One SQLite file per workspace by default (WAL, 0600); or, when several migration hosts work one plan, a
PostgreSQL database they share (``state:`` in the project file). The same numbered migrations build both
(:mod:`.schema`); :mod:`.base` holds what the engines do differently. All writes of one step happen in one
transaction (:meth:`Store.tx`), so a crash leaves the store at a step boundary. Secrets never reach it: no
column holds a password or a secret reference's value. One module per area:

- :mod:`.events` the append-only event log;
- :mod:`.mailboxes` sources, mailboxes, inventory;
- :mod:`.sync` folders and message records, calendars and contacts, throughput, each mailbox's last verification;
- :mod:`.waves` waves, approvals (each one, with when and why it lapsed), runs;
- :mod:`.work` leases (the wave lock, connection slots) and the work queue several hosts claim from;
- :mod:`.fences` the tokens that refuse a lost holder's writes, and the copies it left unrecorded;
- :mod:`.settings` mail rules, out-of-office replies, shared folders and delegates;
- :mod:`.dns` and :mod:`.phones` the DNS and phone cut-overs;
- :mod:`.reverse` the copy back of mail when a cut-over is rolled back.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from migrate.core.errors import StoreError
from migrate.core.store.base import BUSY_TIMEOUT_S, Engine, Postgres, Sqlite, StoreUnavailable
from migrate.core.store.dns import DnsStore
from migrate.core.store.events import EventStore
from migrate.core.store.fences import FencedStore, FenceStore
from migrate.core.store.mailboxes import MailboxStore
from migrate.core.store.phones import PhoneStore
from migrate.core.store.reverse import ReverseStore
from migrate.core.store.rows import (
    ApprovalRow,
    DnsDomainRow,
    Event,
    ExtensionRow,
    Fence,
    FolderState,
    GroupwareRecord,
    GroupwareSummaryRow,
    InventoryFolderRow,
    InventoryRow,
    KeptSecretRow,
    MailboxRow,
    MessageRecord,
    NotCopiedRow,
    OrphanRow,
    ProbeRow,
    ReverseFolder,
    RunRow,
    SettingRow,
    SipCheckRow,
    SourceRow,
    VerificationRow,
    WaveRow,
    actor,
    host,
    now,
    worker_id,
)
from migrate.core.store.schema import MIGRATED_KINDS, MIGRATIONS, SCHEMA_VERSION, split_sql
from migrate.core.store.settings import SettingsStore
from migrate.core.store.sync import SyncStore
from migrate.core.store.waves import WaveStore
from migrate.core.store.work import Claim, Lease, WorkItem, WorkStore

STATE_FILE = "state.db"

__all__ = [
    "BUSY_TIMEOUT_S", "MIGRATED_KINDS", "MIGRATIONS", "SCHEMA_VERSION", "STATE_FILE", "ApprovalRow", "Claim",
    "DnsDomainRow", "Event", "ExtensionRow", "Fence", "FencedStore", "FolderState", "GroupwareRecord",
    "GroupwareSummaryRow", "InventoryFolderRow", "InventoryRow", "KeptSecretRow", "Lease", "MailboxRow",
    "MessageRecord", "NotCopiedRow", "OrphanRow", "ProbeRow", "ReverseFolder", "RunRow", "SettingRow",
    "SipCheckRow", "SourceRow", "Store", "StoreUnavailable", "VerificationRow", "WaveRow", "WorkItem", "actor",
    "host", "now", "open_postgres",
    "open_store", "split_sql", "worker_id",
]


class Store(EventStore, MailboxStore, SyncStore, WaveStore, WorkStore, DnsStore, PhoneStore, FenceStore,
            ReverseStore, SettingsStore):
    """Open with :func:`open_store` (a workspace's SQLite file) or :func:`open_postgres`."""

    def __enter__(self) -> Store:
        return self


def open_store(path: Path, *, create: bool = False) -> Store:
    """Open (or with ``create``, create) a workspace's SQLite store and bring its schema up to date."""
    if not path.exists():
        if not create:
            raise StoreError(f"no state store at {path}; is this a govmigrate workspace? (govmigrate init DIR)")
        # Create the file 0600 before SQLite touches it, so it is never readable by others.
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
    return _opened(Sqlite(path))


def open_postgres(url: str, *, password: str | None, ca_file: str | None = None, verify: bool = True,
                  reconnect_s: float | None = None, statement_s: float | None = None) -> Store:
    """Open a shared PostgreSQL store (the database must exist; its tables are created on first use)."""
    timeouts = {k: v for k, v in (("reconnect_s", reconnect_s), ("statement_s", statement_s)) if v is not None}
    return _opened(Postgres(url, password=password, ca_file=ca_file, verify=verify, **timeouts))


def _opened(engine: Engine) -> Store:
    try:
        engine.migrate()
    except sqlite3.DatabaseError as exc:
        engine.close()
        raise StoreError(f"cannot use state store {engine.where}: {exc}") from None
    except BaseException:
        engine.close()
        raise
    return Store(engine)

