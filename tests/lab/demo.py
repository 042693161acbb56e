"""``make demo``: start the local test lab, create a workspace pointed at it, and run the whole job end to end.

Every step runs the real ``govmigrate`` command as a sysadmin would type it, and shows its output; the
demo ends with a summary and exits non-zero if a step did not end as expected. The workspace is left in
``demo-workspace/`` for a look around afterwards (the lab servers are stopped).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.lab import scenario

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = ROOT / "demo-workspace"


@dataclass
class Step:
    title: str
    args: list[str]
    expect: int = 0


def steps() -> list[Step]:
    return [
        Step("Validate the project file and user lists (offline)", ["check"]),
        Step("The event log so far", ["log"]),
    ]


def run_step(step: Step, env: dict[str, str]) -> tuple[int, float]:
    argv = [sys.executable, "-m", "migrate", "-w", str(WORKSPACE), *step.args]
    print(f"\n\033[1m== {step.title}\033[0m\n$ govmigrate {shlex.join(step.args)}", flush=True)
    started = time.monotonic()
    result = subprocess.run(argv, env=env, cwd=ROOT)
    return result.returncode, time.monotonic() - started


def main() -> int:
    print("starting the test lab: two ministry Dovecot servers (modern and legacy layout) and the central host")
    started = time.monotonic()
    lab = scenario.start_lab(users=4, messages=60)
    try:
        if WORKSPACE.exists():
            shutil.rmtree(WORKSPACE)
        scenario.write_workspace(WORKSPACE, lab)
        for source in lab.sources.values():
            print(f"  {source.ministry:<24} {source.server.config.name:<10} 127.0.0.1:{source.server.port}  "
                  f"{len(source.mailboxes)} mailboxes, {sum(b.messages for b in source.mailboxes)} messages")
        print(f"  {'central host':<24} {'central':<10} 127.0.0.1:{lab.central.port}")
        print(f"workspace: {WORKSPACE}")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("GOVMIGRATE_WORKSPACE", None)
        results = []
        for step in steps():
            code, seconds = run_step(step, env)
            results.append((step, code, seconds))
        print("\n\033[1m== Summary\033[0m")
        failed = 0
        for step, code, seconds in results:
            ok = code == step.expect
            failed += not ok
            print(f"  {'ok  ' if ok else 'FAIL'} {seconds:6.1f}s  govmigrate {shlex.join(step.args)}"
                  + ("" if ok else f"  (exit {code}, expected {step.expect})"))
        print(f"{len(results) - failed} of {len(results)} steps as expected in {time.monotonic() - started:.0f}s; "
              f"workspace left in {WORKSPACE}")
        return 1 if failed else 0
    finally:
        lab.stop()


if __name__ == "__main__":
    sys.exit(main())
