"""`govmigrate dns plan` and `dns prepare` against real named, and every way an update is refused: the
change set shown before and after with its TTLs; TTLs lowered on exactly the RRsets that will change, on the
primary and the secondary, with the earliest safe switch time recorded, and nothing done twice; a wrong TSIG
secret or key name, a zone the primary does not serve, a primary that refuses updates, and a record changed
meanwhile each exit 9 with nothing changed; an unreachable primary exits 4; a secondary that never catches up
exits 10; and the TSIG secret is nowhere it must not be."""

from __future__ import annotations

import base64
import json
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
import yaml

import migrate.dns.prepare as prepare_module
from migrate.core.config import DnsSection
from migrate.core.errors import ExitCode
from migrate.core.redaction import redact
from migrate.dns.client import DnsClient
from tests.test_dns_check import HEALTH, Workspaces, cut_over_records

pytestmark = pytest.mark.lab

REFUSED, NOT_PROPAGATED, UNREACHABLE = int(ExitCode.DNS_REFUSED), int(ExitCode.DNS_PROPAGATION), int(ExitCode.UNREACHABLE)
#: What `dns prepare` must lower in the lab's health.gov.bz (what the cut-over will change and exists now).
CHANGING = {("@", "MX"), ("@", "TXT"), ("_dmarc", "TXT"), ("autodiscover", "CNAME")}
#: What it must leave alone.
UNTOUCHED = {("@", "NS"), ("mail", "A"), ("ns1", "A")}


@pytest.fixture
def make_dns_workspace(tmp_path: Path):
    made = Workspaces(tmp_path)
    yield made
    made.close()


def ttls(w, server) -> dict[tuple[str, str], int]:
    """The TTL each RRset has on ``server`` (from a zone transfer: it carries every RRset's own TTL)."""
    found = {}
    for line in w.dns.axfr(server, HEALTH):
        owner, ttl, _cls, rdtype = line.split()[:4]
        label = "@" if owner == HEALTH + "." else owner[: -len(HEALTH) - 2]
        found[(label, rdtype)] = int(ttl)
    return found


def zone_lines(w, server) -> list[str]:
    return sorted(w.dns.axfr(w.dns.primary if server is None else server, HEALTH))


# -- plan -----------------------------------------------------------------------------------------------


def test_plan_shows_each_rrset_before_and_after_with_its_current_ttl(govmigrate, make_dns_workspace):
    w = make_dns_workspace()
    doc = json.loads(govmigrate("-w", w.ws, "dns", "plan", "--wave", "pilot", "--json").stdout)
    (domain,) = doc["domains"]
    assert domain["domain"] == HEALTH + "." and domain["zone"] == HEALTH + "." and domain["old_ttl"] == 3600
    changes = {(c["name"], c["type"]): c for c in domain["changes"]}
    mx = changes[(HEALTH + ".", "MX")]
    assert mx["action"] == "replace"
    assert mx["before"] == {"name": HEALTH + ".", "type": "MX", "ttl": 3600, "rdata": [f"10 mail.{HEALTH}."]}
    assert mx["after"]["rdata"] == ["10 mx1.mail.gov.bz.", "20 mx2.mail.gov.bz."] and mx["after"]["ttl"] == 60
    apex_txt = changes[(HEALTH + ".", "TXT")]
    assert apex_txt["after"]["rdata"] == ['"v=spf1 include:_spf.mail.gov.bz -all"']
    assert changes[(f"_imaps._tcp.{HEALTH}.", "SRV")]["action"] == "create"
    assert changes[(f"_imaps._tcp.{HEALTH}.", "SRV")]["before"] is None
    assert len(changes) == 9
    table = govmigrate("-w", w.ws, "dns", "plan", "--wave", "pilot").stdout
    assert f"{HEALTH}: 9 RRsets will change" in table
    assert "10 mail.health.gov.bz." in table and "10 mx1.mail.gov.bz.; 20 mx2.mail.gov.bz." in table
    assert "3600" in table
    assert zone_lines(w, None) == zone_lines(w, w.dns.primary)  # nothing changed (read-only)


def test_plan_of_a_domain_already_cut_over_is_empty(govmigrate, make_dns_workspace):
    w = make_dns_workspace(cut_over_records())
    w.edit_dns(domains={HEALTH: {"dmarc": "v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@mail.gov.bz"}})
    doc = json.loads(govmigrate("-w", w.ws, "dns", "plan", "--wave", "pilot", "--json").stdout)
    assert doc["domains"][0]["changes"] == []
    assert "nothing to change" in govmigrate("-w", w.ws, "dns", "plan", "--wave", "pilot").stdout


