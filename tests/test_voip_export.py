"""The provisioning export: FreePBX Bulk Handler files FreePBX's own import checks accept, Kamailio tables that a
real Kamailio loads and that make every exported extension register (checked with sipsak), a complete neutral
CSV, files that are 0600 from the moment they exist, PBX strings that stay data, and secrets that are carried,
made new, or refused."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from migrate.cli.output import csv_cell
from migrate.core.secrets import Secret
from migrate.voip import export
from migrate.voip.export import ExportError, write_csv, write_freepbx, write_kamailio
from migrate.voip.model import PHONE, Extension, line_kind
from tests.lab.kamailio import (
    DBTEXT_TEMPLATES,
    DOMAIN,
    KamailioConfig,
    digest_register,
    sipsak,
    start_kamailio,
)

HOSTILE_NAME = '=HYPERLINK("http://evil.example/","click")'
COLON_NAME = "Reception: front desk\nline 2"


def secret(value: str) -> Secret:
    return Secret(value, "pbx", remember=False)


def extensions() -> list[Extension]:
    """A ministry's PBX as the readers will hand it over: people, a hostile name, a virtual extension, a fax line
    (a custom dial string: not a SIP phone)."""
    return [
        Extension("health", "health", "2001", "Jane Doe", tech="pjsip", transport="udp",
                  secret=secret("Jane-SIP-pass-2001"), dids=["+5012223001", "+5012223002"],
                  voicemail_box="2001", voicemail_pin=secret("4821"), voicemail_email="jane.doe@health.gov.bz",
                  outbound_cid='"Health" <+5012223000>', device="Yealink T46U", link_email="jane.doe@health.gov.bz",
                  origins=["pjsip.conf:12", "voicemail.conf:4"], extra={"context": "from-internal"}),
        Extension("health", "health", "2002", "José Pérez", tech="sip", secret=secret("Jose.sip.pass.2002"),
                  dids=["+5012223003"], origins=["sip.conf:30"]),
        Extension("health", "health", "2003", COLON_NAME, tech="pjsip", secret=secret("front:desk\\pass"),
                  callerid='"Front desk" <2003>'),
        Extension("health", "health", "2004", HOSTILE_NAME, tech="pjsip", secret=secret("hostile-name-pass"),
                  voicemail_box="2004", voicemail_pin=secret("9911"), voicemail_email="@evil.example"),
        Extension("health", "health", "2099", "Lobby ring group", tech="virtual", dids=["+5012223099"]),
        Extension("finance", "finance", "3001", "-Finance Director", tech="sip", secret=secret("finance-3001-pw")),
        Extension("health", "health", "2098", "Fax", tech="custom", dids=["+5012223098"],
                  extra={"dial": "DAHDI/g0/2098"}),
    ]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def registering(exts: list[Extension]) -> list[Extension]:
    return [e for e in exts if line_kind(e.tech) == PHONE]


FAX = {"health:2098": "not a SIP phone (custom): moved by hand, no account on the platform"}


# -- FreePBX ---------------------------------------------------------------------------------------------------


def freepbx_would_import(path: Path) -> list[dict[str, str]]:
    """FreePBX's own checks on an extensions file, as Bulkhandler::fileToArray and Core/Voicemail's
    bulkhandlerValidate make them: lower-cased header, every row as long as the header, a numeric extension,
    a name, a known technology, and a PIN for every enabled voicemail box."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header = [h.lower() for h in rows[0]]
    records = []
    for row in rows[1:]:
        assert len(row) == len(header), "Header row and data row count do not match"
        record = dict(zip(header, row, strict=True))
        assert record["extension"] and record["extension"].isdigit(), "Extension is not numeric."
        assert record["name"], "Extension name is blank."
        assert record["tech"] in ("pjsip", "sip", "virtual", "iax2", "dahdi", "custom")
        if record["voicemail_enable"].lower() == "yes":
            assert record["voicemail_vmpwd"], "Voicemail Password is empty."
        records.append(record)
    return records


