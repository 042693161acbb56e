"""Ministry PBX files read as their tools write them: FreePBX Bulk Handler CSVs, Asterisk's pjsip.conf (FreePBX's
split files, templates), sip.conf and voicemail.conf, Kamailio's subscriber table; merged into one extension per
number; every bad row or section named by file, line and field and left out while the rest of its file is kept,
the extension it concerns held; secrets never in a message."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from migrate.core import redaction
from migrate.core.config import Project, load_project
from migrate.voip.model import Extension, PbxInventory
from migrate.voip.pbx import check_dial_plans, read_pbx
from tests.lab import pbx as labpbx

# ------------------------------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Person:
    email: str
    display_name: str


PEOPLE = [Person("jose.perez@health.gov.bz", "José Pérez"), Person("ana.lopez@health.gov.bz", "Ana López"),
          Person("john.smith@health.gov.bz", "John Smith"), Person("grace.young@health.gov.bz", "Grace Young"),
          Person("zoe.muller@health.gov.bz", "Zoë Müller")]


def project(ws: Path, pbx: dict[str, dict | None], *, phones: dict | None = None) -> Project:
    """A workspace whose sources (one per key, in order) have these ``pbx:`` sections; loaded as the CLI does."""
    (ws / "users").mkdir(parents=True, exist_ok=True)
    sources = []
    for source_id, section in pbx.items():
        (ws / "users" / f"{source_id}.csv").write_text("email\n")
        entry = {"id": source_id, "ministry": f"Ministry of {source_id.title()}",
                 "domains": [f"{source_id}.gov.bz"],
                 "server": {"type": "imap", "host": f"mail.{source_id}.gov.bz", "port": 993, "tls": "implicit",
                            "login": {"method": "master_user", "user": "migrator",
                                      "password": "env:GOVMIGRATE_TEST_PASSWORD"}},
                 "users": f"users/{source_id}.csv"}
        if section is not None:
            entry["pbx"] = section
        sources.append(entry)
    doc = {"version": 1, "name": "pbx tests",
           "central": {"imap": {"host": "mail.gov.bz", "port": 993, "tls": "implicit"},
                       "login": {"method": "master_user", "user": "migrator",
                                 "password": "env:GOVMIGRATE_TEST_PASSWORD"}},
           "sources": sources}
    if phones:
        doc["phones"] = phones
    (ws / "migration.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return load_project(ws / "migration.yaml")


def write(ws: Path, name: str, text: str, encoding: str = "utf-8") -> str:
    path = ws / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return name


def inputs(*pairs: tuple[str, str], dial_plan: str | None = None, encoding: str | None = None) -> dict:
    section: dict = {"inputs": [{"format": fmt, "path": path} | ({"encoding": encoding} if encoding else {})
                                for fmt, path in pairs]}
    if dial_plan:
        section["dial_plan"] = dial_plan
    return section


def read_one(ws: Path, *pairs: tuple[str, str], **kw) -> PbxInventory:
    proj = project(ws, {"health": inputs(*pairs, **kw)})
    return read_pbx(proj, proj.source("health"))


def ext(inventory: PbxInventory, number: str) -> Extension:
    for extension in inventory.extensions:
        if extension.number == number:
            return extension
    raise KeyError(f"{number} not in {[e.number for e in inventory.extensions]}")


def said(inventory: PbxInventory, severity: str | None = None) -> list[str]:
    return [str(p) for p in inventory.problems if severity is None or p.severity == severity]


def reveal(value) -> str | None:
    return value.reveal() if value is not None else None


# ------------------------------------------------------------------------------------------- FreePBX CSVs

FREEPBX_UPPER = (
    "EXTENSION,NAME,DESCRIPTION,TECH,SECRET,CALLERID,OUTBOUNDCID,TRANSPORT,PASSWORD,VOICEMAIL,VOICEMAIL_ENABLE,"
    "VOICEMAIL_VMPWD,VOICEMAIL_EMAIL,VOICEMAIL_OPTIONS,FINDMEFOLLOW_GRPTIME,LOCAL_ROOM_NUMBER\n"
    '2001,"Pérez, José",José,pjsip,fpbx-secret-2001,device <2001>,"""José Pérez"" <8220101>",0.0.0.0-udp,'
    "user-pw-2001,default,yes,4321,jose.perez@health.gov.bz,attach=yes|saycid=no,20,B-114\n"
    "2002,Conference Room 2,,pjsip,fpbx-secret-2002,,,,,novm,,,,,,B-200\n"
)


def test_freepbx_extensions_with_upper_case_headers_map_fields_and_keep_unknown_columns(tmp_path):
    write(tmp_path, "pbx/extensions.csv", FREEPBX_UPPER)
    inv = read_one(tmp_path, ("freepbx-extensions", "pbx/extensions.csv"))
    assert said(inv) == []
    assert inv.files == {"pbx/extensions.csv": 2}
    jose = ext(inv, "2001")
    assert (jose.name, jose.tech, jose.transport, jose.callerid, jose.outbound_cid) == (
        "Pérez, José", "pjsip", "udp", "device <2001>", '"José Pérez" <8220101>')
    assert reveal(jose.secret) == "fpbx-secret-2001" and reveal(jose.voicemail_pin) == "4321"
    assert (jose.voicemail_box, jose.voicemail_email) == ("2001@default", "jose.perez@health.gov.bz")
    assert jose.origins == ["pbx/extensions.csv:2"]
    assert jose.extra["local_room_number"] == "B-114", "an unknown column is kept"
    assert jose.extra["findmefollow_grptime"] == "20" and jose.extra["transport"] == "0.0.0.0-udp"
    assert not {"secret", "password", "voicemail_vmpwd"} & set(jose.extra), "credentials never go to extra"
    room = ext(inv, "2002")
    assert room.voicemail_box is None and room.voicemail_pin is None, "voicemail=novm: no box"


def test_freepbx_row_without_extension_and_regen_secret_are_said_not_refused(tmp_path):
    # FreePBX's own sample export ends in a row that only the voicemail module filled.
    write(tmp_path, "extensions.csv", "extension,name,secret,voicemail_enable,voicemail_vmpwd,voicemail_email\n"
                                      "2001,Ana López,REGEN,,,\n"
                                      ",,,yes,5678,root@localhost\n")
    inv = read_one(tmp_path, ("freepbx-extensions", "extensions.csv"))
    assert said(inv) == [
        "extensions.csv:2: secret: secret is REGEN (FreePBX makes a new one when it imports the row): there is no "
        "secret to carry",
        "extensions.csv:3: extension: a row without an extension number (FreePBX exports one for a voicemail box "
        "whose extension is gone); left out",
        "extensions.csv:2: secret: extension 2001 has no SIP secret in any file; `voip export` will need "
        "--new-secrets for it"]
    assert [e.number for e in inv.extensions] == ["2001"] and ext(inv, "2001").secret is None


