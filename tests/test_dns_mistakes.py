"""A zone written by someone else, against the lab's real BIND9: an MX that names an alias whose target does not
exist, a secondary one serial behind that never transfers, parent glue that disagrees with the zone, and a name
server listed at the parent that does not answer. `dns check` names each; BIND's refusals are explained with
the real cause; the cut-over's gate refuses, force cannot switch past a server that would never follow, and a
forced cut-over's rollback puts back all BIND allows, reports the rest exactly (with an nsupdate script that
works) and can be run again. Also: a resolver that does not recurse, and the parent's servers named instead."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from migrate.core.errors import ExitCode
from tests.lab.bind import written_by_someone_else
from tests.test_cutover import CENTRAL_MX, DOMAIN, PREFLIGHT, REFUSED, ROOT, Programme
from tests.test_dns_check import checks_of

pytestmark = pytest.mark.lab

FLAWED_MX = [f"10 smtp.{DOMAIN}."]


def cli(ws: Path, *args: str) -> subprocess.CompletedProcess:
    """govmigrate as its own process: what a person sees on stderr, warnings of imported libraries included."""
    environ = dict(os.environ, PYTHONPATH=str(ROOT))
    environ.pop("GOVMIGRATE_WORKSPACE", None)
    return subprocess.run([sys.executable, "-m", "migrate", "-w", str(ws), *args], capture_output=True, text=True,
                          env=environ, cwd=ROOT, timeout=300)


@pytest.fixture
def flawed(tmp_path, govmigrate):
    p = Programme(tmp_path, govmigrate, propagation_timeout=3, records=written_by_someone_else(DOMAIN),
                  stale_secondary=[DOMAIN])
    yield p
    p.close()


def data(p: Programme, server) -> list[str]:
    return sorted(line for line in p.dns.axfr(server, DOMAIN) if " SOA " not in line)


def test_dns_check_names_each_mistake_and_prints_no_library_warnings(flawed):
    p = flawed
    result = cli(p.ws, "dns", "check", "--json")
    assert result.returncode == int(ExitCode.PARTIAL), result.stderr
    assert "Warning" not in result.stderr, "a dependency's deprecation warning reached stderr"
    checks = checks_of(result)
    net = p.dns.primary.address.rsplit(".", 1)[0]
    assert checks["mx"]["status"] == "fail"
    assert checks["mx"]["reason"].startswith(f"smtp.{DOMAIN}. is an alias (CNAME to relay.{DOMAIN}., which does "
                                             "not exist)")
    assert checks["nameservers"]["status"] == "fail"
    assert f"{p.dns.secondary.address} has 2026010100 (behind)" in checks["nameservers"]["reason"]
    assert checks["glue"]["status"] == "fail"
    assert (f"the parent's glue says ns2.{DOMAIN}. is at {net}.11; the zone says {net}.12"
            in checks["glue"]["reason"])
    assert checks["ns-authority"]["status"] == "fail"
    assert checks["ns-authority"]["reason"].startswith(f"DNS server ns3.{DOMAIN}. ({net}.14, from the glue) did not "
                                                       "answer")
    assert checks["delegation"]["status"] == "fail" and f"only at the parent: ns3.{DOMAIN}." in \
        checks["delegation"]["reason"]
    assert checks["resolvers"]["status"] == "pass"


def test_refusals_name_the_real_cause_the_gate_refuses_and_force_cannot_pass_a_secondary_that_does_not_transfer(
        flawed):
    p = flawed
    before = data(p, p.dns.primary)
    # prepare re-sends the MX with a lower TTL: BIND's integrity check refuses it, and the reason says so.
    refused = p.g("dns", "prepare", "--wave", p.wave, expect=REFUSED)
    message = " ".join(refused.stderr.split())
    assert "answered the update of health.gov.bz. with REFUSED: nothing was changed" in message
    assert "The update held 4 RRset(s): @ MX (ttl), @ TXT (ttl)" in message
    assert (f"(1) the zone's integrity checks: @ MX 10 smtp.{DOMAIN}. names an alias (smtp CNAME relay.{DOMAIN}.)"
            in message)
    assert "the key itself is accepted: an update with prerequisites only, signed with it, was answered NOERROR" \
        in message
    assert "update policy does not allow" not in message, "the invented cause of the issue"
    assert data(p, p.dns.primary) == before

    gate = p.g("cutover", p.wave, expect=PREFLIGHT)
    text = " ".join(gate.stderr.split())
    for named in (f"mx: smtp.{DOMAIN}. is an alias", "nameservers: SOA serials of health.gov.bz. differ",
                  f"glue: the parent's glue says ns2.{DOMAIN}.", f"ns-authority: DNS server ns3.{DOMAIN}.",
                  "its TTLs were not lowered"):
        assert named in text, named
    assert p.mx(p.dns.primary) == FLAWED_MX

    forced = p.g("cutover", p.wave, "--force", "--reason", "minister's deadline", expect=PREFLIGHT)
    text = " ".join(forced.stderr.split())
    assert "--force cannot go past 1 of them" in text
    assert f"{p.dns.secondary.address} serves serial 2026010100 (the primary: 2026010101)" in text
    assert "it does not transfer the zone from the primary" in text
    assert p.mx(p.dns.primary) == FLAWED_MX and p.dns_state() == "unchanged", "a forced switch changed nothing"
    assert set(p.states().values()) == {"final-synced"}


def test_a_forced_cut_over_rolls_back_all_bind_allows_reports_the_rest_and_runs_again(flawed, tmp_path):
    p = flawed
    original = data(p, p.dns.primary)
    p.dns.release_secondary()          # the secondary mended: now the switch can reach every server
    p.g("cutover", p.wave, "--force", "--reason", "minister's deadline")
    for server in (p.dns.primary, p.dns.secondary):
        assert p.mx(server) == CENTRAL_MX
    assert set(p.states().values()) == {"done"}
    baseline = p.ws / "reports" / f"dns-baseline-{p.wave}-{DOMAIN}.zone"
    assert stat.S_IMODE(baseline.stat().st_mode) == 0o600, "the whole zone, readable by its owner only"

    rolled = p.g("dns", "rollback", "--wave", p.wave, "--json", expect=int(ExitCode.PARTIAL))
    (domain,) = json.loads(rolled.stdout)["domains"]
    assert domain["after"] == "rollback-incomplete"
    (left,) = domain["unrestored"]
    assert (left["name"], left["type"], left["baseline"]) == ("@", "MX", f"10 smtp.{DOMAIN}. (TTL 3600)")
    assert "with REFUSED" in left["reason"] and "names an alias" in left["causes"][0]
    assert "the MX still points at the central host" in domain["detail"]
    script, lines = (Path(f) for f in domain["files"])
    assert script.parent == baseline.parent
    for path in (script, lines):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"{DOMAIN}. 3600 IN MX 10 smtp.{DOMAIN}." in lines.read_text()
    secret = (p.ws / "secrets" / "tsig").read_text().strip()
    assert secret not in script.read_text() and secret not in lines.read_text()
    # Everything else is back: SPF, DMARC, autodiscover as they were; the SRV records the switch made are gone.
    now = data(p, p.dns.primary)
    assert [r for r in now if " MX " not in r] == [r for r in original if " MX " not in r]
    assert p.mx(p.dns.primary) == CENTRAL_MX and p.mx(p.dns.secondary) == CENTRAL_MX
    assert set(p.states().values()) == {"done"}, "mail still arrives at the central host: the mailboxes stay"
    status = p.g("status", p.boxes[0].email).stdout
    assert "rollback not finished: records left); mail goes to the central host" in " ".join(status.split())

    again = p.g("dns", "rollback", "--wave", p.wave, "--json", expect=int(ExitCode.PARTIAL))
    assert json.loads(again.stdout)["domains"][0]["unrestored"] == domain["unrestored"]
    assert data(p, p.dns.primary) == now, "running it again changes nothing it had done"

    # The operator mends the zone (the alias becomes a host) and applies the script with nsupdate.
    p.dns.change(DOMAIN, "smtp", "CNAME", [])
    p.dns.change(DOMAIN, "smtp", "A", ["127.0.0.1"])
    keyfile = tmp_path / "tsig.key"
    keyfile.write_text(f'key "{p.dns.tsig_name}" {{ algorithm {p.dns.tsig_algorithm}; secret "{secret}"; }};\n')
    applied = subprocess.run(["nsupdate", "-k", str(keyfile), str(script)], capture_output=True, text=True,
                             timeout=60)
    assert applied.returncode == 0, applied.stderr
    assert p.mx(p.dns.primary) == FLAWED_MX
    done = json.loads(p.g("dns", "rollback", "--wave", p.wave, "--json").stdout)["domains"][0]
    assert done["after"] == "rolled-back" and not done["unrestored"]
    assert not script.exists() and not lines.exists(), "nothing is left to do by hand"
    assert set(p.states().values()) == {"final-synced"}
    assert p.mx(p.dns.secondary) == FLAWED_MX


def test_a_resolver_that_does_not_recurse_is_named_and_the_parent_servers_can_be_named_instead(govmigrate,
                                                                                              make_dns_workspace):
    w = make_dns_workspace()
    # A split-horizon network: the only "resolver" at hand is an authoritative server (the lab's parent).
    w.edit_dns(resolvers=[{"address": w.dns.parent.address}])
    checks = checks_of(govmigrate("-w", w.ws, "dns", "check", "--json", expect=int(ExitCode.PARTIAL)))
    assert checks["resolvers"]["status"] == "fail"
    assert checks["resolvers"]["reason"].startswith(f"{w.dns.parent.address} does not recurse")
    assert "dns.parent_servers" in checks["delegation"]["reason"], "never silently the parent's zone"
    planned = govmigrate("-w", w.ws, "dns", "plan", "--wave", "pilot", expect=int(ExitCode.PARTIAL))
    assert f"{w.dns.parent.address} does not recurse" in " ".join(planned.stderr.split())
    # The project file names the parent zone's servers: the delegation is followed from there.
    w.edit_dns(parent_servers=[{"address": w.dns.parent.address}])
    checks = checks_of(govmigrate("-w", w.ws, "dns", "check", "--json", expect=int(ExitCode.PARTIAL)))
    for name in ("delegation", "glue", "ns-authority", "nameservers", "mx"):
        assert checks[name]["status"] == "pass", (name, checks[name]["reason"])
    assert checks["delegation"]["details"]["parent"] == "gov.bz."
    assert checks["resolvers"]["status"] == "fail", "still named: names outside the zones need a resolver"
    doc = json.loads(govmigrate("-w", w.ws, "dns", "plan", "--wave", "pilot", "--json").stdout)
    assert doc["domains"][0]["zone"] == f"{DOMAIN}." and doc["domains"][0]["changes"]


@pytest.fixture
def make_dns_workspace(tmp_path):
    from tests.test_dns_check import Workspaces

    made = Workspaces(tmp_path)
    yield made
    made.close()
