"""Scale benchmark: 5,000 small mailboxes in 5 ministries, the first pass and the no-change pass a programme
runs every night, govmigrate against isync's mbsync in the same run.

Five Dovecot sources of 1,000 mailboxes each (5 small messages per mailbox in a few folders), one central host
per tool. govmigrate copies with `sync --all` (8 connections per source, 16 to the central host) and then runs
the same command again with nothing changed; mbsync does the same with 8 processes, each taking its share of
the mailboxes (its sync benchmark's best parallelism). ``BENCH_SCALE=0.1`` runs 500 mailboxes. Records:
``nochange-5000`` (the no-change pass beside the floor its logins put under it, measured in this run against these
servers as ``BENCH=login`` measures it: a login per mailbox at its source and at the central host times each
server's CPU per login, over this machine's cores; target at most 1.3x; the source logins alone and mbsync's
no-change pass beside it) and ``scale-initial-5000`` (the first
pass beside mbsync's, no target).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.bench_delta import MbsyncRun
from benchmarks.bench_login import floor_record, login_costs
from benchmarks.figures import compare, govmigrate_phases, govmigrate_run, show_breakdown
from tests.lab import corpus, scenario
from tests.lab.dovecot import DovecotServer, central, modern_source
from tests.lab.scenario import Lab, LabSource

MINISTRIES = ("health", "finance", "education", "works", "tourism")
SMALL = corpus.SizeProfile(((1.0, 1_000, 6_000),))
FLOOR_TARGET = 1.3
#: Logins per source server to measure its CPU per login.
FLOOR_ROUNDS = 150


def build(per_ministry: int) -> tuple[dict[str, LabSource], float]:
    started = time.monotonic()
    sources: dict[str, LabSource] = {}
    for name in MINISTRIES:
        domain = f"{name}.gov.bz"
        boxes = corpus.ministry(seed=f"scale-{name}", domain=domain, users=per_ministry, messages=5, sizes=SMALL,
                                edge_cases=False, pilot=0, vip=0)
        server = DovecotServer(modern_source(name)).start()
        server.load(boxes)
        sources[name] = LabSource(name, f"Ministry of {name.title()}", domain, server, boxes)
    os.sync()
    return sources, time.monotonic() - started


def run() -> list[dict]:
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    per_ministry = max(10, int(1000 * scale))
    sources, build_s = build(per_ministry)
    boxes = [b for s in sources.values() for b in s.mailboxes]
    print(f"corpus: {len(boxes)} mailboxes in {len(sources)} ministries, {sum(b.messages for b in boxes)} messages "
          f"(built and loaded in {build_s:.0f}s)", flush=True)
    center = DovecotServer(central()).start()
    tmp = Path(tempfile.mkdtemp(prefix="govmigrate-scale-"))
    mbsync: list[MbsyncRun] = []
    try:
        ws = tmp / "ws"
        scenario.write_workspace(ws, Lab(sources, center))
        text = (ws / "migration.yaml").read_text().replace("connections: 4", "connections: 8")
        (ws / "migration.yaml").write_text(text)
        initial, _, initial_cpu, _ = govmigrate_run(ws, "sync", "--all")
        print(f"govmigrate initial pass: {initial:.1f}s ({initial_cpu:.0f} CPU-s)", flush=True)
        # The first pass's own logins made each source Dovecot subscribe the INBOX of mailboxes it had never opened
        # (its autosubscribe): the next pass carries that subscription once, as it would a user's. The nightly
        # no-change pass is the one after it.
        govmigrate_run(ws, "sync", "--all")
        quiet, _, quiet_cpu, _, phases = govmigrate_phases(ws, "sync", "--all")
        print(f"govmigrate no-change pass: {quiet:.1f}s ({quiet / len(boxes) * 1000:.1f} ms per mailbox, "
              f"{quiet_cpu:.1f} CPU-s)", flush=True)
        show_breakdown(phases)
        # The floor, measured now against these servers: one login per mailbox at its source and at the central host.
        costs = login_costs(ws, {**{name: (s.server, [b.login for b in s.mailboxes]) for name, s in sources.items()},
                                 "central": (center, [b.email for b in boxes])}, rounds=FLOOR_ROUNDS)
        logins = {name: len(s.mailboxes) for name, s in sources.items()}
        # mbsync: one configuration per ministry server, its 8 processes sharing that ministry's mailboxes.
        mbsync = [MbsyncRun(s.server, s.mailboxes) for s in sources.values()]
        started = time.monotonic()
        for m in mbsync:
            m.run()
        mbsync_initial = time.monotonic() - started
        started = time.monotonic()
        for m in mbsync:
            m.run()
        mbsync_quiet = time.monotonic() - started
        print(f"mbsync initial pass: {mbsync_initial:.1f}s; no-change pass: {mbsync_quiet:.1f}s", flush=True)
        record = floor_record(f"nochange-{len(boxes)}", quiet, logins, costs, FLOOR_TARGET, cpu_s=round(quiet_cpu, 2),
                              mailboxes=len(boxes), mbsync_s=round(mbsync_quiet, 3),
                              ms_per_mailbox=round(quiet / len(boxes) * 1000, 2), breakdown=phases)
        print(f"login floor of the no-change pass: {record['login_floor_s']:.1f}s (a login per mailbox at its source "
              f"and at the central host; {record['login_floor_with_client_s']:.1f}s with the client's CPU): "
              f"govmigrate / floor = {record['ratio']:.2f} (target <= {FLOOR_TARGET}); beside the source logins "
              f"alone ({record['login_floor_source_only_s']:.1f}s): {record['ratio_source_only']:.2f}", flush=True)
        return [record,
                compare(f"scale-initial-{len(boxes)}", govmigrate_s=initial, anchor="mbsync", anchor_s=mbsync_initial,
                        target=None, cpu_s=round(initial_cpu, 1), mailboxes=len(boxes))]
    finally:
        for m in mbsync:
            m.cleanup()
        center.cleanup()
        for s in sources.values():
            s.server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