DIDS = ("cidnum,extension,destination,privacyman,description,indication_zone\n"
        ",8220100,\"ivr-1,s,1\",0,Main number,default\n"             # 2 IVR: a note
        ",8220101,\"from-did-direct,2001,1\",0,Ana direct,default\n"  # 3 national
        ",5018220102,\"FROM-DID-DIRECT,2001,1\",0,,default\n"         # 4 with the country code, upper-case
        ",+5018220103,\"ext-local,2002,1\",0,,default\n"              # 5 E.164, ext-local
        ",8220104,\"ext-local,vmb2001,1\",0,,default\n"               # 6 voicemail: a note
        "6221234,8220101,\"from-did-direct,2002,1\",0,,default\n"     # 7 caller-ID route: a note
        ",,\"from-did-direct,2002,1\",0,any DID,default\n"            # 8 any DID: a note
        ",8220105,\"from-did-direct,2999,1\",0,,default\n")           # 9 an extension no file defines


def test_freepbx_dids_become_e164_on_the_extension_their_destination_names(tmp_path):
    write(tmp_path, "extensions.csv", "extension,name,secret\n2001,Ana,secret-2001-aaaa\n2002,Ben,secret-2002-bbbb\n")
    write(tmp_path, "dids.csv", DIDS)
    inv = read_one(tmp_path, ("freepbx-extensions", "extensions.csv"), ("freepbx-dids", "dids.csv"))
    assert ext(inv, "2001").dids == ["+5018220101", "+5018220102"]
    assert ext(inv, "2002").dids == ["+5018220103"]
    assert "dids.csv:3" in ext(inv, "2001").origins
    assert inv.files == {"extensions.csv": 2, "dids.csv": 3}
    assert said(inv) == [
        "dids.csv:2: destination: DID +5018220100 goes to 'ivr-1,s,1', not to an extension; kept as a note, not "
        "carried",
        "dids.csv:6: destination: DID +5018220104 goes to the voicemail of extension 2001, not to an extension; "
        "kept as a note, not carried",
        "dids.csv:7: cidnum: DID +5018220101 routes only calls from caller ID '6221234' here; such caller-ID "
        "routes are not carried",
        "dids.csv:8: extension: a route for any DID (no DID number) to 'from-did-direct,2002,1'; not carried to "
        "an extension",
        "dids.csv:9: destination: DID +5018220105 is routed to extension 2999, which no file of this source "
        "defines; not carried"]
    assert [p.severity for p in inv.problems] == ["note", "note", "note", "note", "warning"]


LEFT_OUT = "left out (the rest of the file is read)"


@pytest.mark.parametrize(("did", "why"), [
    ("12", "is not a valid number in region BZ (+501)"),
    ("1234", "is not a valid number in region BZ (+501)"),
    ("2123456", "is not a valid number in region BZ (+501)"),
    ("822-ABCD", "is not a valid number in region BZ (+501)"),
    ("_822XXXX", "is a dial pattern, not a number"),
])
def test_a_did_that_is_not_a_valid_number_leaves_out_its_row_and_holds_its_extension(tmp_path, did, why):
    # Issue 24: one DID too short gave every extension of the ministry no DIDs at all.
    write(tmp_path, "extensions.csv", "extension,name,secret\n2001,Ana,secret-2001-aaaa\n2002,Ben,secret-2002-bbbb\n")
    write(tmp_path, "dids.csv", "extension,destination\n"
                                "8220101,\"from-did-direct,2001,1\"\n"
                                f"{did},\"from-did-direct,2001,1\"\n"
                                "8220102,\"from-did-direct,2002,1\"\n")
    inv = read_one(tmp_path, ("freepbx-extensions", "extensions.csv"), ("freepbx-dids", "dids.csv"))
    error = f"dids.csv:3: extension: DID {did!r} {why}; this row is {LEFT_OUT}; extension 2001 is held"
    assert said(inv, "error") == [error]
    assert inv.files["dids.csv"] == 2, "every good row is taken"
    assert ext(inv, "2001").dids == ["+5018220101"] and ext(inv, "2001").held == [error]
    assert ext(inv, "2002").dids == ["+5018220102"] and ext(inv, "2002").held == [], "the others are not held"


def test_dids_follow_the_configured_region(tmp_path):
    write(tmp_path, "extensions.csv", "extension,name,secret\n2001,Ana,secret-2001-aaaa\n")
    write(tmp_path, "dids.csv", "extension,destination\n2025550123,\"from-did-direct,2001,1\"\n")
    proj = project(tmp_path, {"health": inputs(("freepbx-extensions", "extensions.csv"), ("freepbx-dids", "dids.csv"))},
                   phones={"region": "US"})
    inv = read_pbx(proj, proj.source("health"))
    assert ext(inv, "2001").dids == ["+12025550123"]


# ------------------------------------------------------------------------------------------- pjsip.conf


def test_pjsip_split_files_as_freepbx_writes_them_are_read_through_include(tmp_path):
    files = labpbx.write_pbx(tmp_path / "pbx", PEOPLE, seed="split", source_id="health", domain="health.gov.bz",
                             formats=("pjsip",))
    proj = project(tmp_path, {"health": files.mapping(tmp_path)})
    inv = read_pbx(proj, proj.source("health"))
    trunk = (tmp_path / "pbx" / "pjsip.endpoint.conf").read_text().split("\n").index("[telco-trunk]") + 1
    assert said(inv) == [f"pbx/pjsip.endpoint.conf:{trunk}: [telco-trunk]: an endpoint that is not an extension "
                         "number (a trunk); not taken"]
    assert inv.files == {"pbx/pjsip.conf": len(files.expected)}
    jose = ext(inv, "2001")
    assert reveal(jose.secret) == files.expected["2001"].secret
    assert (jose.name, jose.tech, jose.transport, jose.voicemail_box) == ("José Pérez", "pjsip", "udp",
                                                                          "2001@default")
    assert jose.origins == ["pbx/pjsip.endpoint.conf:4", "pbx/pjsip.auth.conf:4", "pbx/pjsip.aor.conf:4"]
    assert jose.extra["aor.max_contacts"] == "1" and jose.extra["context"] == "from-internal"
    assert jose.extra["transport"] == "0.0.0.0-udp"
    assert "auth.password" not in jose.extra and "password" not in jose.extra


def test_pjsip_templates_inherit_and_own_options_override(tmp_path):
    write(tmp_path, "pjsip.conf", """\
[transport-tls]
type=transport
protocol=tls            ; phones use TLS here

[phone](!)
type=endpoint
context=from-internal
allow=ulaw
transport=transport-tls

[phone-vip](!,phone)
allow=g722

[userpass](!)
type=auth
auth_type=userpass

[2001](phone-vip)
context=vip-internal
auth=2001
aors=2001
callerid="Ana López" <2001>

[2001](userpass)
username=2001
password=pa\\;ss-2001-word

[2001]
type=aor
max_contacts=2
""")
    inv = read_one(tmp_path, ("pjsip", "pjsip.conf"))
    assert said(inv) == []
    ana = ext(inv, "2001")
    assert reveal(ana.secret) == "pa;ss-2001-word", "\\; is a semicolon, not a comment"
    assert (ana.name, ana.transport) == ("Ana López", "tls")
    assert ana.extra["context"] == "vip-internal", "the section's own option overrides the template's"
    assert ana.extra["allow"] == "ulaw,g722", "allow= repeats and adds up through templates"
    assert ana.extra["aor.max_contacts"] == "2"
    assert ana.origins == ["pjsip.conf:18", "pjsip.conf:24", "pjsip.conf:28"]


