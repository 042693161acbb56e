"""The DNS library without a server: RRsets as values, what a domain publishes after its cut-over, change sets
and their inverse, the UPDATE message with its prerequisites, and the record parsers (DKIM, MTA-STS, TLS-RPT,
the SPF include walk)."""

from __future__ import annotations

import base64
from pathlib import Path

import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from migrate.core.config import DnsSection
from migrate.core.errors import ExitCode
from migrate.dns.changes import Change, ChangeSet, compute_changes, keys_to_read, ttl_changes
from migrate.dns.client import DnsClient, Tsig
from migrate.dns.mailauth import _reaches, mta_sts_problem, parse_dkim, tls_rpt_problem
from migrate.dns.records import RRset, absolute, relative, txt_rdata, txt_value
from migrate.dns.targets import central_mx_hosts, is_spf, targets
from migrate.dns.update import build_update

DOMAIN = "health.gov.bz"
TARGETS = {
    "mx": ["10 mx1.mail.gov.bz", "20 mx2.mail.gov.bz"],
    "spf_include": "_spf.mail.gov.bz",
    "dmarc": "v=DMARC1; p=quarantine",
    "dkim_selector": "gov2026",
    "dkim_key": "v=DKIM1; k=rsa; p=AAAA",
    "autodiscover": "autodiscover.mail.gov.bz",
    "imap_host": "imap.mail.gov.bz",
    "submission_host": "smtp.mail.gov.bz",
}


def section(**overrides) -> DnsSection:
    doc = {"nameservers": [{"address": "127.0.0.1", "primary": True}], "targets": TARGETS, "cutover_ttl": 300,
           "tsig": {"name": "govmigrate", "secret": "env:NO_SUCH_TSIG_VARIABLE"}}
    doc.update(overrides)
    return DnsSection.model_validate(doc)


def lab_zone() -> dict[tuple[str, str], RRset | None]:
    """health.gov.bz as the lab starts it: the ministry's own server everywhere, TTL 3600."""
    apex = absolute(DOMAIN)
    return {
        (apex, "MX"): RRset.make(apex, "MX", 3600, [f"10 mail.{DOMAIN}."]),
        (apex, "TXT"): RRset.txt(apex, 3600, ["v=spf1 mx -all", "google-site-verification=abc"]),
        (absolute(f"_dmarc.{DOMAIN}"), "TXT"): RRset.txt(f"_dmarc.{DOMAIN}", 3600, ["v=DMARC1; p=none"]),
        (absolute(f"autodiscover.{DOMAIN}"), "CNAME"): RRset.make(f"autodiscover.{DOMAIN}", "CNAME", 3600,
                                                                 [f"mail.{DOMAIN}."]),
    }


# -- RRsets ---------------------------------------------------------------------------------------------


def test_rrsets_compare_by_data_whatever_the_case_order_and_trailing_dot():
    a = RRset.make("Health.GOV.bz", "mx", 3600, ["20 MX2.mail.gov.bz.", "10 mx1.mail.gov.bz"])
    b = RRset.make("health.gov.bz.", "MX", 300, ["10 mx1.MAIL.gov.bz.", "20 mx2.mail.gov.bz"])
    assert a.same_data(b) and a != b  # the TTL is carried, but is not data
    assert a.name == "health.gov.bz." and a.rdatas == ("10 mx1.mail.gov.bz.", "20 mx2.mail.gov.bz.")
    assert not a.same_data(RRset.make("health.gov.bz", "MX", 3600, ["10 mx1.mail.gov.bz"]))
    assert RRset.from_dict(a.to_dict()) == a


def test_txt_keeps_case_and_splits_long_values_into_255_byte_strings():
    key = "v=DKIM1; k=rsa; p=" + "A" * 400
    rrset = RRset.txt("sel._domainkey.health.gov.bz", 300, [key])
    assert rrset.rdatas[0].count('" "') == 1  # two strings on the wire
    assert rrset.values() == [key]
    assert RRset.txt("x.gov.bz", 1, ["Abc"]).rdatas != RRset.txt("x.gov.bz", 1, ["abc"]).rdatas
    assert txt_value(txt_rdata("é and \"quotes\"")) == "é and \"quotes\""


