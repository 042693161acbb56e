"""Delta-pass benchmark: the nightly pass of a programme, govmigrate against isync's mbsync, same run.

The sync benchmark's reference corpus (20 mailboxes, about 18,000 messages, ``BENCH_SCALE`` scales it) is copied
once by each tool into its own central host. Then 1 % of the messages change flags at the source and 1 % new
messages arrive, and each tool runs its next pass over the whole corpus. govmigrate reads only what changed
where the source has CONDSTORE (RFC 7162: one ``FETCH (FLAGS) (CHANGEDSINCE ...)`` per changed folder; unchanged
folders are skipped from LIST-STATUS alone); mbsync compares each folder's messages with its sync state. The
figures printed are the wall time of each tool's delta pass (mbsync with 8 processes, as in the sync
benchmark's best case) with where govmigrate's time went (:mod:`benchmarks.phases`: process start, logins,
per-folder round trips, appends, store writes), the no-change pass after it, and whether govmigrate's copy
verifies exactly. Records: ``delta`` (target: at most 0.5x mbsync) and ``delta-nochange`` (no target).
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from imapclient import IMAPClient

from benchmarks.bench_login import ServersCpu
from benchmarks.bench_sync import bench_workspace, build_source, govmigrate_run, mbsync_config
from benchmarks.figures import compare, govmigrate_phases, show_breakdown
from tests.lab import corpus
from tests.lab.base import LOOPBACK
from tests.lab.dovecot import DovecotServer, central

#: mbsync processes, each taking its share of the mailboxes (the sync benchmark's best parallelism).
MBSYNC_PROCESSES = 8
CHANGED = 0.01
NEW = 0.01
#: govmigrate's delta pass: at most half of mbsync's in the same run.
TARGET = 0.5


def change_source(source: DovecotServer, boxes: list[corpus.CorpusMailbox], seed: str = "delta") -> tuple[int, int]:
    """Flag or unflag 1 % of the messages (spread over every folder) and deliver 1 % new ones; (changed, new)."""
    rng = random.Random(seed)
    changed = new = 0
    for box in boxes:
        client = IMAPClient(LOOPBACK, source.port, ssl=False, timeout=60)
        try:
            client.login(f"{box.login}*{source.config.master_user}", source.config.master_password)
            everything = []
            for flags, _delimiter, name in client.list_folders():
                if b"\\Noselect" not in flags:
                    client.select_folder(name, readonly=True)
                    everything += [(name, uid) for uid in client.search(["ALL"])]
            for name, uid in sorted(rng.sample(everything, max(1, round(len(everything) * CHANGED)))):
                client.select_folder(name)
                if rng.random() < 0.5:
                    client.add_flags([uid], [b"\\Flagged"])
                else:
                    client.remove_flags([uid], [b"\\Seen"])
                changed += 1
            for n in range(max(1, round(box.messages * NEW))):
                raw = (f"From: delta@health.gov.bz\r\nTo: {box.email}\r\nSubject: nightly delta {n}\r\n"
                       f"Message-ID: <delta-{n}.{box.login}@health.gov.bz>\r\n\r\n").encode() \
                    + b"x" * rng.randint(2_000, 20_000) + b"\r\n"
                client.append("INBOX", raw)
                new += 1
        finally:
            client.logout()
    return changed, new


def cpu_split(tool_cpu: float, ours: ServersCpu, mbsync_cpu: float, theirs: ServersCpu) -> dict:
    """CPU seconds of one pass of each tool: the tool's own and each server's (the same source, each tool's own
    central host), printed and kept in the record. The machine has two cores for all three: a pass's wall time
    cannot be less than their sum over the cores."""
    split = {name: {k: round(v, 2) for k, v in {"tool": tool, **servers.seconds}.items()}
             for name, tool, servers in (("govmigrate", tool_cpu, ours), ("mbsync", mbsync_cpu, theirs))}
    for name, parts in split.items():
        print(f"  CPU of the pass, {name}: " + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items())
              + f"; together {sum(parts.values()):.2f} s", flush=True)
    return split


class MbsyncRun:
    """mbsync with a central host and a sync state of its own, kept between passes."""

    def __init__(self, source: DovecotServer, boxes: list[corpus.CorpusMailbox]) -> None:
        self.center = DovecotServer(central()).start()
        self.tmp = Path(tempfile.mkdtemp(prefix="mbsync-delta-"))
        for box in boxes:
            self.center.add_user(box.email, "unused")
        self.conf = self.tmp / "mbsyncrc"
        self.groups = mbsync_config(self.conf, source, self.center, boxes, MBSYNC_PROCESSES, self.tmp / "state")

    def run(self) -> float:
        """One pass of every process; its wall time. ``cpu_s`` is then the processes' CPU (user and system)."""
        started = time.monotonic()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        procs = [subprocess.Popen(["mbsync", "-q", "-c", str(self.conf), g], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE) for g in self.groups]
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"mbsync failed: {err.decode(errors='replace')[-2000:]}")
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu_s = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        return wall

    def cleanup(self) -> None:
        self.center.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)


