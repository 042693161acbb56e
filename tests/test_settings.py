"""Mail rules, out-of-office replies, shared folders and delegates: what users lose in other migrations.

Every test moves them between real servers of the lab (Dovecot with Pigeonhole and the acl plugin, the EWS
responder) and then delivers mail to the central host over LMTP, so a rule is judged by where the mail lands,
which flags it gets and what the central host sends, not by the text of a script.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
import yaml

from tests.lab import corpus, scenario
from tests.lab.base import free_port
from tests.lab.ews_settings import LabDelegate, LabOof, LabPermission, LabRule

pytestmark = pytest.mark.lab

FILING = """require ["fileinto", "vacation", "copy"];
# rule:[Budget into Projects]
if header :contains "subject" "budget" {
    fileinto "Projects";
}
# rule:[Copy to my private address]
if true {
    redirect :copy "me.private@mail.example";
}
# rule:[Away]
vacation :days 1 :subject "Away" "I am away until the 14th.";
"""


def _message(to: str, subject: str, sender: str = "citizen@mail.example") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{time.monotonic_ns()}@lab>\r\n"
            f"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\nHello.\r\n").encode()


def _deliver(server, to: str, subject: str, sender: str = "citizen@mail.example") -> None:
    """Deliver a message over LMTP with ``sender`` as its envelope sender and From (vacation replies go there)."""
    server.deliver(to, _message(to, subject, sender), sender=sender)


def _folder(server, login: str, folder: str) -> list[tuple[bytes, set[str]]]:
    """(subject line, flags) of every message of a central folder."""
    conn = server.connect(login)
    try:
        typ, _ = conn.select(f'"{folder}"', readonly=True)
        assert typ == "OK", folder
        _, data = conn.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        out = []
        for part in data:
            if isinstance(part, tuple):
                flags = part[0].split(b"FLAGS (", 1)[1].split(b")", 1)[0].decode().split()
                out.append((part[1].strip(), set(flags)))
        return out
    finally:
        conn.logout()


def _subjects(server, login: str, folder: str) -> list[bytes]:
    try:
        return [s for s, _ in _folder(server, login, folder)]
    except AssertionError:
        return []


def _rights(text: str) -> set[str]:
    """RFC 4314 rights as a set, without the RFC 2086 letters Dovecot also shows (c, d)."""
    return set(text) - {"c", "d"}


def _status(govmigrate, ws: Path, user: str) -> dict:
    return json.loads(govmigrate("-w", ws, "status", user, "--json").stdout)


def _settings(view: dict, kind: str) -> dict[str, dict]:
    return {s["name"]: s for s in view["settings"] if s["kind"] == kind}


def _sent_to(server, address: str) -> list[bytes]:
    return [message for args, message in server.sent() if address in args]


# -- an IMAP ministry: Sieve scripts and ACLs -------------------------------------------------------------

@pytest.fixture
def imap_lab(tmp_path):
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="rules", users=3, messages=12)
    yield lab, ws, boxes
    lab.stop()


def test_sieve_script_with_fileinto_and_vacation_files_mail_on_the_central_host(govmigrate, imap_lab):
    lab, ws, boxes = imap_lab
    source, central = lab.sources["health"].server, lab.central
    owner = boxes[0]
    source.put_script(owner.login, "roundcube", FILING, active=True)
    govmigrate("-w", ws, "sync", owner.email)

    active, scripts = central.scripts(owner.email)
    assert active == "roundcube"
    _deliver(central, owner.email, "Budget 2027 draft")
    _deliver(central, owner.email, "Lunch")
    assert _subjects(central, owner.email, "Projects")[-1:] == [b"Subject: Budget 2027 draft"]
    assert b"Subject: Lunch" in _subjects(central, owner.email, "INBOX")
    replies = _sent_to(central, "citizen@mail.example")
    assert replies and b"I am away until the 14th." in replies[0] and b"Auto-Submitted: auto-replied" in replies[0]
    # The redirect to an address outside the government is there, switched off, and nothing went out to it.
    assert "if false" in scripts["roundcube"] and "me.private@mail.example" in scripts["roundcube"]
    assert not _sent_to(central, "me.private@mail.example")
    rules = _settings(_status(govmigrate, ws, owner.email), "rule")
    assert rules["roundcube: Copy to my private address"]["state"] == "held"
    assert "outside the government" in rules["roundcube: Copy to my private address"]["reason"]
    assert rules["roundcube: Budget into Projects"]["state"] == "moved"
    assert _settings(_status(govmigrate, ws, owner.email), "vacation")["roundcube: out of office"]["state"] == "moved"


def test_forwarding_outside_is_turned_on_only_when_the_project_file_allows_it(govmigrate, imap_lab):
    lab, ws, boxes = imap_lab
    source, central = lab.sources["health"].server, lab.central
    owner = boxes[0]
    source.put_script(owner.login, "roundcube", FILING, active=True)
    doc = yaml.safe_load((ws / "migration.yaml").read_text())
    doc["central"]["allow_external_forwarding"] = True
    (ws / "migration.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    govmigrate("-w", ws, "sync", owner.email)
    _deliver(central, owner.email, "Lunch")
    assert _sent_to(central, "me.private@mail.example"), "the allowed redirect did not forward"
    rule = _settings(_status(govmigrate, ws, owner.email), "rule")["roundcube: Copy to my private address"]
    assert rule["state"] == "moved" and "as the project file allows" in rule["reason"]


def test_shared_folder_with_read_and_write_rights_for_two_users(govmigrate, imap_lab):
    lab, ws, boxes = imap_lab
    source, central = lab.sources["health"].server, lab.central
    owner, reader, writer = boxes
    source.setacl(owner.login, "Projects", reader.login, "lrs")
    source.setacl(owner.login, "Projects", writer.login, "lrswipte")
    source.setacl(owner.login, "Projects", "anyone", "lr")
    govmigrate("-w", ws, "sync", owner.email)

    acl = central.getacl(owner.email, "Projects")
    assert _rights(acl[reader.email]) == set("lrs") and _rights(acl[writer.email]) == set("lrswipte")
    assert "anyone" not in acl
    shared = f"shared/{owner.email}/Projects"
    # The reader sees the folder in the shared namespace and reads it; cannot write.
    conn = central.connect(reader.email)
    try:
        assert conn.select(f'"{shared}"', readonly=True)[0] == "OK"
        assert conn.append(f'"{shared}"', "", None, _message(owner.email, "from the reader"))[0] == "NO"
    finally:
        conn.logout()
    conn = central.connect(writer.email)
    try:
        assert conn.append(f'"{shared}"', "", None, _message(owner.email, "from the writer"))[0] == "OK"
    finally:
        conn.logout()
    assert b"Subject: from the writer" in _subjects(central, owner.email, "Projects")
    sharing = _settings(_status(govmigrate, ws, owner.email), "sharing")
    assert sharing[f"Projects → {reader.login}"]["state"] == "moved"
    assert sharing["Projects → anyone"]["state"] == "not-moved"
    # The reader's own mailbox, synced later, does not copy the folder the source shows it in its shared
    # namespace (which on the central host is the owner's folder itself).
    before = len(_subjects(central, owner.email, "Projects"))
    govmigrate("-w", ws, "sync", reader.email)
    assert len(_subjects(central, owner.email, "Projects")) == before
    assert _status(govmigrate, ws, reader.email)["last_sync_result"] == "ok"


def test_a_final_pass_carries_changes_and_leaves_what_others_changed_alone(govmigrate, imap_lab):
    lab, ws, boxes = imap_lab
    source, central = lab.sources["health"].server, lab.central
    owner, reader, other = boxes
    source.put_script(owner.login, "roundcube", FILING, active=True)
    source.setacl(owner.login, "Projects", reader.login, "lrs")
    govmigrate("-w", ws, "sync", owner.email)
    # The user changes the rule and takes the reader's access away; someone on the central host edits the
    # other user's script, which govmigrate then must not overwrite.
    source.put_script(owner.login, "roundcube", FILING.replace('"budget"', '"tender"'), active=True)
    source.setacl(owner.login, "Projects", reader.login, "")
    source.put_script(other.login, "mine", 'require ["fileinto"];\nif header :contains "subject" "x" '
                      '{ fileinto "Personal"; }\n', active=True)
    govmigrate("-w", ws, "sync", other.email)
    central.put_script(other.email, "mine", "keep;\n", active=True)
    # Read within sync.settings_interval_hours: only --settings (or a final pass) reads them again now.
    govmigrate("-w", ws, "sync", "--settings", owner.email, other.email)

    assert '"tender"' in central.scripts(owner.email)[1]["roundcube"]
    assert reader.email not in central.getacl(owner.email, "Projects")
    assert central.scripts(other.email)[1]["mine"] == "keep;\n"
    kept = _settings(_status(govmigrate, ws, other.email), "rule")
    assert [r["state"] for r in kept.values()] == ["not-moved"]
    assert "changed on the central host" in next(iter(kept.values()))["reason"]


def _edit(ws: Path, change) -> None:
    doc = yaml.safe_load((ws / "migration.yaml").read_text())
    change(doc)
    (ws / "migration.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def _in_store(ws: Path, sql: str, *params) -> None:
    """Change the workspace's store as a restored backup, a clock gone back or a crash would have left it."""
    store = scenario.workspace_store(ws)
    try:
        with store.tx() as c:
            c.execute(sql, params)
    finally:
        store.close()


