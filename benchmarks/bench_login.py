"""Login benchmark: what one mailbox login costs the source server, and so the floor of a no-change pass.

A no-change pass must log into every source mailbox (IMAP cannot say a mailbox is unchanged without a login),
so the source servers' CPU per login bounds how fast such a pass can be. govmigrate's own connect and
master-user LOGIN against a lab ministry Dovecot, 400 times one after the other, nothing else: the machine's
CPU from /proc/stat, the client's from getrusage, the server's the difference (run it on an idle machine).
The last line printed is one JSON object.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path

from tests.lab import corpus, scenario
from tests.lab.dovecot import DovecotServer, central, modern_source
from tests.lab.scenario import Lab, LabSource

ROUNDS = 400
MAILBOXES = 5000


def _machine_cpu() -> float:
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")   # all but idle and iowait


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measure(rounds: int, once) -> tuple[float, float, float]:
    """(wall, client CPU, server CPU) seconds per round."""
    wall, client, machine = time.monotonic(), _client_cpu(), _machine_cpu()
    for i in range(rounds):
        once(i)
    wall, client, machine = time.monotonic() - wall, _client_cpu() - client, _machine_cpu() - machine
    return wall / rounds, client / rounds, max(0.0, machine - client) / rounds


def run() -> dict:
    from migrate.core.config import load_project
    from migrate.mailbox import imap

    boxes = corpus.ministry(seed="login", domain="health.gov.bz", users=50, messages=2,
                            sizes=corpus.SizeProfile(((1.0, 1_000, 2_000),)), edge_cases=False, pilot=0, vip=0)
    source = DovecotServer(modern_source("health")).start()
    center = DovecotServer(central()).start()
    try:
        source.load(boxes)
        ws = Path(tempfile.mkdtemp(prefix="govmigrate-login-")) / "ws"
        scenario.write_workspace(ws, Lab({"health": LabSource("health", "Ministry of Health", "health.gov.bz", source,
                                                              boxes)}, center))
        project = load_project(ws / "migration.yaml")
        server = project.source("health").server
        endpoint = imap.Endpoint.from_config(server, base_dir=project.base_dir, label="health")
        creds = imap.credentials_for_source(server, project)

        def login(i: int) -> None:
            client = imap.connect(endpoint)
            imap.authenticate(client, creds, boxes[i % len(boxes)].login, None, endpoint)
            client.logout()

        def tls_only(_i: int) -> None:
            imap.connect(endpoint).logout()

        _measure(20, login)  # warm up
        login_wall, login_client, login_server = _measure(ROUNDS, login)
        tls_wall, tls_client, tls_server = _measure(ROUNDS, tls_only)
    finally:
        center.cleanup()
        source.cleanup()
    cores = os.cpu_count() or 1
    floor = MAILBOXES * login_server / cores
    print(f"connect + master-user LOGIN + LOGOUT, {ROUNDS} times: {login_wall * 1000:.1f} ms each; server CPU "
          f"{login_server * 1000:.1f} ms, client CPU {login_client * 1000:.1f} ms per login")
    print(f"of which TLS connect + LOGOUT alone: server CPU {tls_server * 1000:.1f} ms, client "
          f"{tls_client * 1000:.1f} ms ({tls_wall * 1000:.1f} ms each)")
    print(f"floor of a no-change pass over {MAILBOXES} mailboxes from the source servers' logins alone, on "
          f"{cores} cores: {floor:.1f} s")
    return {"login_server_cpu_ms": round(login_server * 1000, 2), "login_client_cpu_ms": round(login_client * 1000, 2),
            "login_tls_server_cpu_ms": round(tls_server * 1000, 2),
            "login_nochange_floor_5000_s": round(floor, 1)}