def test_handwritten_pjsip_from_the_lab_generator_reads_as_expected(tmp_path):
    files = labpbx.write_pbx(tmp_path / "pbx", PEOPLE, seed="single", source_id="health",
                             domain="health.gov.bz", formats=("pjsip",), pjsip_split=False)
    proj = project(tmp_path, {"health": files.mapping(tmp_path)})
    inv = read_pbx(proj, proj.source("health"))
    assert said(inv) == []
    assert_expected(inv, files.expected)


@pytest.mark.parametrize(("text", "where", "taken", "held"), [
    ("type=endpoint\n[2001]\ntype=endpoint\n[2003]\ntype=endpoint\n",
     f"pjsip.conf:1: type: a setting outside any [section]; {LEFT_OUT}", True, False),
    ("[2001]\ntype=endpoint\n[2002\ntype=endpoint\n[2003]\ntype=endpoint\n",
     f"pjsip.conf:3: [section]: the section header does not close with ']'; the section is {LEFT_OUT}; extension "
     "2002 is held", True, False),
    ("[2001]\ntype=endpoint\nauth=2001-auth\n\n[2001-auth]\nusername=2001\npassword=not-in-any-message\n"
     "[2003]\ntype=endpoint\n",
     f"pjsip.conf:5: type: [2001-auth] has no type= (endpoint, auth, aor, ...); the section is {LEFT_OUT}",
     True, True),
    ("[2001]\ntype=endpoint\nauth=2001-auth\n[2001-auth]\ntype=auth\npassword not-in-any-message\n"
     "[2003]\ntype=endpoint\n",
     f"pjsip.conf:6: [2001-auth]: a line without '=' in a section; the line is {LEFT_OUT}", True, True),
    ("[2001]\ntype=endpiont\n[2003]\ntype=endpoint\n",
     "pjsip.conf:2: type: [2001] has type=endpiont, which is not a pjsip object type; the section is "
     f"{LEFT_OUT}; extension 2001 is held", False, True),
    ("[2001](phne)\ntype=endpoint\n[2003]\ntype=endpoint\n",
     "pjsip.conf:1: [2001]: inherits from [phne], which is not defined before it; read without it; extension 2001 "
     "is held", True, True),
    ("[2001]\ntype=endpoint\npassword not-in-any-message\n[2003]\ntype=endpoint\n",
     f"pjsip.conf:3: [2001]: a line without '=' in a section; the line is {LEFT_OUT}; extension 2001 is held",
     True, True),
    ("[2001]\ntype=endpoint\n[2001]\ntype=endpoint\n[2003]\ntype=endpoint\n",
     "pjsip.conf:3: [2001]: a second type=endpoint [2001]: the first, at pjsip.conf:1, is taken and this one left "
     "out; extension 2001 is held", True, True),
])
def test_a_malformed_pjsip_section_is_left_out_and_the_rest_of_the_file_is_read(tmp_path, text, where, taken,
                                                                                  held):
    write(tmp_path, "pjsip.conf", text)
    write(tmp_path, "voicemail.conf", "[default]\n2001 => 1234,Ana López,ana.lopez@health.gov.bz\n")
    inv = read_one(tmp_path, ("pjsip", "pjsip.conf"), ("voicemail", "voicemail.conf"))
    assert said(inv, "error") == [where]
    assert ext(inv, "2003").tech == "pjsip", "the good sections after the bad one are taken"
    ana = ext(inv, "2001")
    assert (ana.tech == "pjsip") is taken and ana.origins[-1] == "voicemail.conf:2"
    assert ana.held == ([where] if held else []), "the extension the error concerns is held"
    assert ext(inv, "2003").held == []
    assert "not-in-any-message" not in " ".join(said(inv))


def test_an_error_in_an_included_file_is_named_there_and_the_rest_is_read(tmp_path):
    write(tmp_path, "pjsip.conf", "#include pjsip.endpoint.conf\n#include pjsip.auth.conf\n")
    write(tmp_path, "pjsip.endpoint.conf", "[2001]\ntype=endpoint\nauth=2001-auth\n")
    write(tmp_path, "pjsip.auth.conf", "[2001-auth]\ntype=auth\npassword=secret-2001-xyz\n[2002-auth\n")
    inv = read_one(tmp_path, ("pjsip", "pjsip.conf"))
    assert said(inv, "error") == [
        f"pjsip.auth.conf:4: [section]: the section header does not close with ']'; the section is {LEFT_OUT}"]
    assert inv.files == {"pjsip.conf": 1} and reveal(ext(inv, "2001").secret) == "secret-2001-xyz"


def test_includes_missing_cyclic_or_absolute(tmp_path):
    write(tmp_path, "etc/pjsip.conf", "#include pjsip_custom.conf\n#tryinclude pjsip_other.conf\n"
                                      "#include /etc/asterisk/pjsip.endpoint.conf\n#include pjsip.conf\n")
    write(tmp_path, "etc/pjsip.endpoint.conf", "[2001]\ntype=endpoint\n")
    inv = read_one(tmp_path, ("pjsip", "etc/pjsip.conf"))
    assert said(inv) == [
        "etc/pjsip.conf:1: #include: pjsip_custom.conf is not here; its sections are not read (copy it beside "
        "this file if it holds extensions)",
        "etc/pjsip.conf:4: #include: includes pjsip.conf, which includes this file again",
        "etc/pjsip.endpoint.conf:1: secret: extension 2001 has no SIP secret in any file; `voip export` will need "
        "--new-secrets for it"]
    assert inv.files == {"etc/pjsip.conf": 1}, "the absolute include found beside it is read"
    assert [e.number for e in inv.extensions] == ["2001"]


def test_a_file_listed_and_also_included_is_read_once(tmp_path):
    write(tmp_path, "pjsip.conf", "#include pjsip.endpoint.conf\n")
    write(tmp_path, "pjsip.endpoint.conf", "[2001]\ntype=endpoint\n")
    inv = read_one(tmp_path, ("pjsip", "pjsip.conf"), ("pjsip", "pjsip.endpoint.conf"))
    assert [e.number for e in inv.extensions] == ["2001"]
    assert said(inv, "error") == []
    assert "pjsip.endpoint.conf: path: already read as an #include of an earlier input; not read twice" in said(inv)


def test_pjsip_md5_cred_only_is_a_warning_and_recorded(tmp_path):
    write(tmp_path, "pjsip.conf", "[2001]\ntype=endpoint\nauth=2001-auth\n"
                                  "[2001-auth]\ntype=auth\nauth_type=md5\nrealm=pbx.health.gov.bz\n"
                                  "md5_cred=0123456789abcdef0123456789abcdef\nusername=2001\n")
    inv = read_one(tmp_path, ("pjsip", "pjsip.conf"))
    assert said(inv) == [
        "pjsip.conf:8: md5_cred: extension 2001: [2001-auth] holds only an MD5 hash of the password (md5_cred), no "
        "clear password: the secret can be carried only to a platform with the same realm (pbx.health.gov.bz); "
        "elsewhere `voip export` needs --new-secrets"]
    assert ext(inv, "2001").extra["secret_form"] == "md5_cred"
    assert "0123456789abcdef" not in repr(ext(inv, "2001"))


