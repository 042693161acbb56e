"""Several migration hosts: the state store on PostgreSQL, a pass queued for workers, one worker killed.

Three `govmigrate worker` processes stand in for three hosts (GOVMIGRATE_HOST names them); the store is the
lab's real PostgreSQL, the sources and the central host the lab's Dovecot servers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from migrate.core.errors import ExitCode
from tests.lab import scenario
from tests.lab.inspect import read_mailbox

ROOT = Path(__file__).resolve().parents[1]


def env_for(ws: Path, password: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), GOVLAB_STATE_PASSWORD=password, **extra)
    env.pop("GOVMIGRATE_WORKSPACE", None)
    return env


def cli(ws: Path, password: str, *args: str, host: str = "host-a", **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "migrate", "-w", str(ws), *args], capture_output=True, text=True,
                          env=env_for(ws, password, GOVMIGRATE_HOST=host, **extra), timeout=300, cwd=ROOT)


_spawned: list[subprocess.Popen] = []


def spawn(ws: Path, password: str, *args: str, host: str, **extra: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "migrate", "-w", str(ws), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env_for(ws, password, GOVMIGRATE_HOST=host, **extra),
                            cwd=ROOT)
    _spawned.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test():
    yield
    while _spawned:
        proc = _spawned.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def shared_state(ws: Path, url: str, *, extra: str = "") -> None:
    """Point the workspace at the PostgreSQL database (its password from an environment variable)."""
    address = url.split("@", 1)[1]
    project = ws / "migration.yaml"
    project.write_text(project.read_text() + f"state:\n  url: postgresql://{address}\n  user: govmigrate\n"
                       "  password: env:GOVLAB_STATE_PASSWORD\n" + extra)
    (ws / "state.db").unlink()   # nothing may go on using the workspace's own file


def open_shared(url: str, password: str):
    from migrate.core.store import open_postgres

    return open_postgres(url, password=password)


@pytest.fixture
def shared_lab(tmp_path, postgres_server, postgres_url):
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="workers", users=6, messages=40)
    yield lab, boxes, ws, postgres_url, postgres_server.password
    lab.stop()


def plan_wave(ws: Path, password: str) -> list[str]:
    for step in (("inventory", "mail"), ("plan", "generate"), ("plan", "approve", "wave-01")):
        done = cli(ws, password, *step)
        assert done.returncode == 0, done.stderr
    shown = cli(ws, password, "plan", "show", "wave-01", "--json")
    return json.loads(shown.stdout)["mailboxes"] if shown.returncode == 0 else []


def slow_wave(ws: Path, url: str, password: str, *, sync: str, connections: int = 4) -> None:
    """The workspace on the shared store, its source behind a slow link (1 MB/s, so that workers are still
    copying when a test acts), and wave-01 planned and approved."""
    shared_state(ws, url, extra=f"sync:\n{sync}")
    project = ws / "migration.yaml"
    project.write_text(project.read_text().replace("  connections: 4\n",
                                                   f"  connections: {connections}\n  bandwidth: 1 MB/s\n", 1))
    plan_wave(ws, password)


def queue_wave(ws: Path, password: str, store, *args: str) -> subprocess.Popen:
    """`run wave-01 --workers` from host-a, once it has queued the pass."""
    run = spawn(ws, password, "run", "wave-01", "--workers", *args, host="host-a")
    wait_for("the pass to be queued", lambda: bool(store.work_left()) or run.poll() is not None)
    assert run.poll() is None, run.communicate()
    return run


def wait_for(what: str, check, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_three_workers_one_killed_with_sigkill_finish_the_wave_exactly(shared_lab):
    lab, boxes, ws, url, password = shared_lab
    slow_wave(ws, url, password, sync="  lease_seconds: 3\n  batch_messages: 5\n")
    store = open_shared(url, password)
    try:
        members = [m.email for m in store.mailboxes(wave="wave-01")]
        assert len(members) >= 4
        run = queue_wave(ws, password, store, "--json")
        workers = {
            "host-a": spawn(ws, password, "worker", "--drain", "--max-mailboxes", "1", host="host-a"),
            # host-b dies (SIGKILL, as a power cut) after its third APPEND: mid-mailbox, copies unrecorded.
            "host-b": spawn(ws, password, "worker", "--drain", "--max-mailboxes", "1", host="host-b",
                            GOVMIGRATE_CRASH_AT="after-append:3"),
            "host-c": spawn(ws, password, "worker", "--drain", "--max-mailboxes", "1", host="host-c"),
        }
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        ended = {name: (p.wait(timeout=120), p.communicate()[1]) for name, p in workers.items()}
        assert ended["host-b"][0] == -signal.SIGKILL, ended["host-b"][1]
        for name in ("host-a", "host-c"):
            assert ended[name][0] == 0, ended[name][1]
            assert "Traceback" not in ended[name][1]

        result = json.loads(out)
        assert {o["after"] for o in result["mailboxes"]} == {"prestaged"}
        assert sorted(o["email"] for o in result["mailboxes"]) == sorted(members)
        assert {o["host"] for o in result["mailboxes"]} <= {"host-a", "host-c"}
        taken = [e for e in store.events() if e.action == "taken-over"]
        assert len(taken) == 1 and "host-b:" in taken[0].detail, taken
        rows = {m.email: m for m in store.mailboxes(wave="wave-01")}
        assert {rows[e].last_sync_host for e in members} <= {"host-a", "host-c"}
        assert {rows[e].last_sync_host for e in members} == {"host-a", "host-c"}, "both survivors worked"
    finally:
        store.close()

    _exact(lab, boxes, ws, password, members)

    status = cli(ws, password, "status", members[0])
    assert status.returncode == 0, status.stderr
    assert re.search(r"last sync .* \(ok\) on host-[ac]", status.stdout), status.stdout
    record = cli(ws, password, "report", "--wave", "wave-01", "--json")
    assert record.returncode == 0, record.stderr
    assert {m["host"] for m in json.loads(record.stdout)["mailboxes"]} == {"host-a", "host-c"}
    table = cli(ws, password, "report", "--wave", "wave-01")
    assert "copied by" in table.stdout and "host-c" in table.stdout


def _sessions(server, logins: set[str]) -> int:
    """Concurrent IMAP sessions of these users, as the Dovecot server itself counts them (doveadm who)."""
    total = 0
    for line in server.doveadm("who").splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[0].split("*")[0] in logins and parts[2] == "imap":
            total += int(parts[1])
    return total


def test_a_sources_connection_limit_holds_across_workers(shared_lab):
    lab, boxes, ws, url, password = shared_lab
    slow_wave(ws, url, password, sync="  batch_messages: 5\n", connections=2)
    source = next(iter(lab.sources.values()))
    logins = {b.login for b in boxes}
    store = open_shared(url, password)
    try:
        run = queue_wave(ws, password, store)
        seen: list[int] = []
        live: list[int] = []     # messages a claimed (unfinished) mailbox had copied, as the queue showed it
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                seen.append(_sessions(source.server, logins))
                live.extend(i.messages for i in store.work_items(wave="wave-01") if i.state == "claimed")
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # The wave's lock is in the shared store: a second run of the wave, from another host, is refused.
        second = cli(ws, password, "run", "wave-01", "--workers", host="host-z")
        assert second.returncode == ExitCode.LOCKED, second.stderr
        assert "wave/wave-01 is locked by govmigrate run wave-01 --pass prestage (host-a:" in second.stderr
        workers = [spawn(ws, password, "worker", "--drain", "--max-mailboxes", "3", host=f"host-{n}")
                   for n in "abc"]
        _out, err = run.communicate(timeout=300)
        done.set()
        sampler.join()
        for w in workers:
            assert w.wait(timeout=120) == 0, w.communicate()[1]
        assert run.returncode == 0, err
    finally:
        store.close()
    # Nine mailboxes could be copied at once (3 workers × 3); the source allows 2, and Dovecot saw no more.
    assert max(seen) == 2, seen
    assert max(live) > 0, "a mailbox's progress reached the queue while it was being copied"


def test_postgresql_unreachable_at_start_is_a_clear_error_with_exit_4(tmp_path, postgres_server):
    from tests.lab.base import free_port

    ws = tmp_path / "ws"
    lab, _boxes = scenario.small_lab(ws, seed="nopg", users=1, messages=3)
    try:
        # A URL's query may carry connection parameters: messages name the database without it.
        shared_state(ws, f"postgresql://govmigrate@127.0.0.1:{free_port()}/govmigrate?application_name=Opaque-Q")
        for args in (("log",), ("worker", "--drain"), ("run", "wave-01", "--workers")):
            done = cli(ws, postgres_server.password, *args)
            assert done.returncode == ExitCode.UNREACHABLE, (args, done.stderr)
            assert "the state store postgresql://govmigrate@127.0.0.1:" in done.stderr
            assert "Opaque-Q" not in done.stderr and "application_name" not in done.stderr
            assert "cannot be reached" in done.stderr and "Traceback" not in done.stderr
            assert postgres_server.password not in done.stderr + done.stdout
        wrong = cli(ws, "not-the-password", "log")
        assert wrong.returncode == ExitCode.UNREACHABLE
    finally:
        lab.stop()


def test_a_wrong_database_password_exits_5_without_showing_it(shared_lab):
    _lab, _boxes, ws, url, _password = shared_lab
    shared_state(ws, url)
    done = cli(ws, "Wrong-Password-123", "log")
    assert done.returncode == ExitCode.AUTH, done.stderr
    assert "refused the login" in done.stderr and "Wrong-Password-123" not in done.stderr + done.stdout


def test_workers_reconnect_after_postgresql_restarts_mid_wave(shared_lab, postgres_server):
    _lab, _boxes, ws, url, password = shared_lab
    slow_wave(ws, url, password, sync="  lease_seconds: 5\n  batch_messages: 5\n")
    store = open_shared(url, password)
    try:
        members = [m.email for m in store.mailboxes(wave="wave-01")]
        run = queue_wave(ws, password, store, "--json")
        workers = [spawn(ws, password, "worker", "--drain", "--max-mailboxes", "2", host=f"host-{n}") for n in "ab"]
        wait_for("copying to start", lambda: any(i.state == "done" for i in store.work_items(wave="wave-01")))
        postgres_server.restart()       # mid-wave: workers are between and inside transactions
        time.sleep(1.5)
        postgres_server.restart()       # and once more while they reconnect and copy
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        for w in workers:
            code = w.wait(timeout=120)
            assert code == 0, w.communicate()[1]
        result = json.loads(out)
        assert {o["after"] for o in result["mailboxes"]} == {"prestaged"}
        # The database was away for everyone: no worker called a live one dead.
        assert not [e for e in store.events() if e.action == "taken-over"]
    finally:
        store.close()
    verify = cli(ws, password, "verify", *members, "--deep", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    for row in json.loads(verify.stdout):
        assert row["matches"] and row["missing"] == 0 and row["duplicates"] == 0, row


def test_a_worker_whose_database_is_dropped_stops_with_a_clear_error(shared_lab, postgres_server):
    _lab, _boxes, ws, url, password = shared_lab
    shared_state(ws, url)
    assert cli(ws, password, "log").returncode == 0          # the store exists and has its tables
    worker = spawn(ws, password, "worker", host="host-a")    # waits for work, as a service does
    store = open_shared(url, password)
    try:
        wait_for("the worker to announce itself", lambda: bool(store.leases("worker/")) or worker.poll() is not None)
    finally:
        store.close()
    postgres_server.drop_database(url.rsplit("/", 1)[1])
    _out, err = worker.communicate(timeout=120)
    assert worker.returncode == ExitCode.WORKSPACE, err
    assert "does not exist" in err and "Traceback" not in err and password not in err


def test_a_worker_gives_up_when_postgresql_stays_away_past_the_reconnect_window(tmp_path):
    from tests.lab.postgres import PostgresServer

    ws = tmp_path / "ws"
    lab, _boxes = scenario.small_lab(ws, seed="pgaway", users=1, messages=3)
    server = PostgresServer().start()
    try:
        shared_state(ws, server.url, extra="")
        project = ws / "migration.yaml"
        project.write_text(project.read_text().replace("  password: env:GOVLAB_STATE_PASSWORD\n",
                                                       "  password: env:GOVLAB_STATE_PASSWORD\n"
                                                       "  reconnect_seconds: 2\n"))
        worker = spawn(ws, server.password, "worker", host="host-a")
        store = open_shared(server.url, server.password)
        try:
            wait_for("the worker to announce itself",
                     lambda: bool(store.leases("worker/")) or worker.poll() is not None)
        finally:
            store.close()
        server.stop()
        _out, err = worker.communicate(timeout=120)
        assert worker.returncode == ExitCode.UNREACHABLE, err
        assert "the state store postgresql://govmigrate@127.0.0.1:" in err and "Traceback" not in err
    finally:
        server.cleanup()
        lab.stop()


def test_the_shared_store_verifies_the_database_servers_certificate(shared_lab, postgres_server, tmp_path):
    from tests.lab.certs import self_signed

    _lab, _boxes, ws, url, password = shared_lab
    project = ws / "migration.yaml"
    shared_state(ws, url)
    base = project.read_text()
    project.write_text(base.replace("  password: env:GOVLAB_STATE_PASSWORD\n",
                                    f"  password: env:GOVLAB_STATE_PASSWORD\n  ca_file: {postgres_server.ca_file}\n"))
    trusted = cli(ws, password, "log")
    assert trusted.returncode == 0, trusted.stderr
    other = self_signed(tmp_path / "other-ca", "impostor")
    project.write_text(base.replace("  password: env:GOVLAB_STATE_PASSWORD\n",
                                    f"  password: env:GOVLAB_STATE_PASSWORD\n  ca_file: {other.cert}\n"))
    refused = cli(ws, password, "log")
    assert refused.returncode == ExitCode.UNREACHABLE, refused.stderr
    assert "TLS failed" in refused.stderr and "certificate verify failed" in refused.stderr
    assert "Traceback" not in refused.stderr and password not in refused.stderr

    project.write_text(base.replace("  password: env:GOVLAB_STATE_PASSWORD\n",
                                    f"  password: env:GOVLAB_STATE_PASSWORD\n  ca_file: {other.cert}\n"
                                    "  verify_certificate: false\n"))
    unverified = cli(ws, password, "log")
    assert unverified.returncode == 0, unverified.stderr


def test_verify_and_the_preflight_keep_a_sources_connection_limit_across_two_hosts(shared_lab):
    """Two hosts sharing the store verify the same wave at once, then both run its pre-flight (a dry run): the
    source allows 2 sessions, and Dovecot never sees more, although each host alone would open 2."""
    from tests.lab.proxy import FlakyProxy

    lab, boxes, ws, url, password = shared_lab
    shared_state(ws, url)
    project = ws / "migration.yaml"
    project.write_text(project.read_text().replace("  connections: 4\n", "  connections: 2\n", 1))
    plan_wave(ws, password)
    source = next(iter(lab.sources.values()))
    # A far ministry: 60 ms more on every answer of its server, so that sessions overlap when they can.
    far = FlakyProxy(source.server.tls_port, delay=0.06).start()
    try:
        text = project.read_text()
        assert text.count(f"port: {source.server.tls_port}\n") == 1
        project.write_text(text.replace(f"port: {source.server.tls_port}\n", f"port: {far.port}\n"))
        logins = {b.login for b in boxes}
        for args, expect in ((("verify", "--all"), (0, 1)), (("run", "wave-01", "--dry-run"), (0, 1))):
            seen: list[int] = []
            done = threading.Event()

            def sample(seen: list[int] = seen, done: threading.Event = done) -> None:
                while not done.is_set():
                    seen.append(_sessions(source.server, logins))
                    time.sleep(0.03)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            hosts = [spawn(ws, password, *args, host=name) for name in ("host-a", "host-b")]
            try:
                ended = [(p.wait(timeout=300), p.communicate()[1]) for p in hosts]
            finally:
                done.set()
                sampler.join()
            for code, err in ended:
                assert code in expect and "Traceback" not in err, (args, code, err)
            assert max(seen) == 2, (args, seen)
    finally:
        far.stop()


# -- a worker that loses its mailbox: paused past its lease, or cut from the database ------------------------


def _exact(lab, boxes, ws: Path, password: str, members: list[str]) -> None:
    """Every mailbox of the wave exact on the central host: verify --deep, and the counts and bytes read back."""
    verify = cli(ws, password, "verify", *members, "--deep", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    for row in json.loads(verify.stdout):
        assert row["matches"] and row["missing"] == 0 and row["duplicates"] == 0, row
    for box in boxes:
        if box.email in members:
            folders = read_mailbox(lab.central, box.email).values()
            assert (sum(len(f.messages) for f in folders), sum(len(m.raw) for f in folders for m in f.messages)) \
                == (box.messages, box.size), f"{box.email}: not exactly the source's mail"


def _losing_wave(ws: Path, url: str, password: str) -> None:
    """A wave on the shared store behind a slow source link, with short leases and timeouts (so that a lost
    holder is found out in seconds, not minutes)."""
    slow_wave(ws, url, password, sync="  lease_seconds: 3\n  batch_messages: 5\n")
    project = ws / "migration.yaml"
    text = project.read_text().replace("  timeout: 30\n", "  timeout: 4\n", 1)   # the central host's: the margin
    project.write_text(text.replace("  user: govmigrate\n", "  user: govmigrate\n  timeout_seconds: 4\n", 1))


def _copying(store, host: str) -> str | None:
    """A mailbox ``host`` is copying and has copied something of (as the queue shows it), or None."""
    for item in store.work_items(wave="wave-01"):
        if item.state == "claimed" and (item.worker or "").startswith(f"{host}:") and item.messages > 0:
            return item.email
    return None


def test_a_worker_paused_past_its_lease_writes_nothing_more_and_every_mailbox_is_exact(shared_lab):
    """SIGSTOP one worker in the middle of a folder (a VM paused, a swap stall) until another has taken its
    mailbox over and the wave has ended; SIGCONT: it writes nothing more, no mailbox holds a duplicate, and the
    woken worker reports the mailbox as given up, not as copied by it."""
    lab, boxes, ws, url, password = shared_lab
    _losing_wave(ws, url, password)
    store = open_shared(url, password)
    try:
        members = [m.email for m in store.mailboxes(wave="wave-01")]
        run = queue_wave(ws, password, store, "--json")
        workers = {name: spawn(ws, password, "worker", "--drain", "--max-mailboxes", "1", "--json", host=name)
                   for name in ("host-a", "host-b", "host-c")}
        wait_for("host-b to be copying", lambda: _copying(store, "host-b") is not None)
        victim = _copying(store, "host-b")
        os.kill(workers["host-b"].pid, signal.SIGSTOP)
        try:
            out, err = run.communicate(timeout=300)     # the others finish the wave, the victim's mailbox too
            assert run.returncode == 0, err
            result = {o["email"]: o for o in json.loads(out)["mailboxes"]}
            assert result[victim]["host"] in ("host-a", "host-c") and result[victim]["after"] == "prestaged"
        finally:
            os.kill(workers["host-b"].pid, signal.SIGCONT)
        woken_out, woken_err = workers["host-b"].communicate(timeout=300)
        assert "Traceback" not in woken_err, woken_err
        given_up = {o["email"]: o for o in json.loads(woken_out)["mailboxes"] if o["given_up"]}
        assert victim in given_up and not given_up[victim]["ok"], woken_out
        assert "given up" in woken_err and workers["host-b"].returncode == ExitCode.PARTIAL
        for name in ("host-a", "host-c"):
            assert workers[name].wait(timeout=120) == 0, workers[name].communicate()[1]
        assert store.orphans(store.mailbox(victim).id) == [], "nothing left for anybody to settle"
    finally:
        store.close()
    _exact(lab, boxes, ws, password, members)


def test_a_worker_cut_from_the_database_gives_its_mailbox_up_and_every_mailbox_is_exact(shared_lab, tmp_path):
    """One worker reaches PostgreSQL through a link of its own, which swallows everything for 25 s while its
    IMAP sessions stay up: its statements are cut by its timeouts, another worker takes its mailbox over, and
    when the link comes back it writes nothing more for it; every mailbox ends exact."""
    from tests.lab.proxy import FlakyProxy

    lab, boxes, ws, url, password = shared_lab
    _losing_wave(ws, url, password)
    port = int(url.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    link = FlakyProxy(port).start()
    cut_off = tmp_path / "host-b"                       # host-b's own workspace: the same plan, its own link
    shutil.copytree(ws, cut_off)
    project = cut_off / "migration.yaml"
    project.write_text(project.read_text().replace(f":{port}/", f":{link.port}/", 1))
    store = open_shared(url, password)
    try:
        members = [m.email for m in store.mailboxes(wave="wave-01")]
        run = queue_wave(ws, password, store, "--json")
        workers = {name: spawn(cut_off if name == "host-b" else ws, password, "worker", "--drain",
                               "--max-mailboxes", "1", "--json", host=name) for name in ("host-a", "host-b", "host-c")}
        wait_for("host-b to be copying", lambda: _copying(store, "host-b") is not None)
        victim = _copying(store, "host-b")
        link.blackhole()
        try:
            wait_for("another worker to take the mailbox over",
                     lambda: any(i.email == victim and (i.worker or "").startswith(("host-a:", "host-c:"))
                                 for i in store.work_items(wave="wave-01")), timeout=60)
            time.sleep(max(0.0, 25 - 3))
        finally:
            link.restore()
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        result = {o["email"]: o for o in json.loads(out)["mailboxes"]}
        assert result[victim]["host"] in ("host-a", "host-c")
        b_out, b_err = workers["host-b"].communicate(timeout=300)
        assert "Traceback" not in b_err, b_err
        given_up = [o for o in json.loads(b_out)["mailboxes"] if o["given_up"]]
        assert victim in {o["email"] for o in given_up}, b_out + b_err
        assert all(o["email"] != victim for o in json.loads(b_out)["mailboxes"] if o["ok"]), "not copied by it"
        for name in ("host-a", "host-c"):
            assert workers[name].wait(timeout=120) == 0, workers[name].communicate()[1]
    finally:
        link.stop()
        store.close()
    _exact(lab, boxes, ws, password, members)