# -- prepare --------------------------------------------------------------------------------------------


def test_prepare_lowers_exactly_what_will_change_on_both_servers_and_records_safe_after(govmigrate,
                                                                                      make_dns_workspace):
    w = make_dns_workspace()
    w.edit_dns(max_ttl_wait=None)  # the real wait: the whole old TTL
    before = ttls(w, w.dns.primary)
    serial = w.dns.serial(w.dns.primary, HEALTH)
    result = govmigrate("-w", w.ws, "dns", "prepare", "--wave", "pilot")
    for server in (w.dns.primary, w.dns.secondary):
        after = ttls(w, server)
        assert {k for k, ttl in after.items() if ttl == 60} == CHANGING, server
        for key in UNTOUCHED:
            assert after[key] == before[key] == 3600
    assert w.dns.serial(w.dns.secondary, HEALTH) == w.dns.serial(w.dns.primary, HEALTH) == serial + 1
    assert w.dns.query(w.dns.primary, HEALTH, "MX") == [f"10 mail.{HEALTH}."]  # data untouched
    with w.store() as store:
        row = store.dns_domain(HEALTH)
        events = [e for e in store.events(obj=f"dns/{HEALTH}") if e.action == "prepare"]
    assert (row.state, row.wave, row.old_ttl) == ("prepared", "pilot", 3600)
    at = datetime.fromisoformat(row.prepared_at.replace("Z", "+00:00"))
    safe = datetime.fromisoformat(row.safe_after.replace("Z", "+00:00"))
    assert (safe - at).total_seconds() == 3600
    assert len(events) == 1 and "lowered to 60 s" in events[0].detail
    assert f"earliest safe switch time {row.safe_after}" in result.stdout


def test_prepare_again_changes_nothing_and_keeps_the_safe_time(govmigrate, make_dns_workspace):
    w = make_dns_workspace()
    first = json.loads(govmigrate("-w", w.ws, "dns", "prepare", "--wave", "pilot", "--json").stdout)
    (done,) = first["domains"]
    assert len(done["lowered"]) == 4 and done["wait_seconds"] == 2  # the lab's max_ttl_wait, said openly
    assert "max_ttl_wait" in " ".join(done["notes"])
    serial = w.dns.serial(w.dns.primary, HEALTH)
    with w.store() as store:
        row = store.dns_domain(HEALTH)
        events = len(store.events(obj=f"dns/{HEALTH}"))
    again = json.loads(govmigrate("-w", w.ws, "dns", "prepare", "--wave", "pilot", "--json").stdout)
    assert again["domains"][0]["lowered"] == [] and again["domains"][0]["notes"] == ["already prepared"]
    assert again["safe_after"] == first["safe_after"] == row.safe_after
    assert w.dns.serial(w.dns.primary, HEALTH) == serial  # no update sent
    with w.store() as store:
        assert store.dns_domain(HEALTH) == row
        assert len(store.events(obj=f"dns/{HEALTH}")) == events


def test_prepare_of_a_domain_with_nothing_to_change_records_nothing(govmigrate, make_dns_workspace):
    w = make_dns_workspace(cut_over_records())
    serial = w.dns.serial(w.dns.primary, HEALTH)
    out = govmigrate("-w", w.ws, "dns", "prepare", "--wave", "pilot").stdout
    assert "nothing will change" in out
    assert w.dns.serial(w.dns.primary, HEALTH) == serial
    with w.store() as store:
        assert store.dns_domain(HEALTH) is None


# -- refused updates: exit 9, nothing changed -----------------------------------------------------------


def _unchanged(w, snapshot: list[str]) -> None:
    for server in (w.dns.primary, w.dns.secondary):
        assert zone_lines(w, server) == snapshot, f"the {server.role} changed"


def test_a_wrong_tsig_secret_is_badsig_exit_9_and_nothing_changes(govmigrate, make_dns_workspace):
    w = make_dns_workspace()
    snapshot = zone_lines(w, None)
    (w.ws / "secrets" / "tsig").write_text(base64.b64encode(b"not the lab's secret, 32 bytes!!").decode() + "\n")
    result = govmigrate("-w", w.ws, "dns", "prepare", "--wave", "pilot", expect=REFUSED)
    assert "BADSIG: the secret of key 'govlab-tsig' is not the one the server has" in result.stderr
    assert "nothing was changed" in result.stderr
    _unchanged(w, snapshot)
    with w.store() as store:
        assert store.dns_domain(HEALTH).state == "unchanged"


