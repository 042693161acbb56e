"""The schema: numbered migrations, the same on SQLite and PostgreSQL.

Each migration's shared SQL is written once, in the subset both engines read, and translated for PostgreSQL
by :func:`postgresql_ddl` (64-bit integers, identity keys, ``citext`` where SQLite says ``COLLATE NOCASE``);
the few statements the two engines spell differently (the event log's append-only triggers) are given per
engine. A store records how many migrations it has; opening it applies the rest, each in one transaction.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    shared: str
    sqlite: tuple[str, ...] = ()
    postgresql: tuple[str, ...] = ()

    def statements(self, engine: str) -> list[str]:
        shared = split_sql(self.shared)
        if engine == "postgresql":
            return [postgresql_ddl(s) for s in shared] + list(self.postgresql)
        return shared + list(self.sqlite)


MIGRATIONS: list[Migration] = [
    # 1: the foundation schema.
    Migration("""
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
    """, sqlite=(
        "CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events "
        "BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END",
        "CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events "
        "BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END",
    ), postgresql=(
        "CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'the event log is append-only'; END $$",
        "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events "
        "FOR EACH ROW EXECUTE FUNCTION events_append_only()",
    )),
    # 2: wave plans and wave runs.
    Migration("""
    -- When a mailbox is failed: the lifecycle state it had reached, from which a retry resumes.
    ALTER TABLE mailboxes ADD COLUMN prior_state TEXT;
    -- The wave as last generated or approved (canonical JSON of its plan file), for plan diff and reports.
    ALTER TABLE waves ADD COLUMN doc TEXT;
    ALTER TABLE waves ADD COLUMN recorded_at TEXT;
    ALTER TABLE runs ADD COLUMN actor TEXT;
    ALTER TABLE runs ADD COLUMN pid INTEGER;
    ALTER TABLE runs ADD COLUMN detail TEXT NOT NULL DEFAULT '';
    CREATE INDEX runs_by_wave ON runs(wave);
    """),
    # 3: what the store last saw of each destination folder, so that messages it does not know about (a
    # store restored from a backup, a power cut) are reconciled before anything is copied again.
    Migration("""
    ALTER TABLE folders ADD COLUMN dest_uidnext INTEGER;
    -- Keywords cut to the central host's length limit, with the name they stand for (migrate.mailbox.keywords).
    CREATE TABLE keyword_names (
        keyword TEXT PRIMARY KEY,
        name    TEXT NOT NULL
    );
    """),
    # 4: the DNS cut-over of each ministry domain.
    Migration("""
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
    """),
    # 5: PBX extensions, moved to the hosted VOIP platform with their users.
    Migration("""
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
    """),
    # 6: the SIP checks of the hosted platform, and where a new secret an export made is kept.
    Migration("""
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
    """),
    # 7: Exchange calendars and contacts, copied to the central DAV server or exported to files.
    Migration("""
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
    """),
    # 8: Exchange folders that are not migrated as mail are counted by the inventory, with their kind.
    Migration("""
    ALTER TABLE inventory_folders ADD COLUMN kind TEXT NOT NULL DEFAULT 'mail';  -- mail | calendar | contacts | tasks | system | other
    """),
    # 9: several migration hosts: leases (the wave lock, connection slots across hosts), the work queue of a
    # pass that workers claim, and which host copied a mailbox.
    Migration("""
    CREATE TABLE leases (
        name        TEXT PRIMARY KEY,          -- wave/<id> | slot/<source id or central>/<n>
        holder      TEXT NOT NULL,             -- host:pid of the process that holds it
        purpose     TEXT NOT NULL DEFAULT '',  -- what it is held for, for a refused second run
        since       TEXT NOT NULL,
        expires     REAL NOT NULL              -- the database's clock (epoch seconds) when it lapses unless renewed
    );
    CREATE TABLE work (
        id          INTEGER PRIMARY KEY,
        run_id      INTEGER NOT NULL,          -- the run (runs.id) that queued it
        wave        TEXT NOT NULL,
        pass        TEXT NOT NULL,
        mailbox_id  INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        source_id   TEXT NOT NULL,
        state       TEXT NOT NULL DEFAULT 'queued',  -- queued | claimed | done | failed | stopped
        worker      TEXT,                      -- host:pid that holds (or last held) it
        expires     REAL,                      -- a claim lapses then unless its worker renews it
        attempts    INTEGER NOT NULL DEFAULT 0,
        messages    INTEGER NOT NULL DEFAULT 0, -- copied so far by the claim's worker (live progress)
        bytes       INTEGER NOT NULL DEFAULT 0,
        outcome     TEXT,                      -- JSON: what the pass did to the mailbox
        queued_at   TEXT NOT NULL,
        claimed_at  TEXT,
        finished_at TEXT
    );
    CREATE INDEX work_by_run ON work(run_id, state);
    CREATE INDEX work_by_state ON work(state, id);
    ALTER TABLE mailboxes ADD COLUMN last_sync_host TEXT;
    ALTER TABLE runs ADD COLUMN host TEXT;
    """),
    # 10: fencing. Every sync of a mailbox takes a new token (mailboxes.fence); a write whose token is no longer
    # the mailbox's is refused, so a host that lost the mailbox (paused past its lease, cut from the database)
    # cannot overwrite its successor's records. What such a host appended and could not record is an orphan
    # until the mailbox's next holder, or the host itself once it holds the mailbox again, settles it.
    Migration("""
    ALTER TABLE mailboxes ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE orphans (
        id          INTEGER PRIMARY KEY,
        mailbox_id  INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        folder_id   INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
        dest_uid    INTEGER NOT NULL,          -- where the copy landed on the central host
        src_uid     INTEGER,                   -- the source message it copies (IMAP UID or EWS item id)
        src_item    TEXT,
        fingerprint TEXT NOT NULL,
        size        INTEGER NOT NULL,
        flags       TEXT NOT NULL DEFAULT '',
        holder      TEXT NOT NULL,             -- host:pid that appended it
        recorded_at TEXT NOT NULL
    );
    CREATE INDEX orphans_by_mailbox ON orphans(mailbox_id);
    """),
    # 11: what a change board reads: every approval of a wave (what it covered, when and why it lapsed), the
    # approval each run ran under, and each mailbox's last verification. Approvals given before this migration
    # come from the event log (their hash as the event recorded it, its first 16 characters; what they covered
    # is known only for the one still on record); their runs are matched to the last approval before them.
    Migration("""
    CREATE TABLE approvals (
        id           INTEGER PRIMARY KEY,
        wave         TEXT NOT NULL,
        plan_hash    TEXT NOT NULL,
        plan_file    TEXT NOT NULL DEFAULT '',
        approved_by  TEXT NOT NULL,
        approved_at  TEXT NOT NULL,
        doc          TEXT,                     -- the wave as approved (canonical JSON of its plan file)
        lapsed_at    TEXT,                     -- when it stopped covering the wave (NULL: in force, or replaced)
        lapse_reason TEXT,
        changes      TEXT                      -- what changed since the approval before it
    );
    CREATE INDEX approvals_by_wave ON approvals(wave, id);
    ALTER TABLE runs ADD COLUMN approval_id INTEGER;
    CREATE TABLE verifications (
        mailbox_id      INTEGER PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
        verified_at     TEXT NOT NULL,
        deep            INTEGER NOT NULL DEFAULT 0,
        matches         INTEGER NOT NULL,
        source_messages INTEGER NOT NULL DEFAULT 0,
        dest_messages   INTEGER NOT NULL DEFAULT 0,
        missing         INTEGER NOT NULL DEFAULT 0,
        duplicates      INTEGER NOT NULL DEFAULT 0,
        flag_mismatches INTEGER NOT NULL DEFAULT 0,
        date_mismatches INTEGER NOT NULL DEFAULT 0,
        content_mismatches INTEGER NOT NULL DEFAULT 0,
        folder_problems INTEGER NOT NULL DEFAULT 0,
        error           TEXT
    );
    INSERT INTO approvals(wave, plan_hash, approved_by, approved_at)
        SELECT substr(object, 6), substr(detail, length(detail) - 15), actor, at FROM events
        WHERE action = 'approve' AND object LIKE 'wave/%' ORDER BY id;
    UPDATE approvals SET
        plan_hash = (SELECT w.plan_hash FROM waves w WHERE w.id = approvals.wave),
        plan_file = (SELECT w.plan_file FROM waves w WHERE w.id = approvals.wave),
        doc = (SELECT w.doc FROM waves w WHERE w.id = approvals.wave)
        WHERE id IN (SELECT MAX(id) FROM approvals GROUP BY wave)
        AND EXISTS (SELECT 1 FROM waves w WHERE w.id = approvals.wave AND w.plan_hash IS NOT NULL
                    AND substr(w.plan_hash, 1, 16) = approvals.plan_hash);
    UPDATE approvals SET
        lapsed_at = (SELECT w.recorded_at FROM waves w WHERE w.id = approvals.wave),
        lapse_reason = 'the plan was generated again (before govmigrate recorded what changed)'
        WHERE id IN (SELECT MAX(id) FROM approvals GROUP BY wave)
        AND EXISTS (SELECT 1 FROM waves w WHERE w.id = approvals.wave AND w.plan_hash IS NULL
                    AND w.recorded_at >= approvals.approved_at);
    UPDATE runs SET approval_id = (SELECT MAX(a.id) FROM approvals a
                                   WHERE a.wave = runs.wave AND a.approved_at <= runs.started_at);
    """),
    # 12: phones: the PBX file errors that hold an extension, and the SIP passwords and voicemail PINs govmigrate
    # makes, kept sealed (one set per phone, reused by every export and by the SIP checks). extensions.secret_file
    # (migration 6) is read only for exports made before: the next export keeps what it names.
    Migration("""
    ALTER TABLE extensions ADD COLUMN held TEXT NOT NULL DEFAULT '[]';  -- JSON: "file:line: field: message" of each error that holds it
    CREATE TABLE phone_secrets (
        extension   TEXT NOT NULL,        -- "<dial plan>:<number>"
        state       TEXT NOT NULL,        -- pending (made by an export not yet written) | current (in the last export's files)
        generation  INTEGER NOT NULL,     -- 1 for the first set made; each --rotate-secrets makes the next
        sip_secret  TEXT,                 -- the SIP password, sealed (AES-256-GCM, the key phones.secrets_key names)
        pin         TEXT,                 -- a voicemail PIN made for a box without one, sealed likewise
        key_id      TEXT NOT NULL,        -- which key sealed them (a fingerprint, never the key)
        made_at     TEXT NOT NULL,
        PRIMARY KEY (extension, state)
    );
    """),
    # 13: a DNS cut-over that never strands a domain, and a rollback that loses no mail: the TTLs prepare lowered
    # (for dns settle), what a rollback could not restore, and the copy back of mail that reached the central host
    # after the switch (marks taken at the switch, the reverse copy's folders and messages).
    Migration("""
    ALTER TABLE dns_domains ADD COLUMN ttls TEXT;          -- JSON: "name TYPE" -> the TTL before prepare lowered it
    ALTER TABLE dns_domains ADD COLUMN restored_at TEXT;   -- rollback: when the baseline was back on every server
    ALTER TABLE dns_domains ADD COLUMN settled_at TEXT;    -- dns settle: when the TTLs were raised again
    ALTER TABLE dns_domains ADD COLUMN unrestored TEXT;    -- JSON: what the rollback could not put back, and why
    CREATE TABLE copy_back_marks (
        mailbox_id  INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        dest_name   TEXT NOT NULL,             -- a central folder the forward copy writes to
        uidvalidity INTEGER,                   -- its UIDVALIDITY when the switch was made
        uidnext     INTEGER NOT NULL,          -- its UIDNEXT then: mail at or above it arrived after the switch
        marked_at   TEXT NOT NULL,
        PRIMARY KEY (mailbox_id, dest_name)
    );
    CREATE TABLE reverse_folders (
        id                  INTEGER PRIMARY KEY,
        mailbox_id          INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        central_name        TEXT NOT NULL,     -- the central folder read
        ministry_name       TEXT NOT NULL,     -- the ministry folder written
        folder_id           INTEGER,           -- the forward folder (folders.id) of the same pair
        central_uidvalidity INTEGER,
        dest_uidvalidity    INTEGER,           -- the ministry folder's
        dest_uidnext        INTEGER,           -- the ministry folder's UIDNEXT as of the last copy back
        last_copied_at      TEXT,
        UNIQUE (mailbox_id, central_name)
    );
    CREATE TABLE reverse_messages (
        folder_id   INTEGER NOT NULL REFERENCES reverse_folders(id) ON DELETE CASCADE,
        src_uid     INTEGER NOT NULL,          -- the central UID
        dest_uid    INTEGER,                   -- the ministry UID
        fingerprint TEXT NOT NULL,
        size        INTEGER NOT NULL,
        flags       TEXT NOT NULL DEFAULT '',
        state       TEXT NOT NULL,             -- pending | copied | failed
        dest_uidnext_before INTEGER,           -- for pending rows: where the APPEND would land
        error       TEXT,
        PRIMARY KEY (folder_id, src_uid)
    );
    """),
    # 14: what users lose in other migrations: mail rules, out-of-office replies, shared folders (their access
    # lists) and delegates. The inventory counts them (phase inventory: to-move | cannot-move); a sync records
    # what it did with each (phase sync: moved | held | not-moved | failed), with a digest of what it wrote to
    # the central host, so a later pass writes only what changed and never overwrites what others changed there.
    Migration("""
    CREATE TABLE mailbox_settings (
        mailbox_id  INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        phase       TEXT NOT NULL,             -- inventory | sync
        kind        TEXT NOT NULL,             -- rule | vacation | sharing | delegate
        name        TEXT NOT NULL,             -- the rule's name, "out of office", "folder → user", the delegate
        state       TEXT NOT NULL,
        reason      TEXT NOT NULL DEFAULT '',  -- for people: what it became, or why not
        target      TEXT,                      -- sync: where it went (script, folder and identifier)
        digest      TEXT,                      -- sync: what was written there (sha256), to see changes
        updated_at  TEXT NOT NULL,
        PRIMARY KEY (mailbox_id, phase, kind, name)
    );
    """),
    # 15: what users do between passes. A folder keeps the source's own id for it where the source has one
    # (EWS FolderId: the same folder after a rename). A record whose source message left its folder keeps its
    # copy's place until a pass moves it (the message arrived in another folder) or removes it (a pass that
    # carries deletions): vanished_at. A copy moved on the central host is recorded pending in its new folder
    # with the record it came from (moved_from_*), so a kill mid-move resumes exactly. A message not copied
    # that someone accepted leaving behind (a final pass forced with a reason) keeps that reason: accepted.
    Migration("""
    ALTER TABLE folders ADD COLUMN source_key TEXT;
    ALTER TABLE messages ADD COLUMN vanished_at TEXT;
    ALTER TABLE messages ADD COLUMN moved_from_folder INTEGER;
    ALTER TABLE messages ADD COLUMN moved_from_key TEXT;
    ALTER TABLE messages ADD COLUMN accepted TEXT;
    CREATE INDEX messages_vanished ON messages(folder_id) WHERE vanished_at IS NOT NULL;
    """),
    # 16: when a sync last read a mailbox's rules, out-of-office and sharing in full (every kind read, nothing
    # failed): a pass other than the final reads them again only after sync.settings_interval_hours. And the
    # central host's STORAGE quota as the mailbox's last sync that logged in there left it (limit NULL: none):
    # a later pass's pre-flight checks it without logging in again.
    Migration("""
    ALTER TABLE mailboxes ADD COLUMN settings_read_at TEXT;
    ALTER TABLE mailboxes ADD COLUMN central_quota_used INTEGER;
    ALTER TABLE mailboxes ADD COLUMN central_quota_limit INTEGER;
    ALTER TABLE mailboxes ADD COLUMN central_quota_at TEXT;
    """),
]


SCHEMA_VERSION = len(MIGRATIONS)
#: inventory_folders.kind values whose messages are moved (and so planned): mail, and the archive mailbox's mail.
MIGRATED_KINDS = ("mail", "archive")


def split_sql(script: str) -> list[str]:
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


_PG_TYPES = [
    (re.compile(r"\bINTEGER PRIMARY KEY\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bTEXT\b([^,\n]*?)\s*COLLATE NOCASE"), r"CITEXT\1"),
]


def postgresql_ddl(statement: str) -> str:
    """A shared statement as PostgreSQL needs it: sizes and counters in 64 bits (a mailbox passes 2 GiB),
    identity columns for SQLite's rowid keys, ``citext`` for addresses and domains compared without case."""
    for pattern, replacement in _PG_TYPES:
        statement = pattern.sub(replacement, statement)
    return statement