def test_freepbx_extensions_csv_has_the_columns_freepbx_imports_and_one_row_per_extension(tmp_path):
    exts = extensions()
    result = write_freepbx(exts, tmp_path / "fp")
    assert result.files == [tmp_path / "fp" / "extensions.csv", tmp_path / "fp" / "dids.csv"]
    rows = freepbx_would_import(result.files[0])
    assert [r["extension"] for r in rows] == [e.number for e in exts if e.key not in FAX]
    assert result.by_hand == FAX, "the fax line gets no account: it is moved by hand"
    for column in ("extension", "name", "tech", "secret", "callerid", "outboundcid", "voicemail",
                   "voicemail_enable", "voicemail_vmpwd", "voicemail_email"):
        assert column in rows[0]
    jane, jose, _, _, lobby, finance = rows
    assert jane["secret"] == "Jane-SIP-pass-2001" and jane["tech"] == "pjsip"
    assert (jane["voicemail"], jane["voicemail_enable"], jane["voicemail_vmpwd"], jane["voicemail_email"]) == \
        ("default", "yes", "4821", "jane.doe@health.gov.bz")
    assert jane["callerid"] == '"Jane Doe" <2001>' and jane["outboundcid"] == '"Health" <+5012223000>'
    assert jose["name"] == "José Pérez" and jose["tech"] == "pjsip"  # chan_sip becomes pjsip on the platform
    assert (jose["voicemail"], jose["voicemail_enable"], jose["voicemail_vmpwd"]) == ("novm", "", "")
    assert (lobby["tech"], lobby["secret"]) == ("virtual", "")
    assert finance["tech"] == "pjsip" and finance["secret"] == "finance-3001-pw"  # chan_sip: pjsip too
    assert result.new_secrets == {} and result.new_pins == {}


def test_freepbx_dids_csv_routes_every_did_to_its_extension(tmp_path):
    result = write_freepbx(extensions(), tmp_path / "fp")
    rows = read_csv(result.files[1])
    assert list(rows[0]) == ["description", "extension", "cidnum", "destination"]
    routes = {r["extension"]: r["destination"] for r in rows}
    assert routes == {"+5012223001": "from-did-direct,2001,1", "+5012223002": "from-did-direct,2001,1",
                      "+5012223003": "from-did-direct,2002,1", "+5012223099": "from-did-direct,2099,1"}
    assert len(rows) == 4 and all(r["cidnum"] == "" for r in rows)
    assert rows[0]["description"] == "Jane Doe (2001)"


def test_freepbx_export_takes_two_paths_too(tmp_path):
    result = write_freepbx(extensions(), (tmp_path / "a" / "ext.csv", tmp_path / "b" / "did.csv"))
    assert result.files == [tmp_path / "a" / "ext.csv", tmp_path / "b" / "did.csv"]
    assert all(p.exists() for p in result.files)


def test_freepbx_hostile_names_stay_data(tmp_path):
    rows = read_csv(write_freepbx(extensions(), tmp_path / "fp").files[0])
    by_number = {r["extension"]: r for r in rows}
    assert by_number["2004"]["name"] == "'" + HOSTILE_NAME
    assert by_number["2004"]["callerid"] == "\"=HYPERLINK(http://evil.example/,click)\" <2004>"
    assert by_number["2004"]["voicemail_email"] == "'@evil.example"
    assert by_number["3001"]["name"] == "'-Finance Director"
    # A newline in a name would start a new line of the configuration FreePBX writes from it.
    assert by_number["2003"]["name"] == "Reception: front desk line 2"
    assert by_number["2003"]["callerid"] == '"Front desk" <2003>'  # the PBX's own caller ID, kept
    for row in rows:
        for column, cell in row.items():
            if column != "secret":
                assert not cell.startswith(export.FORMULA_STARTS), (column, cell)


def test_a_name_cannot_bring_a_caller_id_number_of_its_own(tmp_path):
    ext = Extension("health", "health", "2005", 'Boss" <911> "', secret=secret("boss-password-1"))
    row = read_csv(write_freepbx([ext], tmp_path / "fp").files[0])[0]
    assert row["callerid"] == '"Boss 911" <2005>'


