"""The DNS cut-over of a wave against real BIND9 and Dovecot: gated on the final sync and the lowered TTLs,
a baseline kept, one TSIG-signed update with the baseline as prerequisites, every authoritative server
waited for, the mailboxes advanced and given a last delta, and the rollback; every refusal and fault leaves
the records as they were and a clear exit code."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from migrate.core.errors import ExitCode
from migrate.core.store import open_store
from tests.lab import scenario
from tests.lab.bind import start_dns_lab
from tests.lab.inspect import read_mailbox

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = scenario.MODERN_DOMAIN   # health.gov.bz
CENTRAL_MX = ["10 mx1.mail.gov.bz.", "20 mx2.mail.gov.bz."]
MINISTRY_MX = [f"10 mail.{DOMAIN}."]
PREFLIGHT, REFUSED, NOT_PROPAGATED = int(ExitCode.PREFLIGHT), int(ExitCode.DNS_REFUSED), int(ExitCode.DNS_PROPAGATION)


class Programme:
    """A ministry (Dovecot) with its domain in the DNS lab, a central host, and a workspace whose wave
    holding the domain's mailboxes has been approved and run to its final pass."""

    def __init__(self, tmp: Path, govmigrate, *, propagation_timeout: float | None = None,
                 records: dict[str, list[str]] | None = None, stale_secondary: list[str] | None = None) -> None:
        self.ws = tmp / "ws"
        self.govmigrate = govmigrate
        self.lab, self.boxes = scenario.small_lab(self.ws, seed="cutover", users=2, messages=12)
        try:
            self.dns = start_dns_lab([DOMAIN], records=records, stale_secondary=stale_secondary)
        except BaseException:
            self.lab.stop()
            raise
        scenario.add_dns(self.ws, self.dns)
        if propagation_timeout is not None:
            self.edit(lambda d: d["dns"].update(propagation_timeout=propagation_timeout))
        self.g("inventory", "mail")
        self.g("plan", "generate", expect=None)
        self.wave = next(w for w in ("pilot", "wave-01")
                         if DOMAIN in yaml.safe_load((self.ws / "plans" / f"{w}.yaml").read_text())
                         .get("cutover_domains", []))
        for wave in ("pilot", "wave-01"):
            if (self.ws / "plans" / f"{wave}.yaml").exists():
                self.g("plan", "approve", wave)
                self.g("run", wave, "--pass", "prestage")
                self.g("run", wave, "--pass", "final")

    def g(self, *args: str, expect: int | None = 0):
        return self.govmigrate("-w", self.ws, *args, expect=expect)

    def edit(self, change) -> None:
        doc = yaml.safe_load((self.ws / "migration.yaml").read_text())
        change(doc)
        (self.ws / "migration.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))

    def mx(self, server) -> list[str]:
        return self.dns.query(server, DOMAIN, "MX")

    def states(self) -> dict[str, str]:
        store = open_store(self.ws / "state.db")
        try:
            return {m.email: m.state for m in store.mailboxes()}
        finally:
            store.close()

    def dns_state(self) -> str:
        store = open_store(self.ws / "state.db")
        try:
            row = store.dns_domain(DOMAIN)
            return row.state if row else "unchanged"
        finally:
            store.close()

    def prepare_and_let_the_ttl_run_out(self) -> None:
        self.g("dns", "prepare", "--wave", self.wave)
        conn = sqlite3.connect(self.ws / "state.db")   # the lab's 2 s TTL wait, without sleeping through it
        conn.execute("UPDATE dns_domains SET safe_after = '2000-01-01T00:00:00Z' WHERE domain = ?", (DOMAIN,))
        conn.commit()
        conn.close()

    def close(self) -> None:
        self.dns.cleanup()
        self.lab.stop()


@pytest.fixture
def programme(tmp_path, govmigrate):
    p = Programme(tmp_path, govmigrate)
    yield p
    p.close()


def test_a_wave_is_cut_over_walked_from_the_gate_to_the_rollback(programme):
    p = programme
    # The gate: TTLs not lowered yet.
    refused = p.g("cutover", p.wave, expect=PREFLIGHT)
    assert f"{DOMAIN}: its TTLs were not lowered: run govmigrate dns prepare --wave {p.wave}" in refused.stderr
    assert p.mx(p.dns.primary) == MINISTRY_MX
    # Lowered, but the old TTL has not run out.
    p.g("dns", "prepare", "--wave", p.wave)
    conn = sqlite3.connect(p.ws / "state.db")
    conn.execute("UPDATE dns_domains SET safe_after = '2099-01-01T00:00:00Z' WHERE domain = ?", (DOMAIN,))
    conn.commit()
    conn.close()
    refused = p.g("cutover", p.wave, expect=PREFLIGHT)
    assert "has not run out: safe to switch after 2099-01-01T00:00:00Z" in refused.stderr
    p.prepare_and_let_the_ttl_run_out()
    # Mail that reaches the old server during the switch is carried by the last delta.
    box = p.boxes[0]
    conn = p.lab.sources["health"].server.connect(box.login)
    conn.append("INBOX", "(\\Seen)", None, b"Subject: arrived during the switch\r\n\r\nlate\r\n")
    conn.logout()
    dry = json.loads(p.g("cutover", p.wave, "--dry-run", "--json").stdout)
    assert dry["domains"][0]["changes"] and p.mx(p.dns.primary) == MINISTRY_MX, "a dry run changes nothing"

    done = json.loads(p.g("cutover", p.wave, "--json").stdout)
    assert done["exit_code"] == 0 and done["domains"][0]["after"] == "done"
    for server in (p.dns.primary, p.dns.secondary):
        assert p.mx(server) == CENTRAL_MX
        assert p.dns.query(server, f"_imaps._tcp.{DOMAIN}", "SRV") == ["0 1 993 imap.mail.gov.bz."]
    assert p.dns.serial(p.dns.primary, DOMAIN) == p.dns.serial(p.dns.secondary, DOMAIN)
    assert set(p.states().values()) == {"done"}
    inbox = read_mailbox(p.lab.central, box.email)["INBOX"].messages
    assert inbox[-1].raw == b"Subject: arrived during the switch\r\n\r\nlate\r\n"
    baseline = Path(done["domains"][0]["baseline_file"])
    assert baseline.name == f"dns-baseline-{p.wave}-{DOMAIN}.zone"
    assert f"IN MX 10 mail.{DOMAIN}." in baseline.read_text(), "the zone as it was before the switch"
    events = [e["action"] for e in json.loads(p.g("log", "--object", f"dns/{DOMAIN}", "--json").stdout)]
    assert events == ["prepare", "baseline", "switch", "propagated", "advance", "done"]
    status = p.g("status", box.email).stdout
    assert f"{DOMAIN} switched to the central host at" in status and "10 mx1.mail.gov.bz." in status
    report = json.loads(p.g("report", "--json").stdout)
    assert report["ministries"][0]["domains_cut_over"] == [DOMAIN]
    checked = json.loads(p.g("dns", "check", "--domain", DOMAIN, "--json").stdout)
    assert next(c for c in checked["domains"][0]["checks"] if c["check"] == "mx")["status"] == "pass"
    again = json.loads(p.g("cutover", p.wave, "--json").stdout)
    assert again["exit_code"] == 0 and again["mailboxes"] == [], "a second cut-over has nothing left to do"

    # The rollback puts the baseline back on every server and the mailboxes back to final-synced.
    rolled = json.loads(p.g("dns", "rollback", "--wave", p.wave, "--json").stdout)
    assert rolled["domains"][0]["after"] == "rolled-back"
    for server in (p.dns.primary, p.dns.secondary):
        assert p.mx(server) == MINISTRY_MX
        assert p.dns.query(server, f"_imaps._tcp.{DOMAIN}", "SRV") == []
    assert set(p.states().values()) == {"final-synced"}
    assert "rolled back" in p.g("status", box.email).stdout
    # And it can be cut over again, once prepared again.
    p.prepare_and_let_the_ttl_run_out()
    p.g("cutover", p.wave)
    assert p.mx(p.dns.secondary) == CENTRAL_MX and set(p.states().values()) == {"done"}


def test_the_gate_refuses_mailboxes_not_final_synced_unless_forced_with_a_reason(tmp_path, govmigrate):
    p = Programme(tmp_path, govmigrate)
    try:
        p.prepare_and_let_the_ttl_run_out()
        late = p.boxes[1].email
        conn = sqlite3.connect(p.ws / "state.db")
        conn.execute("UPDATE mailboxes SET state = 'prestaged' WHERE email = ?", (late,))
        conn.commit()
        conn.close()
        refused = p.g("cutover", p.wave, expect=PREFLIGHT)
        assert f"{late}: not final-synced yet (prestaged)" in refused.stderr
        assert p.mx(p.dns.primary) == MINISTRY_MX
        p.g("cutover", p.wave, "--force", expect=int(ExitCode.USAGE))   # a reason is required
        forced = p.g("cutover", p.wave, "--force", "--reason", "minister's office asked, copy finishes after")
        assert "gate forced" in forced.stderr
        assert p.mx(p.dns.primary) == CENTRAL_MX and set(p.states().values()) == {"done"}
        store = open_store(p.ws / "state.db")
        try:
            assert store.dns_domain(DOMAIN).forced_reason == "minister's office asked, copy finishes after"
            assert any(e.action == "gate-forced" for e in store.events(obj=f"wave/{p.wave}"))
        finally:
            store.close()
    finally:
        p.close()


def _cli(ws: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    environ.pop("GOVMIGRATE_WORKSPACE", None)
    return subprocess.run([sys.executable, "-m", "migrate", "-w", str(ws), *args], capture_output=True, text=True,
                          env=environ, cwd=ROOT, timeout=300)


def test_a_cut_over_killed_anywhere_resumes_and_a_record_changed_meanwhile_changes_nothing(programme):
    p = programme
    p.prepare_and_let_the_ttl_run_out()
    killed = _cli(p.ws, "cutover", p.wave, env={"GOVMIGRATE_CRASH_AT": "cutover-baselined"})
    assert killed.returncode == -signal.SIGKILL and p.dns_state() == "baselined"
    # Someone changes the MX between the baseline and the switch: the update's prerequisites refuse it.
    p.dns.change(DOMAIN, "@", "MX", ["5 backup-mx.example.org."])
    refused = p.g("cutover", p.wave, expect=REFUSED)
    assert "MX in health.gov.bz. changed since it was read" in refused.stderr or "changed since it was read" in \
        refused.stderr
    assert "nothing was changed" in refused.stderr
    for server in (p.dns.primary, p.dns.secondary):
        assert p.mx(server) == ["5 backup-mx.example.org."], "their change stands; ours was not made"
    # Put it back as it was; the cut-over resumes from its baseline, and a kill right after the switch too.
    p.dns.change(DOMAIN, "@", "MX", MINISTRY_MX, ttl=60)
    killed = _cli(p.ws, "cutover", p.wave, env={"GOVMIGRATE_CRASH_AT": "cutover-switched"})
    assert killed.returncode == -signal.SIGKILL and p.dns_state() == "switched"
    resumed = _cli(p.ws, "cutover", p.wave, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert p.mx(p.dns.secondary) == CENTRAL_MX and set(p.states().values()) == {"done"}


def test_refused_updates_change_nothing_and_exit_9(programme):
    p = programme
    p.prepare_and_let_the_ttl_run_out()
    before = sorted(p.dns.axfr(p.dns.primary, DOMAIN))
    right = (p.ws / "secrets" / "tsig").read_text()
    (p.ws / "secrets" / "tsig").write_text("d3JvbmctdHNpZy1zZWNyZXQtb2YtbGVuZ3RoLTMyISE=\n")
    refused = p.g("cutover", p.wave, expect=REFUSED)
    assert "refused the update" in refused.stderr and "Traceback" not in refused.stderr
    assert sorted(p.dns.axfr(p.dns.primary, DOMAIN)) == before
    (p.ws / "secrets" / "tsig").write_text(right)
    p.dns.refuse_updates(DOMAIN)
    refused = p.g("cutover", p.wave, expect=REFUSED)
    assert "REFUSED" in refused.stderr and sorted(p.dns.axfr(p.dns.primary, DOMAIN)) == before
    assert set(p.states().values()) == {"final-synced"}
    p.dns.allow_updates()
    p.g("cutover", p.wave)
    assert p.mx(p.dns.primary) == CENTRAL_MX
    leaked = right.strip()
    for path in p.ws.rglob("*"):
        if path.is_file() and path.parent.name != "secrets":
            assert leaked.encode() not in path.read_bytes(), path


def test_a_secondary_that_stays_behind_times_out_with_exit_10_and_rollback_works(tmp_path, govmigrate):
    p = Programme(tmp_path, govmigrate, propagation_timeout=3)
    try:
        p.prepare_and_let_the_ttl_run_out()
        p.dns.hold_secondary()
        behind = p.g("cutover", p.wave, expect=NOT_PROPAGATED)
        assert "not every authoritative server served it" in behind.stderr
        assert p.dns.primary.address in behind.stderr or p.dns.secondary.address in behind.stderr
        assert p.mx(p.dns.primary) == CENTRAL_MX and p.mx(p.dns.secondary) == MINISTRY_MX
        assert set(p.states().values()) == {"final-synced"}, "mailboxes advance only once every server serves it"
        # status says the same on every line: the switch has begun and is not finished.
        view = json.loads(p.g("status", p.boxes[0].email, "--json").stdout)
        assert view["domain_state"] == "switched" and view["mx_at_central"] is True
        assert "the switch of health.gov.bz has begun" in view["state_text"]
        assert view["next_steps"][0].startswith("The migration team finishes the cut-over of health.gov.bz")
        assert not any("switches to the central host after" in step for step in view["next_steps"])
        assert "(the cut-over is not finished)" in p.g("status", p.boxes[0].email).stdout
        p.dns.release_secondary()
        p.g("dns", "rollback", "--wave", p.wave)
        for server in (p.dns.primary, p.dns.secondary):
            assert p.mx(server) == MINISTRY_MX
        assert p.dns_state() == "rolled-back"
        view = json.loads(p.g("status", p.boxes[0].email, "--json").stdout)
        assert view["mx_at_central"] is False and "was rolled back" in view["state_text"]
        assert any("switches to the central host again" in step for step in view["next_steps"])
    finally:
        p.close()


def test_an_unreachable_primary_stops_the_cut_over_with_exit_4(programme):
    p = programme
    p.prepare_and_let_the_ttl_run_out()
    p.dns.stop(p.dns.primary)
    result = p.g("cutover", p.wave, expect=int(ExitCode.UNREACHABLE))
    assert "Traceback" not in result.stderr
    assert set(p.states().values()) == {"final-synced"}