# ------------------------------------------------------------------------------------- sip.conf, voicemail


def test_sip_conf_friends_peers_and_sections_chan_sip_skips(tmp_path):
    write(tmp_path, "sip.conf", """\
[general]
context=default
transport=udp

[2001]
type=friend
secret=sip-secret-2001
callerid="Ana López" <2001>
mailbox=2001@default
transport=tls,udp
nat=force_rport,comedia
allow=ulaw
allow=alaw

[2002]
host=dynamic
secret=sip-secret-2002

[telco]
type=peer
host=sip.telco.example.bz
""")
    inv = read_one(tmp_path, ("sip", "sip.conf"))
    ana = ext(inv, "2001")
    assert (ana.tech, ana.name, ana.transport, ana.voicemail_box) == ("sip", "Ana López", "tls", "2001@default")
    assert reveal(ana.secret) == "sip-secret-2001"
    assert ana.extra["nat"] == "force_rport,comedia" and ana.extra["allow"] == "ulaw,alaw"
    assert [e.number for e in inv.extensions] == ["2001"]
    assert said(inv) == [
        "sip.conf:15: type: [2002] has no type= (friend, peer or user); chan_sip skips such a section, and so "
        "does this reader",
        "sip.conf:19: [telco]: a peer that is not an extension number (a trunk); not taken"]


def test_sip_conf_md5secret_only_is_a_warning_and_recorded(tmp_path):
    write(tmp_path, "sip.conf", "[2001]\ntype=friend\nmd5secret=0123456789abcdef0123456789abcdef\n")
    inv = read_one(tmp_path, ("sip", "sip.conf"))
    assert said(inv) == [
        "sip.conf:3: md5secret: extension 2001: holds only an MD5 hash of the password (md5secret), no clear "
        "password: the secret can be carried only to a platform with the same realm; elsewhere `voip export` "
        "needs --new-secrets"]
    assert ext(inv, "2001").extra == {"secret_form": "md5secret"}


def test_voicemail_conf_mailboxes_as_app_voicemail_reads_them(tmp_path):
    write(tmp_path, "voicemail.conf", """\
[general]
format=wav49|gsm|wav
attach=yes

[zonemessages]
central=America/Belize|'vm-received' Q 'digits/at' IMp

[default]
2001 => 4321,Ana López,ana.lopez@health.gov.bz,,attach=yes|saycid=no,tz=central
2002 => -9876,Ben Ortiz,,5551234@pager.example.bz
2003 = 1111,Front Desk

[sales]
3001 => 2222,Sales Line,sales@health.gov.bz
""")
    inv = read_one(tmp_path, ("voicemail", "voicemail.conf"))
    ana, ben, desk, sales = (ext(inv, n) for n in ("2001", "2002", "2003", "3001"))
    assert (ana.name, ana.voicemail_box, ana.voicemail_email, reveal(ana.voicemail_pin)) == (
        "Ana López", "2001@default", "ana.lopez@health.gov.bz", "4321")
    assert ana.extra["voicemail_options"] == "attach=yes|saycid=no,tz=central"
    assert reveal(ben.voicemail_pin) == "9876" and ben.extra["voicemail_pin_fixed"] == "yes"
    assert ben.extra["voicemail_pager"] == "5551234@pager.example.bz" and ben.voicemail_email is None
    assert desk.name == "Front Desk" and sales.voicemail_box == "3001@sales"
    assert ana.secret is None and said(inv, "error") == []


def test_a_voicemail_email_that_is_not_an_address_is_a_warning_and_the_box_is_kept(tmp_path):
    write(tmp_path, "voicemail.conf", "[default]\n2001 => 4321,Ana López,ana.lopez at health\n"
                                      "2002 => 7777,Ben,7777\n")
    inv = read_one(tmp_path, ("voicemail", "voicemail.conf"))
    warnings = said(inv, "warning")
    assert warnings[:2] == [
        "voicemail.conf:2: voicemail_email: 'ana.lopez at health' is not an e-mail address (extension 2001); kept, "
        "but voicemail cannot be sent there and it cannot link the extension to a mail user",
        "voicemail.conf:3: voicemail_email: the value is not an e-mail address (extension 2002) and holds the "
        "record's secret: not kept"]
    assert ext(inv, "2001").voicemail_email == "ana.lopez at health"
    assert ext(inv, "2002").voicemail_email is None, "a PIN in the e-mail column never reaches the store"
    assert inv.files == {"voicemail.conf": 2}


def test_the_same_mailbox_in_two_contexts_takes_the_first_and_holds_it(tmp_path):
    write(tmp_path, "voicemail.conf", "[default]\n2001 => 4321,Ana\n[sales]\n2001 => 1234,Sales\n"
                                      "2002 => 5555,Ben\n")
    inv = read_one(tmp_path, ("voicemail", "voicemail.conf"))
    error = ("voicemail.conf:4: number: mailbox 2001 is defined twice: here and at voicemail.conf:2; the one at "
             "voicemail.conf:2 is taken; extension 2001 is held")
    assert said(inv, "error") == [error]
    assert (ext(inv, "2001").voicemail_box, ext(inv, "2001").held) == ("2001@default", [error])
    assert ext(inv, "2002").held == [] and inv.files == {"voicemail.conf": 2}


# --------------------------------------------------------------------------------------------- Kamailio


def ha1(user: str, domain: str, password: str) -> str:
    return hashlib.md5(f"{user}:{domain}:{password}".encode(), usedforsecurity=False).hexdigest()


def test_kamailio_dbtext_subscriber_with_escapes_nulls_and_ha1_only_rows(tmp_path):
    write(tmp_path, "subscriber", (
        "id(int,auto) username(string) domain(string) password(string) ha1(string) ha1b(string) "
        "email_address(string,null) rpid(string,null) \n"
        f"1:2001:health.gov.bz:pa\\:ss\\\\2001:{ha1('2001', 'health.gov.bz', 'pa:ss' + chr(92) + '2001')}:"
        ":ana.lopez@health.gov.bz:\n"
        f"2:2002:health.gov.bz::{ha1('2002', 'health.gov.bz', 'only-hashed-2002')}:::\n"
        f"3:2003:health.gov.bz:kam-secret-2003:{ha1('2003', 'health.gov.bz', 'something-else')}:::\n"
        "\n"
        "4:alice:health.gov.bz:kam-secret-alice::::\n"))
    inv = read_one(tmp_path, ("kamailio-dbtext", "subscriber"))
    assert reveal(ext(inv, "2001").secret) == "pa:ss\\2001"
    assert ext(inv, "2001").link_email == "ana.lopez@health.gov.bz"
    assert ext(inv, "2001").extra == {"kamailio_domain": "health.gov.bz", "id": "1"}
    hashed = ext(inv, "2002")
    assert hashed.secret is None and hashed.extra["secret_form"] == "ha1"
    assert reveal(ext(inv, "2003").secret) == "kam-secret-2003"
    assert said(inv) == [
        "subscriber:3: password: subscriber 2002: only ha1 digests, no clear password: the secret can be carried "
        "only to the same SIP domain (health.gov.bz); elsewhere `voip export` needs --new-secrets",
        "subscriber:4: ha1: subscriber 2003: ha1 does not match the password for domain health.gov.bz; the clear "
        "password is taken",
        "subscriber:6: username: subscriber 'alice' is not an extension number; not taken"]
    assert inv.files == {"subscriber": 3}