def test_freepbx_refuses_a_voicemail_box_without_a_pin_unless_new_secrets(tmp_path):
    exts = extensions()
    exts[1].voicemail_box = "2002"
    with pytest.raises(ExportError, match=r"without a PIN.*health:2002 \(José Pérez\)"):
        write_freepbx(exts, tmp_path / "fp")
    assert not (tmp_path / "fp").exists() or not list((tmp_path / "fp").iterdir())
    result = write_freepbx(exts, tmp_path / "fp", new_secrets=True)
    assert set(result.new_pins) == {"health:2002"}
    pin = result.new_pins["health:2002"].reveal()
    assert re.fullmatch(r"[0-9]{6}", pin)
    row = next(r for r in read_csv(result.files[0]) if r["extension"] == "2002")
    assert (row["voicemail_enable"], row["voicemail_vmpwd"]) == ("yes", pin)
    # The PINs users know are kept: only the missing one is new.
    assert next(r for r in read_csv(result.files[0]) if r["extension"] == "2001")["voicemail_vmpwd"] == "4821"


def test_freepbx_refuses_extension_numbers_it_cannot_import(tmp_path):
    ext = Extension("health", "health", "reception", "Reception", secret=secret("reception-pass-1"))
    with pytest.raises(ExportError, match=r"health:reception.*digits only"):
        write_freepbx([ext], tmp_path / "fp")


def test_freepbx_regen_is_not_taken_as_a_password(tmp_path):
    ext = Extension("health", "health", "2001", "Jane", secret=secret("REGEN"))
    with pytest.raises(ExportError, match="REGEN"):
        write_freepbx([ext], tmp_path / "fp")


# -- Kamailio --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registrar():
    server = start_kamailio(KamailioConfig(name="export"))
    yield server
    server.cleanup()


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def dbtext_rows(path: Path) -> tuple[str, list[list[str]]]:
    """A db_text table read back the way Kamailio's dbt_load_file reads it: fields split at unescaped ':'."""
    header, *lines = path.read_text(encoding="utf-8").split("\n")
    rows = []
    for line in lines:
        if not line:
            continue
        fields, current, chars = [], [], iter(line)
        for char in chars:
            if char == "\\":
                current.append({"n": "\n", "r": "\r", "t": "\t", "\\": "\\", ":": ":", "0": "\0"}[next(chars)])
            elif char == ":":
                fields.append("".join(current))
                current = []
            else:
                current.append(char)
        fields.append("".join(current))
        rows.append(fields)
    return header, rows


def columns(header: str) -> list[tuple[str, str]]:
    return re.findall(r"(\w+)\(([^)]*)\)", header)


def test_kamailio_tables_are_debians_definitions_with_ha1_and_no_clear_password(tmp_path):
    exts = extensions()
    result = write_kamailio(exts, tmp_path / "k", domain=DOMAIN)
    assert result.files == [tmp_path / "k" / "subscriber", tmp_path / "k" / "dbaliases", tmp_path / "k" / "version"]
    assert result.skipped == {"health:2099": "a virtual extension cannot register"}
    assert result.by_hand == FAX
    header, rows = dbtext_rows(tmp_path / "k" / "subscriber")
    template = columns((DBTEXT_TEMPLATES / "subscriber").read_text().splitlines()[0])
    ours = columns(header)
    assert [name for name, _ in ours] == [name for name, _ in template]
    assert ours == [(n, "string,null" if n == "password" else t) for n, t in template]
    for table in ("dbaliases", "version"):
        assert columns((tmp_path / "k" / table).read_text().splitlines()[0]) == \
            columns((DBTEXT_TEMPLATES / table).read_text().splitlines()[0])
    by_user = {row[1]: row for row in rows}
    assert sorted(by_user) == sorted(e.number for e in registering(exts))
    for ext in registering(exts):
        _, user, domain, password, ha1, ha1b = by_user[ext.number]
        assert (user, domain, password) == (ext.number, DOMAIN, "")  # password NULL: nothing between the ':'
        assert ha1 == md5(f"{ext.number}:{DOMAIN}:{ext.secret.reveal()}")
        assert ha1b == md5(f"{ext.number}@{DOMAIN}:{DOMAIN}:{ext.secret.reveal()}")
    _, versions = dbtext_rows(tmp_path / "k" / "version")
    assert {(t, v) for _, t, v in versions} == {("version", "1"), ("subscriber", "7"), ("dbaliases", "1")}


