"""The store's behaviour on both engines: SQLite (a workspace's state.db) and PostgreSQL (the lab's real server).

Every test here runs twice, once per engine, through the same Store API; what differs between the engines
(placeholders, upserts, case-insensitive addresses, 64-bit sizes, the clock, row locks) must not show.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from migrate.core.errors import LockHeld, StoreError
from migrate.core.leases import Heartbeat, Slots, StoreLock
from migrate.core.store import (
    SCHEMA_VERSION,
    GroupwareRecord,
    InventoryFolderRow,
    RunRow,
    open_postgres,
    open_store,
)
from tests.test_store import sqlite_at_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    """A function that opens a new connection to one empty store of the engine (call it again for a second
    process's view of the same store)."""
    if request.param == "sqlite":
        path = tmp_path / "state.db"
        open_store(path, create=True).close()
        opened = []

        def connect():
            opened.append(open_store(path))
            return opened[-1]
    else:
        server = request.getfixturevalue("postgres_server")
        url = request.getfixturevalue("postgres_url")
        opened = []

        def connect():
            opened.append(open_postgres(url, password=server.password))
            return opened[-1]
    yield connect
    for store in opened:
        store.close()


@pytest.fixture
def store(engine):
    return engine()


def _mailbox(store, email="a@health.gov.bz"):
    store.upsert_source("health", "Ministry of Health", "imap", ["health.gov.bz"])
    return store.upsert_mailbox("health", email, "a", "Ana Núñez", ["pilot"])


def test_the_schema_is_current_and_migrating_again_changes_nothing(engine):
    first = engine()
    assert first.schema_version == SCHEMA_VERSION
    _mailbox(first)
    again = engine()    # a second process opening it: nothing to migrate, nothing lost
    assert again.schema_version == SCHEMA_VERSION and len(again.mailboxes()) == 1


def test_addresses_are_one_mailbox_whatever_their_case_and_lookups_ignore_case(store):
    first = _mailbox(store)
    second = store.upsert_mailbox("health", "A@Health.gov.bz", "a2", "Ana Núñez", [])
    assert first == second and len(store.mailboxes()) == 1
    assert store.mailbox("A@HEALTH.GOV.BZ").login == "a2"
    assert [m.email for m in store.find_mailboxes("ana")] == ["a@health.gov.bz"]   # part of the display name
    assert store.find_mailboxes("nobody") == []


def test_the_event_log_is_append_only_and_state_changes_are_events(store):
    mid = _mailbox(store)
    store.set_mailbox_state(mid, "prestaging")
    store.set_mailbox_state(mid, "failed", "login refused")
    events = store.events(obj="mailbox/a@health.gov.bz")
    assert [e.detail for e in events][-2:] == ["new -> prestaging", "prestaging -> failed: login refused"]
    with pytest.raises(Exception, match="append-only"), store.tx() as c:
        c.execute("UPDATE events SET detail = 'rewritten'")
    with pytest.raises(Exception, match="append-only"), store.tx() as c:
        c.execute("DELETE FROM events")
    assert len(store.events()) == len(events)


def test_sizes_past_2_gib_and_inventory_folders_are_kept(store):
    mid = _mailbox(store)
    huge = 7 * 1024 ** 3
    store.record_inventory(mid, ok=True, messages=120_000, bytes_=huge, largest=3 * 1024 ** 3,
                           folders=[{"name": "INBOX", "messages": 10, "bytes": huge},
                                    {"name": "Calendar", "messages": 3, "bytes": 10, "kind": "calendar"}])
    store.record_inventory(mid, ok=True, messages=120_001, bytes_=huge + 1,
                           folders=[{"name": "INBOX", "messages": 11, "bytes": huge + 1}])
    (row,) = store.inventory()
    assert (row.messages, row.bytes, row.ok) == (120_001, huge + 1, True)
    assert store.inventory_folders(mid) == [InventoryFolderRow(name="INBOX", special_use=None, messages=11,
                                                               bytes=huge + 1, error=None, kind="mail")]
    store.record_mailbox_sync(mid, result="ok", src_messages=1, src_bytes=huge, copied_messages=1,
                              copied_bytes=huge, failed_messages=0)
    assert store.mailbox_by_id(mid).copied_bytes == huge


def test_message_records_replace_by_source_uid_or_item_and_never_duplicate(store):
    mid = _mailbox(store)
    folder = store.ensure_folder(mid, "INBOX", "INBOX", subscribed=True)
    store.update_folder(folder.id, source_uidvalidity=2 ** 32 - 1, source_modseq=2 ** 62)
    store.record_pending(folder.id, [(1, None, "fp1", 10, "\\Seen"), (2, None, "fp2", 20, "")], 100)
    store.record_copied(folder.id, [(1, None, 100, "fp1", 10, "\\Seen")])
    store.record_failed(folder.id, 2, None, "fp2", 20, "too big")
    store.record_not_migrated(folder.id, [("item-9", 5, "a contact")])
    store.record_copied(folder.id, [(None, "item-8", 101, "fp8", 8, "")])
    store.record_copied(folder.id, [(None, "item-8", 102, "fp8", 8, "\\Flagged")])
    records = {(r.src_uid, r.src_item): r for r in store.message_records(folder.id)}
    assert len(records) == 4
    assert (records[(1, None)].state, records[(1, None)].dest_uid, records[(1, None)].dest_uidnext_before) == \
        ("copied", 100, None)
    assert (records[(2, None)].state, records[(2, None)].error) == ("failed", "too big")
    assert records[(None, "item-8")].dest_uid == 102 and records[(None, "item-9")].state == "skipped"
    assert store.folders(mid)[0].source_modseq == 2 ** 62
    assert store.copied_totals(mid) == (2, 18)
    # Typed as they leave the store: PostgreSQL's SUM of a BIGINT is a NUMERIC, which psycopg reads as a
    # Decimal, and a Decimal divided by a float is a TypeError in the estimates (exit 70 on every report).
    assert [type(v) for v in store.copied_totals(mid)] == [int, int]
    store.record_throughput("health", 3, 3_000_000, 1.5)
    assert [type(v) for v in store.throughput("health")] == [int, int, float]
    assert store.throughput("health")[1] / 1.5 == 2_000_000
    assert store.folders_needing_attention(mid) == {folder.id}
    store.update_message_flags(folder.id, [("\\Seen \\Answered", 1, None)])
    store.delete_message_records(folder.id, src_uids=[2], src_items=["item-9"])
    assert {r.src_uid or r.src_item for r in store.message_records(folder.id)} == {1, "item-8"}
    store.record_keyword_names({"$k1": "Budget 2027"})
    store.record_keyword_names({"$k1": "changed", "$k2": "Other"})
    assert store.keyword_names() == {"$k1": "Budget 2027", "$k2": "Other"}


def test_groupware_waves_runs_and_dns_domains(store):
    mid = _mailbox(store)
    record = GroupwareRecord("calendar", "uid-1", "item-1", "ck-1", "https://dav/x.ics", '"e"', "copied", None)
    store.record_groupware_items(mid, [record])
    store.record_groupware_items(mid, [record])
    assert store.groupware_records(mid, "calendar") == {"uid-1": record}
    store.record_wave("pilot", position=0, plan_file="plans/pilot.yaml", doc={"mailboxes": ["a@health.gov.bz"]})
    store.approve_wave("pilot", position=0, plan_file="plans/pilot.yaml", plan_hash="ab" * 32,
                       doc={"mailboxes": ["a@health.gov.bz"]}, who="tester")
    assert store.wave("pilot").approved_by == "tester"
    first, second = store.start_run("pilot", "prestage"), store.start_run("pilot", "delta")
    assert second > first
    store.finish_run(first, result="ok", mailboxes=1, messages=3, bytes_=4, seconds=1.5)
    assert store.abandon_runs("pilot") == [second]
    runs = store.runs("pilot")
    assert all(isinstance(r, RunRow) for r in runs)
    assert [(r.pass_name, r.result) for r in runs] == [("prestage", "ok"), ("delta", "killed")]
    assert runs[0].host and (runs[0].mailboxes, runs[0].messages, runs[0].bytes, runs[0].seconds) == (1, 3, 4, 1.5)
    assert list(runs[0].as_dict())[:4] == ["id", "wave", "pass", "started_at"]  # JSON keeps the column's name
    store.update_dns_domain("Health.gov.bz", state="prepared", old_ttl=3600, baseline=[{"type": "MX"}])
    assert store.dns_domain("HEALTH.gov.bz").baseline == [{"type": "MX"}]
    assert [d.domain for d in store.dns_domains()] == ["health.gov.bz"]


def test_the_copy_back_marks_records_and_pairs_on_both_engines(store):
    mid = _mailbox(store)
    inbox = store.ensure_folder(mid, "INBOX", "INBOX", subscribed=True)
    store.update_folder(inbox.id, dest_uidvalidity=7, dest_uidnext=12)
    sent = store.ensure_folder(mid, "Sent", "Sent", subscribed=True)        # never saw a UIDNEXT: above its copies
    store.record_copied(sent.id, [(1, None, 40, "fp", 10, "")])
    store.mark_for_copy_back([mid])
    assert store.copy_back_marks(mid) == {"INBOX": (7, 12), "Sent": (None, 41)} and store.marked(mid)
    store.update_folder(inbox.id, dest_uidnext=15)
    store.mark_for_copy_back([mid])                                         # a later switch replaces the marks
    assert store.copy_back_marks(mid)["INBOX"] == (7, 15)
    back = store.reverse_folder(mid, "INBOX", "INBOX", inbox.id)
    assert store.reverse_folder(mid, "INBOX", "INBOX", inbox.id).id == back.id
    store.reverse_pending(back.id, [(12, "fp12", 5, "\\Seen"), (13, "fp13", 6, "")], 30)
    store.reverse_copied(back.id, inbox.id, [(12, 30, "fp12", 5, "\\Seen")])
    store.reverse_failed(back.id, 13, "fp13", 6, "refused by the ministry server")
    records = {r.src_uid: r for r in store.reverse_records(back.id)}
    assert (records[12].state, records[12].dest_uid) == ("copied", 30) and records[13].state == "failed"
    pair = next(r for r in store.message_records(inbox.id) if r.src_uid == 30)
    assert (pair.dest_uid, pair.state, pair.flags) == (12, "copied", "\\Seen"), "the forward copy knows the pair"
    store.carried_back_flags(back.id, inbox.id, [("\\Flagged", 12)])
    assert next(r for r in store.message_records(inbox.id) if r.src_uid == 30).flags == "\\Flagged"
    assert store.copied_back(mid) == (1, 5, [("INBOX", 13, "refused by the ministry server")])
    store.delete_reverse_records(back.id, [13])
    assert set(r.src_uid for r in store.reverse_records(back.id)) == {12}


def test_a_lease_is_one_holders_until_it_lapses(engine):
    one, two = engine(), engine()
    assert one.take_lease("wave/pilot", holder="host-a:1", purpose="run", ttl=30)
    assert not two.take_lease("wave/pilot", holder="host-b:2", purpose="run", ttl=30)
    assert not one.take_lease("wave/pilot", holder="host-a:1", purpose="run", ttl=30), "not re-entrant"
    held = two.lease("wave/pilot")
    assert (held.holder, held.purpose) == ("host-a:1", "run") and 25 < held.remaining <= 30
    assert one.renew("host-a:1", 30) == {"wave/pilot"}
    assert one.renew("host-b:2", 30) == set(), "a holder learns what it does not hold"
    one.lapse("host-a:1")
    assert two.take_lease("wave/pilot", holder="host-b:2", purpose="run", ttl=30), "a lapsed lease is free"
    assert one.lease("wave/pilot").holder == "host-b:2"
    one.release_lease("wave/pilot", "host-a:1")        # not its holder any more: nothing happens
    assert one.lease("wave/pilot").holder == "host-b:2"
    two.release_lease("wave/pilot", "host-b:2")
    assert one.lease("wave/pilot") is None


def test_a_lock_held_by_a_dead_process_on_this_host_is_taken_over_and_a_live_one_is_refused(engine,
                                                                                           monkeypatch):
    monkeypatch.setenv("GOVMIGRATE_HOST", "this-host")
    store = engine()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    assert store.take_lease("wave/pilot", holder=f"this-host:{dead}", purpose="govmigrate run pilot", ttl=300)
    with StoreLock(store, "wave/pilot", "govmigrate run pilot --pass delta") as lock:
        assert store.lease("wave/pilot").holder == lock.holder == f"this-host:{os.getpid()}"
        with pytest.raises(LockHeld, match=r"wave/pilot is locked by govmigrate run pilot --pass delta "
                                           rf"\(this-host:{os.getpid()}"):
            StoreLock(engine(), "wave/pilot", "another run").acquire()
    assert store.lease("wave/pilot") is None
    assert store.take_lease("wave/other", holder="elsewhere:1", purpose="run", ttl=300)
    with pytest.raises(LockHeld, match="elsewhere:1"):   # another host: only its lease's lapse frees it
        StoreLock(store, "wave/other", "run").acquire()


def test_workers_claim_each_queued_mailbox_once_and_a_lapsed_claim_again(engine):
    store = engine()
    store.upsert_source("health", "Ministry of Health", "imap", ["health.gov.bz"])
    store.upsert_source("finance", "Ministry of Finance", "ews", ["finance.gov.bz"])
    ids = [store.upsert_mailbox("health" if i % 2 else "finance", f"u{i}@x.gov.bz", f"u{i}", "", [])
           for i in range(40)]
    run_id = store.start_run("pilot", "prestage")
    assert store.enqueue(run_id, "pilot", "prestage", [(i, store.mailbox_by_id(i).source_id) for i in ids]) == 40
    claimed: list[tuple[str, int]] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        mine = engine()
        while (claim := mine.claim(name, ttl=60)) is not None:
            with lock:
                claimed.append((name, claim.mailbox_id))

    threads = [threading.Thread(target=claimer, args=(f"host-{n}:1",)) for n in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(m for _, m in claimed) == sorted(ids), "each mailbox claimed exactly once"
    assert store.work_counts(run_id) == {"claimed": 40}
    assert store.claim("host-e:1", ttl=60) is None

    dead = claimed[0][0]
    store.lapse(dead)      # that worker stopped renewing: all its claims lapse
    assert store.claim("host-e:1", ttl=60, take_over=False) is None, "only a lapsed claim was left"
    again = store.claim("host-e:1", ttl=60)
    assert again is not None and again.lapsed_from == dead and again.attempts == 2
    assert not store.finish_claim(again.id, dead, "done", {}), "the old worker's late result is not taken"
    assert store.finish_claim(again.id, "host-e:1", "done", {"copied": 3})
    item = next(w for w in store.work_items(run_id=run_id) if w.id == again.id)
    assert (item.state, item.worker, item.outcome["copied"]) == ("done", "host-e:1", 3)
    other = next(w for w in store.work_items(run_id=run_id) if w.state == "claimed")
    store.return_claim(other.id, other.worker)
    assert store.work_counts(run_id).get("queued") == 1
    assert store.claim("host-f:1", ttl=60, sources=["nowhere"]) is None
    assert store.withdraw_work(run_id) == 1


def test_connection_slots_hold_across_processes(engine):
    stores = [engine() for _ in range(3)]
    beats = [Heartbeat(s, 30, holder=f"host-{n}:1") for s, n in zip(stores, "abc", strict=True)]
    slots = [Slots(s, "source/health", 2, b, poll=0.01) for s, b in zip(stores, beats, strict=True)]
    inside, peak = [0], [0]
    lock = threading.Lock()

    def use(slot: Slots) -> None:
        for _ in range(5):
            with slot:
                with lock:
                    inside[0] += 1
                    peak[0] = max(peak[0], inside[0])
                threading.Event().wait(0.02)
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=use, args=(s,)) for s in slots for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2
    assert stores[0].leases("slot/") == []


def test_a_newer_schema_is_refused(engine):
    store = engine()
    with store.tx() as c:
        if store.engine.name == "sqlite":
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        else:
            c.execute("INSERT INTO govmigrate_schema(version) VALUES (?)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this govmigrate"):
        engine()


def test_what_a_sync_records_of_users_moves_renames_and_deletions_is_fenced(store):
    """A host that lost the mailbox (a newer token was taken) can record no move, no rename, no deletion and no
    acceptance any more; its holder can, and a move is both records in one transaction."""
    from migrate.core.errors import ClaimLost
    from migrate.core.store import Fence

    mailbox_id = _mailbox(store)
    inbox = store.ensure_folder(mailbox_id, "INBOX", "INBOX", subscribed=True)
    reports = store.ensure_folder(mailbox_id, "Reports", "Reports", subscribed=True)
    store.record_copied(inbox.id, [(7, None, 70, "fp-7", 1000, "\\Seen")])
    store.record_failed(inbox.id, 8, None, "fp-8", 10, "refused")
    lost = store.fenced(Fence(mailbox_id, store.take_fence(mailbox_id)))
    holder = store.fenced(Fence(mailbox_id, store.take_fence(mailbox_id)))
    writes = [lambda s: s.mark_vanished(inbox.id, [7]),
              lambda s: s.record_pending(reports.id, [(3, None, "fp-7", 1000, "\\Seen")], 1,
                                         moved_from=[(inbox.id, "7")]),
              lambda s: s.record_moved(reports.id, [(3, None, 12, "fp-7", 1000, "\\Seen")], inbox.id, [7]),
              lambda s: s.rename_dest_folders(mailbox_id, "Reports", "Reports 2025", "/"),
              lambda s: s.accept_not_copied(mailbox_id, "accepted by the ministry")]
    for write in writes:
        with pytest.raises(ClaimLost):
            write(lost)
    assert [r.src_uid for r in store.message_records(inbox.id) if r.state == "copied"] == [7]
    for write in writes:
        write(holder)
    assert [r.src_uid for r in store.message_records(inbox.id) if r.state == "copied"] == []
    [moved] = store.message_records(reports.id)
    assert (moved.src_uid, moved.dest_uid, moved.state, moved.moved_from_folder) == (3, 12, "copied", None)
    assert {f.dest_name for f in store.folders(mailbox_id)} == {"INBOX", "Reports 2025"}
    assert [m.accepted for m in store.failed_messages(mailbox_id)] == ["accepted by the ministry"]
def test_every_approval_is_kept_with_how_it_lapsed_and_each_run_names_its_approval(store):
    mid = _mailbox(store)
    store.record_wave("pilot", position=0, plan_file="plans/pilot.yaml", doc={"mailboxes": ["a@health.gov.bz"]})
    assert not store.lapse_approval("pilot", "nothing to lapse"), "no approval yet"
    store.approve_wave("pilot", position=0, plan_file="plans/pilot.yaml", plan_hash="ab" * 32,
                       doc={"mailboxes": ["a@health.gov.bz"]}, who="tester")
    first = store.start_run("pilot", "prestage")
    store.record_wave("pilot", position=0, plan_file="plans/pilot.yaml", doc={"mailboxes": ["a@health.gov.bz"],
                                                                              "extensions": ["gov:2001"]},
                      changes="1 phone extension added (gov:2001)")
    unapproved = store.start_run("pilot", "sip-check")   # a step that needs no approval: it runs under none
    store.approve_wave("pilot", position=0, plan_file="plans/pilot.yaml", plan_hash="cd" * 32,
                       doc={"mailboxes": ["a@health.gov.bz"], "extensions": ["gov:2001"]}, who="board",
                       changes="1 phone extension added (gov:2001)")
    second = store.start_run("pilot", "delta")
    one, two = store.approvals("pilot")
    assert (one.approved_by, one.plan_hash, one.doc) == ("tester", "ab" * 32, {"mailboxes": ["a@health.gov.bz"]})
    assert one.lapsed_at and one.lapse_reason == "the plan was generated again: 1 phone extension added (gov:2001)"
    assert (two.approved_by, two.lapsed_at, two.changes) == ("board", None, "1 phone extension added (gov:2001)")
    assert {r.id: r.approval_id for r in store.runs("pilot")} == {first: one.id, unapproved: None, second: two.id}
    lapsed = [e for e in store.events(obj="wave/pilot") if e.action == "approval-lapsed"]
    assert [e.detail for e in lapsed] == [one.lapse_reason]
    store.delete_wave("pilot")
    assert store.approvals("pilot")[-1].lapse_reason == "the wave was taken out of the plan"
    store.record_verification(mid, deep=False, matches=False, counts={"missing": 2, "duplicates": 1}, error=None)
    store.record_verification(mid, deep=True, matches=True, counts={"source_messages": 5, "dest_messages": 5})
    (check,) = store.verifications().values()
    assert (check.mailbox_id, check.deep, check.matches, check.missing, check.source_messages) == (mid, True, True,
                                                                                                  0, 5)


def _store_of_schema_9(engine_name: str, tmp_path, request):
    """A store as govmigrate wrote it before approvals had a history (schema 9): (run SQL, open it)."""
    from migrate.core.store import MIGRATIONS

    if engine_name == "sqlite":
        path = tmp_path / "old.db"
        conn = sqlite_at_schema(path, 9)
        return (lambda sql, params=(): conn.execute(sql, params)), (lambda: open_store(path))
    import psycopg

    server = request.getfixturevalue("postgres_server")
    url = request.getfixturevalue("postgres_url")
    conn = psycopg.connect(url, password=server.password, autocommit=True)
    conn.execute("CREATE EXTENSION IF NOT EXISTS citext")
    conn.execute("CREATE TABLE govmigrate_schema (version INTEGER NOT NULL)")
    for number, migration in enumerate(MIGRATIONS[:9], 1):
        for statement in migration.statements("postgresql"):
            conn.execute(statement)
        conn.execute("INSERT INTO govmigrate_schema(version) VALUES (%s)", (number,))
    return ((lambda sql, params=(): conn.execute(sql.replace("?", "%s"), params)),
            (lambda: open_postgres(url, password=server.password)))


@pytest.mark.parametrize("engine_name", ["sqlite", "postgresql"])
def test_approvals_and_runs_recorded_before_the_history_come_from_the_event_log(engine_name, tmp_path, request):
    """Migration 11 fills the history from the approve events: the one still on record gets its whole hash and what
    it covered, an earlier one its hash as the event has it, and each run the last approval before it."""
    run, opened = _store_of_schema_9(engine_name, tmp_path, request)
    full = "ef" * 32
    event = "INSERT INTO events(at, actor, object, action, detail) VALUES (?,?,?,?,?)"
    run(event, ("2030-01-01T10:00:00Z", "ana", "wave/pilot", "approve", f"plan plans/pilot.yaml sha256 {'ab' * 8}"))
    run(event, ("2030-01-02T10:00:00Z", "ben", "wave/pilot", "approve", f"plan plans/pilot.yaml sha256 {full[:16]}"))
    run(event, ("2030-01-01T11:00:00Z", "ana", "wave/wave-01", "approve", f"plan plans/wave-01.yaml sha256 {'cd' * 8}"))
    run("INSERT INTO waves(id, position, plan_file, plan_hash, approved_by, approved_at, state, updated_at, doc, "
        "recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?)", ("pilot", 0, "plans/pilot.yaml", full, "ben",
                                                     "2030-01-02T10:00:00Z", "approved", "2030-01-02T10:00:00Z",
                                                     '{"mailboxes": ["a@health.gov.bz"]}', "2030-01-02T10:00:00Z"))
    run("INSERT INTO waves(id, position, plan_file, plan_hash, state, updated_at, doc, recorded_at) "
        "VALUES (?,?,?,?,?,?,?,?)", ("wave-01", 1, "plans/wave-01.yaml", None, "planned", "2030-01-03T09:00:00Z",
                                     '{"mailboxes": []}', "2030-01-03T09:00:00Z"))
    for started in ("2030-01-01T12:00:00Z", "2030-01-03T12:00:00Z"):
        run("INSERT INTO runs(wave, pass, started_at) VALUES (?,?,?)", ("pilot", "prestage", started))
    store = opened()
    try:
        assert store.schema_version == SCHEMA_VERSION
        one, two = store.approvals("pilot")
        assert (one.plan_hash, one.approved_by, one.doc, one.lapsed_at) == ("ab" * 8, "ana", None, None)
        assert (two.plan_hash, two.approved_by, two.doc, two.plan_file) == (full, "ben",
                                                                          {"mailboxes": ["a@health.gov.bz"]},
                                                                          "plans/pilot.yaml")
        assert [r.approval_id for r in store.runs("pilot")] == [one.id, two.id]
        (lapsed,) = store.approvals("wave-01")
        assert lapsed.lapsed_at == "2030-01-03T09:00:00Z" and "generated again" in lapsed.lapse_reason
    finally:
        store.close()


def test_held_extensions_and_kept_secrets_pending_then_current(store):
    from migrate.core.store import KeptSecretRow, now
    from migrate.voip.model import Extension

    store.upsert_source("health", "Ministry of Health", "imap", ["health.gov.bz"])
    held = ["dids.csv:3: extension: DID '12' is not a valid number; extension 2001 is held"]
    store.upsert_extension(Extension("health", "health", "2001", "Ana", held=held), seen_at=now())
    assert store.extension("health:2001").held == held
    store.upsert_extension(Extension("health", "health", "2001", "Ana"), seen_at=now())  # the file was fixed
    assert store.extension("health:2001").held == []

    def kept(generation: int) -> KeptSecretRow:
        return KeptSecretRow("health:2001", "pending", generation, f"v1:sealed-{generation}", None, "key-1", now())

    store.keep_pending_secrets([kept(1)])
    store.keep_pending_secrets([kept(1)])  # a repeated export keeps one pending set
    assert list(store.kept_secrets(["health:2001"])["health:2001"]) == ["pending"]
    store.promote_secrets(["health:2001"])
    store.keep_pending_secrets([kept(2)])
    both = store.kept_secrets()["health:2001"]
    assert (both["current"].generation, both["pending"].generation) == (1, 2)
    store.promote_secrets(["health:2001"])
    assert {s: r.generation for s, r in store.kept_secrets()["health:2001"].items()} == {"current": 2}
    assert store.kept_secrets(["health:2002"]) == {}