@pytest.mark.parametrize(("row", "message"), [
    ("1:2001:health.gov.bz:x\\qy::", "subscriber:3: a backslash that is not one of db_text's escapes "
                                      "(\\: \\\\ \\n \\r \\t \\0); Kamailio refuses such a row; " + LEFT_OUT),
    ("1:2001:health.gov.bz:a:b:c:extra", f"subscriber:3: this row has 7 fields and the header 6 columns; {LEFT_OUT}"),
    ("x:2001:health.gov.bz:secret-here::", f"subscriber:3: id: not an integer in an int column; this row is {LEFT_OUT}"),
])
def test_a_kamailio_row_kamailio_would_refuse_is_left_out_and_its_user_held(tmp_path, row, message):
    write(tmp_path, "subscriber", "id(int,auto) username(string) domain(string) password(string) ha1(string) "
                                  "ha1b(string)\n2:2000:health.gov.bz:good-secret-2000::\n" + row + "\n"
                                  "3:2002:health.gov.bz:good-secret-2002::\n")
    write(tmp_path, "vm.conf", "[default]\n2001 => 1234,Ana\n")
    inv = read_one(tmp_path, ("kamailio-dbtext", "subscriber"), ("voicemail", "vm.conf"))
    held = message + "; extension 2001 is held"
    assert said(inv, "error") == [held]
    assert [e.number for e in inv.extensions] == ["2000", "2001", "2002"] and inv.files["subscriber"] == 2
    assert ext(inv, "2001").held == [held] and ext(inv, "2001").secret is None
    assert "secret-here" not in held


def test_kamailio_csv_export_of_the_subscriber_table(tmp_path):
    write(tmp_path, "subscriber.csv", "ID;USERNAME;DOMAIN;PASSWORD;HA1;HA1B;DATETIME_CREATED\n"
                                      "1;2001;health.gov.bz;kam-secret-2001;;;2024-01-02\n"
                                      f"2;2002;health.gov.bz;;{ha1('2002', 'health.gov.bz', 'x')};;\n")
    inv = read_one(tmp_path, ("kamailio-csv", "subscriber.csv"))
    assert reveal(ext(inv, "2001").secret) == "kam-secret-2001"
    assert ext(inv, "2001").extra["datetime_created"] == "2024-01-02"
    assert ext(inv, "2002").extra["secret_form"] == "ha1"
    assert [p.severity for p in inv.problems] == ["warning"]


# ------------------------------------------------------------------------------------------------ merging


def test_freepbx_pjsip_and_voicemail_merge_into_one_extension_per_number_with_every_origin(tmp_path):
    files = labpbx.write_pbx(tmp_path / "pbx", PEOPLE, seed="merge", source_id="health", domain="health.gov.bz",
                             formats=("freepbx-extensions", "freepbx-dids", "pjsip", "voicemail"))
    proj = project(tmp_path, {"health": files.mapping(tmp_path)})
    inv = read_pbx(proj, proj.source("health"))
    assert said(inv, "error") == [] and said(inv, "warning") == []
    assert_expected(inv, files.expected)
    jose = ext(inv, "2001")
    assert [o.split(":")[0] for o in jose.origins] == [
        "pbx/extensions.csv", "pbx/pjsip.endpoint.conf", "pbx/pjsip.auth.conf", "pbx/pjsip.aor.conf",
        "pbx/voicemail.conf", "pbx/dids.csv", "pbx/dids.csv"]
    assert jose.extra["transport"] == "0.0.0.0-udp" and jose.extra["findmefollow_grptime"] == "20"
    assert jose.callerid == "José Pérez <2001>", "pjsip's caller ID wins over FreePBX's 'device <2001>'"
    assert inv.files["pbx/pjsip.conf"] == len(files.expected)


def test_merge_order_and_conflicting_secrets_are_said_with_both_places_never_the_values(tmp_path):
    write(tmp_path, "extensions.csv", "extension,name,secret,voicemail,voicemail_vmpwd,voicemail_email\n"
                                      "2001,Ana López,csv-secret-AAAA,default,1111,ana@health.gov.bz\n")
    write(tmp_path, "pjsip.conf", "[2001]\ntype=endpoint\nauth=2001-auth\ncallerid=A. Lopez <2001>\n"
                                  "[2001-auth]\ntype=auth\npassword=pjsip-secret-BBBB\n")
    write(tmp_path, "voicemail.conf", "[default]\n2001 => 2222,Ana L,ana.lopez@health.gov.bz\n")
    inv = read_one(tmp_path, ("freepbx-extensions", "extensions.csv"), ("pjsip", "pjsip.conf"),
                   ("voicemail", "voicemail.conf"))
    ana = ext(inv, "2001")
    assert ana.name == "Ana López", "the FreePBX name wins over voicemail's and the caller ID's"
    assert reveal(ana.secret) == "pjsip-secret-BBBB", "the running pjsip.conf wins over the export"
    assert reveal(ana.voicemail_pin) == "2222" and ana.voicemail_email == "ana.lopez@health.gov.bz"
    assert said(inv) == [
        "pjsip.conf:7: secret: extension 2001: the SIP secret here differs from the one at extensions.csv:2; the "
        "one here is taken (pjsip before freepbx-extensions)",
        "voicemail.conf:2: voicemail_email: extension 2001: the voicemail e-mail here differs from the one at "
        "extensions.csv:2; the one here is taken (voicemail before freepbx-extensions)",
        "voicemail.conf:2: voicemail_pin: extension 2001: the voicemail PIN here differs from the one at "
        "extensions.csv:2; the one here is taken (voicemail before freepbx-extensions)"]
    text = " ".join(said(inv)) + repr(inv)
    for value in ("csv-secret-AAAA", "pjsip-secret-BBBB", "1111", "2222"):
        assert value not in text


def test_the_same_number_in_two_files_of_one_family_takes_the_earlier_naming_both(tmp_path):
    write(tmp_path, "a.csv", "extension,name,secret\n2001,Ana,secret-2001-aaaa\n2002,Ben,secret-2002-bbbb\n")
    write(tmp_path, "b.csv", "extension,name,secret\n2003,Cy,secret-2003-cccc\n2002,Ben B,secret-2002-dddd\n")
    inv = read_one(tmp_path, ("freepbx-extensions", "a.csv"), ("freepbx-extensions", "b.csv"))
    error = ("b.csv:3: number: extension 2002 is already defined at a.csv:3; the one there is taken and this one "
             "left out; extension 2002 is held")
    assert said(inv, "error") == [error]
    assert inv.files == {"a.csv": 2, "b.csv": 1}
    assert [e.number for e in inv.extensions] == ["2001", "2002", "2003"], "2003 of the later file is taken"
    assert (ext(inv, "2002").name, ext(inv, "2002").held) == ("Ben", [error])