def test_no_exported_kamailio_file_holds_a_clear_password(tmp_path):
    exts = extensions()
    write_kamailio(exts, tmp_path / "k", domain=DOMAIN)
    for path in (tmp_path / "k").iterdir():
        text = path.read_text()
        for ext in registering(exts):
            assert ext.secret.reveal() not in text, path.name


def test_kamailio_aliases_map_every_did_to_its_extension(tmp_path):
    write_kamailio(extensions(), tmp_path / "k", domain=DOMAIN)
    _, rows = dbtext_rows(tmp_path / "k" / "dbaliases")
    assert {(r[1], r[2], r[3], r[4]) for r in rows} == {
        ("+5012223001", DOMAIN, "2001", DOMAIN), ("+5012223002", DOMAIN, "2001", DOMAIN),
        ("+5012223003", DOMAIN, "2002", DOMAIN)}  # the virtual extension's and the fax's DIDs have none to go to


@pytest.mark.lab
def test_kamailio_loads_the_export_and_every_extension_registers_with_its_secret(registrar, tmp_path):
    exts = extensions()
    registrar.load(write_kamailio(exts, tmp_path / "k", domain=DOMAIN).files[0].parent)
    for ext in registering(exts):
        run = sipsak(registrar, ext.number, ext.secret.reveal())
        assert run.statuses == [401, 200], (ext.key, run.output)
        assert sipsak(registrar, ext.number, ext.secret.reveal() + "x").statuses == [401, 403]
    jane = exts[0].secret.reveal()
    for transport in ("tcp", "tls"):
        assert sipsak(registrar, "2001", jane, transport=transport).registered
    assert [r.status for r in digest_register(registrar, "2001", jane)] == [401, 200]
    # A user agent that puts the domain in the digest user name makes Kamailio check ha1b instead of ha1:
    assert sipsak(registrar, "2001", jane, auth_user=f"2001@{DOMAIN}").registered
    assert sipsak(registrar, "2099", "anything-at-all").statuses == [401, 403]  # virtual: not provisioned
    for did, target in (("+5012223001", "2001"), ("+5012223002", "2001"), ("+5012223003", "2002")):
        reply = registrar.options(f"sip:{did}@{DOMAIN}")
        assert (reply.status, reply.header("X-Govlab-Target")) == (200, target)


@pytest.mark.lab
def test_kamailio_starts_on_the_export_directory_itself(tmp_path):
    exts = extensions()
    out = tmp_path / "k"
    write_kamailio(exts, out, domain=DOMAIN)
    server = start_kamailio(KamailioConfig(name="on-export"), db=out)
    try:
        for ext in registering(exts):
            assert sipsak(server, ext.number, ext.secret.reveal()).registered, ext.key
    finally:
        server.cleanup()


@pytest.mark.lab
def test_an_export_for_another_domain_does_not_authenticate(registrar, tmp_path):
    exts = extensions()
    registrar.load(write_kamailio(exts, tmp_path / "k", domain="other.gov.bz").files[0].parent)
    assert sipsak(registrar, "2001", exts[0].secret.reveal()).statuses == [401, 403]


@pytest.mark.lab
def test_new_secrets_replace_the_old_ones_in_kamailio(registrar, tmp_path):
    exts = extensions()
    result = write_kamailio(exts, tmp_path / "k", domain=DOMAIN, new_secrets=True)
    assert set(result.new_secrets) == {e.key for e in registering(exts)}
    registrar.load(tmp_path / "k")
    for ext in registering(exts):
        new = result.new_secrets[ext.key]
        assert re.fullmatch(r"[A-Za-z0-9]{24}", new.reveal()) and new.reveal() != ext.secret.reveal()
        assert "***" in repr(new) and new.reveal() not in repr(new)
        assert sipsak(registrar, ext.number, new.reveal()).registered, ext.key
        assert sipsak(registrar, ext.number, ext.secret.reveal()).statuses == [401, 403]
    assert len({s.reveal() for s in result.new_secrets.values()}) == len(result.new_secrets)


