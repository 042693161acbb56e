"""Exchange as it really is (first part): items whose MIME the server cannot give, batches it stops, replies
out of place, and a SyncFolderItems that promises more but does not move. Each is a behaviour of the lab's EWS
responder (real SOAP over HTTPS) that a real Exchange server has, against the real sync engine and Dovecot."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
import yaml

from migrate.core.errors import ExitCode
from migrate.core.store import open_store
from tests.lab import corpus, scenario
from tests.lab.inspect import read_mailbox

pytestmark = pytest.mark.lab


@pytest.fixture
def exchange(tmp_path):
    boxes = corpus.ministry(seed="realities", domain="finance.gov.bz", users=1, messages=24, login_style="email")
    ws = tmp_path / "ws"
    lab = scenario.ews_lab(ws, boxes)
    yield lab, ws, boxes[0], lab.extra[0]
    lab.stop()


def sync(govmigrate, ws, email, expect=0) -> dict:
    return json.loads(govmigrate("-w", ws, "sync", email, "--json", expect=expect).stdout)[0]


def inbox_subjects(lab, email) -> list[bytes]:
    return [m.raw for m in read_mailbox(lab.central, email)["INBOX"].messages]


def failed_rows(ws) -> list[tuple[str, str]]:
    with sqlite3.connect(ws / "state.db") as db:
        return db.execute("SELECT src_item, error FROM messages WHERE state = 'failed' ORDER BY src_item").fetchall()


def test_items_the_server_cannot_export_are_recorded_and_the_folder_goes_on(govmigrate, exchange):
    lab, ws, box, responder = exchange
    ids = responder.item_ids(box.email, ("INBOX",))
    assert len(ids) >= 5
    broken = {ids[1]: "conversion-failed", ids[2]: "corrupt", ids[3]: "no-mime"}
    for item_id, how in broken.items():
        responder.break_item(item_id, how)
    first = sync(govmigrate, ws, box.email, expect=int(ExitCode.PARTIAL))
    inbox = box.folder("INBOX").messages
    got = inbox_subjects(lab, box.email)
    assert len(got) == len(inbox) - 3, "every other message of the folder is copied"
    rows = dict(failed_rows(ws))
    assert set(rows) == set(broken)
    assert "ErrorMimeContentConversionFailed" in rows[ids[1]] and "ErrorItemCorrupt" in rows[ids[2]]
    assert "no MIME content" in rows[ids[3]]
    subject = next(m for m in inbox if m.raw in {inbox[1].raw}).raw.split(b"Subject: ", 1)[-1].split(b"\r\n")[0]
    assert subject.decode(errors="replace")[:30] in rows[ids[1]], "named by subject, date and size"
    assert first["refused"] == 3 and first["result"] == "incomplete"
    assert {p["error"] for p in first["problems"]} >= {"the server gave no MIME content for it"}
    # The sync state advanced: the next pass neither stops at the same items nor copies anything twice, and
    # takes what arrived meanwhile; the items it could not copy are asked for again, and still counted: a pass
    # that forgot them would end "ok".
    new = corpus.CorpusMessage(b"Subject: after the broken items\r\n\r\nnew\r\n", ("\\Seen",), inbox[0].internaldate)
    responder.add_message(box.email, ("INBOX",), new)
    second = sync(govmigrate, ws, box.email, expect=int(ExitCode.PARTIAL))
    assert second["copied"] == 1 and second["refused"] == 3 and second["result"] == "incomplete"
    assert len(inbox_subjects(lab, box.email)) == len(inbox) - 2
    status = govmigrate("-w", ws, "status", box.email, expect=None).stdout
    assert "3 not copied" in status and "ErrorItemCorrupt" in status
    checked = json.loads(govmigrate("-w", ws, "verify", box.email, "--json").stdout)[0]
    assert checked["matches"], "what the source cannot export is listed, not a difference"
    listed = [u for f in checked["folders"] for u in f["unexportable"]]
    assert len(listed) == 3 and any("received" in u and "bytes" in u for u in listed)
    # The wave's record names them too.
    govmigrate("-w", ws, "inventory", "mail")
    plan = json.loads(govmigrate("-w", ws, "plan", "generate", "--json", expect=None).stdout)
    wave = next(w["wave"] for w in plan["waves"] if box.email in
                json.dumps(json.loads(govmigrate("-w", ws, "report", "--wave", w["wave"], "--json").stdout)))
    record = json.loads(govmigrate("-w", ws, "report", "--wave", wave, "--json").stdout)
    [mine] = [m for m in record["mailboxes"] if m["email"] == box.email]
    assert len(mine["not_copied"]) == 3 and all("received" in n["why"] for n in mine["not_copied"][:2])


def test_a_batch_the_server_stops_is_asked_for_again(govmigrate, exchange):
    lab, ws, box, responder = exchange
    ids = responder.item_ids(box.email, ("INBOX",))
    responder.stop_batches = True
    responder.break_item(ids[0], "conversion-failed")   # the rest of its batch gets ErrorBatchProcessingStopped
    sync(govmigrate, ws, box.email, expect=int(ExitCode.PARTIAL))
    assert len(inbox_subjects(lab, box.email)) == len(box.folder("INBOX").messages) - 1
    assert [item for item, _ in failed_rows(ws)] == [ids[0]]


def test_replies_out_of_place_are_never_paired_with_the_wrong_message(govmigrate, exchange):
    _lab, ws, box, responder = exchange
    responder.misorder_get_items(1)
    sync(govmigrate, ws, box.email)  # the misordered batch is retried (transient), then all is right
    results = json.loads(govmigrate("-w", ws, "verify", box.email, "--deep", "--json").stdout)
    assert results[0]["matches"], results


def test_a_sync_state_that_does_not_advance_ends_the_folder_for_this_pass(govmigrate, exchange):
    lab, ws, box, responder = exchange
    sync(govmigrate, ws, box.email)
    new = corpus.CorpusMessage(b"Subject: while the server stalls\r\n\r\nnew\r\n", (),
                               box.folder("INBOX").messages[0].internaldate)
    responder.add_message(box.email, ("INBOX",), new)
    responder.stall_sync(box.email, ("INBOX",), times=50)
    before = len(responder.requests_for("SyncFolderItems", box.email))
    stalled = sync(govmigrate, ws, box.email)   # ends: no endless loop, nothing lost
    assert any("stopped advancing" in w["warning"] for w in stalled["folder_warnings"]), stalled
    calls = len(responder.requests_for("SyncFolderItems", box.email)) - before
    folders = len(box.folders)
    assert calls <= folders + 3, "the folder was left after a few answers, not asked 50 times"
    responder.stall_sync(box.email, ("INBOX",), times=0)
    again = sync(govmigrate, ws, box.email)
    assert again["copied"] == 1 and new.raw in inbox_subjects(lab, box.email)


def test_a_find_count_limit_means_smaller_pages_not_a_failure(govmigrate, exchange):
    _lab, ws, box, responder = exchange
    sync(govmigrate, ws, box.email)
    responder.find_count_limit = 7            # the service asks for 500 per page; the policy allows 7
    results = json.loads(govmigrate("-w", ws, "verify", box.email, "--json").stdout)
    assert results[0]["matches"], results
    assert any(r.code == "ErrorExceededFindCountLimit" for r in responder.requests_for("FindItem", box.email))


def test_copies_are_recognised_after_exchange_rebuilds_their_mime(govmigrate, exchange):
    """Exchange writes Keywords (the categories) and Importance again on every read. A copy made before a
    category or importance change must still be recognised when the state store is lost, and verify must
    call it the same message, not "missing" plus "other mail"."""
    lab, ws, box, responder = exchange
    sync(govmigrate, ws, box.email)
    ids = responder.item_ids(box.email, ("INBOX",))
    before = {m.raw for m in read_mailbox(lab.central, box.email)["INBOX"].messages}
    responder.set_flags(box.email, ids[0], ("\\Seen", "Budget review"))
    responder.set_flags(box.email, ids[1], ("Ministerial", "Árbol"))
    responder.set_importance(box.email, ids[2], "High")
    for suffix in ("", "-wal", "-shm"):            # the state store is lost
        (ws / f"state.db{suffix}").unlink(missing_ok=True)
    open_store(ws / "state.db", create=True).close()
    again = sync(govmigrate, ws, box.email)
    assert again["copied"] == 0, "every message was recognised on the central host"
    inbox = read_mailbox(lab.central, box.email)["INBOX"].messages
    assert len(inbox) == len(box.folder("INBOX").messages) and {m.raw for m in inbox} == before
    checked = json.loads(govmigrate("-w", ws, "verify", box.email, "--deep", "--json").stdout)[0]
    assert checked["matches"], checked


def test_items_that_are_not_mail_are_copied_or_listed_by_class_never_dropped(govmigrate, exchange):
    """Inbox holds meeting requests, NDRs and read receipts (copied as MIME) and now and then a contact or a
    note someone dragged there (an IMAP folder cannot hold it: listed as not migrated, with the reason)."""
    lab, ws, box, responder = exchange
    when = box.folder("INBOX").messages[0].internaldate

    def item(subject: str, item_class: str) -> corpus.CorpusMessage:
        message = corpus.CorpusMessage(f"Subject: {subject}\r\nFrom: a@finance.gov.bz\r\n\r\n{subject}\r\n"
                                       .encode(), ("\\Seen",), when)
        responder.add_message(box.email, ("INBOX",), message, item_class=item_class)
        return message

    copied = [item("Budget meeting", "IPM.Schedule.Meeting.Request"),
              item("Undeliverable: Budget", "REPORT.IPM.Note.NDR"),
              item("Read: Budget", "REPORT.IPM.Note.IPNRN"),
              item("Accepted: Budget meeting", "IPM.Schedule.Meeting.Resp.Pos")]
    item("Jose Perez [bold]contact[/bold]", "IPM.Contact")
    item("=1+1 a sticky note", "IPM.StickyNote")
    first = sync(govmigrate, ws, box.email)
    assert first["result"] == "ok" and first["refused"] == 0, "a policy is not a failure"
    assert first["copied"] == box.messages + 4
    central = inbox_subjects(lab, box.email)
    assert all(m.raw in central for m in copied)
    listed = {n["item"]: n["why"] for n in first["not_migrated"]}
    assert len(listed) == 2 and any("Jose Perez [bold]contact[/bold]" in k for k in listed), listed
    assert all("not migrated by policy" in why for why in listed.values())
    assert any("IPM.Contact" in why and "Contacts folder" in why for why in listed.values())
    second = sync(govmigrate, ws, box.email)
    assert second["copied"] == 0 and second["not_migrated"] == [], "recorded once, not listed again"
    status = govmigrate("-w", ws, "status", box.email).stdout
    assert status.count("not migrated (Inbox)") == 2 and "IPM.StickyNote" in status
    checked = json.loads(govmigrate("-w", ws, "verify", box.email, "--json").stdout)[0]
    assert checked["matches"], "what policy leaves out is listed, not a difference"
    assert sum(len(f["not_migrated"]) for f in checked["folders"]) == 2


def test_calendars_contacts_tasks_and_system_folders_are_counted_not_moved_as_mail(govmigrate, exchange):
    """Outbox, Sync Issues (and Conflicts), RSS Feeds and Recoverable Items are not migrated but counted;
    calendars, contacts and tasks are counted per mailbox; the quota figure leaves Recoverable Items out."""
    lab, ws, box, responder = exchange
    when = box.folder("INBOX").messages[0].internaldate
    placed = {("Calendar",): ("IPM.Appointment", 3), ("Contacts",): ("IPM.Contact", 2), ("Tasks",): ("IPM.Task", 1),
              ("Outbox",): ("IPM.Note", 1), ("Sync Issues", "Conflicts"): ("IPM.Note", 1),
              ("RSS Feeds",): ("IPM.Post.Rss", 1), ("Recoverable Items", "Deletions"): ("IPM.Note", 2)}
    for path, (item_class, n) in placed.items():
        for i in range(n):
            body = f"Subject: {'/'.join(path)} {i}\r\n\r\n".encode() + b"x" * 50_000 + b"\r\n"
            if path == ("Calendar",):
                body = (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:lab\r\nBEGIN:VEVENT\r\nUID:census-{i}\r\n"
                        f"DTSTAMP:20261101T120000Z\r\nDTSTART:2026110{i + 1}T150000Z\r\nSUMMARY:Budget {i}\r\n"
                        "END:VEVENT\r\nEND:VCALENDAR\r\n").encode()
            elif path == ("Contacts",):
                body = f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:card-{i}\r\nFN:Person {i}\r\nN:{i};Person;;;\r\nEND:VCARD\r\n".encode()
            responder.add_message(box.email, path, corpus.CorpusMessage(body, (), when), item_class=item_class)
    govmigrate("-w", ws, "inventory", "mail")
    doc = json.loads(govmigrate("-w", ws, "inventory", "show", "--json").stdout)
    [mine] = [m for s in doc["sources"] for m in s["mailboxes"] if m["email"] == box.email]
    assert (mine["calendar_items"], mine["contacts"], mine["tasks"], mine["not_migrated_items"]) == (3, 2, 1, 5)
    lab_box = responder.mailbox(box.email)
    mail_folders = [f for f in lab_box.mail_folders() if f.path[0] not in ("Outbox", "Sync Issues")]
    assert mine["messages"] == box.messages and mine["folders"] == len(mail_folders), "mail alone is planned"
    kinds = {f["name"]: f["kind"] for f in mine["folder_list"]}
    assert kinds["Calendar"] == "calendar" and kinds["Sync Issues/Conflicts"] == "system"
    assert kinds["RSS Feeds"] == kinds["Outbox"] == kinds["Recoverable Items/Deletions"] == "system"
    recoverable = sum(f.size for f in lab_box.folder("Recoverable Items").descendants())
    assert recoverable >= 100_000 and mine["quota_used"] == lab_box.size - recoverable
    shown = govmigrate("-w", ws, "inventory", "show").stdout
    assert "3 calendar items, 2 contacts, 1 tasks; 5 items in folders that are not migrated" in shown
    result = sync(govmigrate, ws, box.email)
    assert result["copied"] == box.messages and result["result"] == "ok", result
    assert {g["kind"]: g["copied"] for g in result["groupware"]} == {"calendar": 3, "contacts": 2}
    central = read_mailbox(lab.central, box.email)
    assert not {"Outbox", "Sync Issues", "Sync Issues/Conflicts", "RSS Feeds", "Calendar", "Recoverable Items"} \
        & set(central), sorted(central)


def _archive(responder, box) -> list[corpus.CorpusMessage]:
    when = box.folder("INBOX").messages[0].internaldate
    placed = []
    for path, n in ((("Inbox",), 3), (("2019", "Budget"), 2)):
        for i in range(n):
            message = corpus.CorpusMessage(f"Subject: archived {'/'.join(path)} {i}\r\n\r\nold mail\r\n".encode(),
                                           ("\\Seen",), when)
            responder.add_archive_message(box.email, path, message)
            placed.append(message)
    return placed


def test_the_archive_mailbox_is_counted_and_moved_below_archive(govmigrate, exchange):
    lab, ws, box, responder = exchange
    archived = _archive(responder, box)
    govmigrate("-w", ws, "inventory", "mail")
    doc = json.loads(govmigrate("-w", ws, "inventory", "show", "--json").stdout)
    [mine] = [m for s in doc["sources"] for m in s["mailboxes"] if m["email"] == box.email]
    assert mine["archive_items"] == 5 and mine["messages"] == box.messages + 5
    first = sync(govmigrate, ws, box.email)
    assert first["copied"] == box.messages + 5 and first["result"] == "ok"
    central = read_mailbox(lab.central, box.email)
    assert [m.raw for m in central["Archive/Inbox"].messages] == [m.raw for m in archived[:3]]
    assert [m.raw for m in central["Archive/2019/Budget"].messages] == [m.raw for m in archived[3:]]
    assert sync(govmigrate, ws, box.email)["copied"] == 0
    checked = json.loads(govmigrate("-w", ws, "verify", box.email, "--json").stdout)[0]
    assert checked["matches"], checked


def test_an_archive_left_out_by_the_project_file_is_counted_only(govmigrate, exchange):
    lab, ws, box, responder = exchange
    _archive(responder, box)
    doc = yaml.safe_load((ws / "migration.yaml").read_text())
    doc["sources"][0]["server"]["archive_folder"] = None
    (ws / "migration.yaml").write_text(yaml.safe_dump(doc))
    govmigrate("-w", ws, "inventory", "mail")
    shown = json.loads(govmigrate("-w", ws, "inventory", "show", "--json").stdout)
    [mine] = [m for s in shown["sources"] for m in s["mailboxes"] if m["email"] == box.email]
    assert (mine["archive_items"], mine["not_migrated_items"], mine["messages"]) == (0, 5, box.messages)
    assert sync(govmigrate, ws, box.email)["copied"] == box.messages
    assert not [name for name in read_mailbox(lab.central, box.email) if name.startswith("Archive/")]


def test_a_bad_archive_folder_names_the_file_line_and_field(govmigrate, exchange):
    _lab, ws, _box, _responder = exchange
    text = (ws / "migration.yaml").read_text()
    doc = yaml.safe_load(text)
    doc["sources"][0]["server"]["archive_folder"] = "Archive//\x07"
    (ws / "migration.yaml").write_text(yaml.safe_dump(doc))
    result = govmigrate("-w", ws, "inventory", "mail", expect=int(ExitCode.USAGE))
    assert re.search(r"migration\.yaml:\d+: sources\[0\]\.server\.archive_folder", result.stderr), result.stderr


def test_throttling_inside_an_http_200_answer_is_waited_out_and_the_copy_is_exact(govmigrate, exchange):
    _lab, ws, box, responder = exchange
    responder.busy_inside_get_items(3, back_off_ms=200)
    result = sync(govmigrate, ws, box.email)
    assert result["result"] == "ok" and result["copied"] == box.messages, result
    assert [r.code for r in responder.requests_for("GetItem")].count("ErrorInternalServerError") == 3
    checked = json.loads(govmigrate("-w", ws, "verify", box.email, "--deep", "--json").stdout)[0]
    assert checked["matches"], checked
