"""`govmigrate inventory`: what the probe and the measurement report equals what the lab's servers hold."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
from dataclasses import asdict
from datetime import UTC
from pathlib import Path

import pytest
import yaml

from migrate.core.config import load_project
from migrate.core.errors import ExitCode
from migrate.core.progress import Tally
from migrate.core.store import ProbeRow, open_store
from migrate.mailbox.inventory import run_inventory
from tests.lab import corpus
from tests.lab.base import LOOPBACK, free_port
from tests.lab.scenario import LabSource, tls_settings

# -- workspace helpers (shared with the other inventory test modules) ---------------------------------


def secret_file(ws: Path, name: str, value: str) -> str:
    secrets = ws / "secrets"
    secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = secrets / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return f"file:secrets/{name}"


def imap_source(ws: Path, src: LabSource, *, port: int | None = None, login: dict | None = None,
                **server: object) -> dict:
    """A project-file source entry for a lab Dovecot (master-user login unless ``login`` is given), reached
    over implicit TLS verified with the lab CA."""
    cfg = src.server.config
    entry = {
        "id": src.id,
        "ministry": src.ministry,
        "domains": [src.domain],
        "server": {"type": "imap", "host": LOOPBACK, **tls_settings(ws, src.server), "timeout": 20,
                   "login": login or {"method": "master_user", "user": cfg.master_user,
                                      "password": secret_file(ws, f"{src.id}-master", cfg.master_password)}},
        "users": f"users/{src.id}.csv",
        "connections": 4,
    }
    if port:
        entry["server"]["port"] = port
    entry["server"].update(server)
    return entry


def write_project(ws: Path, sources: list[dict], users: dict[str, str]) -> Path:
    """A workspace with these source entries and user lists (``users``: source id → CSV text).

    Inventory never talks to the central host, so it points at a closed port."""
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "users").mkdir(exist_ok=True)
    for source_id, text in users.items():
        (ws / "users" / f"{source_id}.csv").write_text(text)
    doc = {
        "version": 1,
        "name": "inventory test programme",
        "central": {"imap": {"host": LOOPBACK, "port": free_port(), "tls": "implicit"},
                    "login": {"method": "master_user", "user": "migrator",
                              "password": secret_file(ws, "central", "central-secret")}},
        "sources": sources,
    }
    (ws / "migration.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    if not (ws / "state.db").exists():
        open_store(ws / "state.db", create=True).close()
    return ws


def lab_workspace(ws: Path, sources: list[LabSource], **per_source: dict) -> Path:
    """Every given lab source with its full user list; ``per_source[id]`` overrides server settings."""
    return write_project(ws, [imap_source(ws, s, **per_source.get(s.id, {})) for s in sources],
                         {s.id: corpus.user_list_csv(s.mailboxes) for s in sources})


def stored(ws: Path) -> dict[str, dict]:
    """The stored inventory by email (as dicts), each with its folders by name."""
    store = open_store(ws / "state.db")
    try:
        out = {}
        for row in store.inventory():
            doc = asdict(row)
            doc["folders"] = {f.name: asdict(f) for f in store.inventory_folders(row.mailbox_id)}
            out[row.email] = doc
        return out
    finally:
        store.close()


def stored_probe(ws: Path, source_id: str) -> ProbeRow:
    store = open_store(ws / "state.db")
    try:
        probe = store.probe(source_id)
        assert probe is not None, f"no probe stored for {source_id}"
        return probe
    finally:
        store.close()


def iso(when) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def assert_matches_corpus(doc: dict, box: corpus.CorpusMailbox, server) -> None:
    """Folder by folder: count and size equal what the corpus generator wrote."""
    for folder in box.folders:
        name = server.server_name(folder.path)
        got = doc["folders"].get(name)
        assert got is not None, f"{box.email}: folder {name!r} missing from the inventory"
        assert (got["messages"], got["bytes"]) == (len(folder.messages), folder.size), f"{box.email} {name}"
        assert got["error"] is None
    # Folders the loader created as parents only (e.g. "Correspondence") hold nothing.
    known = {server.server_name(f.path) for f in box.folders}
    for name, got in doc["folders"].items():
        if name not in known:
            assert got["messages"] == 0 and got["bytes"] == 0, name
    messages = [m for f in box.folders for m in f.messages]
    assert doc["ok"] is True and doc["error"] is None
    assert doc["messages"] == len(messages)
    assert doc["bytes"] == box.size
    assert doc["largest"] == max(m.size for m in messages)
    assert doc["oldest"] == iso(min(m.internaldate for m in messages))
    assert doc["newest"] == iso(max(m.internaldate for m in messages))


# -- one inventory of the whole lab, read by several tests ----------------------------------------------


@pytest.fixture(scope="module")
def inventoried(lab_sources, tmp_path_factory):
    """Both lab sources inventoried once through the CLI; tests only read the result."""
    from tests.conftest import Runner

    ws = lab_workspace(tmp_path_factory.mktemp("inv") / "ws", list(lab_sources.values()))
    result = Runner()("-w", ws, "inventory", "mail")
    return ws, result


def test_inventory_counts_match_the_corpus_folder_by_folder(inventoried, lab_sources):
    ws, _ = inventoried
    docs = stored(ws)
    for source in lab_sources.values():
        for box in source.mailboxes:
            assert_matches_corpus(docs[box.email], box, source.server)


def test_special_use_folders_are_recorded_where_the_server_marks_them(inventoried, lab_sources):
    ws, _ = inventoried
    docs = stored(ws)
    modern = lab_sources["health"].mailboxes[0]
    folders = docs[modern.email]["folders"]
    assert folders["Sent"]["special_use"] == "\\Sent"
    assert folders["Trash"]["special_use"] == "\\Trash"
    assert folders["INBOX"]["special_use"] is None
    legacy = lab_sources["education"].mailboxes[0]
    assert all(f["special_use"] is None for f in docs[legacy.email]["folders"].values())


def test_quota_is_recorded_where_the_server_offers_it(inventoried, lab_sources):
    ws, _ = inventoried
    docs = stored(ws)
    for box in lab_sources["health"].mailboxes:
        doc = docs[box.email]
        # Dovecot counts quota in KiB of its own message sizes: close to, not exactly, the corpus bytes.
        assert doc["quota_limit"] == 10 * 1024**3
        assert abs(doc["quota_used"] - box.size) <= 1024 * (box.messages + 1)
    for box in lab_sources["education"].mailboxes:  # the legacy server does not advertise QUOTA
        assert docs[box.email]["quota_used"] is None and docs[box.email]["quota_limit"] is None


def test_probe_reports_capabilities_namespace_software_and_login_method(inventoried):
    ws, _ = inventoried
    modern = stored_probe(ws, "health")
    assert modern.ok is True and modern.error is None
    d = modern.detail
    assert d["reachable"] is True
    assert d["tls"]["tls"] is True and d["tls"]["verified"] is True
    assert d["tls"]["issuer"] == "CN=govmigrate lab CA"
    assert d["software"].startswith("Dovecot")
    caps = d["migration_capabilities"]
    for cap in ("IMAP4REV1", "UIDPLUS", "LITERAL+", "MULTIAPPEND", "SPECIAL-USE", "NAMESPACE", "STATUS=SIZE",
                "QUOTA", "ID", "CONDSTORE", "QRESYNC"):
        assert caps[cap] is True, cap
    assert caps["IMAP4REV2"] is False and caps["COMPRESS=DEFLATE"] is False
    assert (d["separator"], d["prefix"]) == ("/", "")
    assert d["login"]["method"] == "master_user" and d["login"]["ok"] is True

    legacy = stored_probe(ws, "education").detail
    assert legacy["migration_capabilities"]["STATUS=SIZE"] is False
    assert legacy["migration_capabilities"]["SPECIAL-USE"] is False
    assert (legacy["separator"], legacy["prefix"]) == (".", "INBOX.")


def test_table_shows_each_ministry_with_its_probe_and_totals(inventoried, lab_sources):
    _, result = inventoried
    out = result.stdout
    for source in lab_sources.values():
        assert f"{source.ministry} ({source.id})" in out
        total = sum(box.messages for box in source.mailboxes)
        footer = next(line for line in out.splitlines()
                      if f"{len(source.mailboxes)} mailboxes" in line and f" {total} " in line)
        assert f"{len(source.mailboxes)} ok" in footer
        for box in source.mailboxes:
            assert box.email in out
    assert "hierarchy separator '.', personal namespace prefix 'INBOX.'" in out
    assert "login: master_user as migrator: works" in out
    assert "All sources: 6 mailboxes (6 measured, 0 failed)" in out


def test_show_prints_the_stored_inventory_without_contacting_the_servers(inventoried, govmigrate, tmp_path,
                                                                         lab_sources):
    ws, _ = inventoried
    # Point every source at a closed port: show must not notice.
    copy = tmp_path / "copy"
    copy.mkdir()
    for part in ("state.db", "users", "secrets", "lab-ca.crt"):
        src = ws / part
        if src.is_dir():
            import shutil

            shutil.copytree(src, copy / part)
        else:
            (copy / part).write_bytes(src.read_bytes())
    doc = yaml.safe_load((ws / "migration.yaml").read_text())
    for source in doc["sources"]:
        source["server"]["port"] = free_port()
    (copy / "migration.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))

    data = json.loads(govmigrate("-w", copy, "inventory", "show", "--json").stdout)
    by_id = {s["id"]: s for s in data["sources"]}
    assert set(by_id) == {"health", "education"}
    for source in lab_sources.values():
        section = by_id[source.id]
        assert section["totals"]["messages"] == sum(b.messages for b in source.mailboxes)
        assert section["totals"]["bytes"] == sum(b.size for b in source.mailboxes)
        assert section["probe"]["ok"] is True
        box = source.mailboxes[0]
        line = next(m for m in section["mailboxes"] if m["email"] == box.email)
        inbox = next(f for f in line["folder_list"] if f["name"] == "INBOX")
        assert inbox["messages"] == len(box.folder("INBOX").messages)
    assert data["totals"]["mailboxes"] == 6

    table = govmigrate("-w", copy, "inventory", "show", "--source", "education").stdout
    assert "Ministry of Education (education)" in table and "Ministry of Health" not in table


def test_show_csv_gives_one_row_per_mailbox_or_per_folder(inventoried, govmigrate, lab_sources):
    ws, _ = inventoried
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(govmigrate("-w", ws, "inventory", "show", "--csv").stdout)))
    assert len(rows) == 6
    box = lab_sources["health"].mailboxes[1]
    row = next(r for r in rows if r["email"] == box.email)
    assert (row["source"], row["status"], int(row["messages"]), int(row["bytes"])) == \
        ("health", "ok", box.messages, box.size)

    folder_rows = list(csv.DictReader(io.StringIO(
        govmigrate("-w", ws, "inventory", "show", "--folders", "--csv", "-s", "education").stdout)))
    box = lab_sources["education"].mailboxes[0]
    sent = next(r for r in folder_rows if r["email"] == box.email and r["folder"] == "INBOX.Sent Items")
    assert int(sent["messages"]) == len(box.folder("Sent Items").messages)
    assert int(sent["bytes"]) == box.folder("Sent Items").size


def test_rerun_replaces_the_measurement_and_never_duplicates(lab_sources, govmigrate, tmp_path):
    ws = lab_workspace(tmp_path / "ws", [lab_sources["education"]])

    def counts() -> tuple[int, ...]:
        with sqlite3.connect(ws / "state.db") as db:
            return tuple(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                         for t in ("mailboxes", "probes", "inventory", "inventory_folders"))

    govmigrate("-w", ws, "inventory", "mail")
    first, before = counts(), stored(ws)
    govmigrate("-w", ws, "inventory", "mail")
    assert counts() == first
    after = stored(ws)
    for email, doc in before.items():
        assert {k: v for k, v in after[email].items() if k != "measured_at"} == \
            {k: v for k, v in doc.items() if k != "measured_at"}
    assert first[0] == first[2] == len(lab_sources["education"].mailboxes)


def test_source_option_limits_the_inventory_to_that_source(lab_sources, govmigrate, tmp_path):
    ws = lab_workspace(tmp_path / "ws", list(lab_sources.values()))
    result = govmigrate("-w", ws, "inventory", "mail", "--source", "health", "--json")
    data = json.loads(result.stdout)
    assert [s["id"] for s in data["sources"]] == ["health"]
    docs = stored(ws)
    assert all(docs[b.email]["ok"] is True for b in lab_sources["health"].mailboxes)
    assert all(docs[b.email]["ok"] is None for b in lab_sources["education"].mailboxes if b.email in docs)


def test_unknown_source_is_a_usage_error_without_traceback(lab_sources, govmigrate, tmp_path):
    ws = lab_workspace(tmp_path / "ws", [lab_sources["health"]])
    for command in ("mail", "show"):
        result = govmigrate("-w", ws, "inventory", command, "--source", "nosuch", expect=int(ExitCode.USAGE))
        assert "no source 'nosuch'" in result.stderr
        assert "Traceback" not in result.stderr


def test_show_before_any_inventory_says_so(lab_sources, govmigrate, tmp_path):
    ws = lab_workspace(tmp_path / "ws", [lab_sources["health"]])
    result = govmigrate("-w", ws, "inventory", "show")
    assert "no inventory recorded yet" in result.stderr


def test_per_user_passwords_log_in_and_never_appear_in_output_or_state(lab_sources, govmigrate, tmp_path):
    source = lab_sources["education"]
    ws = tmp_path / "ws"
    entry = imap_source(ws, source, login={"method": "user_password"})
    write_project(ws, [entry], {source.id: corpus.user_list_csv(source.mailboxes, with_passwords=True)})
    env = corpus.password_env(source.mailboxes)
    result = govmigrate("-w", ws, "--log-json", "-v", "inventory", "mail", "--json", env=env)
    docs = stored(ws)
    for box in source.mailboxes:
        assert docs[box.email]["ok"] is True
        assert docs[box.email]["messages"] == box.messages
    probe = stored_probe(ws, source.id)
    assert probe.detail["login"] == {"method": "user_password", "admin_user": None, "ok": True,
                                        "user": source.mailboxes[0].login}
    state = (ws / "state.db").read_bytes() + b"".join(p.read_bytes() for p in ws.glob("state.db-*"))
    for password in env.values():
        assert password not in result.stdout and password not in result.stderr
        assert password.encode() not in state


def test_progress_reports_a_plan_and_one_outcome_per_mailbox(lab_sources, tmp_path):
    ws = lab_workspace(tmp_path / "ws", list(lab_sources.values()))
    events = []
    tally = Tally(forward=events.append)
    store = open_store(ws / "state.db")
    try:
        result = run_inventory(load_project(ws / "migration.yaml"), store, progress=tally)
    finally:
        store.close()
    emails = {b.email for s in lab_sources.values() for b in s.mailboxes}
    plans = [e for e in events if e.kind == "plan"]
    assert len(plans) == 1 and plans[0].total_messages == len(emails)
    assert sorted(tally.done) == sorted(emails) and tally.failed == {}
    assert result.ok and result.measured == len(emails)
    assert tally.messages == 0, "inventory advances by mailboxes, not by messages"


class CountingProxy:
    """A TCP relay in front of a real server that records how many IMAP sessions were open at once.

    A session counts from accept until the server's BYE passes through (or the connection closes), so a
    client that logs out and reconnects is never counted twice: the BYE is relayed after it is counted out.
    """

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.sessions = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.active += 1
                self.sessions += 1
                self.peak = max(self.peak, self.active)
            server = socket.create_connection((LOOPBACK, self.target))
            state = {"open": True}
            threading.Thread(target=self._pump, args=(client, server, state, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, state, True), daemon=True).start()

    def _end(self, state: dict) -> None:
        with self.lock:
            if state["open"]:
                state["open"] = False
                self.active -= 1

    def _pump(self, src: socket.socket, dst: socket.socket, state: dict, from_server: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_server and b"* BYE" in data:
                    self._end(state)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._end(state)
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def test_mailboxes_are_measured_within_the_source_connection_limit(lab_sources, govmigrate, tmp_path):
    source = lab_sources["health"]
    proxy = CountingProxy(source.server.port)
    try:
        ws = tmp_path / "ws"
        # In clear text on purpose: the proxy reads each session's BYE to count it out at once.
        entry = imap_source(ws, source, port=proxy.port, tls="none", allow_cleartext=True)
        entry["connections"] = 2
        write_project(ws, [entry], {source.id: corpus.user_list_csv(source.mailboxes)})
        govmigrate("-w", ws, "inventory", "mail")
    finally:
        proxy.close()
    docs = stored(ws)
    assert all(docs[b.email]["ok"] for b in source.mailboxes)
    assert proxy.sessions > len(source.mailboxes), "every mailbox had its own session, plus the probe"
    assert proxy.peak <= 2


def test_the_progress_bar_counts_the_mailboxes_it_tries_and_names_a_blocked_source_once(lab_sources, tmp_path):
    import io

    from rich.console import Console

    from migrate.cli.app import App
    from migrate.cli.progress import progress_for

    ws = tmp_path / "ws"
    sources = [imap_source(ws, s) for s in lab_sources.values()]
    gone = imap_source(ws, lab_sources["health"], port=free_port())  # nothing listens: its mailbox fails
    gone.update(id="gone", ministry="Ministry of Nowhere", domains=["gone.gov.bz"], users="users/gone.csv")
    users = {s.id: corpus.user_list_csv(s.mailboxes) for s in lab_sources.values()}
    write_project(ws, [*sources, gone], {**users, "gone": "email\nann.lee@gone.gov.bz\n"})
    terminal = io.StringIO()
    app = App(workspace_dir=ws, err=Console(file=terminal, force_terminal=True, width=120, no_color=True))
    try:
        with progress_for(app, "inventory", unit="items") as bar:
            result = run_inventory(app.project, app.store, progress=bar)
    finally:
        app.close()
    overall = bar.progress.tasks[0]
    assert (overall.completed, overall.total) == (6, 6), "the unreachable source's mailbox is not counted"
    assert result.measured == 6 and not result.mailboxes["gone"][0].ok
    shown = terminal.getvalue()
    assert "source gone: " in shown and "connection refused (nothing listening) (1 mailbox not measured)" in shown
    assert "failed ann.lee@gone.gov.bz" not in shown, "one line for the source, not one per mailbox"


def test_sasl_plain_with_an_authorization_identity_logs_into_each_mailbox(lab_sources, govmigrate, tmp_path):
    source = lab_sources["education"]
    cfg = source.server.config
    ws = tmp_path / "ws"
    login = {"method": "sasl_plain", "user": cfg.master_user,
             "password": secret_file(ws, "sasl", cfg.master_password)}
    write_project(ws, [imap_source(ws, source, login=login)], {source.id: corpus.user_list_csv(source.mailboxes)})
    result = govmigrate("-w", ws, "inventory", "mail")
    docs = stored(ws)
    for box in source.mailboxes:
        assert_matches_corpus(docs[box.email], box, source.server)
    assert stored_probe(ws, source.id).detail["login"]["method"] == "sasl_plain"
    assert "login: sasl_plain as migrator: works" in result.stdout
