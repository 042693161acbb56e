"""The state store: one SQLite database per workspace, and the only module that speaks SQL.

WAL mode, numbered schema migrations applied on open (``PRAGMA user_version``), file mode 0600. All
writes of one step happen in one transaction (:meth:`Store.tx`), so a crash leaves the store at a step
boundary. Secrets never reach it: no column holds a password or a secret reference's value.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from migrate.core.errors import StoreError
from migrate.core.secrets import redact

STATE_FILE = "state.db"

MIGRATIONS: list[str] = [
    # 1: the foundation schema.
    """
    CREATE TABLE sources (
        id          TEXT PRIMARY KEY,
        ministry    TEXT NOT NULL,
        kind        TEXT NOT NULL,             -- imap | ews
        domains     TEXT NOT NULL,             -- JSON list
        updated_at  TEXT NOT NULL
    );
    CREATE TABLE mailboxes (
        id              INTEGER PRIMARY KEY,
        source_id       TEXT NOT NULL REFERENCES sources(id),
        email           TEXT NOT NULL UNIQUE COLLATE NOCASE,
        login           TEXT NOT NULL,
        display_name    TEXT NOT NULL DEFAULT '',
        flags           TEXT NOT NULL DEFAULT '',   -- space separated: pilot vip skip
        state           TEXT NOT NULL DEFAULT 'new',
        state_reason    TEXT,
        wave            TEXT,
        last_sync_at    TEXT,
        last_sync_result TEXT,
        src_messages    INTEGER,
        src_bytes       INTEGER,
        copied_messages INTEGER NOT NULL DEFAULT 0,
        copied_bytes    INTEGER NOT NULL DEFAULT 0,
        failed_messages INTEGER NOT NULL DEFAULT 0,
        updated_at      TEXT NOT NULL
    );
    CREATE INDEX mailboxes_source ON mailboxes(source_id);
    CREATE INDEX mailboxes_wave ON mailboxes(wave);

    CREATE TABLE probes (
        source_id   TEXT PRIMARY KEY REFERENCES sources(id),
        ok          INTEGER NOT NULL,
        error       TEXT,
        detail      TEXT NOT NULL,             -- JSON: TLS, capabilities, namespace, login method...
        probed_at   TEXT NOT NULL
    );
    CREATE TABLE inventory (
        mailbox_id  INTEGER PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
        ok          INTEGER NOT NULL,
        error       TEXT,
        messages    INTEGER,
        bytes       INTEGER,
        largest     INTEGER,
        oldest      TEXT,
        newest      TEXT,
        quota_used  INTEGER,                   -- bytes
        quota_limit INTEGER,                   -- bytes
        folder_errors INTEGER NOT NULL DEFAULT 0,
        measured_at TEXT NOT NULL
    );
    CREATE TABLE inventory_folders (
        mailbox_id  INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        special_use TEXT,
        messages    INTEGER,
        bytes       INTEGER,
        error       TEXT,
        PRIMARY KEY (mailbox_id, name)
    );

    CREATE TABLE folders (
        id                  INTEGER PRIMARY KEY,
        mailbox_id          INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        source_name         TEXT NOT NULL,
        dest_name           TEXT NOT NULL,
        source_uidvalidity  INTEGER,
        dest_uidvalidity    INTEGER,
        source_uidnext      INTEGER,
        source_modseq       INTEGER,
        source_messages     INTEGER,
        source_bytes        INTEGER,
        sync_state          TEXT,              -- EWS SyncFolderItems state
        subscribed          INTEGER NOT NULL DEFAULT 0,
        note                TEXT,              -- why the destination name differs, if it does
        last_synced_at      TEXT,
        UNIQUE (mailbox_id, source_name)
    );
    CREATE TABLE messages (
        folder_id   INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
        src_uid     INTEGER,                   -- IMAP source UID
        src_item    TEXT,                      -- EWS item id
        dest_uid    INTEGER,
        fingerprint TEXT NOT NULL,
        size        INTEGER NOT NULL,
        flags       TEXT NOT NULL DEFAULT '',  -- as last synced, space separated
        state       TEXT NOT NULL,             -- pending | copied | failed | skipped (not migrated by policy)
        dest_uidnext_before INTEGER,           -- for pending rows: where the APPEND would land
        error       TEXT
    );
    CREATE UNIQUE INDEX messages_by_uid ON messages(folder_id, src_uid) WHERE src_uid IS NOT NULL;
    CREATE UNIQUE INDEX messages_by_item ON messages(folder_id, src_item) WHERE src_item IS NOT NULL;
    CREATE INDEX messages_by_state ON messages(folder_id, state);

    CREATE TABLE waves (
        id          TEXT PRIMARY KEY,
        position    INTEGER NOT NULL,
        plan_file   TEXT NOT NULL,
        plan_hash   TEXT,
        approved_by TEXT,
        approved_at TEXT,
        state       TEXT NOT NULL DEFAULT 'planned',
        updated_at  TEXT NOT NULL
    );
    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY,
        wave        TEXT,
        pass        TEXT,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        result      TEXT,
        mailboxes   INTEGER NOT NULL DEFAULT 0,
        messages    INTEGER NOT NULL DEFAULT 0,
        bytes       INTEGER NOT NULL DEFAULT 0,
        seconds     REAL
    );
    CREATE TABLE throughput (
        id          INTEGER PRIMARY KEY,
        source_id   TEXT NOT NULL,
        measured_at TEXT NOT NULL,
        messages    INTEGER NOT NULL,
        bytes       INTEGER NOT NULL,
        seconds     REAL NOT NULL
    );
    CREATE TABLE events (
        id      INTEGER PRIMARY KEY,
        at      TEXT NOT NULL,
        actor   TEXT NOT NULL,
        object  TEXT NOT NULL,
        action  TEXT NOT NULL,
        detail  TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX events_by_object ON events(object);
    CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
    CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
    """,
    # 2: wave plans and wave runs.
    """
    -- When a mailbox is failed: the lifecycle state it had reached, from which a retry resumes.
    ALTER TABLE mailboxes ADD COLUMN prior_state TEXT;
    -- The wave as last generated or approved (canonical JSON of its plan file), for plan diff and reports.
    ALTER TABLE waves ADD COLUMN doc TEXT;
    ALTER TABLE waves ADD COLUMN recorded_at TEXT;
    ALTER TABLE runs ADD COLUMN actor TEXT;
    ALTER TABLE runs ADD COLUMN pid INTEGER;
    ALTER TABLE runs ADD COLUMN detail TEXT NOT NULL DEFAULT '';
    CREATE INDEX runs_by_wave ON runs(wave);
    """,
    # 3: what the store last saw of each destination folder, so that messages it does not know about (a
    # store restored from a backup, a power cut) are reconciled before anything is copied again.
    """
    ALTER TABLE folders ADD COLUMN dest_uidnext INTEGER;
    -- Keywords cut to the central host's length limit, with the name they stand for (migrate.mailbox.keywords).
    CREATE TABLE keyword_names (
        keyword TEXT PRIMARY KEY,
        name    TEXT NOT NULL
    );
    """,
    # 4: the DNS cut-over of each ministry domain.
    """
    CREATE TABLE dns_domains (
        domain        TEXT PRIMARY KEY COLLATE NOCASE,
        wave          TEXT,                -- the wave whose cut-over switches it
        state         TEXT NOT NULL DEFAULT 'unchanged',
                      -- unchanged | prepared | baselined | switched | propagated | cut-over | done | rolled-back
        old_ttl       INTEGER,             -- prepare: the highest TTL before it was lowered
        prepared_at   TEXT,
        safe_after    TEXT,                -- prepare: the earliest safe switch time (prepared_at + old_ttl)
        baseline      TEXT,                -- JSON: the RRsets as they were before the switch
        baseline_file TEXT,                -- reports/dns-baseline-<wave>-<domain>.zone
        changes       TEXT,                -- JSON: the change set applied
        switched_at   TEXT,
        propagated_at TEXT,
        forced_reason TEXT,                -- cutover --force --reason
        detail        TEXT,                -- the last thing that happened, for people
        updated_at    TEXT NOT NULL
    );
    """,
    # 5: PBX extensions, moved to the hosted VOIP platform with their users.
    """
    CREATE TABLE extensions (
        id              INTEGER PRIMARY KEY,
        source_id       TEXT NOT NULL REFERENCES sources(id),
        dial_plan       TEXT NOT NULL,
        number          TEXT NOT NULL,
        name            TEXT NOT NULL DEFAULT '',
        tech            TEXT,
        transport       TEXT,
        callerid        TEXT,
        outbound_cid    TEXT,
        voicemail_box   TEXT,
        voicemail_email TEXT,
        pin_present     INTEGER NOT NULL DEFAULT 0,   -- a voicemail PIN exists (its value is never stored)
        secret_present  INTEGER NOT NULL DEFAULT 0,   -- a SIP secret exists (its value is never stored)
        dids            TEXT NOT NULL DEFAULT '[]',   -- JSON: E.164 numbers routed to it
        device          TEXT,
        origins         TEXT NOT NULL DEFAULT '[]',   -- JSON: "file:line" where it was read
        extra           TEXT NOT NULL DEFAULT '{}',   -- JSON: columns and options kept as they were
        mailbox_id      INTEGER REFERENCES mailboxes(id) ON DELETE SET NULL,
        link            TEXT,                         -- how it was linked: voicemail-email | column | name
        wave            TEXT,
        state           TEXT NOT NULL DEFAULT 'new',  -- new | planned | provisioned | registered | cut-over | done | failed
        state_reason    TEXT,
        prior_state     TEXT,
        seen_at         TEXT NOT NULL,                -- the last inventory that read it
        updated_at      TEXT NOT NULL,
        UNIQUE (dial_plan, number)
    );
    CREATE INDEX extensions_by_source ON extensions(source_id);
    CREATE INDEX extensions_by_wave ON extensions(wave);
    CREATE INDEX extensions_by_mailbox ON extensions(mailbox_id);
    """,
    # 6: the SIP checks of the hosted platform, and where a new secret an export made is kept.
    """
    ALTER TABLE extensions ADD COLUMN secret_file TEXT;  -- the 0600 export file holding its new secret (NULL: the PBX files)
    CREATE TABLE sip_checks (
        id          INTEGER PRIMARY KEY,
        run_id      INTEGER,              -- the check run (runs.id) that made it
        wave        TEXT,
        subject     TEXT NOT NULL,        -- the SIP domain, a target ("tls:sip.example:5061"), or an extension key
        kind        TEXT NOT NULL,        -- resolve | options | tls | register
        result      TEXT NOT NULL,        -- pass | note | warn | fail | skip
        detail      TEXT NOT NULL,
        data        TEXT NOT NULL DEFAULT '{}',  -- JSON: status, round-trip time, days to expiry ...
        checked_at  TEXT NOT NULL
    );
    CREATE INDEX sip_checks_by_subject ON sip_checks(subject, kind, id);
    CREATE INDEX sip_checks_by_wave ON sip_checks(wave, id);
    """,
    # 7: Exchange calendars and contacts, copied to the central DAV server or exported to files.
    """
    CREATE TABLE groupware (
        mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        kind          TEXT NOT NULL,          -- calendar | contacts
        location      TEXT NOT NULL,          -- the DAV collection URL, or the export file's path
        source_items  INTEGER NOT NULL,       -- items the source folder held at the last pass
        last_sync_at  TEXT NOT NULL,
        PRIMARY KEY (mailbox_id, kind)
    );
    CREATE TABLE groupware_items (
        mailbox_id  INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        kind        TEXT NOT NULL,            -- calendar | contacts
        uid         TEXT NOT NULL,            -- iCalendar/vCard UID (the key: one object per UID)
        src_item    TEXT NOT NULL,            -- EWS item id
        change_key  TEXT NOT NULL,            -- EWS change key when copied: unchanged means nothing to do
        href        TEXT,                     -- the DAV object's URL (NULL when exported to a file)
        etag        TEXT,
        state       TEXT NOT NULL,            -- copied | failed
        error       TEXT,
        updated_at  TEXT NOT NULL,
        PRIMARY KEY (mailbox_id, kind, uid)
    );
    CREATE INDEX groupware_items_by_src ON groupware_items(mailbox_id, kind, src_item);
    """,
    # 8: Exchange folders that are not migrated as mail are counted by the inventory, with their kind.
    """
    ALTER TABLE inventory_folders ADD COLUMN kind TEXT NOT NULL DEFAULT 'mail';  -- mail | calendar | contacts | tasks | system | other
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
#: inventory_folders.kind values whose messages are moved (and so planned): mail, and the archive mailbox's mail.
MIGRATED_KINDS = ("mail", "archive")
#: How long a command waits for another process's write transaction before it gives up (exit 7).
BUSY_TIMEOUT_S = 30


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def actor() -> str:
    try:
        return os.environ.get("GOVMIGRATE_ACTOR") or getpass.getuser()
    except Exception:
        return f"uid{os.getuid()}"


@dataclass(frozen=True)
class Event:
    id: int
    at: str
    actor: str
    object: str
    action: str
    detail: str


@dataclass(frozen=True)
class MailboxRow:
    id: int
    source_id: str
    email: str
    login: str
    display_name: str
    flags: frozenset[str]
    state: str
    state_reason: str | None
    wave: str | None
    last_sync_at: str | None
    last_sync_result: str | None
    src_messages: int | None
    src_bytes: int | None
    copied_messages: int
    copied_bytes: int
    failed_messages: int
    #: When ``state`` is failed: the lifecycle state reached before, from which a retry resumes.
    prior_state: str | None = None


@dataclass(frozen=True)
class WaveRow:
    """A wave as the store knows it: as last generated or approved (``doc``), and who approved which hash."""

    id: str
    position: int
    plan_file: str
    plan_hash: str | None
    approved_by: str | None
    approved_at: str | None
    state: str
    doc: dict[str, Any] | None
    recorded_at: str | None


@dataclass(frozen=True)
class FolderState:
    id: int
    mailbox_id: int
    source_name: str
    dest_name: str
    source_uidvalidity: int | None
    dest_uidvalidity: int | None
    source_uidnext: int | None
    source_modseq: int | None
    source_messages: int | None
    source_bytes: int | None
    sync_state: str | None
    subscribed: bool
    note: str | None
    last_synced_at: str | None
    #: The destination folder's UIDNEXT as of the last pass: messages at or above it are news to the store.
    dest_uidnext: int | None = None


@dataclass(frozen=True)
class GroupwareRecord:
    """One calendar item or contact as last copied (or refused), keyed by its UID."""

    kind: str
    uid: str
    src_item: str
    change_key: str
    href: str | None
    etag: str | None
    state: str
    error: str | None


@dataclass(frozen=True)
class MessageRecord:
    src_uid: int | None
    src_item: str | None
    dest_uid: int | None
    fingerprint: str
    size: int
    flags: str
    state: str
    dest_uidnext_before: int | None
    error: str | None


@dataclass(frozen=True)
class DnsDomainRow:
    """A ministry domain's DNS cut-over as far as it went (see migrate.waves.cutover)."""

    domain: str
    wave: str | None
    state: str
    old_ttl: int | None
    prepared_at: str | None
    safe_after: str | None
    baseline: list[dict[str, Any]] | None
    baseline_file: str | None
    changes: list[dict[str, Any]] | None
    switched_at: str | None
    propagated_at: str | None
    forced_reason: str | None
    detail: str | None


@dataclass(frozen=True)
class ExtensionRow:
    """A PBX extension as the store knows it (never its secrets: only whether it has them)."""

    id: int
    source_id: str
    dial_plan: str
    number: str
    name: str
    tech: str | None
    transport: str | None
    callerid: str | None
    outbound_cid: str | None
    voicemail_box: str | None
    voicemail_email: str | None
    pin_present: bool
    secret_present: bool
    dids: list[str]
    device: str | None
    origins: list[str]
    extra: dict[str, str]
    mailbox_id: int | None
    link: str | None
    wave: str | None
    state: str
    state_reason: str | None
    prior_state: str | None
    seen_at: str

    @property
    def key(self) -> str:
        return f"{self.dial_plan}:{self.number}"


class Store:
    """Open with :func:`open_store`. Thread-safe: one connection, serialised by a lock."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.RLock()
        self._depth = 0

    # -- plumbing ---------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction; nested calls join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise _busy(self.path, exc) from None
            self._depth = 1
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._depth = 0

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.OperationalError as exc:
                raise _busy(self.path, exc) from None

    @property
    def schema_version(self) -> int:
        return self._query("PRAGMA user_version")[0][0]

    # -- events -----------------------------------------------------------------------------------

    def add_event(self, obj: str, action: str, detail: str = "", *, who: str | None = None) -> None:
        with self.tx() as c:
            c.execute("INSERT INTO events(at, actor, object, action, detail) VALUES (?,?,?,?,?)",
                      (now(), who or actor(), obj, action, redact(detail)))

    def events(self, *, obj: str | None = None, since: str | None = None, limit: int | None = None,
               newest_first: bool = False) -> list[Event]:
        sql = "SELECT id, at, actor, object, action, detail FROM events WHERE 1=1"
        params: list[Any] = []
        if obj:
            sql += " AND (object = ? OR object LIKE ?)"
            params += [obj, f"{obj}/%"]
        if since:
            sql += " AND at >= ?"
            params.append(since)
        sql += " ORDER BY id DESC" if newest_first or limit else " ORDER BY id"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        rows = [Event(*r) for r in self._query(sql, params)]
        if limit and not newest_first:
            rows.reverse()
        return rows

    # -- sources and mailboxes ----------------------------------------------------------------------

    def upsert_source(self, source_id: str, ministry: str, kind: str, domains: list[str]) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT INTO sources(id, ministry, kind, domains, updated_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET ministry=excluded.ministry, kind=excluded.kind, "
                "domains=excluded.domains, updated_at=excluded.updated_at",
                (source_id, ministry, kind, json.dumps(domains), now()))

    def sources(self) -> list[dict[str, Any]]:
        return [dict(id=r[0], ministry=r[1], kind=r[2], domains=json.loads(r[3]))
                for r in self._query("SELECT id, ministry, kind, domains FROM sources ORDER BY id")]

    def upsert_mailbox(self, source_id: str, email: str, login: str, display_name: str,
                       flags: Iterable[str]) -> int:
        """Record a user-list entry; returns the mailbox id. Sync and plan state are left alone."""
        flag_text = " ".join(sorted(flags))
        with self.tx() as c:
            c.execute(
                "INSERT INTO mailboxes(source_id, email, login, display_name, flags, updated_at) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(email) DO UPDATE SET source_id=excluded.source_id, "
                "login=excluded.login, display_name=excluded.display_name, flags=excluded.flags, "
                "updated_at=excluded.updated_at",
                (source_id, email, login, display_name, flag_text, now()))
            return c.execute("SELECT id FROM mailboxes WHERE email = ?", (email,)).fetchone()[0]

    _MAILBOX_COLS = ("id, source_id, email, login, display_name, flags, state, state_reason, wave, "
                     "last_sync_at, last_sync_result, src_messages, src_bytes, copied_messages, "
                     "copied_bytes, failed_messages, prior_state")

    @staticmethod
    def _mailbox(row: sqlite3.Row) -> MailboxRow:
        values = list(row)
        values[5] = frozenset(values[5].split())
        return MailboxRow(*values)

    def mailbox(self, email: str) -> MailboxRow | None:
        rows = self._query(f"SELECT {self._MAILBOX_COLS} FROM mailboxes WHERE email = ?", (email,))
        return self._mailbox(rows[0]) if rows else None

    def mailbox_by_id(self, mailbox_id: int) -> MailboxRow | None:
        rows = self._query(f"SELECT {self._MAILBOX_COLS} FROM mailboxes WHERE id = ?", (mailbox_id,))
        return self._mailbox(rows[0]) if rows else None

    def mailboxes(self, *, source_id: str | None = None, wave: str | None = None) -> list[MailboxRow]:
        sql = f"SELECT {self._MAILBOX_COLS} FROM mailboxes WHERE 1=1"
        params: list[Any] = []
        if source_id:
            sql += " AND source_id = ?"
            params.append(source_id)
        if wave:
            sql += " AND wave = ?"
            params.append(wave)
        return [self._mailbox(r) for r in self._query(sql + " ORDER BY source_id, email", params)]

    def find_mailboxes(self, text: str) -> list[MailboxRow]:
        """Helpdesk lookup: exact email or login first, else part of a display name or address."""
        exact = self._query(f"SELECT {self._MAILBOX_COLS} FROM mailboxes WHERE email = ? OR login = ? "
                            "ORDER BY email", (text, text))
        if exact:
            return [self._mailbox(r) for r in exact]
        like = f"%{text}%"
        return [self._mailbox(r) for r in self._query(
            f"SELECT {self._MAILBOX_COLS} FROM mailboxes WHERE display_name LIKE ? OR email LIKE ? "
            "ORDER BY email", (like, like))]

    def set_mailbox_state(self, mailbox_id: int, state: str, reason: str | None = None, *,
                          prior_state: str | None = None) -> None:
        """Change a mailbox's lifecycle state (an event records the change); ``prior_state`` goes with
        ``failed``: the state reached before, from which a retry resumes."""
        reason = redact(reason) if reason else reason
        with self.tx() as c:
            row = c.execute("SELECT email, state FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise StoreError(f"no mailbox with id {mailbox_id}")
            c.execute("UPDATE mailboxes SET state = ?, state_reason = ?, prior_state = ?, updated_at = ? "
                      "WHERE id = ?", (state, reason, prior_state, now(), mailbox_id))
            if row[1] != state:
                detail = f"{row[1]} -> {state}" + (f": {reason}" if reason else "")
                self.add_event(f"mailbox/{row[0]}", "state", detail)

    def set_mailbox_wave(self, mailbox_id: int, wave: str | None) -> None:
        with self.tx() as c:
            c.execute("UPDATE mailboxes SET wave = ?, updated_at = ? WHERE id = ?", (wave, now(), mailbox_id))

    def record_mailbox_sync(self, mailbox_id: int, *, result: str, src_messages: int, src_bytes: int,
                            copied_messages: int, copied_bytes: int, failed_messages: int) -> None:
        with self.tx() as c:
            c.execute(
                "UPDATE mailboxes SET last_sync_at=?, last_sync_result=?, src_messages=?, src_bytes=?, "
                "copied_messages=?, copied_bytes=?, failed_messages=?, updated_at=? WHERE id=?",
                (now(), redact(result), src_messages, src_bytes, copied_messages, copied_bytes, failed_messages,
                 now(), mailbox_id))

    # -- inventory --------------------------------------------------------------------------------

    def record_probe(self, source_id: str, ok: bool, error: str | None, detail: dict[str, Any]) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT INTO probes(source_id, ok, error, detail, probed_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(source_id) DO UPDATE SET ok=excluded.ok, error=excluded.error, "
                "detail=excluded.detail, probed_at=excluded.probed_at",
                (source_id, int(ok), redact(error) if error else None, redact(json.dumps(detail)), now()))

    def probe(self, source_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT ok, error, detail, probed_at FROM probes WHERE source_id = ?", (source_id,))
        if not rows:
            return None
        ok, error, detail, at = rows[0]
        return {"ok": bool(ok), "error": error, "detail": json.loads(detail), "probed_at": at}

    def record_inventory(self, mailbox_id: int, *, ok: bool, error: str | None = None,
                         messages: int | None = None, bytes_: int | None = None, largest: int | None = None,
                         oldest: str | None = None, newest: str | None = None,
                         quota_used: int | None = None, quota_limit: int | None = None,
                         folders: Iterable[dict[str, Any]] = ()) -> None:
        """Replace a mailbox's measurement (a re-run updates, never duplicates)."""
        folders = list(folders)
        folder_errors = sum(1 for f in folders if f.get("error"))
        with self.tx() as c:
            c.execute(
                "INSERT INTO inventory(mailbox_id, ok, error, messages, bytes, largest, oldest, newest, "
                "quota_used, quota_limit, folder_errors, measured_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(mailbox_id) DO UPDATE SET ok=excluded.ok, error=excluded.error, "
                "messages=excluded.messages, bytes=excluded.bytes, largest=excluded.largest, "
                "oldest=excluded.oldest, newest=excluded.newest, quota_used=excluded.quota_used, "
                "quota_limit=excluded.quota_limit, folder_errors=excluded.folder_errors, "
                "measured_at=excluded.measured_at",
                (mailbox_id, int(ok), redact(error) if error else None, messages, bytes_, largest, oldest,
                 newest, quota_used, quota_limit, folder_errors, now()))
            c.execute("DELETE FROM inventory_folders WHERE mailbox_id = ?", (mailbox_id,))
            c.executemany(
                "INSERT OR REPLACE INTO inventory_folders(mailbox_id, name, special_use, messages, bytes, error, kind) "
                "VALUES (?,?,?,?,?,?,?)",
                [(mailbox_id, f["name"], f.get("special_use"), f.get("messages"), f.get("bytes"),
                  redact(f["error"]) if f.get("error") else None, f.get("kind") or "mail") for f in folders])

    def inventory(self, *, source_id: str | None = None) -> list[dict[str, Any]]:
        """Every mailbox with its latest measurement (None fields where not measured)."""
        sql = ("SELECT m.id, m.source_id, m.email, m.login, m.display_name, m.flags, i.ok, i.error, "
               "i.messages, i.bytes, i.largest, i.oldest, i.newest, i.quota_used, i.quota_limit, "
               "i.folder_errors, i.measured_at FROM mailboxes m LEFT JOIN inventory i ON i.mailbox_id = m.id")
        params: list[Any] = []
        if source_id:
            sql += " WHERE m.source_id = ?"
            params.append(source_id)
        keys = ("mailbox_id", "source_id", "email", "login", "display_name", "flags", "ok", "error",
                "messages", "bytes", "largest", "oldest", "newest", "quota_used", "quota_limit",
                "folder_errors", "measured_at")
        out = []
        for row in self._query(sql + " ORDER BY m.source_id, m.email", params):
            doc = dict(zip(keys, row, strict=True))
            doc["flags"] = doc["flags"].split()
            doc["ok"] = None if doc["ok"] is None else bool(doc["ok"])
            out.append(doc)
        return out

    def inventory_folders(self, mailbox_id: int) -> list[dict[str, Any]]:
        return [dict(name=r[0], special_use=r[1], messages=r[2], bytes=r[3], error=r[4], kind=r[5])
                for r in self._query("SELECT name, special_use, messages, bytes, error, kind FROM inventory_folders "
                                     "WHERE mailbox_id = ? ORDER BY kind != 'mail', name", (mailbox_id,))]

    # -- sync state -------------------------------------------------------------------------------

    _FOLDER_COLS = ("id, mailbox_id, source_name, dest_name, source_uidvalidity, dest_uidvalidity, "
                    "source_uidnext, source_modseq, source_messages, source_bytes, sync_state, subscribed, note, "
                    "last_synced_at, dest_uidnext")

    def folders(self, mailbox_id: int) -> list[FolderState]:
        return [FolderState(*r[:11], bool(r[11]), *r[12:]) for r in self._query(
            f"SELECT {self._FOLDER_COLS} FROM folders WHERE mailbox_id = ? ORDER BY source_name", (mailbox_id,))]

    def ensure_folder(self, mailbox_id: int, source_name: str, dest_name: str, *, subscribed: bool,
                      note: str | None = None) -> FolderState:
        with self.tx() as c:
            c.execute(
                "INSERT INTO folders(mailbox_id, source_name, dest_name, subscribed, note) VALUES (?,?,?,?,?) "
                "ON CONFLICT(mailbox_id, source_name) DO UPDATE SET dest_name=excluded.dest_name, "
                "subscribed=excluded.subscribed, note=excluded.note",
                (mailbox_id, source_name, dest_name, int(subscribed), note))
            row = c.execute(f"SELECT {self._FOLDER_COLS} FROM folders WHERE mailbox_id = ? AND source_name = ?",
                            (mailbox_id, source_name)).fetchone()
        return FolderState(*row[:11], bool(row[11]), *row[12:])

    def update_folder(self, folder_id: int, **fields: Any) -> None:
        allowed = {"source_uidvalidity", "dest_uidvalidity", "source_uidnext", "source_modseq",
                   "source_messages", "source_bytes", "sync_state", "last_synced_at", "dest_name", "note",
                   "subscribed", "dest_uidnext"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown folder fields: {unknown}")
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.tx() as c:
            c.execute(f"UPDATE folders SET {sets} WHERE id = ?", (*fields.values(), folder_id))

    def forget_folder_messages(self, folder_id: int) -> None:
        """Drop a folder's message records (its UIDVALIDITY changed); reconciliation rebuilds them."""
        with self.tx() as c:
            c.execute("DELETE FROM messages WHERE folder_id = ?", (folder_id,))

    def delete_folder(self, folder_id: int) -> None:
        with self.tx() as c:
            c.execute("DELETE FROM messages WHERE folder_id = ?", (folder_id,))
            c.execute("DELETE FROM folders WHERE id = ?", (folder_id,))

    _MSG_COLS = "src_uid, src_item, dest_uid, fingerprint, size, flags, state, dest_uidnext_before, error"

    def message_records(self, folder_id: int) -> list[MessageRecord]:
        return [MessageRecord(*r) for r in self._query(
            f"SELECT {self._MSG_COLS} FROM messages WHERE folder_id = ?", (folder_id,))]

    def record_pending(self, folder_id: int, rows: Iterable[tuple[int | None, str | None, str, int, str]],
                       dest_uidnext_before: int | None) -> None:
        """Before an APPEND: (src_uid, src_item, fingerprint, size, flags) per message, state pending."""
        with self.tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO messages(folder_id, src_uid, src_item, fingerprint, size, flags, state, "
                "dest_uidnext_before) VALUES (?,?,?,?,?,?, 'pending', ?)",
                [(folder_id, uid, item, fp, size, flags, dest_uidnext_before)
                 for uid, item, fp, size, flags in rows])

    def record_copied(self, folder_id: int, rows: Iterable[tuple[int | None, str | None, int | None, str,
                                                                   int, str]]) -> None:
        """(src_uid, src_item, dest_uid, fingerprint, size, flags) per message now on the destination."""
        with self.tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO messages(folder_id, src_uid, src_item, dest_uid, fingerprint, size, "
                "flags, state) VALUES (?,?,?,?,?,?,?, 'copied')",
                [(folder_id, uid, item, dest_uid, fp, size, flags)
                 for uid, item, dest_uid, fp, size, flags in rows])

    def record_failed(self, folder_id: int, src_uid: int | None, src_item: str | None, fingerprint: str,
                      size: int, error: str) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO messages(folder_id, src_uid, src_item, fingerprint, size, state, error) "
                "VALUES (?,?,?,?,?, 'failed', ?)", (folder_id, src_uid, src_item, fingerprint, size, redact(error)))

    def record_not_migrated(self, folder_id: int, rows: Iterable[tuple[str, int, str]]) -> None:
        """(src_item, size, reason) per source item that is not migrated by policy (an Exchange contact or
        note in a mail folder): recorded once, so later passes neither copy nor count it again."""
        with self.tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO messages(folder_id, src_item, fingerprint, size, state, error) "
                "VALUES (?,?, '', ?, 'skipped', ?)", [(folder_id, item, size, redact(why)) for item, size, why in rows])

    def update_message_flags(self, folder_id: int, rows: Iterable[tuple[str, int | None, str | None]]) -> None:
        """(flags, src_uid, src_item) per message whose flags were carried over."""
        with self.tx() as c:
            c.executemany("UPDATE messages SET flags = ? WHERE folder_id = ? AND "
                          "(src_uid = ? OR src_item = ?)",
                          [(flags, folder_id, uid, item) for flags, uid, item in rows])

    def delete_message_records(self, folder_id: int, src_uids: Iterable[int] = (),
                               src_items: Iterable[str] = ()) -> None:
        with self.tx() as c:
            c.executemany("DELETE FROM messages WHERE folder_id = ? AND src_uid = ?",
                          [(folder_id, u) for u in src_uids])
            c.executemany("DELETE FROM messages WHERE folder_id = ? AND src_item = ?",
                          [(folder_id, i) for i in src_items])

    def record_keyword_names(self, names: dict[str, str]) -> None:
        """Keywords shortened to the central host's limit → the category or keyword each stands for."""
        if names:
            with self.tx() as c:
                c.executemany("INSERT OR IGNORE INTO keyword_names(keyword, name) VALUES (?,?)", names.items())

    def keyword_names(self) -> dict[str, str]:
        return dict(self._query("SELECT keyword, name FROM keyword_names ORDER BY keyword"))

    def folders_needing_attention(self, mailbox_id: int) -> set[int]:
        """Folders with interrupted (pending) or refused (failed) copies: never skipped as unchanged."""
        return {r[0] for r in self._query(
            "SELECT DISTINCT m.folder_id FROM messages m JOIN folders f ON f.id = m.folder_id "
            "WHERE f.mailbox_id = ? AND m.state IN ('pending', 'failed')", (mailbox_id,))}

    def folders_with_vanished(self, mailbox_id: int) -> set[int]:
        """Folders holding records of more copied messages than the source had at the last pass: messages
        were deleted at the source since they were copied."""
        return {r[0] for r in self._query(
            "SELECT f.id FROM folders f JOIN messages m ON m.folder_id = f.id AND m.state = 'copied' "
            "WHERE f.mailbox_id = ? GROUP BY f.id HAVING COUNT(*) > COALESCE(f.source_messages, 0)",
            (mailbox_id,))}

    def copied_totals(self, mailbox_id: int) -> tuple[int, int]:
        row = self._query("SELECT COUNT(*), COALESCE(SUM(m.size), 0) FROM messages m JOIN folders f "
                          "ON f.id = m.folder_id WHERE f.mailbox_id = ? AND m.state = 'copied'", (mailbox_id,))[0]
        return row[0], row[1]

    def failed_messages(self, mailbox_id: int, state: str = "failed") -> list[dict[str, Any]]:
        """Messages not copied, with why: ``failed`` (refused or unexportable) or ``skipped`` (not migrated by
        policy)."""
        return [dict(folder=r[0], src_uid=r[1], src_item=r[2], size=r[3], error=r[4]) for r in self._query(
            "SELECT f.source_name, m.src_uid, m.src_item, m.size, m.error FROM messages m "
            "JOIN folders f ON f.id = m.folder_id WHERE f.mailbox_id = ? AND m.state = ? "
            "ORDER BY f.source_name, m.src_uid, m.src_item", (mailbox_id, state))]

    # -- calendars and contacts ------------------------------------------------------------------------

    def groupware_records(self, mailbox_id: int, kind: str) -> dict[str, GroupwareRecord]:
        """UID → what was last copied of the mailbox's calendar items or contacts."""
        rows = self._query("SELECT kind, uid, src_item, change_key, href, etag, state, error FROM groupware_items "
                           "WHERE mailbox_id = ? AND kind = ?", (mailbox_id, kind))
        return {r[1]: GroupwareRecord(*r) for r in rows}

    def record_groupware_items(self, mailbox_id: int, rows: Iterable[GroupwareRecord]) -> None:
        """Store copied (or refused) items, replacing what was kept for the same UID."""
        stamp = now()
        rows = list(rows)
        with self.tx() as c:
            # An item refused before (kept under "ews:<item id>") and copied now is no longer a failure.
            c.executemany("DELETE FROM groupware_items WHERE mailbox_id = ? AND kind = ? AND uid = ?",
                          [(mailbox_id, r.kind, f"ews:{r.src_item}") for r in rows if r.state == "copied"])
            c.executemany(
                "INSERT INTO groupware_items(mailbox_id, kind, uid, src_item, change_key, href, etag, state, error, "
                "updated_at) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(mailbox_id, kind, uid) DO UPDATE SET "
                "src_item = excluded.src_item, change_key = excluded.change_key, href = excluded.href, "
                "etag = excluded.etag, state = excluded.state, error = excluded.error, "
                "updated_at = excluded.updated_at",
                [(mailbox_id, r.kind, r.uid, r.src_item, r.change_key, r.href, r.etag, r.state,
                  redact(r.error) if r.error else None, stamp) for r in rows])

    def record_groupware_pass(self, mailbox_id: int, kind: str, *, location: str, source_items: int) -> None:
        with self.tx() as c:
            c.execute("INSERT INTO groupware(mailbox_id, kind, location, source_items, last_sync_at) "
                      "VALUES (?,?,?,?,?) ON CONFLICT(mailbox_id, kind) DO UPDATE SET location = excluded.location, "
                      "source_items = excluded.source_items, last_sync_at = excluded.last_sync_at",
                      (mailbox_id, kind, location, source_items, now()))

    def groupware_summary(self, mailbox_id: int | None = None) -> list[dict[str, Any]]:
        """Per mailbox and kind: where its items went, how many the source held, copied and failed."""
        sql = ("SELECT g.mailbox_id, m.email, g.kind, g.location, g.source_items, g.last_sync_at, "
               "(SELECT COUNT(*) FROM groupware_items i WHERE i.mailbox_id = g.mailbox_id AND i.kind = g.kind "
               " AND i.state = 'copied'), "
               "(SELECT COUNT(*) FROM groupware_items i WHERE i.mailbox_id = g.mailbox_id AND i.kind = g.kind "
               " AND i.state = 'failed') "
               "FROM groupware g JOIN mailboxes m ON m.id = g.mailbox_id")
        params: tuple = ()
        if mailbox_id is not None:
            sql += " WHERE g.mailbox_id = ?"
            params = (mailbox_id,)
        return [{"mailbox_id": r[0], "email": r[1], "kind": r[2], "location": r[3], "source_items": r[4],
                 "last_sync_at": r[5], "copied": r[6], "failed": r[7]}
                for r in self._query(sql + " ORDER BY m.email, g.kind", params)]

    def record_throughput(self, source_id: str, messages: int, bytes_: int, seconds: float) -> None:
        with self.tx() as c:
            c.execute("INSERT INTO throughput(source_id, measured_at, messages, bytes, seconds) VALUES (?,?,?,?,?)",
                      (source_id, now(), messages, bytes_, seconds))

    def throughput(self, source_id: str | None = None) -> tuple[int, int, float]:
        """Total (messages, bytes, seconds) measured, for rate estimates."""
        sql = "SELECT COALESCE(SUM(messages),0), COALESCE(SUM(bytes),0), COALESCE(SUM(seconds),0) FROM throughput"
        rows = self._query(sql + (" WHERE source_id = ?" if source_id else ""), (source_id,) if source_id else ())
        return rows[0][0], rows[0][1], rows[0][2]

    # -- DNS cut-over -----------------------------------------------------------------------------

    _DNS_COLS = ("domain, wave, state, old_ttl, prepared_at, safe_after, baseline, baseline_file, changes, "
                 "switched_at, propagated_at, forced_reason, detail")
    _DNS_FIELDS = frozenset(_DNS_COLS.replace(" ", "").split(",")) - {"domain"}

    @staticmethod
    def _dns(row: sqlite3.Row) -> DnsDomainRow:
        values = list(row)
        for i in (6, 8):
            values[i] = json.loads(values[i]) if values[i] else None
        return DnsDomainRow(*values)

    def dns_domain(self, domain: str) -> DnsDomainRow | None:
        rows = self._query(f"SELECT {self._DNS_COLS} FROM dns_domains WHERE domain = ?", (domain,))
        return self._dns(rows[0]) if rows else None

    def dns_domains(self) -> list[DnsDomainRow]:
        return [self._dns(r) for r in self._query(f"SELECT {self._DNS_COLS} FROM dns_domains ORDER BY domain")]

    def update_dns_domain(self, domain: str, **fields: Any) -> DnsDomainRow:
        """Create or change a domain's cut-over record; lists and dicts are stored as JSON, text redacted."""
        unknown = set(fields) - self._DNS_FIELDS
        if unknown:
            raise ValueError(f"unknown dns_domains fields: {unknown}")
        values = {k: (json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else
                      redact(v) if isinstance(v, str) else v) for k, v in fields.items()}
        with self.tx() as c:
            c.execute("INSERT INTO dns_domains(domain, updated_at) VALUES (?, ?) ON CONFLICT(domain) DO NOTHING",
                      (domain.lower(), now()))
            if values:
                sets = ", ".join(f"{k} = ?" for k in values)
                c.execute(f"UPDATE dns_domains SET {sets}, updated_at = ? WHERE domain = ?",
                          (*values.values(), now(), domain.lower()))
        row = self.dns_domain(domain)
        assert row is not None
        return row

    # -- PBX extensions ---------------------------------------------------------------------------

    _EXT_COLS = ("id, source_id, dial_plan, number, name, tech, transport, callerid, outbound_cid, voicemail_box, "
                 "voicemail_email, pin_present, secret_present, dids, device, origins, extra, mailbox_id, link, "
                 "wave, state, state_reason, prior_state, seen_at")

    @staticmethod
    def _extension(row: sqlite3.Row) -> ExtensionRow:
        values = list(row)
        values[11], values[12] = bool(values[11]), bool(values[12])
        for i in (13, 15, 16):
            values[i] = json.loads(values[i])
        return ExtensionRow(*values)

    def upsert_extension(self, ext: Any, *, seen_at: str) -> int:
        """Record an extension as an inventory read it (a ``migrate.voip.model.Extension``); its link, wave and
        lifecycle state are left as they are. Returns its id."""
        with self.tx() as c:
            c.execute(
                "INSERT INTO extensions(source_id, dial_plan, number, name, tech, transport, callerid, outbound_cid, "
                "voicemail_box, voicemail_email, pin_present, secret_present, dids, device, origins, extra, seen_at, "
                "updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(dial_plan, number) DO UPDATE SET "
                "source_id=excluded.source_id, name=excluded.name, tech=excluded.tech, transport=excluded.transport, "
                "callerid=excluded.callerid, outbound_cid=excluded.outbound_cid, voicemail_box=excluded.voicemail_box, "
                "voicemail_email=excluded.voicemail_email, pin_present=excluded.pin_present, "
                "secret_present=excluded.secret_present, dids=excluded.dids, device=excluded.device, "
                "origins=excluded.origins, extra=excluded.extra, seen_at=excluded.seen_at, "
                "updated_at=excluded.updated_at",
                (ext.source_id, ext.dial_plan, ext.number, ext.name, ext.tech, ext.transport, ext.callerid,
                 ext.outbound_cid, ext.voicemail_box, ext.voicemail_email, int(ext.voicemail_pin is not None),
                 int(ext.secret is not None), json.dumps(ext.dids), ext.device, json.dumps(ext.origins),
                 json.dumps(ext.extra, sort_keys=True), seen_at, now()))
            return c.execute("SELECT id FROM extensions WHERE dial_plan = ? AND number = ?",
                             (ext.dial_plan, ext.number)).fetchone()[0]

    def extensions(self, *, source_id: str | None = None, wave: str | None = None,
                   mailbox_id: int | None = None) -> list[ExtensionRow]:
        sql = f"SELECT {self._EXT_COLS} FROM extensions WHERE 1=1"
        params: list[Any] = []
        for column, value in (("source_id", source_id), ("wave", wave), ("mailbox_id", mailbox_id)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        return [self._extension(r) for r in self._query(sql + " ORDER BY dial_plan, number", params)]

    def extension(self, key: str) -> ExtensionRow | None:
        dial_plan, _, number = key.partition(":")
        rows = self._query(f"SELECT {self._EXT_COLS} FROM extensions WHERE dial_plan = ? AND number = ?",
                           (dial_plan, number))
        return self._extension(rows[0]) if rows else None

    def link_extension(self, extension_id: int, mailbox_id: int | None, link: str | None) -> None:
        with self.tx() as c:
            c.execute("UPDATE extensions SET mailbox_id = ?, link = ?, updated_at = ? WHERE id = ?",
                      (mailbox_id, link, now(), extension_id))

    def set_extension_wave(self, extension_id: int, wave: str | None) -> None:
        with self.tx() as c:
            c.execute("UPDATE extensions SET wave = ?, updated_at = ? WHERE id = ?", (wave, now(), extension_id))

    def set_extension_state(self, extension_id: int, state: str, reason: str | None = None, *,
                            prior_state: str | None = None) -> None:
        """Change an extension's lifecycle state; an event ``extension/<dial plan>:<number>`` records it."""
        reason = redact(reason) if reason else reason
        with self.tx() as c:
            row = c.execute("SELECT dial_plan, number, state FROM extensions WHERE id = ?", (extension_id,)).fetchone()
            if row is None:
                raise StoreError(f"no extension with id {extension_id}")
            c.execute("UPDATE extensions SET state = ?, state_reason = ?, prior_state = ?, updated_at = ? "
                      "WHERE id = ?", (state, reason, prior_state, now(), extension_id))
            if row[2] != state:
                self.add_event(f"extension/{row[0]}:{row[1]}", "state",
                               f"{row[2]} -> {state}" + (f": {reason}" if reason else ""))

    def set_extension_secret_file(self, extension_id: int, path: str | None) -> None:
        """Where the extension's current SIP secret is when an export made it a new one (None: the PBX files)."""
        with self.tx() as c:
            c.execute("UPDATE extensions SET secret_file = ?, updated_at = ? WHERE id = ?", (path, now(), extension_id))

    def extension_secret_file(self, extension_id: int) -> str | None:
        rows = self._query("SELECT secret_file FROM extensions WHERE id = ?", (extension_id,))
        return rows[0][0] if rows else None

    # -- SIP checks -------------------------------------------------------------------------------

    def record_sip_check(self, *, run_id: int | None, wave: str | None, subject: str, kind: str, result: str,
                         detail: str, data: dict[str, Any] | None = None, event_obj: str | None = None) -> None:
        """Store one check's result, and the event that says it (on ``event_obj``, default ``sip/<subject>``)."""
        detail = redact(detail)
        with self.tx() as c:
            c.execute("INSERT INTO sip_checks(run_id, wave, subject, kind, result, detail, data, checked_at) "
                      "VALUES (?,?,?,?,?,?,?,?)",
                      (run_id, wave, subject, kind, result, detail, json.dumps(data or {}, sort_keys=True), now()))
            self.add_event(event_obj or f"sip/{subject}", f"sip-{kind}", f"{result}: {detail}")

    def sip_checks(self, *, wave: str | None = None, subject: str | None = None,
                   latest: bool = True) -> list[dict[str, Any]]:
        """Stored check results, oldest first; ``latest``: only the newest per subject and kind."""
        sql = "SELECT id, run_id, wave, subject, kind, result, detail, data, checked_at FROM sip_checks WHERE 1=1"
        params: list[Any] = []
        for column, value in (("wave", wave), ("subject", subject)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        if latest:
            sql += " AND id IN (SELECT MAX(id) FROM sip_checks GROUP BY subject, kind)"
        rows = self._query(sql + " ORDER BY id", params)
        return [{"id": r[0], "run_id": r[1], "wave": r[2], "subject": r[3], "kind": r[4], "result": r[5],
                 "detail": r[6], "data": json.loads(r[7]), "checked_at": r[8]} for r in rows]

    def forget_extensions(self, source_id: str, *, unseen_since: str) -> list[str]:
        """Drop the source's extensions that the last inventory no longer read and that nothing has happened
        to yet (state new); returns their keys. Extensions already planned or further stay (and are reported)."""
        with self.tx() as c:
            rows = c.execute("SELECT id, dial_plan, number FROM extensions WHERE source_id = ? AND seen_at < ? "
                             "AND state = 'new'", (source_id, unseen_since)).fetchall()
            c.executemany("DELETE FROM extensions WHERE id = ?", [(r[0],) for r in rows])
        return [f"{r[1]}:{r[2]}" for r in rows]

    # -- waves and runs ---------------------------------------------------------------------------

    _WAVE_COLS = "id, position, plan_file, plan_hash, approved_by, approved_at, state, doc, recorded_at"

    @staticmethod
    def _wave(row: sqlite3.Row) -> WaveRow:
        values = list(row)
        values[7] = json.loads(values[7]) if values[7] else None
        return WaveRow(*values)

    def waves(self) -> list[WaveRow]:
        return [self._wave(r) for r in self._query(f"SELECT {self._WAVE_COLS} FROM waves ORDER BY position, id")]

    def wave(self, wave_id: str) -> WaveRow | None:
        rows = self._query(f"SELECT {self._WAVE_COLS} FROM waves WHERE id = ?", (wave_id,))
        return self._wave(rows[0]) if rows else None

    def record_wave(self, wave_id: str, *, position: int, plan_file: str, doc: dict[str, Any]) -> None:
        """Record a generated wave (its canonical plan document); any earlier approval of it is void."""
        with self.tx() as c:
            c.execute(
                "INSERT INTO waves(id, position, plan_file, doc, recorded_at, state, updated_at) "
                "VALUES (?,?,?,?,?, 'planned', ?) ON CONFLICT(id) DO UPDATE SET position=excluded.position, "
                "plan_file=excluded.plan_file, doc=excluded.doc, recorded_at=excluded.recorded_at, "
                "plan_hash=NULL, approved_by=NULL, approved_at=NULL, state='planned', updated_at=excluded.updated_at",
                (wave_id, position, plan_file, json.dumps(doc, sort_keys=True, ensure_ascii=False), now(), now()))

    def approve_wave(self, wave_id: str, *, position: int, plan_file: str, plan_hash: str, doc: dict[str, Any],
                     who: str | None = None) -> None:
        """Record that ``who`` approved the wave whose plan has ``plan_hash``, with the event saying so."""
        who = who or actor()
        with self.tx() as c:
            c.execute(
                "INSERT INTO waves(id, position, plan_file, plan_hash, approved_by, approved_at, doc, recorded_at, "
                "state, updated_at) VALUES (?,?,?,?,?,?,?,?, 'approved', ?) ON CONFLICT(id) DO UPDATE SET "
                "position=excluded.position, plan_file=excluded.plan_file, plan_hash=excluded.plan_hash, "
                "approved_by=excluded.approved_by, approved_at=excluded.approved_at, doc=excluded.doc, "
                "recorded_at=excluded.recorded_at, state='approved', updated_at=excluded.updated_at",
                (wave_id, position, plan_file, plan_hash, who, now(),
                 json.dumps(doc, sort_keys=True, ensure_ascii=False), now(), now()))
            self.add_event(f"wave/{wave_id}", "approve", f"plan {plan_file} sha256 {plan_hash[:16]}", who=who)

    def set_wave_positions(self, order: list[str]) -> None:
        with self.tx() as c:
            c.executemany("UPDATE waves SET position = ? WHERE id = ?",
                          [(i, wave_id) for i, wave_id in enumerate(order)])

    def delete_wave(self, wave_id: str) -> None:
        """Forget a wave that is no longer planned; its mailboxes belong to no wave afterwards."""
        with self.tx() as c:
            c.execute("UPDATE mailboxes SET wave = NULL, updated_at = ? WHERE wave = ?", (now(), wave_id))
            c.execute("DELETE FROM waves WHERE id = ?", (wave_id,))

    def start_run(self, wave_id: str, pass_name: str) -> int:
        with self.tx() as c:
            cur = c.execute("INSERT INTO runs(wave, pass, started_at, actor, pid) VALUES (?,?,?,?,?)",
                            (wave_id, pass_name, now(), actor(), os.getpid()))
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, *, result: str, mailboxes: int, messages: int, bytes_: int, seconds: float,
                   detail: str = "") -> None:
        with self.tx() as c:
            c.execute("UPDATE runs SET finished_at=?, result=?, mailboxes=?, messages=?, bytes=?, seconds=?, "
                      "detail=? WHERE id=?",
                      (now(), result, mailboxes, messages, bytes_, seconds, redact(detail), run_id))

    def abandon_runs(self, wave_id: str) -> list[int]:
        """Mark the wave's runs that never finished (their process was killed) as such; returns their ids.
        Call only while holding the wave's lock, so that no live run is among them."""
        with self.tx() as c:
            ids = [r[0] for r in c.execute("SELECT id FROM runs WHERE wave = ? AND finished_at IS NULL",
                                           (wave_id,)).fetchall()]
            c.executemany("UPDATE runs SET finished_at = ?, result = 'killed', "
                          "detail = 'the process ended without finishing (killed or crashed)' WHERE id = ?",
                          [(now(), i) for i in ids])
        return ids

    def runs(self, wave_id: str | None = None) -> list[dict[str, Any]]:
        keys = ("id", "wave", "pass", "started_at", "finished_at", "result", "mailboxes", "messages", "bytes",
                "seconds", "actor", "pid", "detail")
        sql = f"SELECT {', '.join(keys)} FROM runs"
        params: tuple = ()
        if wave_id:
            sql += " WHERE wave = ?"
            params = (wave_id,)
        return [dict(zip(keys, r, strict=True)) for r in self._query(sql + " ORDER BY id", params)]


def _busy(path: Path, exc: sqlite3.OperationalError) -> Exception:
    """SQLite's "database is locked" after the busy timeout: another process has held the store for that long."""
    if "locked" in str(exc) or "busy" in str(exc):
        from migrate.core.errors import LockHeld

        return LockHeld(f"the state store {path.name} has been locked by another govmigrate process for "
                        f"{BUSY_TIMEOUT_S} s; nothing was changed here",
                        hint="wait for it to finish (govmigrate log shows what runs), then run this again")
    return StoreError(f"cannot use state store {path}: {exc}")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path} has schema version {version}, newer than this govmigrate understands "
                         f"({SCHEMA_VERSION}); upgrade govmigrate")
    for number in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split_sql(MIGRATIONS[number - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit behind our back)."""
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements


def open_store(path: Path, *, create: bool = False) -> Store:
    """Open (or with ``create``, create) the state store and bring its schema up to date."""
    if not path.exists():
        if not create:
            raise StoreError(f"no state store at {path}; is this a govmigrate workspace? (govmigrate init DIR)")
        # Create the file 0600 before SQLite touches it, so it is never readable by others.
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a transaction that returned is on disk, so a power cut never takes back a record of a copy.
        # (Reconciliation by fingerprint would repair it anyway, as it repairs a store restored from backup;
        # FULL only saves that work.) Measured by make bench: see docs/architecture.md.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        _migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot use state store {path}: {exc}")
    for suffix in ("-wal", "-shm"):
        side = Path(str(path) + suffix)
        if side.exists():
            try:
                os.chmod(side, 0o600)
            except OSError:
                pass
    return Store(path, conn)
