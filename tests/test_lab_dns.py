"""The DNS lab itself, against real named: delegation, TSIG-signed updates and transfers, and the faults the
cut-over tests need (refused updates, a secondary left behind, a server that is down)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.xfr
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from migrate.core.config import DnsSection
from migrate.core.secrets import SecretRef, resolve
from tests.lab import bind
from tests.lab.base import LabError
from tests.lab.bind import DnsLab, start_dns_lab

pytestmark = pytest.mark.lab

HEALTH = "health.gov.bz"
EDUCATION = "education.gov.bz"


@pytest.fixture
def lab():
    lab = start_dns_lab([HEALTH, EDUCATION])
    yield lab
    lab.cleanup()


def signed_update(lab: DnsLab, zone: str, *, secret: str | None = None) -> dns.update.UpdateMessage:
    keyring = dns.tsigkeyring.from_text({lab.tsig_name: (lab.tsig_algorithm, secret or lab.tsig_secret)})
    return dns.update.UpdateMessage(zone, keyring=keyring, keyname=lab.tsig_name)


def send(lab: DnsLab, message: dns.message.Message) -> dns.message.Message:
    return dns.query.tcp(message, lab.primary.address, port=lab.primary.port, timeout=5)


def exited(pid: int) -> bool:
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text()  # its parent died; init reaps it
    except FileNotFoundError:
        return True


def lo_addresses() -> set[str]:
    return set(bind._lo_addresses())


def test_zones_hold_what_a_ministry_publishes_before_cutover(lab):
    p = lab.prefix
    for server in (lab.primary, lab.secondary):
        assert lab.query(server, HEALTH, "NS") == ["ns1.health.gov.bz.", "ns2.health.gov.bz."]
        assert lab.query(server, "ns1.health.gov.bz", "A") == [f"{p}.11"]
        assert lab.query(server, "ns2.health.gov.bz", "A") == [f"{p}.12"]
        assert lab.query(server, HEALTH, "MX") == ["10 mail.health.gov.bz."]
        assert lab.query(server, "mail.health.gov.bz", "A") == ["127.0.0.1"]
        assert lab.query(server, HEALTH, "TXT") == ['"v=spf1 mx -all"']
        assert lab.query(server, "_dmarc.health.gov.bz", "TXT") == ['"v=DMARC1; p=none"']
        assert lab.query(server, "autodiscover.health.gov.bz", "CNAME") == ["mail.health.gov.bz."]
        assert lab.query(server, "gov2026._domainkey.health.gov.bz", "TXT") == []
        assert lab.query(server, "_imaps._tcp.health.gov.bz", "SRV") == []
        assert lab.query(server, HEALTH, "SOA")[0].split()[2] == str(bind.SERIAL)
    for name, (rdtype, value) in DnsLab.CENTRAL.items():
        assert lab.query(lab.parent, name, rdtype) == [value]
        assert lab.query(lab.resolver, name, rdtype) == [value]
    assert len({s.address for s in lab.servers}) == 4
    assert [s.address for s in lab.servers] == [f"{p}.{n}" for n in (10, 11, 12, 13)]
    assert all(s.port == 53 for s in lab.servers)
    assert re.fullmatch(r"127\.53\.\d{1,3}", p) and p != "127.0.0"


def test_resolver_resolves_a_ministry_mx_through_the_delegation(lab):
    assert lab.query(lab.resolver, HEALTH, "MX") == ["10 mail.health.gov.bz."]
    assert lab.query(lab.resolver, "mail.health.gov.bz", "A") == ["127.0.0.1"]
    # It asked the ministry's own servers (found through root → gov.bz → health.gov.bz), not the parent.
    asked = lab.primary.log_text() + lab.secondary.log_text()
    assert re.search(rf"client @\S+ {re.escape(lab.resolver.address)}#\d+ \(health\.gov\.bz\): "
                     r"query: health\.gov\.bz IN MX", asked)
    assert f"{lab.resolver.address}#" in lab.parent.log_text()


def test_parent_refers_a_ministry_domain_to_its_servers_with_glue(lab):
    q = dns.message.make_query(HEALTH, "NS")
    q.flags &= ~dns.flags.RD
    r = dns.query.udp(q, lab.parent.address, timeout=2)
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and not r.flags & dns.flags.AA
    referral = r.find_rrset(r.authority, dns.name.from_text(HEALTH), dns.rdataclass.IN, dns.rdatatype.NS)
    assert sorted(rd.to_text() for rd in referral) == ["ns1.health.gov.bz.", "ns2.health.gov.bz."]
    glue = {rrset.name.to_text(): [rd.to_text() for rd in rrset] for rrset in r.additional}
    assert glue == {"ns1.health.gov.bz.": [lab.primary.address], "ns2.health.gov.bz.": [lab.secondary.address]}
    assert lab.query(lab.parent, HEALTH, "NS") == ["ns1.health.gov.bz.", "ns2.health.gov.bz."]
    # The root delegates gov.bz to the parent itself, which the resolver's root hint names.
    assert lab.query(lab.parent, "gov.bz", "NS") == [bind.PARENT_NS]


def test_signed_update_on_the_primary_reaches_the_secondary(lab):
    before = lab.serial(lab.primary, HEALTH)
    update = signed_update(lab, HEALTH)
    update.replace("@", 300, "MX", "10 mx1.mail.gov.bz.", "20 mx2.mail.gov.bz.")
    assert send(lab, update).rcode() == dns.rcode.NOERROR
    assert lab.serial(lab.primary, HEALTH) == before + 1
    deadline = time.monotonic() + 5
    while lab.serial(lab.secondary, HEALTH) != before + 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lab.serial(lab.secondary, HEALTH) == before + 1
    assert lab.query(lab.secondary, HEALTH, "MX") == ["10 mx1.mail.gov.bz.", "20 mx2.mail.gov.bz."]
    assert re.search(r"transfer of 'health\.gov\.bz/IN' from \S+: connected using \S+ TSIG govlab-tsig",
                     lab.secondary.log_text())


def test_change_replaces_an_rrset_and_waits_for_the_secondary(lab):
    lab.change(HEALTH, "_dmarc", "TXT", ['"v=DMARC1; p=reject"'], ttl=60)
    for server in (lab.primary, lab.secondary):
        assert lab.query(server, "_dmarc.health.gov.bz", "TXT") == ['"v=DMARC1; p=reject"']
    lab.change(HEALTH, "autodiscover.health.gov.bz", "CNAME", [])
    assert lab.query(lab.secondary, "autodiscover.health.gov.bz", "CNAME") == []
    assert lab.serial(lab.primary, HEALTH) == lab.serial(lab.secondary, HEALTH) == bind.SERIAL + 2


def test_update_with_a_wrong_tsig_secret_or_none_is_refused_and_changes_nothing(lab):
    wrong = base64.b64encode(b"not the lab's key, same length...").decode()
    update = signed_update(lab, HEALTH, secret=wrong)
    update.replace("@", 300, "MX", "10 mx1.mail.gov.bz.")
    with pytest.raises(dns.tsig.PeerBadSignature):  # the server's NOTAUTH carries TSIG error BADSIG
        send(lab, update)
    unsigned = dns.update.UpdateMessage(HEALTH)
    unsigned.replace("@", 300, "MX", "10 mx1.mail.gov.bz.")
    assert send(lab, unsigned).rcode() == dns.rcode.REFUSED
    assert lab.serial(lab.primary, HEALTH) == bind.SERIAL
    assert lab.query(lab.primary, HEALTH, "MX") == ["10 mail.health.gov.bz."]
    assert "request has invalid signature: TSIG govlab-tsig: tsig verify failure (BADSIG)" in lab.primary.log_text()


def test_update_for_a_zone_the_primary_does_not_serve_is_notauth(lab):
    update = signed_update(lab, "agriculture.gov.bz")
    update.replace("@", 300, "MX", "10 mx1.mail.gov.bz.")
    assert send(lab, update).rcode() == dns.rcode.NOTAUTH


def test_axfr_is_refused_without_the_key_and_works_with_it(lab):
    for server in (lab.primary, lab.secondary):
        with pytest.raises(dns.xfr.TransferError) as refused:
            lab.axfr(server, HEALTH, signed=False)
        assert refused.value.rcode == dns.rcode.REFUSED
        records = lab.axfr(server, HEALTH)
        assert any(line.startswith("health.gov.bz. 3600 IN SOA ns1.health.gov.bz. ") for line in records)
        assert "health.gov.bz. 3600 IN MX 10 mail.health.gov.bz." in records
    with pytest.raises(dns.tsig.PeerBadSignature):
        list(dns.query.xfr(lab.primary.address, HEALTH, timeout=5, keyname=lab.tsig_name,
                           keyring=dns.tsigkeyring.from_text(
                               {lab.tsig_name: (lab.tsig_algorithm, base64.b64encode(b"x" * 32).decode())})))


def test_refuse_updates_makes_the_primary_answer_refused_until_allowed(lab):
    lab.refuse_updates(HEALTH)
    update = signed_update(lab, HEALTH)
    update.replace("@", 300, "MX", "10 mx1.mail.gov.bz.")
    assert send(lab, update).rcode() == dns.rcode.REFUSED
    assert lab.query(lab.primary, HEALTH, "MX") == ["10 mail.health.gov.bz."]
    other = signed_update(lab, EDUCATION)
    other.replace("@", 300, "MX", "10 mx1.mail.gov.bz.")
    assert send(lab, other).rcode() == dns.rcode.NOERROR, "only the named zone refuses"

    lab.refuse_updates()
    retry = signed_update(lab, EDUCATION)
    retry.replace("@", 300, "MX", "20 mx2.mail.gov.bz.")
    assert send(lab, retry).rcode() == dns.rcode.REFUSED

    lab.allow_updates()
    again = signed_update(lab, HEALTH)
    again.replace("@", 300, "MX", "10 mx1.mail.gov.bz.")
    assert send(lab, again).rcode() == dns.rcode.NOERROR
    assert lab.query(lab.primary, HEALTH, "MX") == ["10 mx1.mail.gov.bz."]


def test_held_secondary_stays_behind_until_released(lab):
    lab.hold_secondary()
    lab.change(HEALTH, "@", "MX", ["10 mx1.mail.gov.bz."])
    assert lab.serial(lab.primary, HEALTH) == bind.SERIAL + 1
    time.sleep(1.5)  # NOTIFY and a refresh would have landed in milliseconds
    assert lab.serial(lab.secondary, HEALTH) == bind.SERIAL
    assert lab.query(lab.secondary, HEALTH, "MX") == ["10 mail.health.gov.bz."]

    lab.release_secondary()
    assert lab.serial(lab.secondary, HEALTH) == bind.SERIAL + 1
    assert lab.query(lab.secondary, HEALTH, "MX") == ["10 mx1.mail.gov.bz."]
    lab.change(HEALTH, "@", "MX", ["10 mx2.mail.gov.bz."])  # and follows NOTIFY again
    assert lab.query(lab.secondary, HEALTH, "MX") == ["10 mx2.mail.gov.bz."]


def test_stopped_server_is_unreachable_until_started(lab):
    lab.stop(lab.secondary)
    with pytest.raises(LabError, match="did not answer"):
        lab.query(lab.secondary, HEALTH, "SOA")
    lab.change(HEALTH, "@", "MX", ["10 mx1.mail.gov.bz."])  # made while it was down
    lab.start(lab.secondary)
    assert lab.serial(lab.secondary, HEALTH) == bind.SERIAL + 1

    lab.stop(lab.primary)
    with pytest.raises(LabError, match="did not answer"):
        lab.query(lab.primary, HEALTH, "SOA")
    lab.start(lab.primary)
    assert lab.query(lab.primary, HEALTH, "MX") == ["10 mx1.mail.gov.bz."], "the update survived (journal)"
    lab.change(HEALTH, "@", "MX", ["10 mx2.mail.gov.bz."])
    assert lab.query(lab.secondary, HEALTH, "MX") == ["10 mx2.mail.gov.bz."]


def test_two_labs_at_once_do_not_collide(lab):
    other = start_dns_lab(["finance.gov.bz"])
    try:
        assert other.prefix != lab.prefix
        assert other.tsig_secret != lab.tsig_secret
        assert other.query(other.resolver, "finance.gov.bz", "MX") == ["10 mail.finance.gov.bz."]
        with pytest.raises(LabError, match="REFUSED"):
            lab.query(lab.primary, "finance.gov.bz", "SOA")  # each lab serves only its own zones
        assert lab.query(lab.resolver, "finance.gov.bz", "MX") == []  # not delegated in this lab's gov.bz
    finally:
        other.cleanup()
    assert not {s.address for s in other.servers} & lo_addresses()
    assert {s.address for s in lab.servers} <= lo_addresses()
    assert lab.query(lab.resolver, HEALTH, "MX") == ["10 mail.health.gov.bz."]


def test_labs_started_in_parallel_take_different_prefixes():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        labs = list(pool.map(lambda d: start_dns_lab([d]), ["a.gov.bz", "b.gov.bz", "c.gov.bz"]))
    try:
        assert len({lab.prefix for lab in labs}) == 3
        for lab, domain in zip(labs, ["a.gov.bz", "b.gov.bz", "c.gov.bz"], strict=True):
            assert lab.query(lab.resolver, domain, "MX") == [f"10 mail.{domain}."]
    finally:
        for lab in labs:
            lab.cleanup()


def test_a_prefix_claimed_by_a_lab_still_starting_is_not_claimed_again(monkeypatch):
    # Between its check and named's bind, a starting lab holds its /24 only by the abstract socket.
    monkeypatch.setattr(bind.random, "shuffle", lambda candidates: None)  # both would pick the same first
    first, lock = bind._claim_prefix(set())
    try:
        second, other = bind._claim_prefix(set())
        other.close()
        assert second != first
    finally:
        lock.close()


def test_addresses_left_by_a_killed_lab_are_removed_by_the_next(tmp_path: Path):
    script = ("import os, sys, time\nfrom tests.lab.bind import start_dns_lab\n"
              "lab = start_dns_lab(['health.gov.bz'])\n"
              "print(lab.root, lab.prefix, *[s.process.proc.pid for s in lab.servers], flush=True)\n"
              "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).parent.parent)
    try:
        root, prefix, *pids = child.stdout.readline().split()
    finally:
        child.kill()  # no clean-up runs: its named processes and addresses stay behind
        child.wait()
    addresses = {f"{prefix}.{n}" for n in (10, 11, 12, 13)}
    assert addresses <= lo_addresses()
    for pid in pids:
        os.kill(int(pid), signal.SIGTERM)
    for pid in pids:
        while not exited(int(pid)):
            time.sleep(0.02)
    shutil.rmtree(root)
    with start_dns_lab([HEALTH]):
        assert not addresses & lo_addresses()


def test_a_server_that_cannot_start_fails_with_its_log():
    with pytest.raises(LabError) as failed:
        start_dns_lab([HEALTH], records={HEALTH: ["mail A 999.0.0.1"]})
    message = str(failed.value)
    assert re.match(r"named \(primary, \S+\) could not start: a zone was not loaded", message), "at once, not a timeout"
    assert "bad dotted quad" in message, "named's own words"
    prefix = re.search(r"named \(primary, (127\.53\.\d+)\.11\)", message).group(1)
    assert not {f"{prefix}.{n}" for n in (10, 11, 12, 13)} & lo_addresses(), "its addresses were released"
    assert not bind._live


def test_records_replace_defaults_and_make_bad_domains():
    records = {
        HEALTH: [
            f'@ TXT "{bind.spf_with_lookups(11)}"',       # 11 DNS lookups
            "@ MX 10 mx-alias",                            # an MX whose target is a CNAME
            "mx-alias CNAME mail",
            'gov2026._domainkey TXT "v=DKIM1; k=rsa; p=not base64!"',
        ],
        EDUCATION: [f'@ TXT "v=spf1 a:nothing.education.gov.bz include:{bind.SPF_NESTED} -all"'],  # a void lookup
        "gov.bz": ["health NS ns1.health", "health NS ns3.health"],  # the parent disagrees with the zone
    }
    with start_dns_lab([HEALTH, EDUCATION], records=records) as lab:
        assert lab.query(lab.primary, HEALTH, "MX") == ["10 mx-alias.health.gov.bz."], "replaced, not added"
        assert lab.query(lab.primary, "mx-alias.health.gov.bz", "CNAME") == ["mail.health.gov.bz."]
        spf = lab.query(lab.resolver, HEALTH, "TXT")
        assert spf == [f'"{bind.spf_with_lookups(11)}"'] and spf[0].count("include:") == 11
        for name in bind.SPF_INCLUDES[:11]:
            assert lab.query(lab.resolver, name, "TXT")[0].startswith('"v=spf1 ip4:192.0.2.')
        assert lab.query(lab.resolver, bind.SPF_NESTED, "TXT")[0].count("include:") == 3
        assert lab.query(lab.resolver, "nothing.education.gov.bz", "A") == []
        assert lab.query(lab.primary, "gov2026._domainkey.health.gov.bz", "TXT") == [
            '"v=DKIM1; k=rsa; p=not base64!"']
        assert lab.query(lab.parent, HEALTH, "NS") == ["ns1.health.gov.bz.", "ns3.health.gov.bz."]
        assert lab.query(lab.primary, HEALTH, "NS") == ["ns1.health.gov.bz.", "ns2.health.gov.bz."]
        assert lab.query(lab.parent, EDUCATION, "NS") == ["ns1.education.gov.bz.", "ns2.education.gov.bz."]


def test_dns_section_is_a_valid_project_file_section(lab, tmp_path: Path):
    ws = tmp_path / "ws"
    section = DnsSection.model_validate(lab.dns_section(ws))
    assert section.primary.address == lab.primary.address and section.primary.port == 53
    assert [ns.address for ns in section.nameservers] == [lab.primary.address, lab.secondary.address]
    assert [r.address for r in section.resolvers] == [lab.resolver.address]
    assert stat.S_IMODE((ws / "secrets").stat().st_mode) == 0o700
    assert stat.S_IMODE((ws / "secrets" / "tsig").stat().st_mode) == 0o600
    secret = resolve(SecretRef(section.tsig.secret), base_dir=ws, label="dns.tsig.secret")
    assert secret.reveal() == lab.tsig_secret and section.tsig.name == lab.tsig_name
    assert section.targets.mx == ["10 mx1.mail.gov.bz", "20 mx2.mail.gov.bz"]
    assert (section.cutover_ttl, section.propagation_timeout, section.max_ttl_wait) == (60, 20, 2)
    fields = dict(item.split("=", 1) for item in section.targets.dkim_key.split("; "))
    key = load_der_public_key(base64.b64decode(fields["p"]))
    assert fields["v"] == "DKIM1" and fields["k"] == "rsa"
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    for host in ("autodiscover", "imap_host", "submission_host"):
        assert lab.query(lab.resolver, getattr(section.targets, host), "A") == ["127.0.0.1"]
    assert lab.query(lab.resolver, section.targets.spf_include, "TXT") == ['"v=spf1 ip4:127.0.0.1 -all"']
