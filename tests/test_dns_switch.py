"""The library calls the cut-over is built from, against real named: a domain's change set applied, waited for
on every authoritative server, and rolled back by its inverse; the baseline by AXFR with TSIG (or the
replaced RRsets when the transfer is refused); a secondary left behind makes the wait time out (exit 10) and
the rollback still restores the primary, and both once the secondary catches up."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate.core.config import DnsSection
from migrate.core.errors import DnsChangedMeanwhile, DnsNotPropagated, ExitCode
from migrate.dns.baseline import take_baseline
from migrate.dns.changes import plan_domain, primary_holds
from migrate.dns.client import DnsClient
from migrate.dns.propagation import look, wait_propagated
from migrate.dns.update import apply_changes
from tests.test_dns_check import HEALTH, Workspaces

pytestmark = pytest.mark.lab


@pytest.fixture
def make_dns_workspace(tmp_path: Path):
    made = Workspaces(tmp_path)
    yield made
    made.close()


def client_of(w, **changes) -> tuple[DnsClient, DnsSection]:
    section = DnsSection.model_validate({**w.dns.dns_section(w.ws), **changes})
    return DnsClient(section, w.ws), section


def data(w, server) -> list[str]:
    """The zone's records without SOA (whose serial moves with every change)."""
    return sorted(line for line in w.dns.axfr(server, HEALTH) if " SOA " not in line)


def test_switch_waits_for_every_server_and_the_inverse_restores_the_baseline(make_dns_workspace):
    w = make_dns_workspace()
    client, section = client_of(w)
    original = data(w, w.dns.primary)
    changes = plan_domain(client, section, HEALTH)
    baseline = take_baseline(client, changes)
    assert baseline.note is None and f"{HEALTH}. 3600 IN MX 10 mail.{HEALTH}." in baseline.zone_text
    assert baseline.rrsets()[0]["ttl"] == 3600

    assert primary_holds(client, changes) == "before"
    apply_changes(client, changes)
    assert primary_holds(client, changes) == "after"
    seen = wait_propagated(client, changes)
    assert seen.done and len(set(seen.serials.values())) == 1
    for server in (w.dns.primary, w.dns.secondary):
        assert w.dns.query(server, HEALTH, "MX") == ["10 mx1.mail.gov.bz.", "20 mx2.mail.gov.bz."]
        assert w.dns.query(server, f"_imaps._tcp.{HEALTH}", "SRV") == ["0 1 993 imap.mail.gov.bz."]
    assert not plan_domain(client, section, HEALTH)  # nothing left to change

    back = changes.inverse()
    apply_changes(client, back)
    wait_propagated(client, back)
    for server in (w.dns.primary, w.dns.secondary):
        assert data(w, server) == original


def test_a_rollback_after_someone_changed_a_switched_record_changes_nothing(make_dns_workspace):
    w = make_dns_workspace()
    client, section = client_of(w)
    changes = plan_domain(client, section, HEALTH)
    apply_changes(client, changes)
    w.dns.change(HEALTH, "_dmarc", "TXT", ['"v=DMARC1; p=reject"'], ttl=60)
    assert primary_holds(client, changes) == "neither"
    switched = data(w, w.dns.primary)
    with pytest.raises(DnsChangedMeanwhile) as changed:
        apply_changes(client, changes.inverse())
    assert changed.value.exit_code == ExitCode.DNS_REFUSED
    assert changed.value.rrset == f"_dmarc TXT in {HEALTH}."
    assert changed.value.now == "v=DMARC1; p=reject (TTL 60)"
    assert data(w, w.dns.primary) == switched


def test_a_secondary_left_behind_times_out_and_the_rollback_still_works(make_dns_workspace):
    w = make_dns_workspace()
    client, section = client_of(w, propagation_timeout=1.5)
    original = data(w, w.dns.primary)
    changes = plan_domain(client, section, HEALTH)
    w.dns.hold_secondary()
    apply_changes(client, changes)
    with pytest.raises(DnsNotPropagated) as late:
        wait_propagated(client, changes, interval=0.2)
    assert late.value.exit_code == ExitCode.DNS_PROPAGATION
    (behind,) = late.value.behind
    assert behind.startswith(f"{w.dns.secondary.address} (serial ") and f"@ MX: 10 mail.{HEALTH}." in behind
    assert w.dns.query(w.dns.primary, HEALTH, "MX") == ["10 mx1.mail.gov.bz.", "20 mx2.mail.gov.bz."]

    back = changes.inverse()
    apply_changes(client, back)
    assert data(w, w.dns.primary) == original
    w.dns.release_secondary()
    wait_propagated(client, back)
    assert data(w, w.dns.secondary) == original


def test_look_reports_a_server_that_is_down(make_dns_workspace):
    w = make_dns_workspace()
    client, section = client_of(w)
    changes = plan_domain(client, section, HEALTH)
    apply_changes(client, changes)
    w.dns.stop(w.dns.secondary)
    seen = look(client, changes)
    assert not seen.done
    assert seen.lagging() == [f"{w.dns.secondary.address}: DNS server {w.dns.secondary.address} did not answer "
                              f"{HEALTH}. SOA within 2 s"]


def test_baseline_without_a_transfer_keeps_the_replaced_rrsets(make_dns_workspace):
    w = make_dns_workspace()
    client, section = client_of(w, tsig={**w.dns.dns_section(w.ws)["tsig"], "name": "no-such-key"})
    changes = plan_domain(client, section, HEALTH)
    baseline = take_baseline(client, changes)
    assert baseline.zone_text is None and "BADKEY" in baseline.note
    text = baseline.file_text(header="wave pilot")
    assert text.startswith("; wave pilot\n; no zone transfer: ")
    assert f"{HEALTH}. 3600 IN MX 10 mail.{HEALTH}." in text
