"""`dns settle` against the lab's BIND9: once a cut-over has held for dns.settle_after, the TTLs dns prepare
lowered go back up (each RRset to its own TTL from before, a created one to the highest), on every server; before
that the gate refuses unless forced; a settled domain still rolls back."""

from __future__ import annotations

import json

import pytest

from tests.test_cutover import DOMAIN, MINISTRY_MX, PREFLIGHT, Programme

pytestmark = pytest.mark.lab


def ttl(p: Programme, server, name: str, rdtype: str) -> int:
    response = p.dns.axfr(server, DOMAIN)
    owner = name if name.endswith(".") else f"{name}."
    (line,) = [line for line in response if line.split()[0] == owner and line.split()[3] == rdtype][:1]
    return int(line.split()[1])


@pytest.fixture
def cut_over(tmp_path, govmigrate):
    p = Programme(tmp_path, govmigrate)
    p.edit(lambda d: d["dns"].update(settle_after=3600))
    p.prepare_and_let_the_ttl_run_out()
    p.g("cutover", p.wave)
    yield p
    p.close()


def test_settle_raises_the_ttls_again_after_the_cut_over_has_held(cut_over):
    p = cut_over
    assert ttl(p, p.dns.primary, DOMAIN, "MX") == 60
    early = p.g("dns", "settle", "--wave", p.wave, expect=PREFLIGHT)
    assert "has held" in early.stderr and "of dns.settle_after (3600 s)" in early.stderr
    assert ttl(p, p.dns.primary, DOMAIN, "MX") == 60, "refused: nothing changed"
    p.edit(lambda d: d["dns"].update(settle_after=0))
    done = json.loads(p.g("dns", "settle", "--wave", p.wave, "--json").stdout)
    assert done["domains"][0]["after"] == "settled"
    for server in (p.dns.primary, p.dns.secondary):
        assert ttl(p, server, DOMAIN, "MX") == 3600                      # its own TTL from before prepare
        assert ttl(p, server, f"_imaps._tcp.{DOMAIN}", "SRV") == 3600   # created by the switch: the highest
        assert ttl(p, server, f"_dmarc.{DOMAIN}", "TXT") == 3600
    again = json.loads(p.g("dns", "settle", "--wave", p.wave, "--json").stdout)
    assert again["domains"] == [] and again["already"][0]["domain"] == DOMAIN
    # A settled cut-over still rolls back.
    assert json.loads(p.g("dns", "rollback", "--wave", p.wave, "--json").stdout)["domains"][0]["after"] == \
        "rolled-back"
    assert p.mx(p.dns.secondary) == MINISTRY_MX


def test_settle_before_its_time_needs_force_with_a_reason(cut_over):
    p = cut_over
    forced = json.loads(p.g("dns", "settle", "--wave", p.wave, "--force", "--reason", "stable since Monday",
                            "--json").stdout)
    assert forced["domains"][0]["after"] == "settled"
    assert "forced before dns.settle_after: stable since Monday" in forced["domains"][0]["detail"]
    assert ttl(p, p.dns.secondary, DOMAIN, "MX") == 3600
