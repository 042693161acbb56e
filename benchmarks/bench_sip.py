"""SIP check throughput: ``sip check`` over 300 provisioned extensions against the lab's Kamailio (one registrar,
UDP, TCP and TLS offered, each phone registering over UDP as most desk phones do), at 1, 10 (the project
file's default) and 30 transactions at once per registrar. Each extension is a full check: REGISTER, the 401
challenge, the REGISTER with MD5 digest, 200, and the un-REGISTER with ``Expires: 0`` (which is challenged
again), so four transactions per phone."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from migrate.core.config import load_project
from migrate.core.secrets import Secret
from migrate.voip.checks import run_checks
from migrate.voip.export import write_kamailio
from migrate.voip.model import Extension
from tests.lab.kamailio import DOMAIN, start_kamailio
from tests.lab.scenario import provisioned_phones

EXTENSIONS = 300
CONCURRENCY = (1, 10, 30)


def _extensions() -> list[Extension]:
    return [Extension("health", "gov", str(4000 + i), name=f"Phone {i}", transport="udp",
                      secret=Secret(f"bench-secret-{i:04d}-x9", "bench")) for i in range(EXTENSIONS)]


def run() -> dict:
    figures: dict[str, float] = {}
    extensions = _extensions()
    registrar = start_kamailio()
    try:
        with tempfile.TemporaryDirectory(prefix="govmigrate-bench-sip-") as tmp:
            ws = Path(tmp)
            write_kamailio(extensions, ws / "kamailio", domain=DOMAIN)
            registrar.load(ws / "kamailio")
            assert registrar.ca_file is not None
            project_file, store = provisioned_phones(ws, extensions, {
                "domain": DOMAIN, "registrar": registrar.address, "transports": ["udp", "tcp", "tls"],
                "ca_file": str(registrar.ca_file)})
            rows = store.extensions()
            for limit in CONCURRENCY:
                text = project_file.read_text().replace("ca_file:", f"concurrency: {limit}\n  ca_file:")
                project_file.write_text(text)
                project = load_project(project_file)
                started = time.monotonic()
                report = run_checks(project, store, rows, wave=None)
                seconds = time.monotonic() - started
                passed = sum(c.result == "pass" for c in report.register_checks().values())
                if passed != EXTENSIONS:
                    failing = [c.detail for c in report.register_checks().values() if c.result != "pass"][:3]
                    raise RuntimeError(f"{EXTENSIONS - passed} extension(s) did not pass: {failing}")
                print(f"sip check: {EXTENSIONS} extensions registered and removed again in {seconds:.2f} s with "
                      f"{limit} transaction(s) at once ({EXTENSIONS / seconds:.0f} phones/s)", flush=True)
                figures[f"sip_check_{EXTENSIONS}_seconds_at_{limit}"] = round(seconds, 2)
                project_file.write_text(text.replace(f"concurrency: {limit}\n  ", ""))
            store.close()
    finally:
        registrar.cleanup()
    return figures