def test_bad_rdata_is_refused_with_the_type_and_text():
    with pytest.raises(ValueError, match=r"not a valid MX record: 'mx1\.mail\.gov\.bz'"):
        RRset.make("health.gov.bz", "MX", 300, ["mx1.mail.gov.bz"])


def test_names_relative_to_their_zone():
    assert relative("health.gov.bz.", "health.gov.bz") == "@"
    assert relative("_dmarc.health.gov.bz", "health.gov.bz.") == "_dmarc"
    assert relative("mx1.mail.gov.bz", "health.gov.bz") == "mx1.mail.gov.bz."


# -- what a domain publishes ----------------------------------------------------------------------------


def test_targets_cover_every_record_of_the_cut_over():
    found = {(t.what, relative(t.name, DOMAIN), t.rdtype): t.rdatas for t in targets(DOMAIN, section().targets)}
    assert found == {
        ("MX", "@", "MX"): ("10 mx1.mail.gov.bz", "20 mx2.mail.gov.bz"),
        ("SPF", "@", "TXT"): ('"v=spf1 include:_spf.mail.gov.bz -all"',),
        ("DMARC", "_dmarc", "TXT"): ('"v=DMARC1; p=quarantine"',),
        ("DKIM", "gov2026._domainkey", "TXT"): ('"v=DKIM1; k=rsa; p=AAAA"',),
        ("autodiscover", "autodiscover", "CNAME"): ("autodiscover.mail.gov.bz.",),
        ("autodiscover SRV", "_autodiscover._tcp", "SRV"): ("0 0 443 autodiscover.mail.gov.bz.",),
        ("IMAPS SRV", "_imaps._tcp", "SRV"): ("0 1 993 imap.mail.gov.bz.",),
        ("submission SRV", "_submission._tcp", "SRV"): ("0 1 587 smtp.mail.gov.bz.",),
        ("submissions SRV", "_submissions._tcp", "SRV"): ("0 1 465 smtp.mail.gov.bz.",),
    }


def test_optional_records_and_per_domain_overrides():
    s = section(domains={DOMAIN: {"spf": "v=spf1 include:_spf.mail.gov.bz ip4:192.0.2.10 -all",
                                  "mta_sts": "v=STSv1; id=20261130", "tls_rpt": "v=TLSRPTv1; rua=mailto:t@gov.bz"}})
    found = {t.what: t for t in targets(DOMAIN, s.records_for(DOMAIN))}
    assert found["SPF"].rdatas == ('"v=spf1 include:_spf.mail.gov.bz ip4:192.0.2.10 -all"',)
    assert found["MTA-STS"].name == "_mta-sts.health.gov.bz."
    assert found["TLS-RPT"].name == "_smtp._tls.health.gov.bz."
    other = {t.what for t in targets("education.gov.bz", s.records_for("education.gov.bz"))}
    assert "MTA-STS" not in other
    assert central_mx_hosts(s.targets) == {"mx1.mail.gov.bz.", "mx2.mail.gov.bz."}


def test_spf_is_recognised_as_rfc_7208_says():
    assert is_spf("v=spf1 -all") and is_spf("v=spf1") and is_spf("V=SPF1 mx -all")
    assert not is_spf("v=spf10 -all") and not is_spf("v=DMARC1; p=none") and not is_spf(" v=spf1")


# -- change sets ----------------------------------------------------------------------------------------


