"""Login benchmark: what one mailbox login costs each server, and so the floor of a no-change pass.

A no-change pass must log into every source mailbox (IMAP cannot say a mailbox is unchanged without a login),
so the servers' CPU per login bounds how fast such a pass can be. govmigrate's own connect and master-user LOGIN
against a lab ministry Dovecot and against the lab's central host, 400 times one after the other, nothing else:
the client's CPU from getrusage, the server's from /proc (the CPU of that Dovecot's process tree, so other work
on the machine does not count; its wall time does). :func:`login_costs` is the same measurement for the no-change
benchmarks (``final``, ``scale``), made in their own run against their own servers; :func:`floor_record` puts
each pass beside its floor: a login per mailbox at its source and at the central host, times each server's CPU
per login, over this machine's cores.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.figures import compare
from tests.lab import corpus, scenario
from tests.lab.dovecot import DovecotServer, central, modern_source
from tests.lab.scenario import Lab, LabSource

ROUNDS = 400
MAILBOXES = 5000


def server_cpu(master_pid: int) -> float:
    """CPU seconds of a Dovecot instance: its master and every live process under it (auth, login, imap), each
    with what its exited children used (the kernel adds a child's time to its parent's when the parent reaps it).
    Counted per process tree, so other work on the machine does not count."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        parents[pid] = int(fields[1])
        times[pid] = sum(int(v) for v in fields[11:15]) / tick   # utime, stime, cutime, cstime
    total = 0.0
    for pid, spent in times.items():
        p = pid
        while p > 1 and p != master_pid:
            p = parents.get(p, 0)
        if p == master_pid:
            total += spent
    return total


