"""What users do between the passes of a wave: they move mail between folders, rename and delete folders, delete
and flag mail; mail reaches the central host by other means meanwhile. After the final pass each mailbox on the
central host is the one the user left: every message once, in the folder it was last put in, with its flags,
the folders renamed (and their subscriptions with them) or gone, and nothing else touched.

Every scenario runs through the command line against the lab's real servers (Dovecot, the EWS responder) and
ends with an exact comparison of the source and the central host.
"""

from __future__ import annotations

import imaplib
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from migrate.core.errors import ExitCode
from tests.lab import corpus, scenario
from tests.lab.dovecot import DovecotServer
from tests.lab.inspect import read_mailbox
from tests.lab.scenario import Lab

ROOT = Path(__file__).resolve().parents[1]
#: The central host's own special-use folders (auto-created and subscribed there).
CENTRAL_SPECIAL = {"Sent", "Drafts", "Trash", "Junk", "Archive"}
#: Dovecot's capabilities after login, less MOVE: a central host that must be moved to with COPY and expunge.
NO_MOVE = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS "
           "THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS "
           "LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS "
           "BINARY SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE QUOTA")
EWS_FLAGS = {"\\Seen", "\\Flagged", "\\Draft"}
EWS_CENTRAL_NAME = {"Inbox": "INBOX", "Sent Items": "Sent", "Deleted Items": "Trash", "Junk Email": "Junk",
                    "Drafts": "Drafts"}
DELIVERED = {"INBOX": b"Subject: delivered to the central host after the MX switch\r\n\r\nkeep me\r\n",
             "Projects": b"Subject: filed on the central host by the user\r\n\r\nkeep me too\r\n",
             "Personal": b"Subject: delivered into a folder the user deletes at the source\r\n\r\nand me\r\n"}
#: Where that mail is once the user renamed Projects (the central folder renamed with it) and deleted Personal
#: (the central folder kept: it holds mail govmigrate did not copy).
DELIVERED_AFTER = {"INBOX": DELIVERED["INBOX"], "Projects 2025": DELIVERED["Projects"],
                   "Personal": DELIVERED["Personal"]}


# -- the command line -------------------------------------------------------------------------------------