def test_a_key_the_server_does_not_know_is_badkey_exit_9(govmigrate, make_dns_workspace):
    w = make_dns_workspace()
    snapshot = zone_lines(w, None)
    section = json.loads(json.dumps(w.dns.dns_section(w.ws)))
    w.edit_dns(tsig={**section["tsig"], "name": "no-such-key"})
    result = govmigrate("-w", w.ws, "dns", "prepare", "--wave", "pilot", expect=REFUSED)
    assert "BADKEY: the server does not know key 'no-such-key'" in result.stderr
    _unchanged(w, snapshot)


def test_a_primary_that_refuses_updates_is_exit_9(govmigrate, make_dns_workspace):
    w = make_dns_workspace()
    w.dns.refuse_updates()
    snapshot = zone_lines(w, None)
    result = govmigrate("-w", w.ws, "dns", "prepare", "--wave", "pilot", expect=REFUSED)
    message = " ".join(result.stderr.split())
    assert f"{HEALTH}: the primary {w.dns.primary.address} answered the update of {HEALTH}. with REFUSED" in message
    # The probe (an update with prerequisites only) tells the key's refusal apart from the records' own.
    assert ("(1) the zone does not take updates signed with the key govlab-tsig (allow-update or update-policy does "
            "not name it; an update with prerequisites only, signed with it, was answered REFUSED too)") in message
    assert "integrity" not in message
    _unchanged(w, snapshot)


def test_a_zone_the_primary_is_not_authoritative_for_is_exit_9(govmigrate, make_dns_workspace):
    w = make_dns_workspace()
    # The project file names the parent as the primary: it serves gov.bz, not the ministry's zone.
    section = w.dns.dns_section(w.ws)
    w.edit_dns(nameservers=[{"address": w.dns.parent.address, "primary": True}, *section["nameservers"][1:]])
    snapshot = zone_lines(w, None)
    result = govmigrate("-w", w.ws, "dns", "prepare", "--wave", "pilot", expect=REFUSED)
    assert f"the primary {w.dns.parent.address} is not authoritative for the zone {HEALTH}." in result.stderr
    _unchanged(w, snapshot)


def test_an_update_answered_notauth_is_refused_with_exit_9(make_dns_workspace):
    # Below the early check: the primary itself answers NOTAUTH for a zone it does not serve.
    from migrate.core.errors import DnsUpdateRefused
    from migrate.dns.changes import Change, ChangeSet
    from migrate.dns.records import RRset
    from migrate.dns.update import apply_changes

    w = make_dns_workspace()
    client = DnsClient(DnsSection.model_validate(w.dns.dns_section(w.ws)), w.ws)
    new = RRset.txt("culture.gov.bz", 60, ["v=spf1 -all"])
    with pytest.raises(DnsUpdateRefused, match=r"answered the update of gov\.bz\. with NOTAUTH: nothing was changed. "
                       r"The update held 1 RRset\(s\): culture TXT \(create\)\. Possible causes, most likely first: "
                       r"\(1\) the server does not serve the zone gov\.bz\.") as refused:
        apply_changes(client, ChangeSet("culture.gov.bz.", "gov.bz.", (Change("SPF", new.name, "TXT", None, new),)))
    assert refused.value.exit_code == REFUSED and refused.value.rcode == "NOTAUTH"
    assert w.dns.query(w.dns.parent, "culture.gov.bz", "TXT") == []


def test_a_record_changed_meanwhile_is_named_exit_9_and_nothing_changes(govmigrate, make_dns_workspace,
                                                                         monkeypatch):
    w = make_dns_workspace()
    real_apply = prepare_module.apply_changes

    def someone_changes_the_mx_first(client, changeset):
        w.dns.change(HEALTH, "@", "MX", ["5 backup.example.org."], ttl=3600)
        return real_apply(client, changeset)

    monkeypatch.setattr(prepare_module, "apply_changes", someone_changes_the_mx_first)
    result = govmigrate("-w", w.ws, "dns", "prepare", "--wave", "pilot", expect=REFUSED)
    assert (f"@ MX in {HEALTH}. changed since it was read (was: 10 mail.{HEALTH}. (TTL 3600); now: "
            "5 backup.example.org. (TTL 3600))") in result.stderr
    assert "nothing was changed" in result.stderr
    for server in (w.dns.primary, w.dns.secondary):
        assert all(ttl == 3600 for key, ttl in ttls(w, server).items() if key in CHANGING), server.role
    monkeypatch.undo()
    # Run again: it reads afresh and lowers the TTL of what is there now.
    govmigrate("-w", w.ws, "dns", "prepare", "--wave", "pilot")
    assert ttls(w, w.dns.secondary)[("@", "MX")] == 60