class ServersCpu:
    """The CPU each server's process tree used while the block ran (``with ServersCpu(...) as used:``, then
    ``used.seconds``: name → CPU seconds), so a pass's record says what it cost the servers beside what it cost
    the tool: on this machine the tool and both servers share two cores. ``servers``: name → lab server or the
    pid of its master process."""

    def __init__(self, servers: dict[str, DovecotServer | int]) -> None:
        self.pids = {name: s if isinstance(s, int) else s.process.proc.pid for name, s in servers.items()}
        self.seconds: dict[str, float] = {}

    def __enter__(self) -> ServersCpu:
        self._before = {name: server_cpu(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.2)   # the last sessions' processes end and are reaped
        self.seconds = {name: server_cpu(pid) - self._before[name] for name, pid in self.pids.items()}


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measure(rounds: int, once, master_pid: int) -> tuple[float, float, float]:
    """(wall, client CPU, server CPU) seconds per round."""
    with ServersCpu({"server": master_pid}) as used:
        wall, client = time.monotonic(), _client_cpu()
        for i in range(rounds):
            once(i)
        wall, client = time.monotonic() - wall, _client_cpu() - client
    return wall / rounds, client / rounds, used.seconds["server"] / rounds


@dataclass(frozen=True)
class LoginCost:
    """One server's login, per login: wall seconds one after the other, client CPU, server CPU."""
    wall: float
    client_cpu: float
    server_cpu: float
    tls_server_cpu: float = 0.0
    tls_client_cpu: float = 0.0


def login_costs(ws: Path, logins: dict[str, tuple[DovecotServer, list[str]]],
                rounds: int = ROUNDS) -> dict[str, LoginCost]:
    """Per server (``central`` or a source id, with its lab server): connect + master-user LOGIN + LOGOUT
    ``rounds`` times, as the workspace ``ws``'s project file reaches it, as the users given in turn."""
    from migrate.core.config import load_project
    from migrate.mailbox import imap

    project = load_project(ws / "migration.yaml")
    costs: dict[str, LoginCost] = {}
    for server_id, (lab_server, users) in logins.items():
        assert lab_server.process is not None
        master = lab_server.process.proc.pid
        if server_id == "central":
            endpoint = imap.Endpoint.from_config(project.config.central.imap, base_dir=project.base_dir,
                                                 label="central host")
            creds = imap.credentials_for_central(project.config.central, project)
        else:
            server = project.source(server_id).server
            endpoint = imap.Endpoint.from_config(server, base_dir=project.base_dir, label=server_id)
            creds = imap.credentials_for_source(server, project)

        def login(i: int, endpoint=endpoint, creds=creds, users=users) -> None:
            client = imap.connect(endpoint)
            imap.authenticate(client, creds, users[i % len(users)], None, endpoint)
            client.logout()

        def tls_only(_i: int, endpoint=endpoint) -> None:
            imap.connect(endpoint).logout()

        _measure(20, login, master)  # warm up
        wall, client, server = _measure(rounds, login, master)
        _, tls_client, tls_server = _measure(rounds // 4, tls_only, master)
        costs[server_id] = LoginCost(wall, client, server, tls_server, tls_client)
    return costs


def floor_s(logins_made: dict[str, int], costs: dict[str, LoginCost], *, with_client: bool = False) -> float:
    """The floor of a pass that made ``logins_made[server]`` logins: their servers' CPU (and, ``with_client``, the
    client's own CPU per login, which runs on the same machine here) spread over this machine's cores."""
    cores = os.cpu_count() or 1
    total = sum(n * (costs[s].server_cpu + (costs[s].client_cpu if with_client else 0.0))
                for s, n in logins_made.items() if n)
    return total / cores


def floor_record(bench: str, quiet_s: float, logins: dict[str, int], costs: dict[str, LoginCost], target: float,
                 **extra) -> dict:
    """The record of a no-change pass that took ``quiet_s`` over ``logins[source]`` mailboxes per source: beside the
    floor of one login per mailbox at its source *and* one at the central host (``login_floor_s``, the anchor the
    target is judged against, as issue 26 words it: "the floor for both servers' logins"), with the stricter floor
    of the source logins alone beside it (a pass where nothing changed need not log in at the central host, and
    govmigrate does not), and each with the client's own CPU per login added (it runs on the same cores here)."""
    both = {**logins, "central": sum(logins.values())}
    source_floor = floor_s(logins, costs)
    return compare(bench, govmigrate_s=quiet_s, anchor="login_floor", anchor_s=floor_s(both, costs), target=target,
                   login_floor_with_client_s=round(floor_s(both, costs, with_client=True), 3),
                   login_floor_source_only_s=round(source_floor, 3),
                   ratio_source_only=round(quiet_s / source_floor, 3) if source_floor else None,
                   met_source_only=quiet_s / source_floor <= target if source_floor else None,
                   login_server_cpu_ms={n: round(c.server_cpu * 1000, 2) for n, c in costs.items()},
                   login_client_cpu_ms={n: round(c.client_cpu * 1000, 2) for n, c in costs.items()}, **extra)


def run() -> dict:
    boxes = corpus.ministry(seed="login", domain="health.gov.bz", users=50, messages=2,
                            sizes=corpus.SizeProfile(((1.0, 1_000, 2_000),)), edge_cases=False, pilot=0, vip=0)
    source = DovecotServer(modern_source("health")).start()
    center = DovecotServer(central()).start()
    try:
        source.load(boxes)
        ws = Path(tempfile.mkdtemp(prefix="govmigrate-login-")) / "ws"
        scenario.write_workspace(ws, Lab({"health": LabSource("health", "Ministry of Health", "health.gov.bz", source,
                                                              boxes)}, center))
        costs = login_costs(ws, {"health": (source, [b.login for b in boxes]),
                                 "central": (center, [b.email for b in boxes])})
    finally:
        center.cleanup()
        source.cleanup()
    cores = os.cpu_count() or 1
    src, cen = costs["health"], costs["central"]
    floor = floor_s({"health": MAILBOXES}, costs)
    for name, c in (("source", src), ("central host", cen)):
        print(f"{name}: connect + master-user LOGIN + LOGOUT, {ROUNDS} times: {c.wall * 1000:.1f} ms each; server "
              f"CPU {c.server_cpu * 1000:.1f} ms, client CPU {c.client_cpu * 1000:.1f} ms per login (TLS connect + "
              f"LOGOUT alone: server {c.tls_server_cpu * 1000:.1f} ms, client {c.tls_client_cpu * 1000:.1f} ms)")
    print(f"floor of a no-change pass over {MAILBOXES} mailboxes (one source login each, no central login) from the "
          f"source servers' logins alone, on {cores} cores: {floor:.1f} s; with the client's CPU on the same "
          f"machine: {floor_s({'health': MAILBOXES}, costs, with_client=True):.1f} s")
    return {"login_server_cpu_ms": round(src.server_cpu * 1000, 2), "login_client_cpu_ms": round(src.client_cpu * 1000, 2),
            "login_tls_server_cpu_ms": round(src.tls_server_cpu * 1000, 2),
            "central_login_server_cpu_ms": round(cen.server_cpu * 1000, 2),
            "central_login_client_cpu_ms": round(cen.client_cpu * 1000, 2),
            "login_nochange_floor_5000_s": round(floor, 1),
            "login_nochange_floor_5000_with_client_s": round(floor_s({"health": MAILBOXES}, costs, with_client=True), 1)}