def cli(ws: Path, *args: str, crash_at: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """govmigrate in its own process (a SIGKILL must not take the test down)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("GOVMIGRATE_WORKSPACE", None)
    if crash_at:
        env["GOVMIGRATE_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-m", "migrate", "-w", str(ws), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def ok(result: subprocess.CompletedProcess, code: int = 0) -> subprocess.CompletedProcess:
    assert result.returncode == code, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def run_pass(ws: Path, wave: str, pass_name: str, *extra: str, code: int = 0, timeout: float = 300) -> dict:
    return json.loads(ok(cli(ws, "run", wave, "--pass", pass_name, "--json", *extra, timeout=timeout), code).stdout)


def plan_wave(ws: Path, email: str) -> str:
    """Inventory, plan and approve: the wave that holds ``email``."""
    ok(cli(ws, "inventory", "mail"))
    ok(cli(ws, "plan", "generate"))
    for path in sorted((ws / "plans").glob("*.yaml")):
        if path.stem == "index":
            continue
        if email in yaml.safe_load(path.read_text())["mailboxes"]:
            ok(cli(ws, "plan", "approve", path.stem))
            return path.stem
    raise AssertionError(f"{email} is in no wave")


def status(ws: Path, email: str) -> dict:
    return json.loads(ok(cli(ws, "status", email, "--json")).stdout)


def verify(ws: Path, email: str, code: int = 0) -> dict:
    return json.loads(ok(cli(ws, "verify", email, "--json"), code).stdout)[0]


# -- the two sides, as the test reads them (plain imaplib, independent of govmigrate) --------------------

def subscriptions(server: DovecotServer, login: str) -> set[str]:
    """Every subscribed name (LSUB), whether or not the folder exists: a subscription left behind shows."""
    conn = server.connect(login)
    try:
        _typ, data = conn.lsub()
    finally:
        conn.logout()
    names = set()
    for line in data or ():
        if isinstance(line, tuple):
            line = line[0] + line[1]
        m = re.match(rb'^\([^)]*\) (?:"."|NIL) (.+)$', line or b"")
        if m:
            from imapclient.imap_utf7 import decode

            name = m.group(1)
            if name.startswith(b'"'):
                name = name[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
            names.add(decode(name))
    return names


def central_view(lab: Lab, email: str) -> dict[str, Counter]:
    return {name: Counter((m.raw, m.flags) for m in view.messages)
            for name, view in read_mailbox(lab.central, email).items()}


def delivered_expected(delivered: dict[str, bytes]) -> dict[str, Counter]:
    return {name: Counter({(raw, frozenset()): 1}) for name, raw in delivered.items()}


def assert_exact(lab: Lab, email: str, want: dict[str, Counter], want_subscribed: set[str],
                 delivered: dict[str, bytes]) -> None:
    """The central host holds exactly what the source holds (every message once, in its folder, with its flags),
    plus the mail delivered there by other means, and the central host's own special folders; its subscriptions
    are the source's (with the special folders, and a folder deleted at the source that is kept for the mail
    delivered into it, so that this mail stays in sight), none left behind."""
    kept = set(delivered) - set(want)
    want = {name: Counter(c) for name, c in want.items()}
    for name, extra in delivered_expected(delivered).items():
        want.setdefault(name, Counter()).update(extra)
    for name in CENTRAL_SPECIAL:
        want.setdefault(name, Counter())
    got = central_view(lab, email)
    assert set(got) == set(want), f"folders: extra {sorted(set(got) - set(want))}, missing {sorted(set(want) - set(got))}"
    for name in want:
        if got[name] != want[name]:
            extra, missing = got[name] - want[name], want[name] - got[name]
            raise AssertionError(f"{name}: {sum(extra.values())} extra, {sum(missing.values())} missing: "
                                 f"{[(raw[:70], flags) for raw, flags in extra]} / "
                                 f"{[(raw[:70], flags) for raw, flags in missing]}")
    assert subscriptions(lab.central, email) == want_subscribed | CENTRAL_SPECIAL | kept


# -- an IMAP user at work ---------------------------------------------------------------------------------

class ImapUser:
    """The user, changing the mailbox on the ministry's Dovecot as a mail client would."""

    def __init__(self, server: DovecotServer, login: str) -> None:
        self.server, self.login = server, login

    def _session(self, folder: str | None = None) -> imaplib.IMAP4:
        conn = self.server.connect(self.login)
        if folder is not None:
            conn.select(_q(folder))
        return conn

    def _uids(self, conn: imaplib.IMAP4) -> list[bytes]:
        return conn.uid("SEARCH", "ALL")[1][0].split()

    def _raw(self, conn: imaplib.IMAP4, uid: bytes) -> bytes:
        return next(part[1] for part in conn.uid("FETCH", uid, "(BODY.PEEK[])")[1] if isinstance(part, tuple))

    def move(self, folder: str, index: int, to: str) -> bytes:
        """Move the message at ``index`` (UID order) of ``folder`` to ``to`` (UID MOVE); returns its bytes."""
        conn = self._session(folder)
        try:
            uid = self._uids(conn)[index]
            raw = self._raw(conn, uid)
            assert conn.uid("MOVE", uid, _q(to))[0] == "OK"
            return raw
        finally:
            conn.logout()

    def rename(self, old: str, new: str) -> None:
        """RENAME, and the subscriptions moved to the new names (of the folders below it too), as clients do."""
        conn = self._session()
        try:
            subscribed = subscriptions(self.server, self.login)
            assert conn.rename(_q(old), _q(new))[0] == "OK"
            for name in subscribed:
                if name == old or name.startswith(old + "/"):
                    conn.unsubscribe(_q(name))
                    conn.subscribe(_q(new + name[len(old):]))
        finally:
            conn.logout()

    def delete_message(self, folder: str, index: int) -> bytes:
        conn = self._session(folder)
        try:
            uid = self._uids(conn)[index]
            raw = self._raw(conn, uid)
            conn.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
            conn.expunge()
            return raw
        finally:
            conn.logout()

    def delete_folder(self, name: str) -> None:
        conn = self._session()
        try:
            assert conn.delete(_q(name))[0] == "OK"
            conn.unsubscribe(_q(name))
        finally:
            conn.logout()

    def subscribe(self, name: str, subscribed: bool = True) -> None:
        conn = self._session()
        try:
            assert (conn.subscribe if subscribed else conn.unsubscribe)(_q(name))[0] == "OK"
        finally:
            conn.logout()

    def flag(self, folder: str, indexes: list[int], flag: str = "\\Flagged") -> None:
        conn = self._session(folder)
        try:
            uids = self._uids(conn)
            for i in indexes:
                conn.uid("STORE", uids[i], "+FLAGS", f"({flag})")
        finally:
            conn.logout()