@pytest.mark.lab
def test_a_sha256_export_works_with_a_sha256_registrar(tmp_path):
    exts = extensions()[:1]
    write_kamailio(exts, tmp_path / "k", domain=DOMAIN, algorithm="SHA-256")
    _, rows = dbtext_rows(tmp_path / "k" / "subscriber")
    assert rows[0][4] == hashlib.sha256(f"2001:{DOMAIN}:Jane-SIP-pass-2001".encode()).hexdigest()
    server = start_kamailio(KamailioConfig(name="sha256-export", algorithm="SHA-256"), db=tmp_path / "k")
    try:
        replies = digest_register(server, "2001", "Jane-SIP-pass-2001", algorithm="SHA-256")
        assert [r.status for r in replies] == [401, 200]
    finally:
        server.cleanup()


def test_the_same_new_secrets_go_into_every_format(tmp_path):
    exts = extensions()
    made = write_kamailio(exts, tmp_path / "k", domain=DOMAIN, new_secrets=True).new_secrets
    write_freepbx(exts, tmp_path / "fp", secrets=made)
    write_csv(exts, tmp_path / "x.csv", secrets=made)
    fp = {r["extension"]: r["secret"] for r in read_csv(tmp_path / "fp" / "extensions.csv")}
    neutral = {r["key"]: (r["secret"], r["secret_origin"]) for r in read_csv(tmp_path / "x.csv")}
    _, rows = dbtext_rows(tmp_path / "k" / "subscriber")
    ha1s = {r[1]: r[4] for r in rows}
    for ext in registering(exts):
        new = made[ext.key].reveal()
        assert fp[ext.number] == new and neutral[ext.key] == (new, "given")
        assert ha1s[ext.number] == md5(f"{ext.number}:{DOMAIN}:{new}")


def test_dbtext_values_are_escaped_as_kamailio_reads_them(tmp_path):
    nasty = "a:b\\c\nd\re\tf\0g"
    escaped = export.dbtext_value(nasty)
    assert escaped == "a\\:b\\\\c\\nd\\re\\tf\\0g"
    assert "\n" not in escaped and ":" not in escaped.replace("\\:", "")
    (tmp_path / "t").write_text("id(int,auto) name(string)\n1:" + escaped + "\n")
    assert dbtext_rows(tmp_path / "t")[1] == [["1", nasty]]


def test_a_colon_in_a_secret_does_not_break_a_kamailio_row(tmp_path):
    exts = extensions()
    write_kamailio(exts, tmp_path / "k", domain=DOMAIN)
    _, rows = dbtext_rows(tmp_path / "k" / "subscriber")
    assert all(len(row) == 6 for row in rows)
    row = next(r for r in rows if r[1] == "2003")
    assert row[4] == md5(f"2003:{DOMAIN}:front:desk\\pass")


# -- the neutral CSV -------------------------------------------------------------------------------------------


def test_every_neutral_csv_column_is_documented_in_the_module_docstring():
    documented = re.findall(r"^``(\w+)``\s", export.__doc__.split("``csv`` (:func:`write_csv`)")[1], re.MULTILINE)
    assert tuple(documented) == export.NEUTRAL_COLUMNS