def test_a_pass_within_the_settings_interval_does_not_read_them_again_the_final_pass_does(govmigrate, imap_lab):
    lab, ws, boxes = imap_lab
    source, central = lab.sources["health"].server, lab.central
    owner = boxes[0]
    source.put_script(owner.login, "roundcube", FILING, active=True)
    govmigrate("-w", ws, "inventory", "mail")
    govmigrate("-w", ws, "plan", "generate", expect=None)
    wave = next(w.stem for w in sorted((ws / "plans").glob("*.yaml"))
                if owner.email in yaml.safe_load(w.read_text()).get("mailboxes", []))
    govmigrate("-w", ws, "plan", "approve", wave)
    govmigrate("-w", ws, "run", wave, "--pass", "prestage")
    first = _status(govmigrate, ws, owner.email)["settings_read_at"]
    assert first and '"budget"' in central.scripts(owner.email)[1]["roundcube"]
    assert f"moved by the last sync that read them, {first}" in govmigrate("-w", ws, "status", owner.email).stdout

    source.put_script(owner.login, "roundcube", FILING.replace('"budget"', '"tender"'), active=True)
    govmigrate("-w", ws, "run", wave, "--pass", "delta")
    assert '"budget"' in central.scripts(owner.email)[1]["roundcube"]       # read moments ago: left for now
    assert _status(govmigrate, ws, owner.email)["settings_read_at"] == first
    govmigrate("-w", ws, "run", wave, "--pass", "final")
    assert '"tender"' in central.scripts(owner.email)[1]["roundcube"]       # the cut-over reads them whatever

    # A stamp from the future (a store restored from another host's clock) is as good as none.
    source.put_script(owner.login, "roundcube", FILING.replace('"budget"', '"minutes"'), active=True)
    _in_store(ws, "UPDATE mailboxes SET settings_read_at = ? WHERE email = ?", "2999-01-01T00:00:00Z", owner.email)
    govmigrate("-w", ws, "sync", owner.email)
    assert '"minutes"' in central.scripts(owner.email)[1]["roundcube"]