def _q(name: str) -> str:
    from imapclient.imap_utf7 import encode

    return '"' + encode(name).decode().replace("\\", "\\\\").replace('"', '\\"') + '"'


def deliver(server: DovecotServer, email: str, delivered: dict[str, bytes]) -> None:
    """Mail reaching the central host by other means (a delivery agent, the user on the central host)."""
    conn = server.connect(email)
    try:
        for folder, raw in delivered.items():
            assert conn.append(_q(folder), "()", None, raw)[0] == "OK"
    finally:
        conn.logout()


def source_side(server: DovecotServer, login: str) -> tuple[dict[str, Counter], set[str]]:
    """The source mailbox as folders of (bytes, flags), and its subscriptions (the modern layout's names are the
    central host's)."""
    view = read_mailbox(server, login)
    return ({name: Counter((m.raw, m.flags) for m in v.messages) for name, v in view.items()},
            subscriptions(server, login))


# -- IMAP --------------------------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def imap_lab(request, tmp_path):
    """One modern Dovecot ministry, a central host (``request.param`` also picks the state store), a workspace
    and the one user's wave planned and approved. Streamed above 1 MB, so a large message moved goes that way."""
    from tests.conftest import shared_state_if

    with shared_state_if(request) as state_url, scenario.engine_state(state_url):
        ws = tmp_path / "ws"
        lab, boxes = scenario.small_lab(ws, seed="moves", messages=30)
        try:
            with (ws / "migration.yaml").open("a") as f:
                f.write("sync:\n  stream_threshold: 1000000\n  batch_messages: 4\n")
            box = boxes[0]
            wave = plan_wave(ws, box.email)
            yield lab, ws, box, wave
        finally:
            lab.stop()


def user_changes_between_prestage_and_delta(lab: Lab, box: corpus.CorpusMailbox) -> ImapUser:
    """Moves 2 messages, renames a folder (with the folders below it), deletes a message and two folders, flags
    three messages, and changes two folders' subscriptions."""
    user = ImapUser(lab.sources["health"].server, box.login)
    user.move("INBOX", 0, "Projects/Budget 2025")
    user.move("INBOX", 3, "Archive")
    user.rename("Projects", "Projects 2025")
    user.delete_message("INBOX", 1)
    user.delete_folder("Personal")        # holds mail delivered to the central host: kept there
    user.delete_folder("Empty Folder")    # gone from the central host too
    user.flag("INBOX", [2, 4, 5])
    user.subscribe("Старые письма", False)
    user.subscribe("Old Unsubscribed")
    return user


def test_moves_renames_deletions_and_flags_between_passes_end_exact_on_imap(imap_lab):
    lab, ws, box, wave = imap_lab
    source = lab.sources["health"].server
    run_pass(ws, wave, "prestage")
    deliver(lab.central, box.email, DELIVERED)
    user = user_changes_between_prestage_and_delta(lab, box)

    delta = run_pass(ws, wave, "delta")
    [row] = delta["mailboxes"]
    assert row["ok"] and row["copied"] == 0, "moved and renamed mail is not copied again"
    got = central_view(lab, box.email)
    # The delta pass carried the moves and the rename; it removed nothing (a user reading the central host
    # meanwhile sees no mail vanish): the deleted message and folder are still there.
    assert "Projects" not in got and "Projects 2025/Budget 2025" in got and "Empty Folder" in got
    want, _subscribed = source_side(source, box.login)
    assert got["Projects 2025/Budget 2025"] == want["Projects 2025/Budget 2025"]
    assert got["Archive"] == want["Archive"]
    assert "Personal" in got and sum(got["INBOX"].values()) == sum(want["INBOX"].values()) + 2   # + delivered
    assert DELIVERED["Projects"] in {raw for raw, _f in got["Projects 2025"]}, "the user's own mail moved with it"
    differs = verify(ws, box.email, int(ExitCode.PARTIAL))
    assert not differs["matches"] and differs["deleted_at_source"] >= 1 and differs["orphaned_folders"] == 2
    seen = status(ws, box.email)
    assert seen["messages_copied"] <= seen["messages_total"] and seen["messages_stale"] == 3

    moved_again = user.move("Projects 2025/Budget 2025", 0, "INBOX")
    big = user.move("会议", 1, "Projects 2025/Réunions")          # 3 MB: streamed, and only its first piece read
    assert len(big) > 1_000_000 and moved_again
    final = run_pass(ws, wave, "final")
    [row] = final["mailboxes"]
    assert row["ok"] and row["after"] == "final-synced" and row["copied"] == 0
    want, subscribed = source_side(source, box.login)
    assert_exact(lab, box.email, want, subscribed, DELIVERED_AFTER)
    checked = verify(ws, box.email)
    assert checked["matches"] and checked["deleted_at_source"] == 0 and checked["other_mail"] == 2
    seen = status(ws, box.email)
    assert seen["messages_copied"] == seen["messages_total"] == sum(sum(c.values()) for c in want.values())
    assert seen["messages_stale"] == 0