def test_the_same_did_in_two_dids_files_rejects_the_later(tmp_path):
    write(tmp_path, "ext.csv", "extension,name,secret\n2001,Ana,secret-2001-aaaa\n2002,Ben,secret-2002-bbbb\n")
    write(tmp_path, "dids-a.csv", "extension,destination\n8220101,\"from-did-direct,2001,1\"\n")
    write(tmp_path, "dids-b.csv", "extension,destination\n8220102,\"from-did-direct,2002,1\"\n"
                                  "+5018220101,\"from-did-direct,2002,1\"\n")
    inv = read_one(tmp_path, ("freepbx-extensions", "ext.csv"), ("freepbx-dids", "dids-a.csv"),
                   ("freepbx-dids", "dids-b.csv"))
    error = ("dids-b.csv:3: extension: DID +5018220101 is already routed at dids-a.csv:2; the route there is taken "
             "and this one left out; extension 2001 and 2002 are held")
    assert said(inv, "error") == [error]
    assert (ext(inv, "2001").dids, ext(inv, "2002").dids) == (["+5018220101"], ["+5018220102"])
    assert ext(inv, "2001").held == ext(inv, "2002").held == [error], "both ends of the route are held"
    assert inv.files == {"ext.csv": 2, "dids-a.csv": 1, "dids-b.csv": 1}


def test_a_mailbox_without_a_phone_in_the_device_files_is_kept_with_a_warning(tmp_path):
    write(tmp_path, "ext.csv", "extension,name,secret\n2001,Ana,secret-2001-aaaa\n")
    write(tmp_path, "vm.conf", "[default]\n2001 => 1234,Ana\n2009 => 5678,Old Box\n")
    inv = read_one(tmp_path, ("freepbx-extensions", "ext.csv"), ("voicemail", "vm.conf"))
    assert said(inv) == [
        "vm.conf:3: number: mailbox 2009@default has no extension in ext.csv; kept as an extension without a phone",
        "vm.conf:3: secret: extension 2009 has no SIP secret in any file; `voip export` will need --new-secrets "
        "for it"]
    assert ext(inv, "2009").name == "Old Box"


def test_the_same_number_twice_in_one_file_takes_the_first_and_holds_it(tmp_path):
    write(tmp_path, "a.csv", "extension,name,secret\n2001,Ana,secret-2001-aaaa\n2001,Ana again,secret-2001-bbbb\n"
                             "2002,Ben,secret-2002-cccc\n")
    inv = read_one(tmp_path, ("freepbx-extensions", "a.csv"))
    error = ("a.csv:3: number: extension 2001 is defined twice: here and at a.csv:2; the one at a.csv:2 is taken; "
             "extension 2001 is held")
    assert said(inv, "error") == [error]
    assert (ext(inv, "2001").name, ext(inv, "2001").held) == ("Ana", [error])
    assert ext(inv, "2002").held == [] and inv.files == {"a.csv": 2}


def test_a_kamailio_dbtext_and_csv_of_the_same_table_are_one_family(tmp_path):
    write(tmp_path, "subscriber", "id(int,auto) username(string) domain(string) password(string)\n"
                                  "1:2001:health.gov.bz:kam-secret-2001\n")
    write(tmp_path, "subscriber.csv", "id,username,domain,password\n1,2001,health.gov.bz,kam-secret-2001\n")
    inv = read_one(tmp_path, ("kamailio-dbtext", "subscriber"), ("kamailio-csv", "subscriber.csv"))
    assert said(inv, "error") == ["subscriber.csv:2: number: extension 2001 is already defined at subscriber:2; "
                                  "the one there is taken and this one left out; extension 2001 is held"]


def test_the_same_number_in_two_ministries_sharing_a_dial_plan(tmp_path):
    write(tmp_path, "health/ext.csv", "extension,name,secret\n2001,Ana,secret-2001-aaaa\n2002,Ben,secret-2002-bbbb\n")
    write(tmp_path, "health/vm.conf", "[default]\n2001 => 1234,Ana\n")
    write(tmp_path, "education/ext.csv", "extension,name,secret\n3001,Cy,secret-3001-cccc\n")
    write(tmp_path, "education/pjsip.conf", "[2002]\ntype=endpoint\n[3002]\ntype=endpoint\n")
    write(tmp_path, "finance/ext.csv", "extension,name,secret\n2001,Di,secret-2001-dddd\n")
    proj = project(tmp_path, {
        "health": inputs(("freepbx-extensions", "health/ext.csv"), ("voicemail", "health/vm.conf"),
                         dial_plan="gov"),
        "education": inputs(("freepbx-extensions", "education/ext.csv"), ("pjsip", "education/pjsip.conf"),
                            dial_plan="gov"),
        "finance": inputs(("freepbx-extensions", "finance/ext.csv")),
    })
    inventories = [read_pbx(proj, proj.source(s)) for s in ("education", "health", "finance")]
    problems = check_dial_plans(inventories, proj)
    left = ("education/pjsip.conf:1: number: extension 2002 is also defined by source health at health/ext.csv:3, "
            "and both number in dial plan 'gov': the one of source health is taken (held) and this one left out")
    held = ("health/ext.csv:3: number: extension 2002 is also defined by source education at education/pjsip.conf:1, "
            "and both number in dial plan 'gov': this one is taken and held until one of the files is fixed")
    assert [str(p) for p in problems] == [left, held]
    education, health, finance = inventories
    assert education.files == {"education/ext.csv": 1, "education/pjsip.conf": 1}
    assert [e.number for e in education.extensions] == ["3001", "3002"], "only 2002 is left out"
    assert left in said(education) and held in said(health)
    assert [e.number for e in health.extensions] == ["2001", "2002"], "the earlier source keeps its own"
    assert ext(health, "2002").held == [held] and ext(health, "2001").held == []
    assert [e.number for e in finance.extensions] == ["2001"], "finance numbers in a dial plan of its own"


def test_check_dial_plans_leaves_out_clashing_extensions_of_an_inventory_built_elsewhere(tmp_path):
    write(tmp_path, "h.csv", "extension\n")
    write(tmp_path, "e.csv", "extension\n")
    proj = project(tmp_path, {"health": inputs(("freepbx-extensions", "h.csv"), dial_plan="gov"),
                              "education": inputs(("freepbx-extensions", "e.csv"), dial_plan="gov")})
    health = PbxInventory("health", [Extension("health", "gov", "2001", origins=["h.csv:2"])])
    education = PbxInventory("education", [Extension("education", "gov", "2001", origins=["e.csv:5"]),
                                           Extension("education", "gov", "2002", origins=["e.csv:6"])])
    problems = check_dial_plans([health, education], proj)
    assert [str(p) for p in problems] == [
        "e.csv:5: number: extension 2001 is also defined by source health at h.csv:2, and both number in dial plan "
        "'gov': the one of source health is taken (held) and this one left out",
        "h.csv:2: number: extension 2001 is also defined by source education at e.csv:5, and both number in dial "
        "plan 'gov': this one is taken and held until one of the files is fixed"]
    assert [e.number for e in education.extensions] == ["2002"]
    assert health.extensions[0].held == [str(problems[1])]


# ------------------------------------------------------------------------------------------- encodings


