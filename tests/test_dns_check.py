"""`govmigrate dns check` against real named: each check passes on a healthy domain and fails, with the
reason, on the bad records and faults the cut-over meets (SPF over its lookup limits, an MX that is an
alias, DKIM missing or unreadable, a parent that delegates elsewhere, a secondary left behind, a server that
is down). Also the workspace builder the other DNS tests use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from migrate.core.errors import ExitCode
from tests.lab import scenario
from tests.lab.bind import (
    CENTRAL,
    DKIM_KEY,
    DKIM_SELECTOR,
    SPF_NESTED,
    DnsLab,
    spf_with_lookups,
    start_dns_lab,
)
from tests.lab.bind import txt_rdata as zone_txt

pytestmark = pytest.mark.lab

HEALTH = scenario.MODERN_DOMAIN  # health.gov.bz, the small lab's source domain
DMARC = "v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@mail.gov.bz"


def cut_over_records(domain: str = HEALTH) -> dict[str, list[str]]:
    """Zone lines of a domain that already publishes everything the central host needs (and, in gov.bz, the
    central host's consent to receive the domain's DMARC reports, RFC 7489 §7.1, and the MX of the report
    address's domain)."""
    return {
        domain: [
            "@ MX 10 mx1.mail.gov.bz.", "@ MX 20 mx2.mail.gov.bz.",
            '@ TXT "v=spf1 include:_spf.mail.gov.bz -all"',
            f"_dmarc TXT {zone_txt(DMARC)}",
            f"{DKIM_SELECTOR}._domainkey TXT {zone_txt(DKIM_KEY)}",
            "autodiscover CNAME autodiscover.mail.gov.bz.",
            "_autodiscover._tcp SRV 0 0 443 autodiscover.mail.gov.bz.",
            "_imaps._tcp SRV 0 1 993 imap.mail.gov.bz.",
            "_submission._tcp SRV 0 1 587 smtp.mail.gov.bz.",
            "_submissions._tcp SRV 0 1 465 smtp.mail.gov.bz.",
        ],
        "gov.bz": [f'{domain}._report._dmarc.mail.gov.bz. TXT "v=DMARC1"', "mail.gov.bz. MX 10 mx1.mail.gov.bz."],
    }


def merged(*parts: dict[str, list[str]]) -> dict[str, list[str]]:
    """Zone lines of several record sets; later lines replace earlier ones of the same name and type."""
    out: dict[str, list[str]] = {}
    for part in parts:
        for zone, lines in part.items():
            keys = {tuple(line.split()[:2]) for line in lines}
            out[zone] = [line for line in out.get(zone, []) if tuple(line.split()[:2]) not in keys] + lines
    return out


class DnsWorkspace:
    """A workspace (Dovecot source and central host, as scenario.small_lab makes them) whose project file has
    the dns: section of a DNS lab serving its source's domain, and a one-wave plan that cuts it over."""

    def __init__(self, ws: Path, dns: DnsLab, lab: scenario.Lab, boxes: list) -> None:
        self.ws, self.dns, self.lab, self.boxes = ws, dns, lab, boxes

    @property
    def project_file(self) -> Path:
        return self.ws / "migration.yaml"

    def edit_dns(self, **changes) -> None:
        doc = yaml.safe_load(self.project_file.read_text())
        for key, value in changes.items():
            if value is None:
                doc["dns"].pop(key, None)
            else:
                doc["dns"][key] = value
        self.project_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    def store(self):
        from migrate.core.store import open_store

        return open_store(self.ws / "state.db")

    def stop(self) -> None:
        self.dns.cleanup()
        self.lab.stop()


def write_plan(ws: Path, mailboxes: list[str], domains: list[str], wave: str = "pilot") -> None:
    plans = ws / "plans"
    plans.mkdir(exist_ok=True)
    (plans / "index.yaml").write_text(yaml.safe_dump({"version": 1, "waves": [wave]}))
    (plans / f"{wave}.yaml").write_text(yaml.safe_dump({
        "version": 1, "wave": wave, "kind": "pilot", "title": "DNS tests",
        "cutover_domains": domains, "mailboxes": mailboxes}, sort_keys=False))


def dns_workspace(ws: Path, *, records: dict[str, list[str]] | None = None, seed: str = "dns",
                  stale_secondary: list[str] | None = None) -> DnsWorkspace:
    lab, boxes = scenario.small_lab(ws, seed=seed, users=2, messages=3)
    try:
        dns = start_dns_lab([HEALTH], records=records, stale_secondary=stale_secondary)
    except BaseException:
        lab.stop()
        raise
    doc = yaml.safe_load((ws / "migration.yaml").read_text())
    doc["dns"] = dns.dns_section(ws)
    (ws / "migration.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    write_plan(ws, [b.email for b in boxes], [HEALTH])
    return DnsWorkspace(ws, dns, lab, boxes)


class Workspaces:
    """Makes DNS workspaces under one directory and stops their servers at the end (a test's fixture)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: list[DnsWorkspace] = []

    def __call__(self, records: dict[str, list[str]] | None = None) -> DnsWorkspace:
        workspace = dns_workspace(self.root / f"ws{len(self.made)}", records=records)
        self.made.append(workspace)
        return workspace

    def close(self) -> None:
        for workspace in self.made:
            workspace.stop()


@pytest.fixture
def make_dns_workspace(tmp_path: Path):
    made = Workspaces(tmp_path)
    yield made
    made.close()


def checks_of(result) -> dict[str, dict]:
    doc = json.loads(result.stdout)
    (domain,) = doc["domains"]
    return {c["check"]: c for c in domain["checks"]}


# -- healthy domains ------------------------------------------------------------------------------------


def test_every_check_passes_on_a_domain_that_publishes_the_central_hosts_records(govmigrate, make_dns_workspace):
    w = make_dns_workspace(cut_over_records())
    result = govmigrate("-w", w.ws, "dns", "check", "--json")
    checks = checks_of(result)
    assert {name: c["status"] for name, c in checks.items()} == {name: "pass" for name in checks}, checks
    assert set(checks) == {"resolvers", "delegation", "glue", "ns-authority", "nameservers", "mx", "spf", "dmarc",
                           "dkim", "autodiscover", "imaps-srv", "submission-srv", "submissions-srv"}
    assert checks["mx"]["reason"] == "points at the central host: mx1.mail.gov.bz., mx2.mail.gov.bz."
    assert "authorises the central host (include:_spf.mail.gov.bz)" in checks["spf"]["reason"]
    assert checks["dmarc"]["reason"] == "p=quarantine"
    assert checks["dkim"]["reason"] == f"selector {DKIM_SELECTOR}: rsa key, 2048 bits"
    assert checks["delegation"]["details"]["zone_ns"] == ["ns1.health.gov.bz.", "ns2.health.gov.bz."]
    table = govmigrate("-w", w.ws, "dns", "check").stdout
    assert "health.gov.bz" in table and "points at the central host" in table and "fail" not in table


def test_a_domain_not_yet_switched_is_healthy_and_says_not_yet(govmigrate, make_dns_workspace):
    w = make_dns_workspace()
    checks = checks_of(govmigrate("-w", w.ws, "dns", "check", "--domain", HEALTH, "--json"))
    assert checks["mx"]["status"] == "pass"
    assert checks["mx"]["reason"] == "not yet at the central host: points at mail.health.gov.bz."
    assert checks["spf"]["status"] == "pass"
    assert checks["spf"]["reason"].startswith("does not authorise the central host yet")
    assert checks["dmarc"]["status"] == "warn" and checks["dmarc"]["reason"].startswith("p=none")
    assert checks["dkim"]["status"] == "warn" and "not published yet" in checks["dkim"]["reason"]
    assert checks["autodiscover"]["reason"] == "not yet at the central host: CNAME mail.health.gov.bz."
    assert checks["imaps-srv"]["status"] == "warn"
    assert {checks[n]["status"] for n in ("delegation", "nameservers")} == {"pass"}


# -- bad records ----------------------------------------------------------------------------------------


def test_spf_over_ten_lookups_fails_and_ten_passes(govmigrate, make_dns_workspace):
    w = make_dns_workspace({HEALTH: [f'@ TXT "{spf_with_lookups(11)}"']})
    spf = checks_of(govmigrate("-w", w.ws, "dns", "check", "--json", expect=1))["spf"]
    assert spf["status"] == "fail"
    assert "11/10 maximum DNS lookups" in spf["reason"]
    w.dns.change(HEALTH, "@", "TXT", [f'"{spf_with_lookups(10)}"'])
    spf = checks_of(govmigrate("-w", w.ws, "dns", "check", "--json"))["spf"]
    assert spf["status"] == "pass" and "10 of 10 DNS lookups" in spf["reason"]


def test_spf_lookups_of_nested_includes_count(govmigrate, make_dns_workspace):
    # _spf-nested includes three records itself: 4 lookups, and 7 more make 11.
    record = " ".join(["v=spf1", f"include:{SPF_NESTED}", *spf_with_lookups(7).split()[1:]])
    w = make_dns_workspace({HEALTH: [f'@ TXT "{record}"']})
    spf = checks_of(govmigrate("-w", w.ws, "dns", "check", "--json", expect=1))["spf"]
    assert spf["status"] == "fail" and "11/10 maximum DNS lookups" in spf["reason"]


def test_spf_includes_are_followed_afresh_on_every_check(govmigrate, make_dns_workspace):
    # checkdmarc keeps answers for 30 minutes, keyed by name only; each check must ask again.
    w = make_dns_workspace({HEALTH: [f'@ TXT "v=spf1 include:_spf.{HEALTH} -all"',
                                     '_spf TXT "v=spf1 ip4:192.0.2.1 -all"']})
    assert "1 of 10 DNS lookups" in checks_of(govmigrate("-w", w.ws, "dns", "check", "--json"))["spf"]["reason"]
    w.dns.change(HEALTH, "_spf", "TXT", ['"v=spf1 a:mx1.mail.gov.bz a:mx2.mail.gov.bz -all"'])
    w.dns.flush_resolver()
    assert "3 of 10 DNS lookups" in checks_of(govmigrate("-w", w.ws, "dns", "check", "--json"))["spf"]["reason"]


def test_spf_with_three_void_lookups_fails(govmigrate, make_dns_workspace):
    record = "v=spf1 a:nx1.gov.bz a:nx2.gov.bz a:nx3.gov.bz include:_spf.mail.gov.bz -all"
    w = make_dns_workspace({HEALTH: [f'@ TXT "{record}"']})
    spf = checks_of(govmigrate("-w", w.ws, "dns", "check", "--json", expect=1))["spf"]
    assert spf["status"] == "fail" and "3/2 maximum void DNS lookups" in spf["reason"]


def test_two_spf_records_fail(govmigrate, make_dns_workspace):
    w = make_dns_workspace({HEALTH: ['@ TXT "v=spf1 mx -all"', '@ TXT "v=spf1 a -all"']})
    spf = checks_of(govmigrate("-w", w.ws, "dns", "check", "--json", expect=1))["spf"]
    assert spf["status"] == "fail" and spf["reason"].startswith("2 SPF records")


def test_an_mx_that_is_an_alias_fails_with_rfc_2181(govmigrate, make_dns_workspace):
    w = make_dns_workspace({HEALTH: [f"@ MX 10 alias.{HEALTH}.", f"alias CNAME mail.{HEALTH}."]})
    mx = checks_of(govmigrate("-w", w.ws, "dns", "check", "--json", expect=1))["mx"]
    assert mx["status"] == "fail"
    assert mx["reason"] == (f"alias.{HEALTH}. is an alias (CNAME to mail.{HEALTH}., which resolves); an MX must "
                            "name a host with A/AAAA records itself (RFC 2181 §10.3)")


def test_an_mx_without_an_address_fails(govmigrate, make_dns_workspace):
    w = make_dns_workspace({HEALTH: [f"@ MX 10 nowhere.{HEALTH}."]})
    mx = checks_of(govmigrate("-w", w.ws, "dns", "check", "--json", expect=1))["mx"]
    assert mx["status"] == "fail" and mx["reason"] == f"nowhere.{HEALTH}. has no A or AAAA record"


def test_dkim_missing_once_the_mx_is_central_fails(govmigrate, make_dns_workspace):
    records = cut_over_records()
    records[HEALTH] = [line for line in records[HEALTH] if "_domainkey" not in line]
    w = make_dns_workspace(records)
    dkim = checks_of(govmigrate("-w", w.ws, "dns", "check", "--json", expect=1))["dkim"]
    assert dkim["status"] == "fail"
    assert dkim["reason"] == (f"the DKIM key {DKIM_SELECTOR}._domainkey.{HEALTH}. is missing, and the MX already "
                              "points at the central host")


def test_dkim_that_does_not_parse_fails_with_what_is_wrong(govmigrate, make_dns_workspace):
    bad = f'{DKIM_SELECTOR}._domainkey TXT "v=DKIM1; k=rsa; p=MIIBIjANBgkq!!notbase64"'
    w = make_dns_workspace(merged(cut_over_records(), {HEALTH: [bad]}))
    dkim = checks_of(govmigrate("-w", w.ws, "dns", "check", "--json", expect=1))["dkim"]
    assert dkim["status"] == "fail" and dkim["reason"].endswith("does not hold a usable DKIM key: p= is not valid "
                                                                "base64")


def test_a_parent_that_delegates_elsewhere_fails_naming_both_sets(govmigrate, make_dns_workspace):
    w = make_dns_workspace({"gov.bz": [f"{HEALTH}. NS ns1.{HEALTH}.", f"{HEALTH}. NS ns3.{HEALTH}."]})
    delegation = checks_of(govmigrate("-w", w.ws, "dns", "check", "--json", expect=1))["delegation"]
    assert delegation["status"] == "fail"
    assert f"only at the parent: ns3.{HEALTH}." in delegation["reason"]
    assert f"only in the zone: ns2.{HEALTH}." in delegation["reason"]


def test_a_secondary_left_behind_fails_with_both_serials(govmigrate, make_dns_workspace):
    w = make_dns_workspace()
    w.dns.hold_secondary()
    w.dns.change(HEALTH, "news", "TXT", ['"changed on the primary only"'])
    primary, secondary = w.dns.serial(w.dns.primary, HEALTH), w.dns.serial(w.dns.secondary, HEALTH)
    assert primary != secondary
    servers = checks_of(govmigrate("-w", w.ws, "dns", "check", "--json", expect=1))["nameservers"]
    assert servers["status"] == "fail"
    assert servers["reason"] == (f"SOA serials of {HEALTH}. differ: the newest is {primary}; "
                                 f"{w.dns.secondary.address} has {secondary} (behind)")


def test_a_nameserver_that_is_down_is_a_clear_failure_and_the_records_are_read_from_the_other(
        govmigrate, make_dns_workspace):
    w = make_dns_workspace(cut_over_records())
    w.dns.stop(w.dns.primary)
    result = govmigrate("-w", w.ws, "dns", "check", "--json", expect=1)
    checks = checks_of(result)
    assert checks["nameservers"]["status"] == "fail"
    assert checks["nameservers"]["reason"].startswith(f"DNS server {w.dns.primary.address} did not answer")
    assert checks["mx"]["status"] == "pass" and checks["dkim"]["status"] == "pass"  # read from the secondary
    assert "Traceback" not in result.stderr


def test_mta_sts_and_tls_rpt_are_checked_where_configured_and_autodiscover_may_be_an_srv(govmigrate,
                                                                                       make_dns_workspace):
    records = cut_over_records()
    records[HEALTH] = [line for line in records[HEALTH] if not line.startswith("autodiscover ")]
    records[HEALTH] += ['_mta-sts TXT "v=STSv1; id=20261130"', '_smtp._tls TXT "v=TLSRPTv1; rua=mailto:tls@gov.bz"']
    w = make_dns_workspace(records)
    w.dns.change(HEALTH, "autodiscover", "CNAME", [])  # the lab's default CNAME goes: only the SRV is left
    checks = checks_of(govmigrate("-w", w.ws, "dns", "check", "--json"))
    assert "mta-sts" not in checks and "tls-rpt" not in checks  # not configured: not checked
    w.edit_dns(domains={HEALTH: {"mta_sts": "v=STSv1; id=20261130", "tls_rpt": "v=TLSRPTv1; rua=mailto:tls@gov.bz"}})
    checks = checks_of(govmigrate("-w", w.ws, "dns", "check", "--json"))
    assert checks["mta-sts"] == {"check": "mta-sts", "status": "pass", "reason": "valid: v=STSv1; id=20261130",
                                 "details": checks["mta-sts"]["details"]}
    assert checks["tls-rpt"]["status"] == "pass"
    assert checks["autodiscover"]["status"] == "pass"
    assert checks["autodiscover"]["reason"] == "points at the central host (autodiscover.mail.gov.bz.:443)"
    w.dns.change(HEALTH, "_mta-sts", "TXT", ['"v=STSv1; id=not-valid!"'])
    checks = checks_of(govmigrate("-w", w.ws, "dns", "check", "--json", expect=1))
    assert checks["mta-sts"]["status"] == "fail" and "RFC 8461" in checks["mta-sts"]["reason"]


def test_dns_data_is_shown_as_text_never_as_markup(govmigrate, make_dns_workspace):
    hostile = "v=DMARC1; p=bogus[/red][bold]:memo:"
    w = make_dns_workspace({HEALTH: [f"_dmarc TXT {zone_txt(hostile)}"]})
    table = govmigrate("-w", w.ws, "dns", "check", expect=1).stdout
    assert "bogus[/red][bold]:memo:" in table


def test_check_of_one_domain_or_one_wave_and_unknown_domains_refused(govmigrate, make_dns_workspace):
    w = make_dns_workspace()
    by_wave = json.loads(govmigrate("-w", w.ws, "dns", "check", "--wave", "pilot", "--json").stdout)
    assert [d["domain"] for d in by_wave["domains"]] == [HEALTH]
    refused = govmigrate("-w", w.ws, "dns", "check", "--domain", "other.gov.bz", expect=int(ExitCode.USAGE))
    assert "other.gov.bz is not a domain of any source" in refused.stderr
    both = govmigrate("-w", w.ws, "dns", "check", "--domain", HEALTH, "--wave", "pilot", expect=int(ExitCode.USAGE))
    assert "not both" in both.stderr


def test_lab_central_names_are_what_the_targets_name():
    # The healthy-domain test relies on the lab's gov.bz holding the hosts dns_section's targets name.
    assert {"mx1.mail.gov.bz", "mx2.mail.gov.bz", "imap.mail.gov.bz", "smtp.mail.gov.bz",
            "autodiscover.mail.gov.bz", "_spf.mail.gov.bz"} <= set(CENTRAL)