def test_a_folder_deleted_at_the_source_and_not_yet_carried_is_a_difference_on_its_own(imap_lab):
    """Nothing but an empty folder deleted at the source between the prestage and a delta (which keeps it on the
    central host): verify says the mailboxes differ, by that orphaned folder alone, until the final pass."""
    lab, ws, box, wave = imap_lab
    run_pass(ws, wave, "prestage")
    ImapUser(lab.sources["health"].server, box.login).delete_folder("Empty Folder")
    run_pass(ws, wave, "delta")
    assert "Empty Folder" in central_view(lab, box.email)
    differs = verify(ws, box.email, int(ExitCode.PARTIAL))
    assert not differs["matches"] and differs["orphaned_folders"] == 1
    assert (differs["deleted_at_source"], differs["missing"], differs["duplicates"]) == (0, 0, 0)
    run_pass(ws, wave, "final")
    assert verify(ws, box.email)["matches"]


@pytest.mark.parametrize(("capability", "point"), [(None, "after-move:1"), (NO_MOVE, "mid-move:1")],
                         ids=["move", "copy-and-expunge"])
def test_a_final_pass_killed_at_a_move_resumes_exactly(tmp_path, capability, point):
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="moves", messages=30,
                                    central_kw={"capability": capability} if capability else None)
    try:
        box = boxes[0]
        wave = plan_wave(ws, box.email)
        run_pass(ws, wave, "prestage")
        deliver(lab.central, box.email, DELIVERED)
        user = user_changes_between_prestage_and_delta(lab, box)
        run_pass(ws, wave, "delta")
        user.move("Projects 2025/Budget 2025", 0, "INBOX")
        user.move("Sent", 0, "Projects 2025")
        killed = cli(ws, "run", wave, "--pass", "final", crash_at=point)
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
        resumed = run_pass(ws, wave, "final")
        [row] = resumed["mailboxes"]
        assert row["ok"] and row["after"] == "final-synced" and row["copied"] == 0, row
        # Both are moves: the one the kill interrupted was completed from its pending record, not found again
        # as a copy the store did not know.
        store = scenario.workspace_store(ws)
        try:
            last = [e.detail for e in store.events(obj=f"mailbox/{box.email}") if e.action == "sync"][-1]
        finally:
            store.close()
        assert "moved 2 between folders" in last, last
        want, subscribed = source_side(lab.sources["health"].server, box.login)
        assert_exact(lab, box.email, want, subscribed, DELIVERED_AFTER)
        assert verify(ws, box.email)["matches"]
    finally:
        lab.stop()


def test_a_folder_renamed_where_the_server_gives_it_a_new_uidvalidity_is_recognised_by_what_it_holds(tmp_path):
    """A server that does not keep UIDVALIDITY across RENAME: the renamed folder is the old one because most of
    the recorded fingerprints are among its messages; the central folder is renamed, nothing copied again."""
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="newvalidity", messages=30)
    try:
        box = boxes[0]
        source = lab.sources["health"].server
        ok(cli(ws, "sync", box.email))
        ImapUser(source, box.login).rename("Personal", "Private")
        source.doveadm("mailbox", "update", "-u", box.login, "--uid-validity", "4242", "Private")
        [row] = json.loads(ok(cli(ws, "sync", box.email, "--json")).stdout)
        assert row["copied"] == 0 and row["folders_renamed"] == [
            {"from": "Personal", "to": "Private", "dest": "Private", "dest_from": "Personal"}], row
        want, subscribed = source_side(source, box.login)
        assert_exact(lab, box.email, want, subscribed, {})
    finally:
        lab.stop()


