"""The HTML programme report at scale: 5,000 mailboxes in 7 ministries planned into 56+ waves, 40 % of them done
and 1 % failed (each state change an event, as runs write them), then ``govmigrate report --html`` timed as a
command (process start included), and the file loaded by headless Chromium (Debian's) timed too."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from migrate.core.store import open_store
from tests.test_plan import make_workspace

MINISTRIES = ("health", "education", "finance", "works", "tourism", "police", "it")
MAILBOXES = 5000
MB = 1_000_000


def _programme(ws: Path) -> None:
    per = MAILBOXES // len(MINISTRIES)
    users = {m: [(f"user{i:04d}@{m}.gov.bz", "pilot" if i == 0 else "", (1 + i % 40) * MB)
                 for i in range(per + (MAILBOXES - per * len(MINISTRIES) if m == "it" else 0))]
             for m in MINISTRIES}
    make_workspace(ws, users, waves={"max_mailboxes": 90, "max_gb": 10_000})
    subprocess.run([sys.executable, "-m", "migrate", "-w", str(ws), "plan", "generate", "--first-date",
                    "2026-09-07"], check=False, capture_output=True)
    store = open_store(ws / "state.db")
    try:
        for n, mailbox in enumerate(store.mailboxes()):
            if n % 100 == 0:
                store.set_mailbox_state(mailbox.id, "failed", "delta pass: source: connection refused",
                                        prior_state="prestaged")
            elif n % 5 < 2:
                for state in ("prestaging", "prestaged", "delta-synced", "final-synced"):
                    store.set_mailbox_state(mailbox.id, state)
        waves = len(store.waves())
    finally:
        store.close()
    print(f"report: {MAILBOXES} mailboxes in {len(MINISTRIES)} ministries, {waves} waves", flush=True)


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="govmigrate-bench-report-") as tmp:
        ws = Path(tmp) / "ws"
        _programme(ws)
        out = Path(tmp) / "programme.html"
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "migrate", "-w", str(ws), "report", "--html", str(out)], check=True,
                       capture_output=True)
        generate = time.monotonic() - started
        started = time.monotonic()
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", out.as_uri()],
                       check=True, capture_output=True, timeout=120)
        load = time.monotonic() - started
        size = out.stat().st_size
    print(f"report --html: {generate:.2f} s to write ({size / 1e6:.1f} MB); Chromium loads it in {load:.2f} s",
          flush=True)
    return {"report_html_5000_seconds": round(generate, 2), "report_html_5000_chromium_seconds": round(load, 2),
            "report_html_5000_bytes": size}