def test_change_set_lists_only_what_differs_with_the_current_ttl():
    s = section()
    current = lab_zone()
    current[(absolute(f"_imaps._tcp.{DOMAIN}"), "SRV")] = RRset.make(f"_imaps._tcp.{DOMAIN}", "SRV", 600,
                                                                     ["0 1 993 imap.mail.gov.bz."])
    cs = compute_changes(DOMAIN, DOMAIN, targets(DOMAIN, s.targets), current, s.cutover_ttl)
    by = {(relative(c.name, DOMAIN), c.rdtype): c for c in cs}
    assert ("_imaps._tcp", "SRV") not in by  # already as wanted: left out, whatever its TTL
    mx = by[("@", "MX")]
    assert mx.action == "replace" and mx.before.ttl == 3600 and mx.after.ttl == 300
    assert mx.after.rdatas == ("10 mx1.mail.gov.bz.", "20 mx2.mail.gov.bz.")
    assert by[("_submission._tcp", "SRV")].action == "create" and by[("_submission._tcp", "SRV")].before is None
    assert cs.old_ttl == 3600
    rows = {r["name"] + " " + r["type"]: r for r in cs.rows()}
    assert rows["@ MX"]["before"] == "10 mail.health.gov.bz." and rows["@ MX"]["ttl"] == 3600
    assert rows["gov2026._domainkey TXT"]["before"] == "(none)"


def test_apex_txt_replaces_only_the_spf_string():
    s = section()
    cs = compute_changes(DOMAIN, DOMAIN, targets(DOMAIN, s.targets), lab_zone(), s.cutover_ttl)
    txt = next(c for c in cs if c.rdtype == "TXT" and c.name == absolute(DOMAIN))
    assert sorted(txt.after.values()) == ["google-site-verification=abc", "v=spf1 include:_spf.mail.gov.bz -all"]
    assert sorted(txt.before.values()) == ["google-site-verification=abc", "v=spf1 mx -all"]


def test_a_cname_target_clears_other_records_at_its_name_first():
    s = section()
    current = lab_zone()
    name = absolute(f"autodiscover.{DOMAIN}")
    current[(name, "CNAME")] = None
    current[(name, "A")] = RRset.make(name, "A", 3600, ["192.0.2.7"])
    assert (name, "A") in keys_to_read(DOMAIN, targets(DOMAIN, s.targets))
    cs = compute_changes(DOMAIN, DOMAIN, targets(DOMAIN, s.targets), current, s.cutover_ttl)
    at_name = [c for c in cs if c.name == name]
    assert [(c.rdtype, c.action) for c in at_name] == [("A", "delete"), ("CNAME", "create")]


def test_nothing_to_change_once_switched_and_the_inverse_restores_the_baseline():
    s = section()
    wanted = targets(DOMAIN, s.targets)
    cs = compute_changes(DOMAIN, DOMAIN, wanted, lab_zone(), s.cutover_ttl)
    switched = dict(lab_zone())
    for change in cs:
        switched[change.key] = change.after
    assert not compute_changes(DOMAIN, DOMAIN, wanted, switched, s.cutover_ttl)
    back = dict(switched)
    for change in cs.inverse():
        assert change.before == switched[change.key]
        back[change.key] = change.after
    assert back == {k: lab_zone().get(k) for k in switched}
    assert ChangeSet.from_dict(cs.to_dict()) == cs


def test_prepare_lowers_only_existing_rrsets_above_the_cutover_ttl():
    s = section()
    current = lab_zone()
    dmarc = (absolute(f"_dmarc.{DOMAIN}"), "TXT")
    current[dmarc] = current[dmarc].with_ttl(120)  # already low
    cs = compute_changes(DOMAIN, DOMAIN, targets(DOMAIN, s.targets), current, s.cutover_ttl)
    lowered = ttl_changes(cs, 300)
    assert {(relative(c.name, DOMAIN), c.rdtype) for c in lowered} == {("@", "MX"), ("@", "TXT"),
                                                                       ("autodiscover", "CNAME")}
    for change in lowered:
        assert change.action == "ttl" and change.after.ttl == 300 and change.after.same_data(change.before)


# -- the UPDATE message ---------------------------------------------------------------------------------


def _tsig() -> Tsig:
    name = dns.name.from_text("govmigrate")
    return Tsig(name, dns.tsig.HMAC_SHA256, {name: dns.tsig.Key(name, b"k" * 32, dns.tsig.HMAC_SHA256)})


