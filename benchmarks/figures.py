"""What every benchmark hands back: one record per comparison, govmigrate's figure beside its anchor's from the
same run, the target and whether it is met (``python -m benchmarks`` prints each as one JSON line), and the runs
that produce them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _peak_rss_kb(pid: int) -> int:
    """VmHWM: the peak resident set of the process since it started its own program (exec)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(argv: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> tuple[float, int, float, str]:
    """(wall seconds, peak RSS in MB, CPU seconds, output) of one command.

    The peak comes from polling VmHWM, not from rusage: a child's ru_maxrss also counts the memory of
    this (large) benchmark process it was forked from.
    """
    with tempfile.TemporaryFile() as out_file:
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out_file, stderr=subprocess.STDOUT)
        peak = 0
        while True:
            peak = max(peak, _peak_rss_kb(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.01)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_file.seek(0)
        out = out_file.read().decode(errors="replace")
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{out[-3000:]}")
    return wall, peak // 1024, usage.ru_utime + usage.ru_stime, out


def scale() -> float:
    return float(os.environ.get("BENCH_SCALE", "1"))


def compare(bench: str, *, govmigrate_s: float, anchor: str, anchor_s: float, target: float | None,
            **extra) -> dict:
    """A record: govmigrate's time, the anchor's (``<anchor>_s``), their ratio, the target ratio (at most; None:
    shown for comparison, no target) and whether it is met, the corpus scale, and whatever else was measured."""
    ratio = govmigrate_s / anchor_s if anchor_s > 0 else float("inf")
    return {"bench": bench, "govmigrate_s": round(govmigrate_s, 3), f"{anchor}_s": round(anchor_s, 3),
            "ratio": round(ratio, 3), "target": target, "met": None if target is None else ratio <= target,
            "scale": scale(), **extra}


def govmigrate_run(ws: Path, *args: str, ok: tuple[int, ...] = (0,)) -> tuple[float, int, float, str]:
    """``govmigrate -q -w WS ARGS`` as a command: (wall, peak RSS MB, CPU s, output); exit codes in ``ok``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("GOVMIGRATE_WORKSPACE", None)
    return run_measured([sys.executable, "-m", "migrate", "-q", "-w", str(ws), *args], env, ok)


def govmigrate_phases(ws: Path, *args: str, ok: tuple[int, ...] = (0,)) -> tuple[float, int, float, str, dict]:
    """``govmigrate -q -w WS ARGS`` with the phase timers of :mod:`benchmarks.phases`: (wall, peak RSS MB, CPU s,
    output, breakdown). The timers cost little (a clock read around each wrapped call), so the wall time is the
    command's."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("GOVMIGRATE_WORKSPACE", None)
    with tempfile.TemporaryDirectory(prefix="govmigrate-phases-") as tmp:
        out = Path(tmp) / "phases.json"
        env["BENCH_LAUNCHED"] = repr(time.time())
        wall, rss, cpu, text = run_measured([sys.executable, "-m", "benchmarks.phases", str(out), "--", "-q", "-w",
                                             str(ws), *args], env, ok)
        phases = json.loads(out.read_text())
    return wall, rss, cpu, text, breakdown(wall, phases)


def breakdown(wall: float, phases: dict) -> dict:
    """The phases as a record carries them: seconds (summed over threads) and calls, process start and imports."""
    result: dict[str, object] = {"wall_s": round(wall, 3), "cpu_s": phases["cpu_s"],
                                 "process_start_s": phases["process start (interpreter)"],
                                 "imports_s": phases["imports"], "command_s": phases["command"]}
    for name, figures in phases["phases"].items():
        result[name.replace(" ", "_").replace("/", "_").replace("(", "").replace(")", "")] = figures
    result["imap_commands"] = phases["imap_commands"]
    if phases["not_found"]:
        result["not_instrumented"] = phases["not_found"]
    return result


def show_breakdown(b: dict) -> None:
    """The breakdown for people: the phases by time, then the IMAP commands sent."""
    print(f"  where the time goes (wall {b['wall_s']:.2f} s, CPU {b['cpu_s']:.2f} s; thread-seconds summed over "
          "parallel workers):", flush=True)
    print(f"    process start (interpreter) {b['process_start_s'] or 0:.3f} s, imports {b['imports_s']:.3f} s, "
          f"command {b['command_s']:.3f} s", flush=True)
    phases = {k: v for k, v in b.items() if isinstance(v, dict) and "s" in v}
    for name, figures in sorted(phases.items(), key=lambda kv: -kv[1]["s"]):
        print(f"    {name:<26} {figures['s']:8.3f} s  {figures['calls']:6d} calls", flush=True)
    print(f"    IMAP commands: {b['imap_commands']}", flush=True)
