"""`govmigrate voip export`: the provisioning step of a wave's phones, end to end on the lab. The lab's generated
PBX files are inventoried beside a real Dovecot, the plan puts each phone in its user's wave, the approved
wave's Kamailio export is loaded into the lab's Kamailio, and every exported extension REGISTERs (sipsak) with
the secret its PBX gave it, or with the new one the export made; nothing secret reaches the store or the
output; a refused export writes nothing and changes no state."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
import yaml

from migrate.core.errors import ExitCode
from migrate.voip.export import write_kamailio
from tests.lab import scenario
from tests.lab.kamailio import DOMAIN as SIP_DOMAIN
from tests.lab.kamailio import sipsak, start_kamailio
from tests.lab.pbx import add_pbx, write_pbx

MAIL_DOMAIN = scenario.MODERN_DOMAIN


@pytest.fixture
def planned(tmp_path, govmigrate):
    """A ministry with mail on Dovecot and a pjsip/voicemail PBX, inventoried, planned, and the first wave
    with phones approved. Yields (workspace, files, wave id, that wave's extension keys)."""
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="provision", users=4, messages=4)
    files = write_pbx(ws / "pbx" / "health", boxes, seed="provision", source_id="health", domain=MAIL_DOMAIN,
                      formats=("pjsip", "voicemail"))
    add_pbx(ws, "health", files)
    scenario.set_phones(ws, sip_domain=SIP_DOMAIN)
    try:
        govmigrate("-w", ws, "inventory", "mail")
        govmigrate("-w", ws, "inventory", "phones", expect=None)
        govmigrate("-w", ws, "plan", "generate", expect=None)
        wave, keys = next((w, k) for w, k in wave_extensions(ws).items() if k)
        govmigrate("-w", ws, "plan", "approve", wave)
        yield ws, files, wave, keys
    finally:
        lab.stop()


