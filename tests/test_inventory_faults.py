"""Inventory against servers that get in the way: each fault is recorded with its reason, the rest goes on,
and the command exits 1. Every case uses a real server (or a real closed port)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from migrate.core.errors import ExitCode
from tests.conftest import Runner
from tests.lab import corpus
from tests.lab.base import LOOPBACK, free_port
from tests.lab.certs import LabCA, self_signed
from tests.lab.dovecot import DovecotServer, modern_source
from tests.lab.scenario import LabSource
from tests.test_inventory import (
    assert_matches_corpus,
    imap_source,
    secret_file,
    stored,
    stored_probe,
    write_project,
)

PARTIAL = int(ExitCode.PARTIAL)


def no_secrets_leaked(ws: Path, output: str, *secrets: str) -> None:
    state = b"".join(p.read_bytes() for p in ws.glob("state.db*"))
    for secret in secrets:
        assert secret not in output, "a secret reached the output"
        assert secret.encode() not in state, "a secret reached the state store"


@pytest.fixture(scope="module")
def fast():
    """A small modern source that answers failed logins at once (Dovecot waits 2 s by default), without the acl
    plugin: with it, Dovecot leaves a folder it cannot read out of LIST altogether, and the broken-folder test
    needs the folder listed and its STATUS failing, as servers without ACLs do."""
    server = DovecotServer(modern_source("fast", quick_auth_failures=True, acl=False)).start()
    boxes = corpus.ministry(seed="faults", domain="fast.gov.bz", users=2, messages=16, edge_cases=False)
    try:
        server.load(boxes)
        yield LabSource("fast", "Ministry of Faults", "fast.gov.bz", server, boxes)
    finally:
        server.cleanup()


def test_wrong_admin_password_is_recorded_and_the_other_sources_go_on(fast, lab_sources, govmigrate, tmp_path):
    ws = tmp_path / "ws"
    wrong = "not-the-master-password"
    bad = imap_source(ws, fast, login={"method": "master_user", "user": "migrator",
                                       "password": secret_file(ws, "wrong", wrong)})
    health = lab_sources["health"]
    write_project(ws, [bad, imap_source(ws, health)],
                  {"fast": corpus.user_list_csv(fast.mailboxes), "health": corpus.user_list_csv(health.mailboxes)})
    result = govmigrate("-w", ws, "inventory", "mail", expect=PARTIAL)

    probe = stored_probe(ws, "fast")
    assert probe.ok is False
    assert "admin login (master_user as migrator) was refused for the first 2 users" in probe.error
    assert probe.detail["login"]["alternative"] == {
        "method": "sasl_plain", "ok": False, "error": probe.detail["login"]["alternative"]["error"]}
    docs = stored(ws)
    for box in fast.mailboxes:
        assert docs[box.email]["ok"] is False
        assert docs[box.email]["error"].startswith("not measured: the admin login")
    for box in health.mailboxes:
        assert_matches_corpus(docs[box.email], box, health.server)
    assert "Traceback" not in result.stderr
    assert "refused for the first 2 users" in result.stdout
    # One line for all the mailboxes that failed for the same reason, on stderr and in the table.
    assert f"2 mailboxes ({fast.mailboxes[0].email}, {fast.mailboxes[1].email}): not measured" in result.stderr
    assert "    2 mailboxes: not measured: the admin login" in result.stdout
    no_secrets_leaked(ws, result.stdout + result.stderr, wrong, fast.server.config.master_password)


def test_a_user_whose_login_fails_is_recorded_and_the_others_are_measured(fast, govmigrate, tmp_path):
    ws = tmp_path / "ws"
    ghost = "ghost@fast.gov.bz"
    # The ghost comes first, so the probe's first login fails too and it must try the next user.
    users = corpus.user_list_csv(fast.mailboxes).replace("\n", f"\n{ghost},ghost,Nobody,,\n", 1)
    write_project(ws, [imap_source(ws, fast)], {"fast": users})
    result = govmigrate("-w", ws, "inventory", "mail", expect=PARTIAL)

    docs = stored(ws)
    assert docs[ghost]["ok"] is False
    assert "login refused" in docs[ghost]["error"] and "failed" in docs[ghost]["error"]
    for box in fast.mailboxes:
        assert_matches_corpus(docs[box.email], box, fast.server)
    probe = stored_probe(ws, "fast")
    assert probe.ok is True
    assert probe.detail["login"]["user"] == fast.mailboxes[0].login
    assert f"{ghost}: source fast" in result.stderr and "login refused" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_malformed_user_list_row_is_named_by_line_and_the_rest_is_measured(lab_sources, govmigrate, tmp_path):
    health = lab_sources["health"]
    ws = tmp_path / "ws"
    lines = corpus.user_list_csv(health.mailboxes).splitlines(keepends=True)
    lines.insert(2, "not-an-email,someone,Some One,,\n")  # line 3 of the file
    write_project(ws, [imap_source(ws, health)], {"health": "".join(lines)})
    result = govmigrate("-w", ws, "inventory", "mail", expect=PARTIAL)

    assert "health.csv:3: email: 'not-an-email' is not an email address" in result.stderr
    docs = stored(ws)
    for box in health.mailboxes:
        assert_matches_corpus(docs[box.email], box, health.server)
    assert "Traceback" not in result.stderr


def test_an_unreachable_server_is_recorded_and_the_other_sources_go_on(lab_sources, govmigrate, tmp_path):
    health = lab_sources["health"]
    ws = tmp_path / "ws"
    closed = free_port()  # nothing listens here
    gone = {"id": "gone", "ministry": "Ministry of Nowhere", "domains": ["gone.gov.bz"],
            "server": {"type": "imap", "host": LOOPBACK, "port": closed, "tls": "implicit",
                       "login": {"method": "master_user", "user": "migrator",
                                 "password": secret_file(ws, "gone", "whatever-it-is")}},
            "users": "users/gone.csv"}
    write_project(ws, [gone, imap_source(ws, health)],
                  {"gone": "email\nann.lee@gone.gov.bz\n", "health": corpus.user_list_csv(health.mailboxes)})
    result = govmigrate("-w", ws, "inventory", "mail", expect=PARTIAL)

    probe = stored_probe(ws, "gone")
    assert probe.ok is False and probe.detail["reachable"] is False
    assert f"{closed}): connection refused" in probe.error
    docs = stored(ws)
    assert docs["ann.lee@gone.gov.bz"]["ok"] is False
    assert "not measured" in docs["ann.lee@gone.gov.bz"]["error"]
    assert "connection refused" in docs["ann.lee@gone.gov.bz"]["error"]
    for box in health.mailboxes:
        assert docs[box.email]["ok"] is True
    assert "unreachable" in result.stdout
    assert "Traceback" not in result.stderr


def test_an_admin_password_that_cannot_be_resolved_fails_only_that_source(lab_sources, govmigrate, tmp_path):
    health, education = lab_sources["health"], lab_sources["education"]
    ws = tmp_path / "ws"
    unset = imap_source(ws, education, login={"method": "master_user", "user": "migrator",
                                              "password": "env:GOVMIGRATE_TEST_UNSET_PASSWORD"})
    write_project(ws, [unset, imap_source(ws, health)],
                  {s.id: corpus.user_list_csv(s.mailboxes) for s in (health, education)})
    env = {"GOVMIGRATE_TEST_UNSET_PASSWORD": ""}
    result = govmigrate("-w", ws, "inventory", "mail", expect=PARTIAL, env=env)

    probe = stored_probe(ws, "education")
    assert "environment variable GOVMIGRATE_TEST_UNSET_PASSWORD is not set" in probe.error
    docs = stored(ws)
    assert all(docs[b.email]["ok"] is False for b in education.mailboxes)
    assert all(docs[b.email]["ok"] is True for b in health.mailboxes)
    assert "Traceback" not in result.stderr


def test_a_folder_whose_status_fails_is_recorded_and_the_rest_of_the_mailbox_is_measured(fast, govmigrate,
                                                                                        tmp_path):
    box = fast.mailboxes[0]
    sent = box.folder("Sent")
    assert sent.messages, "the broken folder should hold mail, so the totals show it is left out"
    ws = tmp_path / "ws"
    write_project(ws, [imap_source(ws, fast)], {"fast": corpus.user_list_csv(fast.mailboxes)})
    broken = fast.server.folder_dir(box.login, ("Sent",))
    mode = broken.stat().st_mode
    os.chmod(broken, 0)
    try:
        result = govmigrate("-w", ws, "inventory", "mail", expect=PARTIAL)
    finally:
        os.chmod(broken, mode)

    doc = stored(ws)[box.email]
    assert doc["ok"] is False and doc["folder_errors"] == 1
    assert doc["folders"]["Sent"]["error"] and doc["folders"]["Sent"]["messages"] is None
    assert "1 folder could not be measured: Sent:" in doc["error"]
    for folder in box.folders:
        if folder.path != ("Sent",):
            got = doc["folders"][fast.server.server_name(folder.path)]
            assert (got["messages"], got["bytes"]) == (len(folder.messages), folder.size)
    assert doc["messages"] == box.messages - len(sent.messages)
    assert doc["bytes"] == box.size - sent.size
    other = fast.mailboxes[1]
    assert_matches_corpus(stored(ws)[other.email], other, fast.server)
    assert "incomplete" in result.stdout
    assert "Traceback" not in result.stderr


# -- TLS: one listener per certificate kind, inventoried in one run ---------------------------------------

TLS_KINDS = ("trusted", "expired", "selfsigned", "mismatch", "lenient")


@pytest.fixture(scope="module")
def tls_run(tmp_path_factory, fast):
    """Implicit-TLS Dovecots with a trusted, an expired, a self-signed and a wrong-name certificate; the
    expired one also appears as a second source that sets verify_certificate: false."""
    certs_dir = tmp_path_factory.mktemp("certs")
    ca = LabCA(certs_dir)
    certs = {
        "trusted": ca.issue("trusted"),
        "expired": ca.issue("expired", expired=True),
        "selfsigned": self_signed(certs_dir, "selfsigned"),
        "mismatch": ca.issue("mismatch", names=("mail.other.gov.bz",)),
    }
    servers = {}
    try:
        for kind, files in certs.items():
            login = f"postmaster@{kind}.gov.bz"
            servers[kind] = DovecotServer(modern_source(kind, tls=files, quick_auth_failures=True),
                                          users={login: "pw-not-used"}).start()
        ws = tmp_path_factory.mktemp("tls") / "ws"
        sources, users = [], {}
        for kind in TLS_KINDS:
            server = servers["expired" if kind == "lenient" else kind]
            extra = {"verify_certificate": False} if kind == "lenient" else {}
            src = LabSource(kind, f"Ministry of {kind.title()}", f"{kind}.gov.bz", server, [])
            sources.append(imap_source(ws, src, port=server.tls_port, tls="implicit", ca_file=str(ca.ca_file),
                                       **extra))
            login = f"postmaster@{'expired' if kind == 'lenient' else kind}.gov.bz"
            users[kind] = f"email,login\npostmaster@{kind}.gov.bz,{login}\n"
        # A server that does not speak TLS at all where the project file expects it.
        plain = LabSource("plaintext", "Ministry of Plain Text", "plaintext.gov.bz", fast.server, [])
        sources.append(imap_source(ws, plain, port=fast.server.port, tls="implicit"))
        users["plaintext"] = "email\nsomeone@plaintext.gov.bz\n"
        write_project(ws, sources, users)
        result = Runner()("-w", ws, "inventory", "mail", expect=PARTIAL)
        yield ws, result
    finally:
        # Each Dovecot takes about a second to stop; stop them side by side.
        with ThreadPoolExecutor() as pool:
            list(pool.map(DovecotServer.cleanup, servers.values()))


def test_a_trusted_certificate_is_reported_with_version_issuer_expiry_and_name_match(tls_run):
    ws, result = tls_run
    probe = stored_probe(ws, "trusted")
    assert probe.ok is True
    tls = probe.detail["tls"]
    assert tls["version"] in ("TLSv1.2", "TLSv1.3")
    assert tls["issuer"] == "CN=govmigrate lab CA"
    assert tls["name_match"] is True and tls["verified"] is True and tls["self_signed"] is False
    assert tls["days_left"] > 300
    assert stored(ws)["postmaster@trusted.gov.bz"]["ok"] is True
    assert "issued by CN=govmigrate lab CA" in result.stdout and "name matches, verified" in result.stdout


def test_an_expired_certificate_is_refused_and_its_dates_are_shown(tls_run):
    ws, result = tls_run
    probe = stored_probe(ws, "expired")
    assert probe.ok is False and "certificate has expired" in probe.error
    assert probe.detail["tls"]["days_left"] < 0, "the refused certificate is still described"
    assert stored(ws)["postmaster@expired.gov.bz"]["error"].startswith("not measured:")
    assert "expired 35 days ago" in result.stdout or "days ago" in result.stdout


def test_a_self_signed_certificate_is_refused(tls_run):
    ws, _ = tls_run
    probe = stored_probe(ws, "selfsigned")
    assert probe.ok is False and "self" in probe.error and "signed certificate" in probe.error
    assert probe.detail["tls"]["self_signed"] is True
    assert stored(ws)["postmaster@selfsigned.gov.bz"]["ok"] is False


def test_a_certificate_for_another_name_is_refused(tls_run):
    ws, _ = tls_run
    probe = stored_probe(ws, "mismatch")
    assert probe.ok is False and "mismatch" in probe.error.lower()
    assert probe.detail["tls"]["name_match"] is False
    assert probe.detail["tls"]["names"] == ["mail.other.gov.bz"]


def test_verify_certificate_false_lets_that_host_through_and_still_reports_the_fault(tls_run):
    ws, result = tls_run
    probe = stored_probe(ws, "lenient")
    assert probe.ok is True
    tls = probe.detail["tls"]
    assert tls["verified"] is False and "certificate has expired" in tls["verify_error"]
    doc = stored(ws)["postmaster@lenient.gov.bz"]
    assert doc["ok"] is True and doc["messages"] == 0 and "INBOX" in doc["folders"]
    assert "not verified (verify_certificate: false)" in result.stdout


def test_a_server_that_does_not_speak_tls_is_refused(tls_run):
    ws, result = tls_run
    probe = stored_probe(ws, "plaintext")
    assert probe.ok is False and "TLS failed" in probe.error
    assert "Traceback" not in result.stderr
