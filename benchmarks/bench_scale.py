"""Scale benchmark: 5,000 small mailboxes in 5 ministries, the first pass and the no-change pass a programme
runs every night, govmigrate against isync's mbsync in the same run.

Five Dovecot sources of 1,000 mailboxes each (5 small messages per mailbox in a few folders), one central host
per tool. govmigrate copies with `sync --all` (8 connections per source, 16 to the central host) and then runs
the same command again with nothing changed; mbsync does the same with 8 processes, each taking its share of
the mailboxes (its sync benchmark's best parallelism). ``BENCH_SCALE=0.1`` runs 500 mailboxes. The last line
printed is one JSON object.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.bench_delta import MbsyncRun
from benchmarks.bench_sync import govmigrate_run
from tests.lab import corpus, scenario
from tests.lab.dovecot import DovecotServer, central, modern_source
from tests.lab.scenario import Lab, LabSource

MINISTRIES = ("health", "finance", "education", "works", "tourism")
SMALL = corpus.SizeProfile(((1.0, 1_000, 6_000),))


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


def run() -> dict:
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
        quiet, _, quiet_cpu, _ = govmigrate_run(ws, "sync", "--all")
        print(f"govmigrate no-change pass: {quiet:.1f}s ({quiet / len(boxes) * 1000:.1f} ms per mailbox, "
              f"{quiet_cpu:.1f} CPU-s)", flush=True)
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
        return {"scale_mailboxes": len(boxes), "scale_initial_govmigrate_s": round(initial, 1),
                "scale_initial_mbsync_s": round(mbsync_initial, 1), "scale_nochange_govmigrate_s": round(quiet, 2),
                "scale_nochange_mbsync_s": round(mbsync_quiet, 2),
                "scale_nochange_ms_per_mailbox": round(quiet / len(boxes) * 1000, 2),
                "scale_nochange_cpu_s": round(quiet_cpu, 1)}
    finally:
        for m in mbsync:
            m.cleanup()
        center.cleanup()
        for s in sources.values():
            s.server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
