"""Inventory throughput: mailboxes measured per second over a lab of 120 small IMAP mailboxes in two sources
(modern and legacy layout) at the project file's default of 4 connections per source, plus an Exchange
source of 40 mailboxes through the EWS responder; all over verified TLS, as in production."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import yaml

from migrate.core.config import load_project
from migrate.core.store import open_store
from migrate.mailbox.inventory import run_inventory
from tests.lab import corpus
from tests.lab.base import LOOPBACK, free_port
from tests.lab.certs import lab_ca
from tests.lab.dovecot import DovecotServer, legacy_source, modern_source
from tests.lab.ews import EwsResponder
from tests.lab.scenario import LabSource, source_entry

IMAP_MAILBOXES_PER_SOURCE = 60
EWS_MAILBOXES = 40
MESSAGES = 12
#: Small messages: inventory reads sizes and dates, never bodies, so message size barely matters.
SIZES = corpus.SizeProfile(((1.0, 1_000, 6_000),))
EWS_PASSWORD = "bench-ews-secret"
#: Never contacted by an inventory; the project file still needs a well-formed central host.
CENTRAL_PASSWORD = "bench-central-unused"


def _secret(ws: Path, name: str, value: str) -> str:
    secrets = ws / "secrets"
    secrets.mkdir(mode=0o700, exist_ok=True)
    path = secrets / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return f"file:secrets/{name}"


def _workspace(ws: Path, imap: list[LabSource], ews: EwsResponder, ews_boxes: list[corpus.CorpusMailbox]) -> Path:
    (ws / "users").mkdir(parents=True)
    for src in imap:
        (ws / "users" / f"{src.id}.csv").write_text(corpus.user_list_csv(src.mailboxes))
    (ws / "users" / "finance.csv").write_text(corpus.user_list_csv(ews_boxes))
    finance = {"id": "finance", "ministry": "Ministry of Finance", "domains": ["finance.gov.bz"],
               "server": {"type": "ews", "url": ews.url, "auth": "basic", "user": ews.service_user,
                          "password": _secret(ws, "ews", EWS_PASSWORD), "ca_file": str(lab_ca().ca_file)},
               "users": "users/finance.csv"}
    doc = {"version": 1, "name": "inventory benchmark",
           "central": {"imap": {"host": LOOPBACK, "port": free_port(), "tls": "implicit"},
                       "login": {"method": "master_user", "user": "migrator",
                                 "password": _secret(ws, "central", CENTRAL_PASSWORD)}},
           "sources": [source_entry(ws, src) for src in imap] + [finance]}
    (ws / "migration.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    open_store(ws / "state.db", create=True).close()
    return ws / "migration.yaml"


def _measure(project_file: Path, source_ids: list[str]) -> tuple[int, float, int]:
    """One inventory run of these sources: (mailboxes measured, seconds, mailboxes that failed)."""
    project = load_project(project_file)
    store = open_store(project_file.parent / "state.db")
    try:
        started = time.perf_counter()
        result = run_inventory(project, store, source_ids)
        seconds = time.perf_counter() - started
    finally:
        store.close()
    boxes = [m for sid in source_ids for m in result.mailboxes[sid]]
    return len(boxes), seconds, sum(1 for m in boxes if not m.ok)


def run() -> dict:
    started = time.perf_counter()
    modern_boxes = corpus.ministry(seed="bench-inv", domain="health.gov.bz", users=IMAP_MAILBOXES_PER_SOURCE,
                                   messages=MESSAGES, sizes=SIZES, edge_cases=False)
    legacy_boxes = corpus.ministry(seed="bench-inv", domain="education.gov.bz", users=IMAP_MAILBOXES_PER_SOURCE,
                                   layout="legacy", messages=MESSAGES, sizes=SIZES, login_style="email",
                                   edge_cases=False)
    ews_boxes = corpus.ministry(seed="bench-inv", domain="finance.gov.bz", users=EWS_MAILBOXES,
                                messages=MESSAGES, sizes=SIZES, edge_cases=False)
    modern = DovecotServer(modern_source("health")).start()
    legacy = DovecotServer(legacy_source("education")).start()
    ews = EwsResponder(ews_boxes, service_password=EWS_PASSWORD, tls=lab_ca().issue("bench-ews")).start()
    try:
        modern.load(modern_boxes)
        legacy.load(legacy_boxes)
        print(f"lab ready: {2 * IMAP_MAILBOXES_PER_SOURCE} IMAP + {EWS_MAILBOXES} EWS mailboxes of {MESSAGES} "
              f"messages in {time.perf_counter() - started:.1f}s", flush=True)
        imap = [LabSource("health", "Ministry of Health", "health.gov.bz", modern, modern_boxes),
                LabSource("education", "Ministry of Education", "education.gov.bz", legacy, legacy_boxes)]
        with tempfile.TemporaryDirectory(prefix="bench-inventory-") as tmp:
            project_file = _workspace(Path(tmp) / "ws", imap, ews, ews_boxes)
            count, seconds, failed = _measure(project_file, ["health", "education"])
            rate = count / seconds
            print(f"IMAP inventory: {count} mailboxes ({failed} failed) in {seconds:.2f}s = {rate:.1f} mailboxes/s "
                  "(2 sources x 4 connections)", flush=True)
            ews_count, ews_seconds, ews_failed = _measure(project_file, ["finance"])
            ews_rate = ews_count / ews_seconds
            print(f"EWS inventory: {ews_count} mailboxes ({ews_failed} failed) in {ews_seconds:.2f}s = "
                  f"{ews_rate:.1f} mailboxes/s (4 connections)", flush=True)
    finally:
        ews.stop()
        modern.cleanup()
        legacy.cleanup()
    if failed or ews_failed:
        raise RuntimeError(f"the benchmark inventory had failures: IMAP {failed}, EWS {ews_failed}")
    return {"inventory_mailboxes": count, "inventory_seconds": round(seconds, 3),
            "inventory_mailboxes_per_s": round(rate, 1), "inventory_ews_mailboxes": ews_count,
            "inventory_ews_mailboxes_per_s": round(ews_rate, 1)}
