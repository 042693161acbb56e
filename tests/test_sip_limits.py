"""The SIP checks' limit per registrar: a wave's phones never have more than ``sip.concurrency`` transactions
in flight at one registrar. Kamailio answers too fast to show how many are in flight, so this registrar is a
fake on 127.0.0.1 (a UDP socket that answers every request 200 after a pause, counting the transactions it
holds); the real registrar's checks are in test_sip_check.py."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from migrate.core.config import load_project
from migrate.core.secrets import Secret
from migrate.voip.checks import run_checks
from migrate.voip.model import Extension
from tests.lab.scenario import provisioned_phones

HOLD = 0.05


class SlowRegistrar:
    """Answers each request 200 (echoing Via, From, To, Call-ID, CSeq and Contact) after :data:`HOLD` s."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.requests = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                return
            threading.Thread(target=self._answer, args=(data, peer), daemon=True).start()

    def _answer(self, data: bytes, peer) -> None:
        with self.lock:
            self.in_flight += 1
            self.requests += 1
            self.most = max(self.most, self.in_flight)
        time.sleep(HOLD)
        head = data.split(b"\r\n\r\n", 1)[0].decode()
        keep = [line for line in head.split("\r\n")[1:]
                if line.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq", "contact")]
        with self.lock:
            self.in_flight -= 1
        reply = "SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n"
        self.sock.sendto(reply.encode(), peer)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("limit", [1, 4])
def test_no_more_transactions_than_the_limit_are_in_flight_at_one_registrar(tmp_path, limit):
    registrar = SlowRegistrar()
    extensions = [Extension("health", "gov", str(5000 + i), transport="udp", secret=Secret(f"limit-secret-{i:03d}"))
                  for i in range(16)]
    project_file, store = provisioned_phones(tmp_path, extensions, {
        "domain": "voice.gov.bz", "registrar": "127.0.0.1", "port": registrar.port, "transports": ["udp"],
        "concurrency": limit})
    try:
        report = run_checks(load_project(project_file), store, store.extensions(), wave=None)
    finally:
        store.close()
        registrar.close()
    assert [c.result for c in report.register_checks().values()] == ["pass"] * 16, report.as_dict()
    assert registrar.requests >= 1 + 2 * 16  # OPTIONS, then a REGISTER and an un-REGISTER per phone
    assert registrar.most <= limit
    if limit > 1:
        assert registrar.most > 1, "the checks run in parallel up to the limit"