def run() -> list[dict]:
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    source, boxes, build_s = build_source(scale)
    messages = sum(b.messages for b in boxes)
    print(f"corpus: {len(boxes)} mailboxes, {messages} messages (built and loaded in {build_s:.0f}s)", flush=True)
    center = DovecotServer(central()).start()
    mbsync = MbsyncRun(source, boxes)
    tmp = Path(tempfile.mkdtemp(prefix="govmigrate-delta-"))
    try:
        ws = bench_workspace(tmp / "ws", source, boxes, center)
        initial, _, _, _ = govmigrate_run(ws, "sync", "--all")
        mbsync_initial = mbsync.run()
        print(f"initial copy: govmigrate {initial:.2f}s, mbsync ({MBSYNC_PROCESSES} processes) {mbsync_initial:.2f}s",
              flush=True)
        changed, new = change_source(source, boxes)
        print(f"at the source: {changed} messages changed flags, {new} new messages arrived", flush=True)
        with ServersCpu({"source": source, "central": center}) as ours:
            delta, _, delta_cpu, _, phases = govmigrate_phases(ws, "sync", "--all")
        with ServersCpu({"source": source, "central": mbsync.center}) as theirs:
            mbsync_delta = mbsync.run()
        print(f"delta pass: govmigrate {delta:.2f}s ({delta_cpu:.1f} CPU-s), mbsync {mbsync_delta:.2f}s, "
              f"ratio {delta / mbsync_delta:.2f} (target <= {TARGET})", flush=True)
        cpu = cpu_split(delta_cpu, ours, mbsync.cpu_s, theirs)
        show_breakdown(phases)
        quiet, _, quiet_cpu, _ = govmigrate_run(ws, "sync", "--all")
        mbsync_quiet = mbsync.run()
        print(f"no-change pass after it: govmigrate {quiet:.2f}s, mbsync {mbsync_quiet:.2f}s", flush=True)
        _, _, _, out = govmigrate_run(ws, "verify", "--all", "--json")
        matches = all(row["matches"] for row in json.loads(out[out.index("["):]))
        print(f"govmigrate verify: {'all match' if matches else 'MISMATCH'}", flush=True)
        return [compare("delta", govmigrate_s=delta, anchor="mbsync", anchor_s=mbsync_delta, target=TARGET,
                        cpu_s=round(delta_cpu, 2), mailboxes=len(boxes), messages=messages, changed=changed, new=new,
                        mbsync_processes=MBSYNC_PROCESSES, verify_matches=matches, cpu_split=cpu, breakdown=phases),
                compare("delta-nochange", govmigrate_s=quiet, anchor="mbsync", anchor_s=mbsync_quiet, target=None,
                        cpu_s=round(quiet_cpu, 2), mailboxes=len(boxes), mbsync_processes=MBSYNC_PROCESSES)]
    finally:
        center.cleanup()
        mbsync.cleanup()
        source.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
