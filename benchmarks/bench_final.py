"""Final-pass benchmark: the last pass of a 500-mailbox wave, run while its users wait, govmigrate against
isync's mbsync in the same run; then the no-change pass against the login floor.

One ministry Dovecot with 500 mailboxes of 20 small messages each, planned into one wave (``inventory mail``,
``plan generate``, ``plan approve``), its prestage and delta passes run (``govmigrate run WAVE --pass ...``); mbsync
(8 processes, each a share of the mailboxes) copies the same mailboxes into its own central host. Then 1 % of the
messages change flags and 1 % new ones arrive, and each tool runs its next pass: govmigrate the wave's final pass
(pre-flight included, as a run does it), mbsync its sync. Records:

* ``final``: govmigrate's final pass beside mbsync's (target: at most 0.5x), with the breakdown of
  :mod:`benchmarks.phases`;
* ``nochange-500``: ``sync --all`` over the wave's mailboxes with nothing changed, beside the floor that the
  servers' logins put under it (:func:`benchmarks.bench_login.floor_record`: a login per mailbox at the source and
  at the central host, their server CPU measured in this run, over this machine's cores; target at most 1.3x; the
  source logins alone beside it), and beside mbsync's no-change pass.

``BENCH_SCALE`` scales the number of mailboxes (0.1: 50).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from benchmarks.bench_delta import MbsyncRun, change_source, cpu_split
from benchmarks.bench_login import ServersCpu, floor_record, login_costs
from benchmarks.figures import compare, govmigrate_phases, govmigrate_run, scale, show_breakdown
from tests.lab import corpus, scenario
from tests.lab.dovecot import DovecotServer, central, modern_source
from tests.lab.scenario import Lab, LabSource

MAILBOXES = 500
MESSAGES = 20
SMALL = corpus.SizeProfile(((0.9, 1_000, 20_000), (0.1, 20_000, 100_000)))
TARGET = 0.5
FLOOR_TARGET = 1.3


def run() -> list[dict]:
    mailboxes = max(10, int(MAILBOXES * scale()))
    boxes = corpus.ministry(seed="final", domain="health.gov.bz", users=mailboxes, messages=MESSAGES, sizes=SMALL,
                            edge_cases=False, pilot=0, vip=0)
    source = DovecotServer(modern_source("health")).start()
    center = DovecotServer(central()).start()
    tmp = Path(tempfile.mkdtemp(prefix="govmigrate-final-"))
    mbsync = None
    try:
        source.load(boxes)
        os.sync()
        messages = sum(b.messages for b in boxes)
        print(f"corpus: {len(boxes)} mailboxes, {messages} messages", flush=True)
        ws = tmp / "ws"
        scenario.write_workspace(ws, Lab({"health": LabSource("health", "Ministry of Health", "health.gov.bz",
                                                              source, boxes)}, center),
                                 waves={"max_mailboxes": mailboxes, "max_gb": 10_000})
        text = (ws / "migration.yaml").read_text().replace("connections: 4", "connections: 8")
        (ws / "migration.yaml").write_text(text)
        for args in (("inventory", "mail"), ("plan", "generate", "--first-date", "2030-01-07"),
                     ("plan", "approve", "wave-01"), ("run", "wave-01", "--pass", "prestage"),
                     ("run", "wave-01", "--pass", "delta")):
            wall, _, _, _ = govmigrate_run(ws, *args, ok=(0, 1))
            print(f"govmigrate {' '.join(args)}: {wall:.1f}s", flush=True)
        mbsync = MbsyncRun(source, boxes)
        print(f"mbsync initial copy: {mbsync.run():.1f}s", flush=True)

        changed, new = change_source(source, boxes, seed="final")
        print(f"at the source: {changed} messages changed flags, {new} new messages arrived", flush=True)
        with ServersCpu({"source": source, "central": center}) as ours:
            final, _, final_cpu, _, phases = govmigrate_phases(ws, "run", "wave-01", "--pass", "final")
        with ServersCpu({"source": source, "central": mbsync.center}) as theirs:
            mbsync_final = mbsync.run()
        print(f"final pass: govmigrate {final:.2f}s ({final_cpu:.1f} CPU-s), mbsync {mbsync_final:.2f}s, ratio "
              f"{final / mbsync_final:.2f} (target <= {TARGET})", flush=True)
        cpu = cpu_split(final_cpu, ours, mbsync.cpu_s, theirs)
        show_breakdown(phases)

        # The nightly no-change pass is `sync --all`; its first run after the wave's passes also copies what a
        # wave's pass leaves out by the project's rules, so the figure is the second run's.
        govmigrate_run(ws, "sync", "--all")
        quiet, _, quiet_cpu, _, quiet_phases = govmigrate_phases(ws, "sync", "--all")
        mbsync_quiet = mbsync.run()
        costs = login_costs(ws, {"health": (source, [b.login for b in boxes]),
                                 "central": (center, [b.email for b in boxes])})
        record = floor_record(f"nochange-{len(boxes)}", quiet, {"health": len(boxes)}, costs, FLOOR_TARGET,
                              cpu_s=round(quiet_cpu, 2), mailboxes=len(boxes), mbsync_s=round(mbsync_quiet, 3),
                              breakdown=quiet_phases)
        print(f"no-change pass over {len(boxes)} mailboxes: govmigrate {quiet:.2f}s ({quiet_cpu:.1f} CPU-s), login "
              f"floor {record['login_floor_s']:.2f}s (a login at the source, {costs['health'].server_cpu * 1000:.1f} "
              f"ms of its CPU, and one at the central host, {costs['central'].server_cpu * 1000:.1f} ms, per mailbox; "
              f"{record['login_floor_with_client_s']:.2f}s with the client's CPU), ratio {record['ratio']:.2f} "
              f"(target <= {FLOOR_TARGET}); beside the source logins alone ({record['login_floor_source_only_s']:.2f}s)"
              f": {record['ratio_source_only']:.2f}; mbsync {mbsync_quiet:.2f}s", flush=True)
        show_breakdown(quiet_phases)
        return [compare("final", govmigrate_s=final, anchor="mbsync", anchor_s=mbsync_final, target=TARGET,
                        cpu_s=round(final_cpu, 2), mailboxes=len(boxes), messages=messages, changed=changed,
                        new=new, cpu_split=cpu, breakdown=phases),
                record]
    finally:
        if mbsync:
            mbsync.cleanup()
        center.cleanup()
        source.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
