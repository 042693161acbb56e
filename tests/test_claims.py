"""Claims the README makes about the sync engine, each pinned against the real lab servers: the SASL PLAIN
login, the bandwidth cap, unchanged folders left alone (seen from the server's side of the wire), and the
``X (2)`` rename when two source folders would land in one."""

from __future__ import annotations

import json
import threading

import pytest
import yaml

from tests.lab import corpus, scenario
from tests.lab.inspect import read_mailbox
from tests.lab.proxy import RecordingProxy


def _edit(ws, change) -> None:
    doc = yaml.safe_load((ws / "migration.yaml").read_text())
    change(doc)
    (ws / "migration.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


@pytest.fixture
def own_lab(tmp_path):
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="claims", messages=30)
    yield lab, ws, boxes[0]
    lab.stop()


def _via(proxy: RecordingProxy):
    """Point the first source at a recording proxy (in clear text, opted into, so the test can read it)."""
    def change(d):
        d["sources"][0]["server"].update(port=proxy.port, tls="none", allow_cleartext=True)
        d["sources"][0]["server"].pop("ca_file", None)
    return change


def test_sync_logs_in_with_sasl_plain_and_an_authorization_identity(govmigrate, own_lab):
    lab, ws, box = own_lab
    proxy = RecordingProxy(lab.sources["health"].server.port)
    try:
        _edit(ws, _via(proxy))
        _edit(ws, lambda d: d["sources"][0]["server"]["login"].update(method="sasl_plain"))
        rows = json.loads(govmigrate("-w", ws, "sync", box.email, "--json").stdout)
        assert rows[0]["result"] == "ok" and rows[0]["copied"] == box.messages
        sent = bytes(proxy.sent)
        assert b"AUTHENTICATE PLAIN" in sent and b" LOGIN " not in sent
        assert json.loads(govmigrate("-w", ws, "verify", box.email, "--json").stdout)[0]["matches"]
    finally:
        proxy.close()


class _FakeClock:
    """The rate limiter's clock, advanced only by its own sleeps: the pacing it chooses, measured exactly and
    with no real waiting (tests assert behaviour, never how long they took)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.lock = threading.Lock()

    def monotonic(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_the_bandwidth_cap_paces_every_byte_within_ten_percent(govmigrate, own_lab, monkeypatch):
    import migrate.core.ratelimit as ratelimit

    _lab, ws, box = own_lab
    rate = 200_000
    _edit(ws, lambda d: (d["sources"][0].update(bandwidth=f"{rate} B/s"),
                         d.setdefault("sync", {}).update(stream_threshold=500_000)))
    clock = _FakeClock()
    monkeypatch.setattr(ratelimit, "time", clock)
    counted = []
    real_consume = ratelimit.RateLimiter.consume
    monkeypatch.setattr(ratelimit.RateLimiter, "consume", lambda self, n: (counted.append(n), real_consume(self, n))[1])
    rows = json.loads(govmigrate("-w", ws, "sync", box.email, "--json").stdout)
    copied = rows[0]["copied_bytes"]
    assert copied == box.size and sum(counted) == copied, "every byte read from the source passes the cap"
    assert any(m.size > 500_000 for f in box.folders for m in f.messages), "streamed messages are paced too"
    achieved = copied / (clock.now - 1000.0)
    assert abs(achieved - rate) / rate <= 0.10, f"{achieved:.0f} B/s for a cap of {rate} B/s"


def test_unchanged_folders_are_not_even_opened_on_the_next_pass(govmigrate, own_lab):
    """Seen on the wire between govmigrate and the source: a pass over an unchanged mailbox opens no folder
    at all (LIST-STATUS and CONDSTORE tell it nothing changed); after one new message, only that folder."""
    lab, ws, box = own_lab
    server = lab.sources["health"].server
    proxy = RecordingProxy(server.port)
    try:
        _edit(ws, _via(proxy))
        govmigrate("-w", ws, "sync", box.email)
        assert b"EXAMINE" in bytes(proxy.sent), "the recording proxy must see the first pass"
        proxy.sent.clear()
        rows = json.loads(govmigrate("-w", ws, "sync", box.email, "--json").stdout)
        assert rows[0]["copied"] == 0
        assert b"EXAMINE" not in bytes(proxy.sent) and b"SELECT" not in bytes(proxy.sent)
        conn = server.connect(box.login)
        conn.append('"Projects/Budget 2025"', "()", None, b"Subject: one more\r\n\r\nnew\r\n")
        conn.logout()
        proxy.sent.clear()
        rows = json.loads(govmigrate("-w", ws, "sync", box.email, "--json").stdout)
        assert rows[0]["copied"] == 1
        opened = [line for line in bytes(proxy.sent).split(b"\r\n") if b" EXAMINE " in line]
        assert len(opened) == 1 and b"Projects/Budget 2025" in opened[0], opened
    finally:
        proxy.close()


def test_two_source_folders_that_would_land_in_one_are_kept_apart_as_x_2(govmigrate, tmp_path):
    box = corpus.generate_mailbox(seed="clash", email="clash@education.gov.bz", login="clash@education.gov.bz",
                                  password="pw-clash-2026", display_name="Clash", layout="legacy", messages=24,
                                  user_folders=[("Reports 2024/2025",), ("Reports 2024_2025",)], edge_cases=False)
    ws = tmp_path / "ws"
    lab, _ = scenario.small_lab(ws, seed="clash", layout="legacy", domain="education.gov.bz", boxes=[box],
                                source_kw={"maildir_layout": "index"})
    try:
        rows = json.loads(govmigrate("-w", ws, "sync", box.email, "--json").stdout)
        renamed = {r["source"]: r for r in rows[0]["renamed_folders"]}
        assert renamed["INBOX.Reports 2024/2025"]["dest"] == "Reports 2024_2025"
        second = renamed["INBOX.Reports 2024_2025"]
        assert second["dest"] == "Reports 2024_2025 (2)"
        assert "already used by 'INBOX.Reports 2024/2025'" in second["why"]
        got = read_mailbox(lab.central, box.email)
        for source_name, dest in (("Reports 2024/2025", "Reports 2024_2025"),
                                  ("Reports 2024_2025", "Reports 2024_2025 (2)")):
            expected = sorted(m.raw for m in box.folder(source_name).messages)
            assert sorted(m.raw for m in got[dest].messages) == expected, dest
        assert any(box.folder(n).messages for n in ("Reports 2024/2025", "Reports 2024_2025"))
        # Stable: the next pass keeps each folder where it went.
        rows = json.loads(govmigrate("-w", ws, "sync", box.email, "--json").stdout)
        assert {r["source"]: r["dest"] for r in rows[0]["renamed_folders"]}["INBOX.Reports 2024_2025"] == \
            "Reports 2024_2025 (2)"
        assert json.loads(govmigrate("-w", ws, "verify", box.email, "--json").stdout)[0]["matches"]
    finally:
        lab.stop()
