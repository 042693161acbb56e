"""Start-up benchmark: commands that do no network work, each timed as a command (a new process, ``python -m
migrate``) in a workspace of 500 planned mailboxes: ``--help``, ``--version``, a command group's help,
``check``, ``plan show``, ``status USER``, ``inventory show``, ``log -n 20``. Target: each starts and ends in
at most 0.3 s (the median of five runs). No anchor is run: the target is absolute.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.figures import scale

TARGET_S = 0.3
RUNS = 5
MAILBOXES = 500


def _workspace(ws: Path) -> None:
    from tests.test_plan import make_workspace

    users = {"health": [(f"user{i:04d}@health.gov.bz", "", (1 + i % 40) * 1_000_000) for i in range(MAILBOXES)]}
    make_workspace(ws, users, waves={"max_mailboxes": 100})
    subprocess.run([sys.executable, "-m", "migrate", "-q", "-w", str(ws), "plan", "generate", "--first-date",
                    "2026-09-07"], check=False, capture_output=True)


def _time(argv: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "migrate", *argv], capture_output=True)
        times.append(time.monotonic() - started)
        if done.returncode not in (0, 1):
            raise RuntimeError(f"govmigrate {' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]!r}")
    return statistics.median(times)


def run() -> list[dict]:
    records = []
    baseline = statistics.median(_bare() for _ in range(RUNS))
    with tempfile.TemporaryDirectory(prefix="govmigrate-startup-") as tmp:
        ws = Path(tmp) / "ws"
        _workspace(ws)
        commands = {
            "--help": ["--help"], "--version": ["--version"], "plan --help": ["plan", "--help"],
            "sync --help": ["sync", "--help"], "check": ["-w", str(ws), "check"],
            "plan show": ["-w", str(ws), "plan", "show"], "status USER": ["-w", str(ws), "status", "user0007"],
            "inventory show": ["-w", str(ws), "inventory", "show"], "log -n 20": ["-w", str(ws), "log", "-n", "20"],
        }
        for name, argv in commands.items():
            seconds = _time(argv)
            met = seconds <= TARGET_S
            print(f"govmigrate {name}: {seconds:.3f} s ({'within' if met else 'over'} {TARGET_S} s)", flush=True)
            records.append({"bench": "startup", "command": f"govmigrate {name}", "govmigrate_s": round(seconds, 3),
                            "python_bare_s": round(baseline, 3), "target_s": TARGET_S, "met": met,
                            "scale": scale()})
    return records


def _bare() -> float:
    """The interpreter alone (``python -c pass``): the part of each figure no import change can remove."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.monotonic() - started