def test_latin1_names_are_read_right_and_the_file_is_named_in_a_warning(tmp_path):
    files = labpbx.write_pbx(tmp_path / "pbx", PEOPLE, seed="latin", source_id="health", domain="health.gov.bz",
                             formats=("freepbx-extensions", "voicemail"), latin1=("freepbx-extensions", "voicemail"))
    proj = project(tmp_path, {"health": files.mapping(tmp_path)})
    inv = read_pbx(proj, proj.source("health"))
    assert "José Pérez".encode("cp1252") in files.path("voicemail").read_bytes()
    assert ext(inv, "2001").name == "José Pérez" and ext(inv, "2005").name == "Zoë Müller"
    warnings = said(inv, "warning")
    assert [w.split(":")[0] for w in warnings] == ["pbx/extensions.csv", "pbx/voicemail.conf"]
    assert all("read as Windows-1252 (Latin-1)" in w for w in warnings)
    assert_expected(inv, files.expected)


def test_an_explicit_encoding_reads_without_a_warning(tmp_path):
    write(tmp_path, "vm.conf", "[default]\n2001 => 1234,José Pérez\n", encoding="latin-1")
    inv = read_one(tmp_path, ("voicemail", "vm.conf"), encoding="latin-1")
    assert ext(inv, "2001").name == "José Pérez"
    assert said(inv, "error") + said(inv, "warning") == ["vm.conf:2: secret: extension 2001 has no SIP secret in "
                                                         "any file; `voip export` will need --new-secrets for it"]


@pytest.mark.parametrize(("data", "encoding", "message"), [
    ("[default]\n2001 => 1234,José\n".encode("latin-1"), "utf-8",
     "vm.conf:2: encoding: not utf-8 text (byte 0xE9); save the file as utf-8 or set encoding: auto"),
    (b"[default]\n2001 => 1234,Jos\x81\n", "auto",
     "vm.conf:2: encoding: neither UTF-8 nor Windows-1252 text (byte 0x81); save the file as UTF-8, or name its "
     "encoding in the project file"),
    ("[default]\n2001 => 1234,José\n".encode("utf-16"), "auto",
     "vm.conf:1: encoding: the file is UTF-16 or UTF-32 (a byte order mark says so); save it as UTF-8"),
    (b"[default]\n2001 => 1234,\x00Jose\n", "auto", "vm.conf:2: encoding: the file holds NUL bytes: not a text file"),
])
def test_an_undecodable_file_is_an_error_and_contributes_nothing(tmp_path, data, encoding, message):
    (tmp_path / "vm.conf").write_bytes(data)
    inv = read_one(tmp_path, ("voicemail", "vm.conf"), encoding=encoding)
    assert said(inv, "error") == [message]
    assert inv.extensions == [] and inv.files == {"vm.conf": 0}


def test_a_utf8_byte_order_mark_is_dropped(tmp_path):
    write(tmp_path, "ext.csv", "\ufeffextension,name,secret\r\n2001,José Pérez,secret-2001-aaaa\r\n")
    inv = read_one(tmp_path, ("freepbx-extensions", "ext.csv"))
    assert said(inv) == [] and ext(inv, "2001").name == "José Pérez"


def test_a_row_whose_cells_do_not_match_the_header_is_left_out_and_its_extension_held(tmp_path):
    write(tmp_path, "ext.csv", "extension,name,secret\n2001,Ana,secret-2001-aaaa\n2002,Ben\n2003,Cy,secret-2003-c\n")
    write(tmp_path, "vm.conf", "[default]\n2002 => 1234,Ben\n")
    inv = read_one(tmp_path, ("freepbx-extensions", "ext.csv"), ("voicemail", "vm.conf"))
    error = (f"ext.csv:3: this row has 2 cells and the header 3 (FreePBX's importer refuses such a row too); "
             f"{LEFT_OUT}; extension 2002 is held")
    assert said(inv, "error") == [error]
    assert [e.number for e in inv.extensions] == ["2001", "2002", "2003"] and ext(inv, "2002").held == [error]


# --------------------------------------------------------------------------------------------- secrets


def test_an_extension_without_a_secret_is_kept_with_a_warning(tmp_path):
    write(tmp_path, "pjsip.conf", "[2001]\ntype=endpoint\nauth=2001-auth\ncallerid=Ana <2001>\n")
    inv = read_one(tmp_path, ("pjsip", "pjsip.conf"))
    assert said(inv) == [
        "pjsip.conf:3: auth: endpoint 2001 names auth [2001-auth], which no file read defines; it has no secret "
        "here",
        "pjsip.conf:1: secret: extension 2001 has no SIP secret in any file; `voip export` will need "
        "--new-secrets for it"]
    assert [p.severity for p in inv.problems] == ["warning", "warning"]
    assert ext(inv, "2001").secret is None and inv.files == {"pjsip.conf": 1}


SECRETS = ("Zq9-secret-csv", "Zq9-secret-pjsip", "Zq9-secret-sip", "Zq9-secret-kam", "Zq9-pin-8642",
           "Zq9-pin-9753")


def test_secrets_never_appear_in_problems_reprs_or_the_redactor(tmp_path):
    # Every kind of problem, on files full of secrets, some in the wrong place.
    write(tmp_path, "ext.csv", "extension,name,secret,voicemail,voicemail_vmpwd,voicemail_email\n"
                               f"2001,Ana,{SECRETS[0]},default,{SECRETS[4]},{SECRETS[4]}\n"
                               f"2001,Ana,{SECRETS[0]},default,{SECRETS[4]},x\n")
    write(tmp_path, "pjsip.conf", f"[2001-auth]\npassword={SECRETS[1]}\n{SECRETS[1]}\n[x\npassword {SECRETS[1]}\n")
    write(tmp_path, "sip.conf", f"password={SECRETS[2]}\n[2002]\ntype=friend\nsecret={SECRETS[2]}\n"
                                f"[2003]\nsecret={SECRETS[2]}\n")
    write(tmp_path, "subscriber", "id(int) username(string) password(string) ha1(string)\n"
                                  f"1:2004:{SECRETS[3]}:{'0' * 32}\n2:2004:{SECRETS[3]}\\q:\n")
    write(tmp_path, "vm.conf", f"[default]\n2001 => {SECRETS[5]},Ana,{SECRETS[5]}\n2002 => {SECRETS[5]}\n"
                               f"{SECRETS[5]}\n")
    write(tmp_path, "ok.conf", f"[default]\n2005 => {SECRETS[5]},Eve,eve@health.gov.bz\n")
    inv = read_one(tmp_path, ("freepbx-extensions", "ext.csv"), ("pjsip", "pjsip.conf"), ("sip", "sip.conf"),
                   ("kamailio-dbtext", "subscriber"), ("voicemail", "vm.conf"), ("voicemail", "ok.conf"))
    assert len(inv.errors) >= 6
    everything = "\n".join([*said(inv), repr(inv), *(repr(e) for e in inv.extensions),
                            *(str(e.extra) for e in inv.extensions)])
    for value in SECRETS:
        assert value not in everything
    assert not set(SECRETS) & redaction._known, "PBX secrets are never registered with the redactor"
    assert reveal(ext(inv, "2005").voicemail_pin) == SECRETS[5], "the secret is there, only hidden"


# ------------------------------------------------------------------------------ faults of real exports (issue 24)

