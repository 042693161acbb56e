"""The sync engine against real Dovecot servers: every fidelity point of a faithful copy, pinned."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from migrate.core.config import load_project
from migrate.core.errors import ExitCode
from migrate.core.registry import register_users
from migrate.core.store import open_store
from migrate.mailbox.sync import SyncEngine, SyncOptions
from tests.lab import corpus, scenario
from tests.lab.inspect import as_comparable, expected_central, read_mailbox
from tests.lab.scenario import Lab


def _sync(govmigrate, ws: Path, *args: str, expect: int = 0):
    return govmigrate("-w", ws, "sync", *args, expect=expect)


def _verify(govmigrate, ws: Path, *args: str, expect: int = 0) -> list[dict]:
    return json.loads(govmigrate("-w", ws, "verify", "--json", *args, expect=expect).stdout)


def test_copy_is_byte_exact_with_flags_dates_folders_and_subscriptions(govmigrate, lab: Lab, workspace: Path):
    _sync(govmigrate, workspace, "--all")
    for source_id, layout in (("health", "modern"), ("education", "legacy")):
        for box in lab.sources[source_id].mailboxes:
            got = read_mailbox(lab.central, box.email)
            want = expected_central(box, layout)
            for name, messages in want.items():
                assert name in got, f"{box.email}: folder {name} missing on the central host"
                assert as_comparable({name: got[name]})[name] == messages, f"{box.email}: {name}"
                original = [f for f in box.folders if expected_name(f, layout) == name]
                subscribed = original[0].subscribed if original else False  # parents the lab made: unsubscribed
                assert got[name].subscribed == subscribed, f"{box.email}: subscription of {name}"
            # Nothing else appeared, other than the central host's own special folders.
            extra = set(got) - set(want) - {"Sent", "Drafts", "Trash", "Junk", "Archive"}
            assert not extra, extra


def expected_name(folder: corpus.CorpusFolder, layout: str) -> str:
    from tests.lab.inspect import LEGACY_TO_CENTRAL

    if folder.is_inbox:
        return "INBOX"
    if layout == "legacy" and len(folder.path) == 1 and folder.path[0] in LEGACY_TO_CENTRAL:
        return LEGACY_TO_CENTRAL[folder.path[0]]
    return "/".join(folder.path)


def test_duplicates_shared_message_ids_and_missing_ids_all_arrive(govmigrate, lab: Lab, workspace: Path):
    box = lab.sources["health"].mailboxes[0]
    _sync(govmigrate, workspace, box.email)
    inbox = [m.raw for m in read_mailbox(lab.central, box.email)["INBOX"].messages]
    source_inbox = [m.raw for m in box.folder("INBOX").messages]
    assert len(inbox) == len(source_inbox)
    duplicated = [raw for raw in set(source_inbox) if source_inbox.count(raw) > 1]
    assert duplicated and all(inbox.count(raw) == source_inbox.count(raw) for raw in duplicated)
    shared = [raw for raw in inbox if b"Message-ID: <shared-" in raw]
    assert len(shared) == 2 and shared[0] != shared[1]
    assert any(b"Message-ID" not in raw for raw in inbox)
    assert any(b"this line is not a header" in raw for raw in inbox), "the malformed message was copied"


def test_special_use_folders_land_in_central_special_folders(govmigrate, lab: Lab, workspace: Path):
    box = lab.sources["education"].mailboxes[0]
    _sync(govmigrate, workspace, box.email)
    got = read_mailbox(lab.central, box.email)
    assert len(got["Sent"].messages) == len(box.folder("Sent Items").messages)
    assert len(got["Trash"].messages) == len(box.folder("Deleted Items").messages)
    assert "\\Sent" in got["Sent"].attributes
    assert "Sent Items" not in got and "Deleted Items" not in got
    renamed = json.loads(_sync(govmigrate, workspace, box.email, "--dry-run", "--json").stdout)[0]
    assert renamed["renamed_folders"] and all(r["why"] for r in renamed["renamed_folders"])


def test_second_run_copies_nothing_and_verify_matches(govmigrate, lab: Lab, workspace: Path):
    _sync(govmigrate, workspace, "--source", "health")
    again = json.loads(_sync(govmigrate, workspace, "--source", "health", "--json").stdout)
    assert all(row["copied"] == 0 for row in again)
    results = _verify(govmigrate, workspace, "--source", "health", "--deep")
    assert all(r["matches"] for r in results)


def test_dry_run_changes_nothing(govmigrate, lab: Lab, workspace: Path):
    box = lab.sources["health"].mailboxes[1]
    rows = json.loads(_sync(govmigrate, workspace, box.email, "--dry-run", "--json").stdout)
    assert rows[0]["would_copy"] == box.messages
    assert rows[0]["copied"] == 0
    assert set(read_mailbox(lab.central, box.email)) == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}
    assert all(not f.messages for f in read_mailbox(lab.central, box.email).values())
    conn = sqlite3.connect(workspace / "state.db")
    assert conn.execute("SELECT COUNT(*) FROM folders").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0


# -- tests that change the source get a source of their own ------------------------------------------------

@pytest.fixture
def own_lab(tmp_path):
    """A one-mailbox modern source and a central host, both private to the test."""
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="own")
    yield lab, ws, boxes[0]
    lab.stop()


def test_new_mail_and_flag_changes_are_carried_over_incrementally(govmigrate, own_lab):
    lab, ws, box = own_lab
    _sync(govmigrate, ws, box.email)
    src = lab.sources["health"].server.connect(box.login)
    src.select("INBOX")
    src.uid("STORE", "1", "+FLAGS", "(\\Flagged $Important)")
    src.uid("STORE", "2", "-FLAGS", "(\\Seen)")
    src.append("INBOX", "(\\Seen)", '"01-Jan-2026 10:00:00 +0000"', b"Subject: new\r\n\r\nfresh mail\r\n")
    src.logout()
    rows = json.loads(_sync(govmigrate, ws, box.email, "--json").stdout)
    assert rows[0]["copied"] == 1
    assert rows[0]["flag_updates"] == 2
    inbox = read_mailbox(lab.central, box.email)["INBOX"].messages
    assert {"\\Flagged", "$Important"} <= inbox[0].flags
    assert "\\Seen" not in inbox[1].flags
    assert inbox[-1].raw == b"Subject: new\r\n\r\nfresh mail\r\n"
    assert all(r["matches"] for r in _verify(govmigrate, ws, box.email))


def test_flags_changed_by_the_user_on_the_central_host_are_left_alone(govmigrate, own_lab):
    lab, ws, box = own_lab
    _sync(govmigrate, ws, box.email)
    dest = lab.central.connect(box.email)
    dest.select("INBOX")
    dest.uid("STORE", "3", "+FLAGS", "(\\Answered)")
    dest.logout()
    rows = json.loads(_sync(govmigrate, ws, box.email, "--json").stdout)
    assert rows[0]["flag_updates"] == 0
    assert "\\Answered" in read_mailbox(lab.central, box.email)["INBOX"].messages[2].flags


def test_mail_delivered_to_the_central_host_by_other_means_is_never_touched(govmigrate, own_lab):
    lab, ws, box = own_lab
    dest = lab.central.connect(box.email)
    dest.append("INBOX", "()", None, b"Subject: delivered after MX cut-over\r\n\r\nhello\r\n")
    dest.logout()
    _sync(govmigrate, ws, box.email)
    _sync(govmigrate, ws, box.email)
    inbox = [m.raw for m in read_mailbox(lab.central, box.email)["INBOX"].messages]
    assert inbox.count(b"Subject: delivered after MX cut-over\r\n\r\nhello\r\n") == 1
    assert len(inbox) == len(box.folder("INBOX").messages) + 1
    result = _verify(govmigrate, ws, box.email)[0]
    assert result["matches"] and result["other_mail"] == 1


def test_lost_state_store_duplicates_nothing(govmigrate, own_lab):
    lab, ws, box = own_lab
    _sync(govmigrate, ws, box.email)
    before = as_comparable(read_mailbox(lab.central, box.email))
    for suffix in ("", "-wal", "-shm"):
        (ws / f"state.db{suffix}").unlink(missing_ok=True)
    open_store(ws / "state.db", create=True).close()
    rows = json.loads(_sync(govmigrate, ws, box.email, "--json").stdout)
    assert rows[0]["copied"] == 0
    assert rows[0]["reconciled"] == box.messages
    assert as_comparable(read_mailbox(lab.central, box.email)) == before
    assert all(r["matches"] for r in _verify(govmigrate, ws, box.email))


def test_changed_uidvalidity_is_reconciled_without_duplicates(govmigrate, own_lab):
    lab, ws, box = own_lab
    _sync(govmigrate, ws, box.email)
    source = lab.sources["health"].server
    source.doveadm("mailbox", "update", "-u", box.login, "--uid-validity", "4242", "INBOX")
    conn = source.connect(box.login)
    assert b"4242" in conn.status("INBOX", "(UIDVALIDITY)")[1][0]
    conn.logout()
    rows = json.loads(_sync(govmigrate, ws, box.email, "--json").stdout)
    assert rows[0]["copied"] == 0
    assert all(r["matches"] for r in _verify(govmigrate, ws, box.email, "--deep"))


def test_propagate_deletes_removes_only_what_govmigrate_copied(govmigrate, own_lab):
    lab, ws, box = own_lab
    _sync(govmigrate, ws, box.email)
    dest = lab.central.connect(box.email)
    dest.append("INBOX", "()", None, b"Subject: arrived by other means\r\n\r\nkeep me\r\n")
    dest.logout()
    src = lab.sources["health"].server.connect(box.login)
    src.select("INBOX")
    src.uid("STORE", "1:2", "+FLAGS", "(\\Deleted)")
    src.expunge()
    src.logout()
    rows = json.loads(_sync(govmigrate, ws, box.email, "--json").stdout)
    assert rows[0]["deleted"] == 0, "deletes are off by default"
    result = _verify(govmigrate, ws, box.email, expect=int(ExitCode.PARTIAL))[0]
    assert not result["matches"] and result["deleted_at_source"] == 2, "stale copies are a difference"
    rows = json.loads(_sync(govmigrate, ws, box.email, "--propagate-deletes", "--json").stdout)
    assert rows[0]["deleted"] == 2
    inbox = [m.raw for m in read_mailbox(lab.central, box.email)["INBOX"].messages]
    assert b"Subject: arrived by other means\r\n\r\nkeep me\r\n" in inbox
    assert len(inbox) == len(box.folder("INBOX").messages) - 2 + 1
    result = _verify(govmigrate, ws, box.email)[0]
    assert result["matches"] and result["deleted_at_source"] == 0 and result["other_mail"] == 1


def test_refused_message_is_recorded_and_the_mailbox_goes_on(govmigrate, tmp_path):
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="big", messages=20, central_kw={"max_mail_size": 1_000_000})
    center = lab.central
    try:
        box = boxes[0]
        big = [m for f in box.folders for m in f.messages if m.size > 1_000_000]
        assert big
        result = _sync(govmigrate, ws, box.email, expect=int(ExitCode.PARTIAL))
        assert "central host refused it" in result.stdout
        rows = json.loads(_sync(govmigrate, ws, box.email, "--json", expect=int(ExitCode.PARTIAL)).stdout)
        assert rows[0]["refused"] == len(big)
        assert rows[0]["copied"] == 0
        copied = sum(len(f.messages) for f in read_mailbox(center, box.email).values())
        assert copied == box.messages - len(big)
        assert len([p for p in rows[0]["problems"] if "message" in p]) == len(big)
    finally:
        lab.stop()


def test_a_wrong_password_fails_that_mailbox_and_the_rest_goes_on(govmigrate, own_lab):
    _lab, ws, box = own_lab
    users = ws / "users" / "health.csv"
    users.write_text(users.read_text() + "ghost@health.gov.bz,ghost,Nobody Here,,\n")
    result = _sync(govmigrate, ws, "--all", "--json", expect=int(ExitCode.PARTIAL))
    rows = {r["mailbox"]: r for r in json.loads(result.stdout)}
    assert rows[box.email]["result"] == "ok"
    assert rows["ghost@health.gov.bz"]["result"].startswith("failed")
    assert "login refused" in rows["ghost@health.gov.bz"]["result"]
    assert "Traceback" not in result.stderr


def test_a_dropped_connection_reconnects_and_resumes(tmp_path, own_lab, govmigrate):
    from tests.lab.proxy import FlakyProxy

    lab, ws, box = own_lab
    # TLS passes through the proxy untouched: the cut happens inside an encrypted stream.
    proxy = FlakyProxy(lab.sources["health"].server.tls_port, cut_after=3_500_000, cuts=2).start()
    try:
        text = (ws / "migration.yaml").read_text()
        (ws / "migration.yaml").write_text(text.replace(f"port: {lab.sources['health'].server.tls_port}",
                                                        f"port: {proxy.port}"))
        rows = json.loads(_sync(govmigrate, ws, box.email, "--json").stdout)
        assert proxy.cuts_done >= 1
        assert rows[0]["result"] == "ok"
        assert all(r["matches"] for r in _verify(govmigrate, ws, box.email, "--deep"))
    finally:
        proxy.stop()


def test_large_messages_are_streamed_byte_exact(own_lab):
    lab, ws, box = own_lab
    project = load_project(ws / "migration.yaml")
    store = open_store(ws / "state.db")
    try:
        register_users(project, store)
        options = SyncOptions(stream_threshold=200_000, chunk_size=65_536)
        reports = SyncEngine(project, store, options=options).run(store.mailboxes())
        assert reports[0].complete
    finally:
        store.close()
    got = as_comparable(read_mailbox(lab.central, box.email))
    want = expected_central(box, "modern")
    assert {k: v for k, v in got.items() if k in want} == want
    assert max(m.size for f in box.folders for m in f.messages) > 200_000


def test_folder_rules_exclude_rename_and_prefix(govmigrate, own_lab):
    lab, ws, box = own_lab
    text = (ws / "migration.yaml").read_text()
    rules = ("  folders:\n    rules:\n    - match: ^Personal$\n      exclude: true\n"
             "    - match: ^Projects/(.*)$\n      rename: Archive/Projects/\\1\n")
    (ws / "migration.yaml").write_text(text.replace("  connections: 4\n", "  connections: 4\n" + rules, 1))
    _sync(govmigrate, ws, box.email)
    got = read_mailbox(lab.central, box.email)
    assert "Personal" not in got
    assert "Archive/Projects/Budget 2025/Q1 Reviews" in got
    assert "Projects/Budget 2025" not in got
    assert "Projects" in got, "only children matched the rename rule"


def test_everything_under_a_prefix(govmigrate, own_lab):
    lab, ws, box = own_lab
    text = (ws / "migration.yaml").read_text()
    (ws / "migration.yaml").write_text(text.replace("  connections: 4\n", "  connections: 4\n  folders:\n"
                                                    "    prefix: Migrated\n", 1))
    _sync(govmigrate, ws, box.email)
    got = read_mailbox(lab.central, box.email)
    assert len(got["Migrated/INBOX"].messages) == len(box.folder("INBOX").messages)
    assert len(got["Migrated/Sent"].messages) == len(box.folder("Sent").messages)
    assert not got["INBOX"].messages and not got["Sent"].messages


def test_names_the_central_host_cannot_hold_are_renamed_and_recorded(govmigrate, tmp_path):
    box = corpus.generate_mailbox(seed="odd", email="odd@education.gov.bz", login="odd@education.gov.bz",
                                  password="pw-odd", display_name="Odd Names", layout="legacy", messages=10,
                                  user_folders=[("Reports 2024/2025",), ("Inbox",)], edge_cases=False)
    ws = tmp_path / "ws"
    lab, _ = scenario.small_lab(ws, seed="odd", layout="legacy", domain="education.gov.bz", boxes=[box],
                                source_kw={"maildir_layout": "index"})
    center = lab.central
    try:
        rows = json.loads(_sync(govmigrate, ws, box.email, "--json").stdout)
        renamed = {r["source"]: r for r in rows[0]["renamed_folders"]}
        assert renamed["INBOX.Reports 2024/2025"]["dest"] == "Reports 2024_2025"
        assert "separator" in renamed["INBOX.Reports 2024/2025"]["why"]
        assert renamed["INBOX.Inbox"]["dest"] == "Inbox (migrated)"
        got = read_mailbox(center, box.email)
        assert len(got["Reports 2024_2025"].messages) == len(box.folder("Reports 2024/2025").messages)
        conn = sqlite3.connect(ws / "state.db")
        notes = dict(conn.execute("SELECT source_name, note FROM folders WHERE note IS NOT NULL").fetchall())
        assert "INBOX.Reports 2024/2025" in notes
    finally:
        lab.stop()


def test_a_second_sync_of_the_same_mailbox_is_refused_while_one_runs(own_lab):
    from migrate.core.locks import Lock

    lab, ws, box = own_lab
    project = load_project(ws / "migration.yaml")
    store = open_store(ws / "state.db")
    try:
        register_users(project, store)
        with Lock(ws / ".locks", f"mailbox {box.email}", "another sync"):
            reports = SyncEngine(project, store, options=SyncOptions(lock_dir=ws / ".locks")).run(store.mailboxes())
        assert not reports[0].ok and "locked by another sync" in reports[0].error
        assert not any(f.messages for f in read_mailbox(lab.central, box.email).values())
    finally:
        store.close()


def test_secrets_never_reach_state_store_logs_or_output(govmigrate, own_lab, tmp_path):
    lab, ws, box = own_lab
    secrets = [lab.central.config.master_password, lab.sources["health"].server.config.master_password]
    result = govmigrate("-w", ws, "-vv", "--log-json", "sync", box.email)
    result2 = govmigrate("-w", ws, "--traceback", "verify", box.email)
    blobs = [result.stdout, result.stderr, result2.stdout, result2.stderr]
    shutil.copy(ws / "state.db", tmp_path / "copy.db")
    for path in ws.rglob("*"):
        if path.is_file() and "secrets" not in path.parts:
            blobs.append(path.read_bytes().decode("latin-1"))
    for secret in secrets:
        assert all(secret not in blob for blob in blobs)


def test_an_unreachable_central_host_stops_the_sync_with_exit_4(govmigrate, own_lab):
    from tests.lab.base import free_port

    lab, ws, box = own_lab
    text = (ws / "migration.yaml").read_text()
    (ws / "migration.yaml").write_text(text.replace(f"port: {lab.central.tls_port}", f"port: {free_port()}"))
    result = _sync(govmigrate, ws, box.email, expect=int(ExitCode.UNREACHABLE))
    assert "connection refused" in result.stderr
    assert "Traceback" not in result.stderr


def _change_source(lab: Lab, source_id: str, login: str, folder: str) -> None:
    """Flag two messages, unread a third, expunge a fourth and deliver one new message."""
    src = lab.sources[source_id].server.connect(login)
    src.select(folder)
    src.uid("STORE", "1", "+FLAGS", "(\\Flagged $Important)")
    src.uid("STORE", "2", "-FLAGS", "(\\Seen)")
    src.uid("STORE", "3", "+FLAGS", "(\\Deleted)")
    src.expunge()
    src.append(folder, "(\\Seen)", '"01-Jan-2026 10:00:00 +0000"', b"Subject: new\r\n\r\nfresh mail\r\n")
    src.logout()


def test_a_delta_pass_reads_only_what_changed_where_the_source_has_condstore(govmigrate, own_lab):
    """RFC 7162: one FETCH (FLAGS) (CHANGEDSINCE) names the changed and the new messages; only the new are read
    in full; a UID SEARCH is needed only when something vanished. The result is what a full read gives."""
    lab, ws, box = own_lab
    _sync(govmigrate, ws, box.email)
    _change_source(lab, "health", box.login, "INBOX")
    result = govmigrate("-vv", "-w", ws, "sync", box.email, "--propagate-deletes", "--json")
    row = json.loads(result.stdout)[0]
    assert (row["copied"], row["flag_updates"], row["deleted"]) == (1, 2, 1), row
    assert "INBOX: CONDSTORE delta: 2 changed, 1 new, UIDs listed" in result.stderr
    assert all(r["matches"] for r in _verify(govmigrate, ws, box.email))
    src = lab.sources["health"].server.connect(box.login)
    src.select("INBOX")
    src.uid("STORE", "4", "+FLAGS", "(\\Answered)")
    src.logout()
    result = govmigrate("-vv", "-w", ws, "sync", box.email, "--json")
    assert json.loads(result.stdout)[0]["flag_updates"] == 1
    assert "INBOX: CONDSTORE delta: 1 changed, 0 new\n" in result.stderr, "nothing vanished: no UID SEARCH"
    inbox = read_mailbox(lab.central, box.email)["INBOX"].messages
    assert "\\Answered" in inbox[2].flags and {"\\Flagged", "$Important"} <= inbox[0].flags
    assert all(r["matches"] for r in _verify(govmigrate, ws, box.email))


def test_a_source_without_condstore_is_compared_in_full(govmigrate, tmp_path):
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="legacy-delta", layout="legacy", domain=scenario.LEGACY_DOMAIN)
    try:
        box = boxes[0]
        _sync(govmigrate, ws, box.email)
        _change_source(lab, scenario.LEGACY, box.login, "INBOX")
        result = govmigrate("-vv", "-w", ws, "sync", box.email, "--propagate-deletes", "--json")
        row = json.loads(result.stdout)[0]
        assert (row["copied"], row["flag_updates"], row["deleted"]) == (1, 2, 1), row
        assert "CONDSTORE delta" not in result.stderr
        assert all(r["matches"] for r in _verify(govmigrate, ws, box.email))
    finally:
        lab.stop()


def test_a_pass_over_many_mailboxes_lists_only_those_where_something_happened(govmigrate, tmp_path):
    ws = tmp_path / "ws"
    boxes = corpus.ministry(seed="many", domain=scenario.MODERN_DOMAIN, users=55, messages=2, edge_cases=False,
                            pilot=0, vip=0)
    lab, boxes = scenario.small_lab(ws, seed="many", boxes=boxes)
    try:
        first = _sync(govmigrate, ws, "--all").stdout
        assert all(b.email in first for b in boxes), "a first pass copies every mailbox: every one is listed"
        src = lab.sources["health"].server.connect(boxes[7].login)
        src.append("INBOX", "()", None, b"Subject: one new message\r\n\r\nhello\r\n")
        src.logout()
        second = _sync(govmigrate, ws, "--all").stdout
        assert boxes[7].email in second
        assert sum(b.email in second for b in boxes) == 1
        assert "54 more mailboxes: up to date, nothing to do (--json lists every mailbox)" in second
        rows = json.loads(_sync(govmigrate, ws, "--all", "--json").stdout)
        assert len(rows) == 55
    finally:
        lab.stop()