def test_settings_interval_zero_reads_them_every_pass_and_a_failed_read_is_tried_again(govmigrate, imap_lab):
    lab, ws, boxes = imap_lab
    source, central = lab.sources["health"].server, lab.central
    owner = boxes[0]
    source.put_script(owner.login, "roundcube", FILING, active=True)
    port = yaml.safe_load((ws / "migration.yaml").read_text())["sources"][0]["server"]["sieve_port"]
    # ManageSieve unreachable: the rules are not known, and the next pass reads them whatever the interval.
    _edit(ws, lambda d: d["sources"][0]["server"].update(sieve_port=free_port()))
    govmigrate("-w", ws, "sync", owner.email)
    assert _status(govmigrate, ws, owner.email)["settings_read_at"] is None
    _edit(ws, lambda d: d["sources"][0]["server"].update(sieve_port=port))
    govmigrate("-w", ws, "sync", owner.email)
    assert '"budget"' in central.scripts(owner.email)[1]["roundcube"]
    assert _status(govmigrate, ws, owner.email)["settings_read_at"]

    _edit(ws, lambda d: d.setdefault("sync", {}).update(settings_interval_hours=0))
    source.put_script(owner.login, "roundcube", FILING.replace('"budget"', '"tender"'), active=True)
    govmigrate("-w", ws, "sync", owner.email)
    assert '"tender"' in central.scripts(owner.email)[1]["roundcube"]