def test_update_requires_every_rrset_exactly_as_read_and_every_new_one_absent():
    import dns.name

    s = section()
    cs = compute_changes(DOMAIN, DOMAIN, targets(DOMAIN, s.targets), lab_zone(), s.cutover_ttl)
    update = build_update(cs, _tsig())
    prereq: dict[tuple[str, str], list] = {}
    for rrset in update.prerequisite:
        prereq.setdefault((rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype)), []).append(rrset)
    (mx,) = prereq[("health.gov.bz.", "MX")]
    assert mx.rdclass == dns.rdataclass.IN and mx.ttl == 0  # value-dependent, TTL 0 (RFC 2136 §2.4.2)
    assert [rd.to_text() for rd in mx] == ["10 mail.health.gov.bz."]  # absolute, as read
    txt = [rd.to_text() for rrset in prereq[("health.gov.bz.", "TXT")] for rd in rrset]
    assert sorted(txt) == ['"google-site-verification=abc"', '"v=spf1 mx -all"']  # the whole RRset
    (dkim,) = prereq[("gov2026._domainkey.health.gov.bz.", "TXT")]
    assert dkim.rdclass == dns.rdataclass.NONE and not dkim  # must not exist (RFC 2136 §2.4.3)
    kinds = [("delete" if r.rdclass == dns.rdataclass.ANY else "add") for r in update.update]
    assert kinds == sorted(kinds, key=lambda k: k != "delete")  # every deletion before any addition
    assert update.keyname == dns.name.from_text("govmigrate")
    wire = update.to_wire()
    assert b"k" * 32 not in wire  # signed with the secret, never carrying it


def test_tsig_secret_comes_from_its_reference_and_is_registered(tmp_path: Path, monkeypatch):
    from migrate.core.errors import UsageError
    from migrate.core.secrets import redact

    secret = base64.b64encode(b"unit-test-tsig-secret-0123456789").decode()
    monkeypatch.setenv("UNIT_TSIG", secret)
    client = DnsClient(section(tsig={"name": "govmigrate", "secret": "env:UNIT_TSIG"}), tmp_path)
    tsig = client.tsig()
    assert secret not in repr(tsig) and secret not in repr(client)
    assert redact(f"x {secret} y") == "x *** y"
    monkeypatch.setenv("UNIT_TSIG", "not base64 at all!")
    with pytest.raises(UsageError, match="not base64") as refused:
        DnsClient(section(tsig={"name": "govmigrate", "secret": "env:UNIT_TSIG"}), tmp_path).tsig()
    assert "not base64 at all" not in refused.value.message
    with pytest.raises(UsageError, match=r"dns\.tsig is not set"):
        DnsClient(section(tsig=None), tmp_path).tsig()


# -- record parsers -------------------------------------------------------------------------------------