NEWLINE_NAME = "Ana\r\nLópez"
YAML_NAME = "Reception: main #1 white_glove: true"


@pytest.mark.parametrize("conf", ["sip", "pjsip"])
def test_exports_with_faults_lose_no_good_row_and_hold_what_the_faults_concern(tmp_path, conf):
    """One DID too short among good ones, one phone's section defined twice, names holding CR/LF or ': ' and '#',
    a fax line that is a custom device: every good row is read, each fault is an error at its file and line (or,
    for the fax, no fault at all), and the extensions the errors concern are held."""
    faults = labpbx.Faults(bad_did=True, duplicate_section=True, names=((0, NEWLINE_NAME), (2, YAML_NAME)),
                           fax_custom=True)
    files = labpbx.write_pbx(tmp_path / "pbx", PEOPLE, seed="faults", source_id="finance", domain="finance.gov.bz",
                             formats=("freepbx-extensions", "freepbx-dids", conf, "voicemail"), faults=faults)
    proj = project(tmp_path, {"finance": files.mapping(tmp_path)})
    inv = read_pbx(proj, proj.source("finance"))
    assert_expected(inv, files.expected)
    assert len(inv.extensions) == len(PEOPLE) + 3, "the Ministry of Finance keeps every extension"
    phones_in_conf = len(files.expected) - 1  # all but the fax, a custom device
    assert inv.files == {"pbx/extensions.csv": len(files.expected), "pbx/dids.csv": sum(
        len(e.dids) for e in files.expected.values()), f"pbx/{conf}.conf": phones_in_conf,
        "pbx/voicemail.conf": sum(1 for e in files.expected.values() if e.voicemail_box)}, "every good row is taken"
    did_at, (first, second) = files.faults["bad_did"], files.faults["duplicate_section"].split(" and ")
    twice, did_owner = files.faults["duplicate_of"], files.faults["bad_did_for"]
    winner = second if conf == "sip" else first
    why = " (chan_sip applies the sections of one name in order: the later one wins)" if conf == "sip" else ""
    duplicate = (f"pbx/{second}: number: extension {twice} is defined twice: here and at pbx/{first}; the one at "
                 f"pbx/{winner} is taken{why}; extension {twice} is held") if conf == "sip" else (
        f"pbx/{second}: [{twice}]: a second type=endpoint [{twice}]: the first, at pbx/{first}, is taken and this "
        f"one left out; extension {twice} is held")
    bad_did = (f"pbx/{did_at}: extension: DID '12' is not a valid number in region BZ (+501); this row is "
               f"{LEFT_OUT}; extension {did_owner} is held")
    assert said(inv, "error") == [bad_did, duplicate]
    assert ext(inv, did_owner).held == [bad_did] and ext(inv, twice).held == [duplicate]
    assert ext(inv, "2001").name == NEWLINE_NAME and ext(inv, "2003").name == YAML_NAME, "names are data, intact"
    fax = ext(inv, files.faults["fax"])
    assert (fax.tech, fax.secret, fax.held) == ("custom", None, [])
    assert not [w for w in said(inv, "warning") if files.faults["fax"] in w], "a fax needs no SIP secret"


# ------------------------------------------------------------------------------------------ the lab files


@pytest.mark.parametrize("formats", [
    ("freepbx-extensions", "freepbx-dids"),
    ("pjsip", "voicemail", "freepbx-dids"),
    ("sip", "voicemail"),
    ("kamailio-dbtext",),
    ("kamailio-csv", "voicemail"),
    ("voicemail",),
])
def test_generated_lab_pbx_files_read_as_the_generator_says(tmp_path, formats):
    files = labpbx.write_pbx(tmp_path / "pbx" / "health", PEOPLE, seed="lab", source_id="health",
                             domain="health.gov.bz", formats=formats, upper_case_headers=True)
    proj = project(tmp_path, {"health": files.mapping(tmp_path)})
    inv = read_pbx(proj, proj.source("health"))
    assert said(inv, "error") == []
    assert_expected(inv, files.expected)
    unlinked = [e.number for e in files.expected.values() if e.user is None]
    assert len(unlinked) == (1 if formats == ("voicemail",) else 3), "Reception, Conference Room 2, Fax"
    links = {e.link for e in files.expected.values() if e.user}
    if "freepbx-extensions" in formats or "voicemail" in formats:
        assert links == {"email", "name"}, "both kinds of link are in the lab"


def test_lab_files_are_deterministic_and_follow_the_corpus(tmp_path):
    from tests.lab import corpus

    boxes = corpus.ministry(seed="pbx", domain="education.gov.bz", users=6, messages=2, edge_cases=False)
    one = labpbx.write_pbx(tmp_path / "a", boxes, seed="s1", source_id="education", domain="education.gov.bz",
                           formats=("freepbx-extensions", "freepbx-dids", "voicemail"), first=3001)
    two = labpbx.write_pbx(tmp_path / "b", boxes, seed="s1", source_id="education", domain="education.gov.bz",
                           formats=("freepbx-extensions", "freepbx-dids", "voicemail"), first=3001)
    assert one.expected == two.expected
    for fmt, path, _ in one.inputs:
        assert path.read_bytes() == two.path(fmt).read_bytes()
    users = [e for e in one.expected.values() if e.user]
    assert [e.user for e in users] == [b.email for b in boxes]
    assert all(e.email == e.user for e in users if e.link == "email")
    assert all(e.name == next(b.display_name for b in boxes if b.email == e.user) for e in users)
    assert any(e.dids for e in users) and one.main_number.startswith("+501")


def test_the_pbx_mapping_lands_in_a_lab_workspace_and_loads(tmp_path):
    ws = tmp_path / "ws"
    project(ws, {"health": None, "education": None})
    files = labpbx.write_pbx(ws / "pbx" / "health", PEOPLE, seed="ws", source_id="health", domain="health.gov.bz",
                             formats=("freepbx-extensions", "freepbx-dids", "pjsip"), dial_plan="gov")
    labpbx.add_pbx(ws, "health", files)
    proj = load_project(ws / "migration.yaml")
    section = proj.source("health").pbx
    assert section.dial_plan == "gov"
    assert [(i.format, i.path) for i in section.inputs] == [
        ("freepbx-extensions", "pbx/health/extensions.csv"), ("freepbx-dids", "pbx/health/dids.csv"),
        ("pjsip", "pbx/health/pjsip.conf")]
    assert proj.source("education").pbx is None
    inv = read_pbx(proj, proj.source("health"))
    assert {e.dial_plan for e in inv.extensions} == {"gov"}
    assert_expected(inv, files.expected)
    assert read_pbx(proj, proj.source("education")).extensions == []


def assert_expected(inv: PbxInventory, expected: dict[str, labpbx.ExpectedExtension]) -> None:
    assert [e.number for e in inv.extensions] == sorted(expected, key=lambda n: (len(n), n))
    for number, want in expected.items():
        got = ext(inv, number)
        assert (got.name, reveal(got.secret), reveal(got.voicemail_pin), tuple(got.dids), got.voicemail_email,
                got.tech, got.voicemail_box, bool(got.held)) == (
            want.name, want.secret, want.pin, want.dids, want.email, want.tech, want.voicemail_box, want.held), number