def test_a_script_written_by_a_pass_whose_record_was_lost_is_still_govmigrates(govmigrate, imap_lab):
    lab, ws, boxes = imap_lab
    source, central = lab.sources["health"].server, lab.central
    owner = boxes[0]
    source.put_script(owner.login, "roundcube", FILING, active=True)
    govmigrate("-w", ws, "sync", owner.email)
    written = central.scripts(owner.email)[1]["roundcube"]
    _in_store(ws, "DELETE FROM mailbox_settings WHERE phase = 'sync'")      # the record of that pass lost
    govmigrate("-w", ws, "sync", "--settings", owner.email)
    rules = _settings(_status(govmigrate, ws, owner.email), "rule")
    assert rules["roundcube: Budget into Projects"]["state"] == "moved"
    assert central.scripts(owner.email)[1]["roundcube"] == written
    # Changed there since, it is someone else's again: left as it is.
    _in_store(ws, "DELETE FROM mailbox_settings WHERE phase = 'sync'")      # the record of that pass lost
    central.put_script(owner.email, "roundcube", "keep;\n", active=True)
    govmigrate("-w", ws, "sync", "--settings", owner.email)
    assert central.scripts(owner.email)[1]["roundcube"] == "keep;\n"
    assert _settings(_status(govmigrate, ws, owner.email), "rule")["roundcube: Budget into Projects"]["state"] \
        == "not-moved"


def test_inventory_counts_rules_and_sharing_as_to_move_or_not(govmigrate, imap_lab):
    lab, ws, boxes = imap_lab
    source = lab.sources["health"].server
    owner, reader, _ = boxes
    source.put_script(owner.login, "roundcube", FILING, active=True)
    source.setacl(owner.login, "Projects", reader.login, "lrs")
    source.setacl(owner.login, "Projects", "anyone", "lr")
    govmigrate("-w", ws, "inventory", "mail")
    view = _status(govmigrate, ws, owner.email)
    inventory = {(s["kind"], s["name"]): s for s in view["settings_inventory"]}
    assert inventory[("rule", "roundcube: Budget into Projects")]["state"] == "to-move"
    assert inventory[("sharing", f"Projects → {reader.login}")]["state"] == "to-move"
    assert inventory[("sharing", "Projects → anyone")]["state"] == "cannot-move"
    text = govmigrate("-w", ws, "status", owner.email).stdout
    assert "Rules, out-of-office, shared folders" in text and "cannot be moved, tell the user" in text


# -- an Exchange ministry: inbox rules, out-of-office, folder permissions, delegates ----------------------

@pytest.fixture
def ews_lab(tmp_path):
    boxes = corpus.ministry(seed="rules-ews", domain="finance.gov.bz", users=3, messages=12, login_style="email")
    ws = tmp_path / "ws"
    lab = scenario.ews_lab(ws, boxes)
    yield lab, ws, boxes, lab.extra[0]
    lab.stop()


RULES = [
    LabRule("Budget to the project", 1, {"ContainsSubjectStrings": ["budget"]},
            {"MoveToFolder": ("Projects", "Budget 2025"), "StopProcessingRules": True}),
    LabRule("Flag the minister", 2, {"FromAddresses": ["minister@finance.gov.bz"]},
            {"MarkImportance": "High", "MarkAsRead": True}),
    LabRule("Forward to my phone", 3, {"ContainsSubjectStrings": ["urgent"]},
            {"ForwardToRecipients": ["me@phone.example"]}),
    LabRule("Tagged for audit", 4, {"Categories": ["Audit"]}, {"MoveToFolder": ("Personal",)}),
]