def test_mail_delivered_to_the_central_host_survives_every_pass(tmp_path):
    """Mail that reached the central host by other means, including mail with the very bytes of a message the
    user then deletes at the source, and mail in folders the user renames or deletes, is never touched."""
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="delivered", messages=24)
    try:
        box = boxes[0]
        wave = plan_wave(ws, box.email)
        run_pass(ws, wave, "prestage")
        user = ImapUser(lab.sources["health"].server, box.login)
        twin = user.delete_message("INBOX", 0)
        deliver(lab.central, box.email, DELIVERED)
        deliver(lab.central, box.email, {"INBOX": twin})   # the very bytes of the copy to be removed, delivered
        user.rename("Projects", "Projects 2025")
        user.delete_folder("Personal")
        for pass_name in ("delta", "final"):
            run_pass(ws, wave, pass_name)
            got = central_view(lab, box.email)
            for folder, raw in {**DELIVERED_AFTER, "Archive": DELIVERED["INBOX"]}.items():
                if folder == "Archive":
                    continue
                assert sum(n for (r, _f), n in got[folder].items() if r == raw) == 1, (pass_name, folder)
            # The copy of the deleted message stays until the final pass; the delivered twin stays for good (and
            # so do the copies of identical messages still at the source).
            at_source = sum(n for (r, _f), n in source_side(lab.sources["health"].server, box.login)[0]["INBOX"].items()
                            if r == twin)
            assert sum(n for (r, _f), n in got["INBOX"].items() if r == twin) == \
                at_source + 1 + (1 if pass_name == "delta" else 0), pass_name
        want, subscribed = source_side(lab.sources["health"].server, box.login)
        want["INBOX"][(twin, frozenset())] += 1
        assert_exact(lab, box.email, want, subscribed, DELIVERED_AFTER)
    finally:
        lab.stop()


# -- Exchange -----------------------------------------------------------------------------------------------

def ews_side(responder, email: str) -> tuple[dict[str, Counter], set[str]]:
    """The Exchange mailbox as the central host should hold it: its mail folders under their central names,
    items as Exchange exports them with the flags EWS carries; every folder subscribed (Exchange has no
    subscriptions)."""
    from tests.lab.ews_store import SYSTEM_FOLDERS

    box = responder.mailbox(email)
    system = {box.distinguished[wk] for wk, *_ in SYSTEM_FOLDERS if wk in box.distinguished}
    out: dict[str, Counter] = {}
    with responder.store.lock:
        for folder in box.mail_folders():
            if folder in system or any(f in system for f in _ancestors(folder)):
                continue
            path = folder.path
            name = "/".join((EWS_CENTRAL_NAME.get(path[0], path[0]), *path[1:]))
            out[name] = Counter((item.mime, frozenset(f for f in item.flags if f in EWS_FLAGS or not f.startswith("\\")))
                                for item in folder.items)
    return out, set(out)


def _ancestors(folder):
    while folder.parent is not None:
        folder = folder.parent
        yield folder


@pytest.fixture
def exchange(tmp_path):
    boxes = corpus.ministry(seed="ewsmoves", domain="finance.gov.bz", users=1, messages=30, login_style="email",
                            pilot=0)
    ws = tmp_path / "ws"
    lab = scenario.ews_lab(ws, boxes, waves={"pilot": {"count": 0}})
    try:
        with (ws / "migration.yaml").open("a") as f:
            f.write("sync:\n  batch_messages: 4\n")
        box = boxes[0]
        yield lab, ws, box, lab.extra[0], plan_wave(ws, box.email)
    finally:
        lab.stop()