def _spki(key) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def test_dkim_key_records_parse_or_say_what_is_wrong():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = parse_dkim(f"v=DKIM1; k=rsa; p={_spki(rsa_key)}")
    assert (key.key_type, key.bits) == ("rsa", 2048)
    assert parse_dkim(f"p={_spki(rsa_key)[:40]} {_spki(rsa_key)[40:]}").bits == 2048  # whitespace in p= is allowed
    raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw,
                                                                        serialization.PublicFormat.Raw)
    assert parse_dkim(f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}").key_type == "ed25519"
    for record, why in [
        ("v=DKIM1; k=rsa", "p= is missing"),
        ("v=DKIM1; p=", "revoked"),
        ("v=DKIM1; p=@@@not-base64@@@", "not valid base64"),
        ("v=DKIM1; p=" + base64.b64encode(b"just some bytes").decode(), "does not hold an RSA public key"),
        ("k=rsa; v=DKIM1; p=AAAA", "v= must be the first tag"),
        ("v=DKIM2; p=AAAA", "not DKIM1"),
        ("v=DKIM1; k=dsa; p=AAAA", "k=dsa"),
        ("v=DKIM1; p=AAAA; p=BBBB", "appears twice"),
        ("garbage", "not a tag=value pair"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_dkim(record)


def test_mta_sts_and_tls_rpt_syntax():
    assert mta_sts_problem("v=STSv1; id=20261130") is None
    assert mta_sts_problem("v=STSv1; id=") and mta_sts_problem("v=STSv1")
    assert tls_rpt_problem("v=TLSRPTv1; rua=mailto:tlsrpt@mail.gov.bz") is None
    assert tls_rpt_problem("v=TLSRPTv1; rua=mailto:a@gov.bz,https://r.gov.bz/tls") is None
    assert tls_rpt_problem("v=TLSRPTv1;") and tls_rpt_problem("v=TLSRPTv1; rua=ftp://x")


def test_central_include_is_found_at_any_depth_and_only_with_a_pass_qualifier():
    tree = {"mechanisms": [{"mechanism": "include", "action": "pass", "value": "spf.health.gov.bz",
                            "parsed": {"mechanisms": [{"mechanism": "include", "action": "pass",
                                                       "value": "_spf.mail.gov.bz", "parsed": {}}]}}]}
    assert _reaches(tree, "_spf.mail.gov.bz.")
    soft = {"mechanisms": [{"mechanism": "include", "action": "softfail", "value": "_spf.mail.gov.bz"}]}
    assert not _reaches(soft, "_spf.mail.gov.bz.")
    redirect = {"mechanisms": [], "redirect": {"domain": "_SPF.mail.gov.bz", "parsed": None}}
    assert _reaches(redirect, "_spf.mail.gov.bz.")


def test_every_exit_code_has_its_row_in_the_readme_table():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert ExitCode.DNS_REFUSED == 9 and ExitCode.DNS_PROPAGATION == 10
    for code in ExitCode:
        assert f"\n| {int(code)} | " in readme, f"exit {int(code)} ({code.name}) is missing from README's table"
    assert ("| 9 | a DNS update was refused (the message gives the RCODE, the RRsets and the likely causes, in order), "
            "or a record changed since it was read: nothing was changed |") in readme
    assert "| 10 | a DNS change was made but not every authoritative server served it before the timeout" in readme


def test_change_round_trips_through_the_store_form():
    change = Change("MX", "health.gov.bz.", "MX", None, RRset.make("health.gov.bz", "MX", 300, ["10 mx1.gov.bz"]))
    assert Change.from_dict(change.to_dict()) == change
    assert change.inverse().action == "delete"
    assert dns.rcode.to_text(dns.rcode.NXRRSET) == "NXRRSET"


def test_one_rrset_at_a_time_except_where_a_cname_comes_or_goes():
    mx = RRset.make(DOMAIN, "MX", 60, ["10 mx1.mail.gov.bz"])
    spf = RRset.txt(DOMAIN, 60, ["v=spf1 -all"])
    alias = RRset.make(f"autodiscover.{DOMAIN}", "CNAME", 60, ["autodiscover.mail.gov.bz"])
    host = RRset.make(f"autodiscover.{DOMAIN}", "A", 60, ["192.0.2.1"])
    cs = ChangeSet(absolute(DOMAIN), absolute(DOMAIN), (
        Change("MX", mx.name, "MX", mx, None), Change("SPF", spf.name, "TXT", spf, None),
        Change("autodiscover", alias.name, "CNAME", alias, None), Change("a", host.name, "A", None, host)))
    units = [[c.rdtype for c in unit] for unit in cs.one_by_one()]
    assert units == [["MX"], ["TXT"], ["CNAME", "A"]]


def test_the_operators_script_and_zone_lines_for_what_a_rollback_could_not_put_back(tmp_path: Path):
    from migrate.dns.restore import Restore, Unrestored, nsupdate_script, zone_lines

    sec = section(tsig={"name": "govmigrate-key", "secret": "env:GOVMIGRATE_TSIG"})
    client = DnsClient(sec, tmp_path)
    now_mx = RRset.make(DOMAIN, "MX", 60, ["10 mx1.mail.gov.bz", "20 mx2.mail.gov.bz"])
    old_mx = RRset.make(DOMAIN, "MX", 3600, [f"10 smtp.{DOMAIN}"])
    made = RRset.make(f"_imaps._tcp.{DOMAIN}", "SRV", 60, ["0 1 993 imap.mail.gov.bz"])
    done = Restore(absolute(DOMAIN), unrestored=[
        Unrestored(Change("MX", now_mx.name, "MX", now_mx, old_mx), "refused", ["the zone's integrity checks: X"],
                   rcode="REFUSED"),
        Unrestored(Change("IMAPS SRV", made.name, "SRV", made, None), "changed since", changed_since=True)])
    script = nsupdate_script(done, client, header="rollback of health.gov.bz")
    lines = script.splitlines()
    assert lines[0] == "; rollback of health.gov.bz"
    assert "server 127.0.0.1 53" in lines and f"zone {DOMAIN}." in lines
    mx = lines.index(f"prereq yxrrset {DOMAIN}. MX 10 mx1.mail.gov.bz.")
    assert lines[mx:mx + 5] == [f"prereq yxrrset {DOMAIN}. MX 10 mx1.mail.gov.bz.",
                                f"prereq yxrrset {DOMAIN}. MX 20 mx2.mail.gov.bz.", f"update delete {DOMAIN}. MX",
                                f"update add {DOMAIN}. 3600 MX 10 smtp.{DOMAIN}.", "send"]
    assert ";   (1) the zone's integrity checks: X" in lines
    srv = lines.index(f"prereq yxrrset _imaps._tcp.{DOMAIN}. SRV 0 1 993 imap.mail.gov.bz.")
    assert lines[srv + 1:srv + 3] == [f"update delete _imaps._tcp.{DOMAIN}. SRV", "send"]
    text = zone_lines(done, header="rollback")
    assert f"{DOMAIN}. 3600 IN MX 10 smtp.{DOMAIN}." in text
    assert f"; _imaps._tcp.{DOMAIN}. SRV: absent before the cut-over (delete it)" in text


def test_a_zone_the_resolver_cannot_see_is_a_clear_error_naming_parent_servers(monkeypatch):
    import dns.resolver

    from migrate.dns.client import DnsQueryFailed

    client = DnsClient(section(), None)
    monkeypatch.setattr(DnsClient, "not_recursing", lambda self: [])

    def no_root_soa(*args, **kwargs):
        raise dns.resolver.NoRootSOA()

    monkeypatch.setattr(dns.resolver, "zone_for_name", no_root_soa)
    with pytest.raises(DnsQueryFailed) as refused:
        client.zone_for(DOMAIN)
    assert "sees no zone that holds health.gov.bz." in refused.value.message
    assert "dns.parent_servers" in refused.value.message and "There is no SOA" not in refused.value.message


def test_dependencies_deprecation_warnings_are_quiet_ours_are_not(tmp_path: Path):
    import subprocess
    import sys

    import migrate

    ours = Path(migrate.__file__).parent / "core" / "x.py"
    code = ("import warnings, migrate.cli.main\n"
            "warnings.warn_explicit('a library deprecates', DeprecationWarning, '/usr/lib/elsewhere/lib.py', 1)\n"
            "class CryptographyDeprecationWarning(UserWarning): pass\n"
            "warnings.warn_explicit('DSA is deprecated', CryptographyDeprecationWarning, '/usr/lib/x/dsa.py', 2)\n"
            f"warnings.warn_explicit('ours deprecates', DeprecationWarning, {str(ours)!r}, 3)\n"
            "warnings.warn_explicit('a library warns', UserWarning, '/usr/lib/elsewhere/lib.py', 4)\n")
    result = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert "a library deprecates" not in result.stderr and "DSA is deprecated" not in result.stderr
    assert "ours deprecates" in result.stderr and "a library warns" in result.stderr