def test_exchange_rules_become_sieve_and_file_mail_delivered_over_lmtp(govmigrate, ews_lab):
    lab, ws, boxes, responder = ews_lab
    central = lab.central
    box = boxes[0]
    responder.set_rules(box.email, RULES)
    govmigrate("-w", ws, "sync", box.email)

    assert central.scripts(box.email)[0] == "exchange-rules"
    _deliver(central, box.email, "Budget review")
    _deliver(central, box.email, "A word", sender="minister@finance.gov.bz")
    _deliver(central, box.email, "urgent: call back")
    assert b"Subject: Budget review" in _subjects(central, box.email, "Projects/Budget 2025")
    inbox = dict(_folder(central, box.email, "INBOX"))
    assert {"\\Seen", "\\Flagged"} <= inbox[b"Subject: A word"]
    assert b"Subject: urgent: call back" in inbox          # kept, and not forwarded outside
    assert not _sent_to(central, "me@phone.example")
    rules = _settings(_status(govmigrate, ws, box.email), "rule")
    assert rules["Budget to the project"]["state"] == "moved"
    assert rules["Flag the minister"]["state"] == "moved"
    assert rules["Forward to my phone"]["state"] == "held"
    assert rules["Tagged for audit"]["state"] == "not-moved"
    assert "category" in rules["Tagged for audit"]["reason"]
    text = govmigrate("-w", ws, "status", box.email).stdout
    assert "Tagged for audit" in text and "not moved, tell the user" in text


def test_out_of_office_that_is_on_replies_and_one_that_ended_is_not_turned_on(govmigrate, ews_lab):
    lab, ws, boxes, responder = ews_lab
    central = lab.central
    on, ended = boxes[0], boxes[1]
    now = dt.datetime.now(dt.UTC)
    responder.set_oof(on.email, LabOof("Scheduled", "All", now - dt.timedelta(days=1), now + dt.timedelta(days=5),
                                       "Internal: back on Friday.", "External: the Ministry answers your mail."))
    responder.set_oof(ended.email, LabOof("Scheduled", "All", now - dt.timedelta(days=9),
                                          now - dt.timedelta(days=2), "I was away.", "I was away."))
    govmigrate("-w", ws, "sync", on.email, ended.email)

    _deliver(central, on.email, "Hello", sender="colleague@finance.gov.bz")
    _deliver(central, on.email, "Hello", sender="citizen@mail.example")
    _deliver(central, ended.email, "Hello", sender="someone@mail.example")
    inside = _sent_to(central, "colleague@finance.gov.bz")
    outside = _sent_to(central, "citizen@mail.example")
    assert inside and b"Internal: back on Friday." in inside[0]
    assert outside and b"External: the Ministry answers your mail." in outside[0]
    assert not _sent_to(central, "someone@mail.example")
    assert central.scripts(ended.email) == (None, {})
    vacation = _settings(_status(govmigrate, ws, ended.email), "vacation")["out of office"]
    assert vacation["state"] == "not-moved" and "ended on" in vacation["reason"]


def test_exchange_folder_permissions_become_acls_and_delegates_are_listed(govmigrate, ews_lab):
    lab, ws, boxes, responder = ews_lab
    central = lab.central
    owner, reader, writer = boxes
    responder.set_permissions(owner.email, ("Projects",), [LabPermission(reader.email, "Reviewer"),
                                                          LabPermission(writer.email, "Editor"),
                                                          LabPermission("Default", "Reviewer")])
    responder.set_delegates(owner.email, [LabDelegate(reader.email, calendar="Editor")])
    govmigrate("-w", ws, "sync", owner.email)

    acl = central.getacl(owner.email, "Projects")
    assert _rights(acl[reader.email]) == set("lrs") and _rights(acl[writer.email]) == set("lrswipte")
    conn = central.connect(writer.email)
    try:
        assert conn.append(f'"shared/{owner.email}/Projects"', "", None, _message(owner.email, "x"))[0] == "OK"
    finally:
        conn.logout()
    view = _status(govmigrate, ws, owner.email)
    sharing = _settings(view, "sharing")
    assert sharing[f"Projects → {writer.email}"]["state"] == "moved"
    assert sharing["Projects → anyone"]["state"] == "not-moved"
    delegate = _settings(view, "delegate")[reader.email]
    assert delegate["state"] == "not-moved" and "Editor of the calendar" in delegate["reason"]


def test_a_later_pass_carries_a_new_exchange_rule_and_an_out_of_office_turned_off(govmigrate, ews_lab):
    lab, ws, boxes, responder = ews_lab
    central = lab.central
    box = boxes[0]
    responder.set_rules(box.email, RULES[:1])
    responder.set_oof(box.email, LabOof("Enabled", "All", internal="Away.", external="Away."))
    govmigrate("-w", ws, "sync", box.email)
    responder.set_rules(box.email, [*RULES[:1], LabRule("Minutes", 5, {"ContainsSubjectStrings": ["minutes"]},
                                                        {"MoveToFolder": ("Personal",)})])
    responder.set_oof(box.email, LabOof("Disabled"))
    govmigrate("-w", ws, "sync", "--settings", box.email)

    _deliver(central, box.email, "minutes of the board", sender="a@mail.example")
    assert b"Subject: minutes of the board" in _subjects(central, box.email, "Personal")
    assert not _sent_to(central, "a@mail.example")
    assert "vacation" not in central.scripts(box.email)[1]["exchange-rules"]