def exchange_user_changes(responder, email: str) -> None:
    """Moves 2 items (each gets a new ItemId where it arrives), renames a folder (its FolderId stays), deletes an
    item and a folder, flags three items."""
    inbox = responder.item_ids(email, ("Inbox",))
    responder.move_message(email, inbox[0], ("Projects", "Budget 2025"))
    responder.move_message(email, inbox[3], ("Archive",))
    responder.rename_folder(email, ("Projects",), "Projects 2025")
    responder.delete_message(email, inbox[1])
    responder.delete_folder(email, ("Personal",))
    responder.delete_folder(email, ("Empty Folder",))
    box = responder.mailbox(email)
    for item_id in inbox[4:7]:
        item = responder.store.items[item_id]
        responder.set_flags(email, item_id, (*item.flags, "\\Flagged") if "\\Flagged" not in item.flags
                            else tuple(f for f in item.flags if f != "\\Flagged"))
    assert box.folder("Projects 2025", "Budget 2025")


def test_moves_renames_deletions_and_flags_between_passes_end_exact_on_exchange(exchange):
    lab, ws, box, responder, wave = exchange
    run_pass(ws, wave, "prestage")
    deliver(lab.central, box.email, DELIVERED)
    exchange_user_changes(responder, box.email)
    [row] = run_pass(ws, wave, "delta")["mailboxes"]
    assert row["ok"] and row["copied"] == 0, "moved items are moved on the central host, not copied again"
    got = central_view(lab, box.email)
    want, _subscribed = ews_side(responder, box.email)
    assert "Projects" not in got and got["Projects 2025/Budget 2025"] == want["Projects 2025/Budget 2025"]
    assert "Personal" in got, "the delta pass removed nothing"
    budget = responder.item_ids(box.email, ("Projects 2025", "Budget 2025"))
    responder.move_message(box.email, budget[0], ("Inbox",))
    [row] = run_pass(ws, wave, "final")["mailboxes"]
    assert row["ok"] and row["after"] == "final-synced" and row["copied"] == 0, row
    want, subscribed = ews_side(responder, box.email)
    assert_exact(lab, box.email, want, subscribed, DELIVERED_AFTER)
    assert verify(ws, box.email)["matches"]


def test_what_left_a_folder_is_found_after_exchange_refuses_the_sync_state(exchange):
    """Exchange sends no Delete across a new start: after it refused the stored state, the folder's full listing
    is compared with the records, and what is missing from it was deleted (or moved) at the source."""
    lab, ws, box, responder, wave = exchange
    run_pass(ws, wave, "prestage")
    inbox = responder.item_ids(box.email, ("Inbox",))
    responder.delete_message(box.email, inbox[2])
    responder.move_message(box.email, inbox[5], ("Sent Items",))
    responder.store.reject_sync_states()
    [row] = run_pass(ws, wave, "final")["mailboxes"]
    assert row["ok"] and row["copied"] == 0, row
    want, subscribed = ews_side(responder, box.email)
    assert_exact(lab, box.email, want, subscribed, {})
    checked = verify(ws, box.email)
    assert checked["matches"] and checked["deleted_at_source"] == 0


def test_a_server_that_answers_busy_to_everything_fails_the_mailbox_as_throttled_and_the_run_ends(exchange):
    """ErrorServerBusy inside an HTTP 200 answer counts against the budget like any other busy answer: the
    mailbox fails as throttled after the waits the README promises (5 per request), and the run ends."""
    _lab, ws, box, responder, wave = exchange
    run_pass(ws, wave, "prestage")
    new = corpus.CorpusMessage(b"Subject: arrived while Exchange throttles\r\n\r\nnew\r\n", ("\\Seen",),
                               box.folder("INBOX").messages[0].internaldate)
    responder.add_message(box.email, ("Inbox",), new)
    # Busy to every GetItem (the message's MIME): the pre-flight passes, the copy is throttled.
    responder.clear_log()
    responder.inject("busy_in_200", count=100_000, operation="GetItem", back_off_ms=20)
    [row] = run_pass(ws, wave, "delta", code=int(ExitCode.PARTIAL), timeout=120)["mailboxes"]
    assert not row["ok"] and "throttl" in row["error"], row
    asked = responder.requests_for("GetItem")
    assert asked and all(r.code == "ErrorServerBusy" for r in asked)
    assert len(asked) <= 6, f"{len(asked)} GetItem to a server that answered busy to each: 1 and 5 more at most"
    seen = status(ws, box.email)
    assert seen["state"] == "failed" and "throttl" in (seen["reason"] or "")
    # Busy to everything: the pre-flight finds the mailbox throttled; forced, the run goes on without it and ends.
    responder.clear_faults()
    responder.clear_log()
    responder.inject("busy_in_200", count=100_000, back_off_ms=20)
    result = run_pass(ws, wave, "delta", "--force", code=int(ExitCode.PARTIAL), timeout=120)
    assert [e["email"] for e in result["left_out_by_preflight"]] == [box.email]
    assert "throttl" in result["left_out_by_preflight"][0]["why"]
    answered = [r for r in responder.request_log if r.status != 401]    # (401s: NTLM's handshake)
    assert answered and all(r.code == "ErrorServerBusy" for r in answered)
    assert len(answered) <= 6, f"{len(answered)} requests to a server that answered busy to each"


