"""The state store: schema migrations, WAL mode, private file, and refusal of a newer schema."""

from __future__ import annotations

import sqlite3

import pytest

from migrate.core.errors import StoreError
from migrate.core.store import SCHEMA_VERSION, open_store


def test_new_store_is_at_the_current_schema_in_wal_mode(tmp_path):
    store = open_store(tmp_path / "state.db", create=True)
    try:
        assert store.schema_version == SCHEMA_VERSION
        assert store._query("PRAGMA journal_mode")[0][0] == "wal"
    finally:
        store.close()


def test_missing_store_is_a_workspace_error(tmp_path):
    with pytest.raises(StoreError, match="no state store"):
        open_store(tmp_path / "state.db")


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "state.db"
    open_store(path, create=True).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this govmigrate"):
        open_store(path)


def test_mailbox_upsert_updates_and_never_duplicates(tmp_path):
    store = open_store(tmp_path / "state.db", create=True)
    try:
        store.upsert_source("health", "Ministry of Health", "imap", ["health.gov.bz"])
        first = store.upsert_mailbox("health", "a@health.gov.bz", "a", "A", ["pilot"])
        second = store.upsert_mailbox("health", "A@health.gov.bz", "a2", "A2", [])
        assert first == second
        rows = store.mailboxes()
        assert len(rows) == 1 and rows[0].login == "a2"
    finally:
        store.close()


def test_mailbox_state_changes_are_events(tmp_path):
    store = open_store(tmp_path / "state.db", create=True)
    try:
        store.upsert_source("health", "Ministry of Health", "imap", ["health.gov.bz"])
        mid = store.upsert_mailbox("health", "a@health.gov.bz", "a", "A", [])
        store.set_mailbox_state(mid, "prestaging")
        store.set_mailbox_state(mid, "failed", "login refused")
        events = store.events(obj="mailbox/a@health.gov.bz")
        assert [e.detail for e in events] == ["new -> prestaging", "prestaging -> failed: login refused"]
    finally:
        store.close()


def sqlite_at_schema(path, version: int) -> sqlite3.Connection:
    """A SQLite store as govmigrate wrote it at schema ``version`` (mode 0600), open for writing old rows."""
    from migrate.core.store import MIGRATIONS

    conn = sqlite3.connect(path, isolation_level=None)
    for number, migration in enumerate(MIGRATIONS[:version], 1):
        for statement in migration.statements("sqlite"):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
    path.chmod(0o600)
    return conn


def test_a_schema_6_store_is_upgraded_in_place_with_its_mailboxes_kept(tmp_path):
    """Migration 7 (calendars and contacts) adds its tables to a store written before it, keeping the rows."""
    from migrate.core.store import GroupwareRecord

    path = tmp_path / "state.db"
    sqlite_at_schema(path, 6).close()
    store = open_store(path)
    try:
        assert store.schema_version == SCHEMA_VERSION >= 7
        store.upsert_source("finance", "Ministry of Finance", "ews", ["finance.gov.bz"])
        mailbox_id = store.upsert_mailbox("finance", "a@finance.gov.bz", "a@finance.gov.bz", "A", frozenset())
        record = GroupwareRecord("calendar", "uid-1", "item-1", "ck-1", "https://dav/x.ics", '"e"', "copied", None)
        store.record_groupware_items(mailbox_id, [record])
        changed = GroupwareRecord("calendar", "uid-1", "item-1", "ck-2", "https://dav/x.ics", '"f"', "copied", None)
        store.record_groupware_items(mailbox_id, [changed])           # the same UID changed: replaced, not added
        assert store.groupware_records(mailbox_id, "calendar") == {"uid-1": changed}
        store.record_groupware_pass(mailbox_id, "calendar", location="https://dav/", source_items=1)
        (summary,) = store.groupware_summary(mailbox_id)
        assert (summary.copied, summary.failed, summary.source_items) == (1, 0, 1)
    finally:
        store.close()