def test_exchange_inventory_shows_to_move_and_cannot_be_moved(govmigrate, ews_lab):
    _lab, ws, boxes, responder = ews_lab
    box = boxes[0]
    responder.add_settings(box.email)
    govmigrate("-w", ws, "inventory", "mail")
    inventory = {(s["kind"], s["name"]): s["state"] for s in _status(govmigrate, ws, box.email)["settings_inventory"]}
    assert inventory[("rule", "Budget to project")] == "to-move"
    assert inventory[("rule", "Copy to my phone")] == "to-move"
    assert inventory[("rule", "Tagged for audit")] == "cannot-move"
    assert inventory[("vacation", "out of office")] == "to-move"
    assert inventory[("delegate", f"assistant@{box.email.split('@')[1]}")] == "cannot-move"


def test_plan_wave_record_and_programme_report_say_what_was_not_moved(govmigrate, imap_lab):
    lab, ws, boxes = imap_lab
    source = lab.sources["health"].server
    owner = boxes[0]
    source.put_script(owner.login, "roundcube", FILING, active=True)
    source.setacl(owner.login, "Projects", "anyone", "lr")
    govmigrate("-w", ws, "inventory", "mail")
    plan = json.loads(govmigrate("-w", ws, "plan", "generate", "--json", expect=None).stdout)
    plan_text = "".join(p.read_text() for p in (ws / "plans").glob("*.yaml"))
    assert "rules/out-of-office/sharing: 3 to move, 1 cannot be moved, tell the user" in plan_text
    govmigrate("-w", ws, "sync", owner.email)
    wave = next(w["wave"] for w in plan["waves"] if owner.email in
                json.dumps(json.loads(govmigrate("-w", ws, "report", "--wave", w["wave"], "--json").stdout)))
    record = json.loads(govmigrate("-w", ws, "report", "--wave", wave, "--json").stdout)
    [mine] = [m for m in record["mailboxes"] if m["email"] == owner.email]
    left = {(s["name"], s["state"]) for s in mine["settings_not_moved"]}
    assert left == {("roundcube: Copy to my private address", "held"), ("Projects → anyone", "not-moved")}
    assert mine["settings_moved"] == 2
    text = govmigrate("-w", ws, "report", "--wave", wave).stdout
    assert "not moved or moved switched off" in text and "Projects → anyone" in text
    programme = govmigrate("-w", ws, "report").stdout
    assert "mail rules, out-of-office, shared folders and delegates: 2 moved, 1 moved, switched off" in programme


def test_hostile_rule_names_and_texts_stay_data_in_the_script(govmigrate, ews_lab):
    lab, ws, boxes, responder = ews_lab
    central = lab.central
    box = boxes[0]
    evil = 'x" {\r\nredirect "thief@mail.example"; }\r\n# rule:[y'
    responder.set_rules(box.email, [
        LabRule(evil, 1, {"ContainsSubjectStrings": ['budget"; redirect "thief@mail.example"; #']},
                {"MoveToFolder": ("Personal",)})])
    responder.set_oof(box.email, LabOof("Enabled", "All", internal='back "soon" \\ ${x}\r\n}\r\nredirect "a@b.c";',
                                        external=""))
    govmigrate("-w", ws, "sync", box.email)
    _deliver(central, box.email, 'budget"; redirect "thief@mail.example"; # now', sender="citizen@mail.example")
    assert b'Subject: budget"; redirect "thief@mail.example"; # now' in _subjects(central, box.email, "Personal")
    assert not _sent_to(central, "thief@mail.example") and not _sent_to(central, "a@b.c")
    reply = _sent_to(central, "citizen@mail.example")
    assert reply and b'back "soon" \\ ${x}' in reply[0]
    [rule] = [s for s in _status(govmigrate, ws, box.email)["settings"] if s["kind"] == "rule"]
    assert rule["state"] == "moved" and "thief" in rule["name"]