def test_items_exchange_cannot_export_stay_counted_and_hold_the_final_pass_until_accepted(tmp_path):
    """Unexportable items are asked for again on every pass and stay counted (status, the wave record, the
    programme report); a mailbox with more of them than sync.bad_item_limit is not final-synced unless the run is
    forced with a reason, which is recorded with them."""
    boxes = corpus.ministry(seed="baditems", domain="finance.gov.bz", users=2, messages=20, login_style="email",
                            pilot=0)
    ws = tmp_path / "ws"
    lab = scenario.ews_lab(ws, boxes, waves={"pilot": {"count": 0}})
    try:
        responder = lab.extra[0]
        many, few = boxes
        for box, broken in ((many, 2), (few, 1)):
            for item_id in responder.item_ids(box.email, ("Inbox",))[:broken]:
                responder.break_item(item_id, "conversion-failed")
        with (ws / "migration.yaml").open("a") as f:
            f.write("sync:\n  bad_item_limit: 1\n")
        wave = plan_wave(ws, many.email)
        result = run_pass(ws, wave, "prestage", code=int(ExitCode.PARTIAL))   # more than the limit: exit 1
        rows = {r["email"]: r for r in result["mailboxes"]}
        assert rows[many.email]["ok"] and rows[many.email]["not_copied"] == 2 and rows[many.email]["over_limit"]
        assert rows[few.email]["ok"] and rows[few.email]["not_copied"] == 1 and not rows[few.email]["over_limit"]
        assert {r["after"] for r in rows.values()} == {"prestaged"}
        # A second pass asks again and still counts them (it does not end "ok" having forgotten them).
        rows = {r["email"]: r for r in run_pass(ws, wave, "delta", code=int(ExitCode.PARTIAL))["mailboxes"]}
        assert rows[many.email]["not_copied"] == 2 and rows[few.email]["not_copied"] == 1
        assert status(ws, many.email)["messages_refused"] == 2
        report = json.loads(ok(cli(ws, "report", "--json")).stdout)
        assert report["totals"]["messages_not_copied"] == 3
        record = json.loads(ok(cli(ws, "report", "--wave", wave, "--json")).stdout)
        assert {m["email"]: len(m["not_copied"]) for m in record["mailboxes"]} == {many.email: 2, few.email: 1}

        rows = {r["email"]: r for r in run_pass(ws, wave, "final", code=int(ExitCode.PARTIAL))["mailboxes"]}
        assert rows[few.email]["after"] == "final-synced", "within the limit"
        assert rows[many.email]["after"] == "failed" and "bad_item_limit" in rows[many.email]["error"]
        seen = status(ws, many.email)
        assert seen["state"] == "failed" and "All mail copied" not in seen["state_text"]
        rows = {r["email"]: r for r in run_pass(ws, wave, "final", "--force",
                                                code=int(ExitCode.PARTIAL))["mailboxes"]}
        assert rows[many.email]["after"] == "failed", "--force alone decides nothing: it needs a reason"
        reason = "two corrupt meeting requests; the user was told on 2026-11-30"
        [row] = run_pass(ws, wave, "final", "--force", "--reason", reason)["mailboxes"]
        assert row["email"] == many.email and row["after"] == "final-synced" and row["accepted"] == 2
        seen = status(ws, many.email)
        assert seen["messages_refused"] == 2 and seen["messages_accepted"] == 2
        assert "All mail copied" not in seen["state_text"] and "2 message(s) could not be copied" in seen["state_text"]
        assert all(m["accepted"] == reason for m in seen["messages_not_copied"])
        text = ok(cli(ws, "status", many.email)).stdout
        assert "2 not copied (2 accepted)" in text and f"accepted: {reason}" in text
    finally:
        lab.stop()