def test_the_neutral_csv_is_complete(tmp_path):
    exts = extensions()
    result = write_csv(exts, tmp_path / "phones.csv")
    assert result.files == [tmp_path / "phones.csv"]
    rows = read_csv(tmp_path / "phones.csv")
    assert tuple(rows[0]) == export.NEUTRAL_COLUMNS
    assert [r["key"] for r in rows] == [e.key for e in exts]
    jane = rows[0]
    assert jane == {
        "key": "health:2001", "source": "health", "dial_plan": "health", "extension": "2001", "name": "Jane Doe",
        "tech": "pjsip", "transport": "udp", "callerid": "", "outbound_cid": '"Health" <+5012223000>',
        "secret": "Jane-SIP-pass-2001", "secret_origin": "pbx", "voicemail_box": "2001",
        "voicemail_email": "jane.doe@health.gov.bz", "voicemail_pin": "4821", "dids": "+5012223001 +5012223002",
        "device": "Yealink T46U", "link_email": "jane.doe@health.gov.bz", "origins": "pjsip.conf:12; voicemail.conf:4",
        "extra": '{"context": "from-internal"}'}
    assert json.loads(jane["extra"]) == exts[0].extra
    by_key = {r["key"]: r for r in rows}
    assert by_key["health:2002"]["name"] == "José Pérez" and by_key["health:2002"]["tech"] == "sip"
    assert by_key["health:2099"]["secret"] == "" and by_key["health:2099"]["dids"] == "+5012223099"
    assert by_key["finance:3001"]["tech"] == "sip"
    assert (by_key["health:2098"]["tech"], by_key["health:2098"]["secret"]) == ("custom", ""), "listed, no account"


def test_neutral_csv_keeps_hostile_names_as_data(tmp_path):
    rows = {r["key"]: r for r in read_csv(write_csv(extensions(), tmp_path / "x.csv").files[0])}
    assert rows["health:2004"]["name"] == "'" + HOSTILE_NAME
    assert rows["health:2004"]["voicemail_email"] == "'@evil.example"
    assert rows["finance:3001"]["name"] == "'-Finance Director"
    assert rows["health:2003"]["name"] == COLON_NAME  # quoted by CSV, one record, nothing lost


@pytest.mark.parametrize("value", [HOSTILE_NAME, "+1+1", "-2", "@SUM(A1)", "\tx", "\rx", "plain", "", "José"])
def test_the_export_neutralises_cells_exactly_as_the_listings_do(value):
    assert export.csv_text_cell(value) == csv_cell(value)


def test_the_export_module_stays_free_of_click():
    code = "import sys, migrate.voip.export; assert 'click' not in sys.modules, 'click imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- secrets and files -----------------------------------------------------------------------------------------


WRITERS = {
    "freepbx": lambda exts, out, **kw: write_freepbx(exts, out / "fp", **kw),
    "kamailio": lambda exts, out, **kw: write_kamailio(exts, out / "k", domain=DOMAIN, **kw),
    "csv": lambda exts, out, **kw: write_csv(exts, out / "x" / "phones.csv", **kw),
}


@pytest.mark.parametrize("fmt", WRITERS)
def test_every_file_is_created_0600_and_never_chmodded(fmt, tmp_path, monkeypatch):
    opened: list[tuple[str, int, int]] = []
    real_open = os.open

    def spy_open(path, flags, mode=0o777, *args, **kwargs):
        opened.append((str(path), flags, mode))
        return real_open(path, flags, mode, *args, **kwargs)

    def no_chmod(*args, **kwargs):
        raise AssertionError("a file was chmodded after it was created")

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(Path, "chmod", no_chmod)
    old_umask = os.umask(0)  # nothing takes bits away: the mode given at creation is the mode the file has
    try:
        result = WRITERS[fmt](extensions(), tmp_path)
    finally:
        os.umask(old_umask)
    assert result.files
    for path in result.files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    created = [(p, f, m) for p, f, m in opened if f & os.O_CREAT]
    assert len(created) == len(result.files)
    assert all(f & os.O_EXCL and m == 0o600 for _, f, m in created)
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_an_existing_file_is_replaced_by_a_0600_one_and_a_symlink_is_not_followed(tmp_path):
    out = tmp_path / "x.csv"
    out.write_text("old")
    out.chmod(0o644)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("keep me")
    link = tmp_path / "link.csv"
    link.symlink_to(elsewhere)
    write_csv(extensions(), out)
    write_csv(extensions(), link)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert elsewhere.read_text() == "keep me" and not link.is_symlink()