# -- servers --------------------------------------------------------------------------------------------


def test_an_unreachable_primary_is_exit_4_with_the_server_named(govmigrate, make_dns_workspace):
    w = make_dns_workspace()
    w.dns.stop(w.dns.primary)
    result = govmigrate("-w", w.ws, "dns", "prepare", "--wave", "pilot", expect=UNREACHABLE)
    assert f"DNS server {w.dns.primary.address} did not answer" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_secondary_that_stays_behind_is_exit_10_then_prepare_resumes(govmigrate, make_dns_workspace):
    w = make_dns_workspace()
    w.edit_dns(propagation_timeout=2)
    w.dns.hold_secondary()
    result = govmigrate("-w", w.ws, "dns", "prepare", "--wave", "pilot", expect=NOT_PROPAGATED)
    assert f"{w.dns.secondary.address} (serial {w.dns.serial(w.dns.secondary, HEALTH)}): still serves" in result.stderr
    with w.store() as store:
        row = store.dns_domain(HEALTH)
    assert row.state == "unchanged" and row.old_ttl == 3600  # the old TTL is kept for the run that resumes
    w.dns.release_secondary()
    govmigrate("-w", w.ws, "dns", "prepare", "--wave", "pilot")
    with w.store() as store:
        row = store.dns_domain(HEALTH)
    assert (row.state, row.old_ttl) == ("prepared", 3600)  # not the lowered 60 the primary serves now


# -- the TSIG secret ------------------------------------------------------------------------------------


def test_the_tsig_secret_is_nowhere_it_must_not_be(govmigrate, make_dns_workspace):
    w = make_dns_workspace()
    secret = w.dns.tsig_secret
    # Written as a person might copy it from tsig-keygen's output, wrapped over two lines: the secret resolves
    # to the wrapped text, and the form dnspython works with (and would print) is the base64 re-encoded whole.
    wrapped = w.ws / "secrets" / "tsig"
    wrapped.write_text(f"{secret[:20]}\n{secret[20:]}\n")
    wrapped.chmod(0o600)
    outputs: list[str] = []
    for flags in (("-vvv",), ("-vvv", "--log-json"), ()):  # the first prepare (which sends the update) at -vvv
        for args, code in ((("check",), 0), (("plan", "--wave", "pilot"), 0), (("prepare", "--wave", "pilot"), 0)):
            result = govmigrate("-w", w.ws, *flags, "dns", *args, expect=code)
            outputs += [result.stdout, result.stderr]
    assert any("DNS update of" in o for o in outputs), "-vvv did not log the update"
    # And on a failure path: the server refuses, the error is printed.
    w.dns.change(HEALTH, "@", "MX", ["10 other.example.org."])  # a TTL to lower again...
    w.dns.refuse_updates()  # ...which the primary refuses
    for flags in (("-vvv",), ("-vvv", "--log-json"), ("--traceback",)):
        result = govmigrate("-w", w.ws, *flags, "dns", "prepare", "--wave", "pilot", expect=REFUSED)
        outputs += [result.stdout, result.stderr]
    # The library's own reprs (the section as the project file has it: the lab's dns_section() would write the
    # secret file again, unwrapped).
    section = yaml.safe_load((w.ws / "migration.yaml").read_text())["dns"]
    client = DnsClient(DnsSection.model_validate(section), w.ws)
    outputs += [repr(client.tsig()), repr(client)]
    normalised = base64.b64encode(base64.b64decode(secret)).decode()
    assert redact(f"key={normalised}") == "key=***", "the form dnspython prints is registered with the redactor"
    forms = {secret, normalised, f"{secret[:20]}\n{secret[20:]}"}
    blobs = [o.encode() for o in outputs]
    for path in w.ws.rglob("*"):
        if path.is_file() and path != w.ws / "secrets" / "tsig":
            blobs.append(path.read_bytes())
    with sqlite3.connect(w.ws / "state.db") as db:  # the store, read as SQL too (not only its pages)
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            blobs.append(repr(db.execute(f"SELECT * FROM {table}").fetchall()).encode())
    for form in forms:
        for blob in blobs:
            assert form.encode() not in blob, "the TSIG secret leaked"