def wave_extensions(ws: Path) -> dict[str, list[str]]:
    out = {}
    for path in sorted((ws / "plans").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if path.stem != "index":
            out[doc["wave"]] = doc.get("extensions") or []
    return out


def states(ws: Path) -> dict[str, str]:
    with sqlite3.connect(ws / "state.db") as db:
        return {f"{d}:{n}": s for d, n, s in db.execute("SELECT dial_plan, number, state FROM extensions")}


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def secrets_of(files) -> list[str]:
    return [s for e in files.expected.values() for s in (e.secret, e.pin) if s]


@pytest.mark.lab
def test_the_approved_waves_phones_register_on_kamailio_with_their_pbx_secrets(govmigrate, planned):
    ws, files, wave, keys = planned
    result = govmigrate("-w", ws, "voip", "export", "--wave", wave, "--format", "kamailio")
    out = ws / "exports" / wave / "kamailio"
    assert [p.name for p in out.iterdir()] == ["db_text"], "PBX passwords: no clear passwords file"
    tables = out / "db_text"
    assert sorted(p.name for p in tables.iterdir()) == ["dbaliases", "subscriber", "version"]
    assert all(mode(p) == 0o600 for p in tables.iterdir())
    assert f"{len(keys)} extension(s) provisioned" in result.stderr + result.stdout
    now = states(ws)
    assert {k: now[k] for k in keys} == {k: "provisioned" for k in keys}
    assert all(s != "provisioned" for k, s in now.items() if k not in keys), "only the wave's phones"

    registrar = start_kamailio()
    try:
        registrar.load(tables)
        numbers = [k.split(":")[1] for k in keys]
        for number in numbers:
            run = sipsak(registrar, number, files.expected[number].secret)
            assert run.registered, (number, run.output)
        other = next(n for n in files.expected if n not in numbers)
        assert sipsak(registrar, other, files.expected[other].secret).statuses == [401, 403], \
            "a phone of another wave is not provisioned"
    finally:
        registrar.cleanup()

    blob = (ws / "state.db").read_bytes() + result.stdout.encode() + result.stderr.encode()
    for path in (ws / "logs").rglob("*") if (ws / "logs").exists() else []:
        blob += path.read_bytes() if path.is_file() else b""
    for secret in secrets_of(files):
        assert secret.encode() not in blob
    log = govmigrate("-w", ws, "log", "--json", expect=None).stdout
    assert "provisioned" in log and "voip-export" in log


@pytest.mark.lab
def test_new_secrets_are_written_0600_inside_out_and_replace_the_pbx_ones(govmigrate, planned):
    ws, files, wave, keys = planned
    out = ws / "k"
    out.mkdir()
    write_kamailio([], out, domain=SIP_DOMAIN)  # the tables an earlier govmigrate wrote straight into --out
    (out / "notes.txt").write_text("the operator's own file")
    result = govmigrate("-w", ws, "voip", "export", "--wave", wave, "--format", "kamailio", "--out", out,
                        "--new-secrets")
    assert sorted(p.name for p in out.iterdir()) == ["db_text", "notes.txt", "phones-passwords.csv"], \
        "old tables that would be loaded by mistake are gone; nothing else is touched"
    clear = out / "phones-passwords.csv"
    assert sorted(p.name for p in ws.iterdir() if p.name.startswith("k")) == ["k"], "nothing beside --out"
    assert mode(clear) == 0o600 and all(mode(p) == 0o600 for p in (out / "db_text").iterdir())
    with open(clear, newline="", encoding="utf-8") as handle:
        rows = {r["extension"]: r for r in csv.DictReader(handle)}
    assert sorted(rows) == sorted(k.split(":")[1] for k in keys)
    assert all(r["secret_origin"] == "kept" for r in rows.values())
    assert str(clear) in result.stderr + result.stdout
    registrar = start_kamailio()
    try:
        registrar.load(out / "db_text")
        for number, row in rows.items():
            assert sipsak(registrar, number, row["secret"]).registered, number
            assert sipsak(registrar, number, files.expected[number].secret).statuses == [401, 403]
    finally:
        registrar.cleanup()
    blob = (ws / "state.db").read_bytes() + result.stdout.encode() + result.stderr.encode()
    for row in rows.values():
        assert row["secret"].encode() not in blob


def test_freepbx_and_csv_exports_list_the_waves_phones_and_a_second_export_changes_no_state(govmigrate, planned):
    ws, files, wave, keys = planned
    govmigrate("-w", ws, "voip", "export", "--wave", wave, "--format", "freepbx")
    fp = ws / "exports" / wave / "freepbx"
    with open(fp / "extensions.csv", newline="", encoding="utf-8") as handle:
        numbers = [r["extension"] for r in csv.DictReader(handle)]
    assert sorted(numbers) == sorted(k.split(":")[1] for k in keys)
    assert mode(fp / "extensions.csv") == 0o600 and mode(fp / "dids.csv") == 0o600
    again = govmigrate("-w", ws, "voip", "export", "--wave", wave, "--format", "csv", "--json")
    doc = json.loads(again.stdout)
    assert doc["provisioned"] == [] and sorted(doc["again"]) == sorted(keys)
    assert mode(ws / "exports" / wave / "phones.csv") == 0o600
    assert {states(ws)[k] for k in keys} == {"provisioned"}
    user = next(files.expected[k.split(":")[1]].user for k in keys if files.expected[k.split(":")[1]].user)
    status = govmigrate("-w", ws, "status", user).stdout
    assert "set up on the hosted platform" in status and "next it registers there" in status


def test_an_unapproved_wave_is_not_exported(govmigrate, planned):
    ws, _files, wave, _keys = planned
    plan = next(p for p in (ws / "plans").glob("*.yaml") if yaml.safe_load(p.read_text()).get("wave") == wave)
    plan.write_text(plan.read_text().replace('notes: ""', 'notes: "edited after approval"'))
    result = govmigrate("-w", ws, "voip", "export", "--wave", wave, "--format", "csv", expect=ExitCode.NOT_APPROVED)
    assert "changed since" in result.stderr
    assert not (ws / "exports").exists()


def test_an_export_of_extensions_the_pbx_files_no_longer_have_writes_nothing_and_changes_no_state(govmigrate,
                                                                                                   planned):
    ws, files, wave, keys = planned
    before = states(ws)
    for path in [files.path("pjsip"), files.path("voicemail"), *files.included]:
        path.write_text("")
    result = govmigrate("-w", ws, "voip", "export", "--wave", wave, "--format", "kamailio", expect=ExitCode.USAGE)
    assert "nothing was written" in result.stderr and keys[0] in result.stderr
    assert "not in the PBX files as they are now" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (ws / "exports").exists()
    assert states(ws) == before


def test_an_extension_held_by_a_pbx_file_error_is_not_exported_unless_forced_with_a_reason(govmigrate, planned):
    # Issue 24: an error in a PBX file holds the extension it concerns, which is neither exported nor cut over
    # until the file is fixed or the operator decides (--force --reason, recorded).
    ws, files, wave, keys = planned
    before = states(ws)
    number = keys[0].split(":")[1]
    endpoints = next(p for p in files.included if p.name == "pjsip.endpoint.conf")
    endpoints.write_text(endpoints.read_text() + f"\n[{number}]\ntype=endpoint\n")
    result = govmigrate("-w", ws, "voip", "export", "--wave", wave, "--format", "csv", expect=ExitCode.PREFLIGHT)
    assert f"{keys[0]}: held by an error in the PBX files: pbx/health/pjsip.endpoint.conf:" in result.stderr
    assert "nothing was written" in result.stderr and "--force --reason" in result.stderr
    assert not (ws / "exports").exists() and states(ws) == before
    inventory = govmigrate("-w", ws, "inventory", "phones", "--json", expect=ExitCode.USAGE)
    held = {f"health:{r['number']}": r["held"] for r in json.loads(inventory.stdout)["extensions"] if r["held"]}
    assert list(held) == [keys[0]] and "a second type=endpoint" in held[keys[0]]
    forced = govmigrate("-w", ws, "voip", "export", "--wave", wave, "--format", "csv", "--force", "--reason",
                        "the first section is the right one")
    assert "gate forced (the first section is the right one)" in forced.stderr
    assert {states(ws)[k] for k in keys} == {"provisioned"}
    log = govmigrate("-w", ws, "log", "--json", expect=None).stdout
    assert "gate-forced" in log and "the first section is the right one" in log


def test_new_secrets_need_the_key_the_project_file_names(govmigrate, planned):
    ws, _files, wave, _keys = planned
    scenario.set_phones(ws, secrets_key=None)
    result = govmigrate("-w", ws, "voip", "export", "--wave", wave, "--format", "kamailio", "--new-secrets",
                        expect=ExitCode.USAGE)
    assert "phones.secrets_key" in result.stderr and "openssl rand" in result.stderr
    assert not (ws / "exports").exists()