@pytest.mark.parametrize("fmt", WRITERS)
def test_a_missing_secret_is_refused_naming_every_extension_and_nothing_is_written(fmt, tmp_path):
    exts = extensions()
    exts[0].secret = None
    exts[5].secret = secret("")
    with pytest.raises(ExportError) as caught:
        WRITERS[fmt](exts, tmp_path)
    message = str(caught.value)
    assert "2 extensions have no SIP password" in message
    assert "health:2001 (Jane Doe)" in message and "finance:3001 (-Finance Director)" in message
    assert "health:2002" not in message and "health:2099" not in message  # virtual: needs none
    assert "health:2098" not in message  # the fax: moved by hand, needs none
    hint = caught.value.hint or ""
    assert "--new-secrets" in hint and "new_secrets" not in hint and "=True" not in hint, "hints speak in options"
    for ext in exts:
        if ext.secret is not None and ext.secret.reveal():
            assert ext.secret.reveal() not in message
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.parametrize("fmt", WRITERS)
def test_new_secrets_give_every_registering_extension_a_strong_password(fmt, tmp_path):
    exts = extensions()
    exts[0].secret = None
    result = WRITERS[fmt](exts, tmp_path, new_secrets=True)
    assert set(result.new_secrets) == {e.key for e in registering(exts)}
    assert all(re.fullmatch(r"[A-Za-z0-9]{24}", s.reveal()) for s in result.new_secrets.values())


@pytest.mark.parametrize("fmt", ["freepbx", "csv"])
@pytest.mark.parametrize("bad", ["=cmd|' /C calc'!A0", "-starts-with-minus", "tab\tinside", "line\nbreak"])
def test_a_password_a_csv_cannot_carry_unchanged_is_refused_not_altered(fmt, bad, tmp_path):
    exts = extensions()
    exts[1].secret = secret(bad)
    with pytest.raises(ExportError, match=r"health:2002 \(José Pérez\): its SIP password (starts with|holds a control)") \
            as caught:
        WRITERS[fmt](exts, tmp_path)
    assert bad not in str(caught.value)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_kamailio_takes_any_printable_password_since_only_its_hash_is_written(tmp_path):
    exts = extensions()
    exts[1].secret = secret("-starts-with-minus")
    write_kamailio(exts, tmp_path / "k", domain=DOMAIN)
    _, rows = dbtext_rows(tmp_path / "k" / "subscriber")
    assert next(r for r in rows if r[1] == "2002")[4] == md5(f"2002:{DOMAIN}:-starts-with-minus")


@pytest.mark.parametrize("fmt", WRITERS)
def test_numbers_and_dids_are_checked_before_anything_is_written(fmt, tmp_path):
    exts = extensions()
    exts[1].dids = ["5012223003"]
    with pytest.raises(ExportError, match=r"DID '5012223003' is not an E\.164 number"):
        WRITERS[fmt](exts, tmp_path)
    exts = extensions()
    exts[1].dids = ["+5012223001"]
    with pytest.raises(ExportError, match=r"DID \+5012223001 is routed to both health:2001 and health:2002"):
        WRITERS[fmt](exts, tmp_path)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.parametrize("fmt", ["freepbx", "kamailio"])
def test_one_platform_takes_each_extension_number_once(fmt, tmp_path):
    exts = extensions()
    exts.append(Extension("education", "education", "2001", "Other Jane", secret=secret("other-jane-pw-1")))
    with pytest.raises(ExportError, match=r"extension number 2001 appears twice \(health:2001 and education:2001\)"):
        WRITERS[fmt](exts, tmp_path)
    write_csv(exts, tmp_path / "x.csv")  # the neutral CSV keys by dial plan and number: both fit


def test_a_failure_while_writing_leaves_the_previous_export_and_no_temporary_file(tmp_path, monkeypatch):
    out = tmp_path / "k"
    write_kamailio(extensions()[:1], out, domain=DOMAIN)
    before = {p.name: p.read_text() for p in out.iterdir()}
    real_fsync = os.fsync
    calls = []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        write_kamailio(extensions(), out, domain=DOMAIN)
    assert {p.name: p.read_text() for p in out.iterdir()} == before
