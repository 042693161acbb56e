"""`inventory phones` from the lab's generated PBX files for a ministry whose mail lives on a real Dovecot:
every extension recorded (never its secrets) and tied to its user, rooms listed, files with errors named by
line and taken not at all; then the plan, status and report show each user's phone beside their mail."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from migrate.core.errors import ExitCode
from tests.lab import scenario
from tests.lab.pbx import add_pbx, write_pbx

DOMAIN = scenario.MODERN_DOMAIN


@pytest.fixture
def ministry(tmp_path):
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="phones", users=4, messages=6)
    files = write_pbx(ws / "pbx" / "health", boxes, seed="phones", source_id="health", domain=DOMAIN,
                      formats=("freepbx-extensions", "freepbx-dids", "pjsip", "voicemail"), latin1=("voicemail",))
    add_pbx(ws, "health", files)
    yield ws, lab, boxes, files
    lab.stop()


def inventory(govmigrate, ws: Path, expect: int = 1) -> dict:
    # (exit 1: the generated files carry what a real PBX has, e.g. a voicemail.conf in Windows-1252: warnings)
    return json.loads(govmigrate("-w", ws, "inventory", "phones", "--json", expect=expect).stdout)


def test_every_extension_is_recorded_and_tied_to_its_user(govmigrate, ministry):
    ws, _lab, _boxes, files = ministry
    doc = inventory(govmigrate, ws)
    rows = {r["number"]: r for r in doc["extensions"]}
    assert set(rows) == set(files.expected)
    for number, want in files.expected.items():
        got = rows[number]
        assert got["name"] == want.name and got["dids"] == list(want.dids), number
        assert got["secret"] == ("yes" if want.secret else "no") and got["pin"] == ("yes" if want.pin else "no")
        if want.user:
            assert got["user"] == want.user, number
            assert got["link"] == {"email": "voicemail-email", "name": "name"}[want.link], number
        else:
            assert got["user"] == "" and got["link"] == "", f"{number} ({want.name}) belongs to no user"
        assert got["origin"].startswith("pbx/health/"), got["origin"]
    assert any(r["link"] == "name" for r in rows.values()), "the lab has phones linked by name only"
    table = govmigrate("-w", ws, "inventory", "phones", expect=1)
    assert "(by name only: confirm)" in table.stdout
    assert "extension(s) with no user: " in table.stderr and "Reception" in table.stderr
    # Secrets and PINs never reach the store, nor any output.
    blob = (ws / "state.db").read_bytes() + table.stdout.encode() + table.stderr.encode()
    for want in files.expected.values():
        for secret in (want.secret, want.pin):
            if secret and len(secret) >= 4:
                assert secret.encode() not in blob


def test_a_user_sees_mail_and_phone_in_one_view_and_the_plan_moves_them_together(govmigrate, ministry):
    ws, _lab, _boxes, files = ministry
    govmigrate("-w", ws, "inventory", "mail")
    inventory(govmigrate, ws)
    govmigrate("-w", ws, "plan", "generate", expect=None)
    linked = next(w for w in files.expected.values() if w.link == "email")
    status = govmigrate("-w", ws, "status", linked.user).stdout
    assert f"extension {linked.number}" in status and "still rings on the ministry's PBX" in status
    assert f"The desk phone (extension {linked.number}) is set up on the hosted platform with wave" in status
    if linked.dids:
        assert linked.dids[0] in status
    plans = {p.stem: p.read_text() for p in (ws / "plans").glob("*.yaml") if p.stem != "index"}
    wave_of_user = next(w for w, text in plans.items() if f"- {linked.user}" in text)
    assert f"- health:{linked.number}" in plans[wave_of_user]
    report = json.loads(govmigrate("-w", ws, "report", "--json").stdout)
    assert report["ministries"][0]["phones"]["total"] == len(files.expected)
    csv_text = govmigrate("-w", ws, "report", "--csv").stdout
    assert "phones,phones_moved" in csv_text.splitlines()[0]


def test_a_malformed_line_is_named_by_line_the_rest_of_the_file_is_taken_and_the_exit_is_2(govmigrate, ministry):
    # Issue 24 changed this: a bad line no longer throws its whole file away; it is an error (exit 2), not a warning.
    ws, _lab, _boxes, files = ministry
    pjsip = files.path("pjsip")
    text = pjsip.read_text()
    pjsip.write_text(text + "\nthis line is outside any section\n[broken\n")
    doc = inventory(govmigrate, ws, expect=int(ExitCode.USAGE))
    errors = [p for p in doc["problems"] if p["severity"] == "error"]
    assert errors and all(p["file"].endswith("pjsip.conf") and p["line"] for p in errors), errors
    assert doc["files"]["health"]["pbx/health/pjsip.conf"] == len(files.expected)
    rows = doc["extensions"]
    assert all(any("pjsip.endpoint.conf" in o for o in r["origins"]) for r in rows), "its good sections are taken"
    table = govmigrate("-w", ws, "inventory", "phones", expect=int(ExitCode.USAGE))
    assert next(line for line in table.stderr.splitlines() if "pjsip.conf:" in line).startswith("error: ")


def test_a_second_inventory_forgets_what_the_pbx_no_longer_has_unless_it_moved_on(govmigrate, ministry):
    ws, _lab, _boxes, files = ministry
    inventory(govmigrate, ws)
    gone = sorted(files.expected)[-1]
    conn = sqlite3.connect(ws / "state.db")
    conn.execute("UPDATE extensions SET seen_at = '2000-01-01T00:00:00Z'")
    conn.commit()
    conn.close()
    # The PBX no longer lists one extension: only its users-and-devices row is removed here.
    csv_path = files.path("freepbx-extensions")
    lines = csv_path.read_text(encoding="utf-8").splitlines(keepends=True)
    csv_path.write_text("".join(ln for ln in lines if not ln.startswith(f"{gone},")), encoding="utf-8")
    for fmt in ("pjsip", "voicemail"):
        files.path(fmt).write_text("")
    for extra in files.included:
        extra.write_text("")
    doc = inventory(govmigrate, ws)
    assert gone in [k.split(":")[1] for k in doc["forgotten"]]
    assert gone not in {r["number"] for r in doc["extensions"]}


def test_no_pbx_section_is_a_clear_usage_error(govmigrate, tmp_path):
    ws = tmp_path / "ws"
    lab, _boxes = scenario.small_lab(ws, seed="nopbx", users=1, messages=2)
    try:
        result = govmigrate("-w", ws, "inventory", "phones", expect=int(ExitCode.USAGE))
        assert "no source in migration.yaml has a pbx: section" in result.stderr
    finally:
        lab.stop()
