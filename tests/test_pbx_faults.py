"""Issue 24, end to end on the lab: a ministry's PBX exports with the faults real ones carry (one DID too short
among good ones, one phone's section defined twice, names holding CR/LF or ': ' and '#', a fax line that is a
custom device) lose no good row; errors and warnings are told apart in words, JSON levels and exit codes, and
`check` reports them; the plan files stay YAML whatever the names hold; the fax is moved by hand; the helpdesk
finds users without accents; nothing prints None."""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from pathlib import Path

import pytest
import yaml

from migrate.core.errors import ExitCode
from tests.lab import scenario
from tests.lab.kamailio import DOMAIN as SIP_DOMAIN
from tests.lab.pbx import Faults, add_pbx, write_pbx

DOMAIN = scenario.MODERN_DOMAIN
#: A FreePBX name holding a quoted line break that, written raw, would add a line to a plan file.
BREAK_NAME = "Ana\r\nwhite_glove: true"
#: A name holding ": " and "#", which YAML reads as a mapping and a comment.
COLON_NAME = "Finance: desk #2 # not a comment"


@pytest.fixture
def faulty(tmp_path):
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="phones", users=4, messages=4)
    faults = Faults(bad_did=True, duplicate_section=True, names=((0, BREAK_NAME), (1, COLON_NAME)), fax_custom=True)
    files = write_pbx(ws / "pbx" / "health", boxes, seed="phones", source_id="health", domain=DOMAIN,
                      formats=("freepbx-extensions", "freepbx-dids", "sip", "voicemail"), faults=faults)
    add_pbx(ws, "health", files)
    scenario.set_phones(ws, sip_domain=SIP_DOMAIN)
    yield ws, boxes, files
    lab.stop()


def fix_the_files(files) -> None:
    """What the operator does: the short DID row and the pasted section go."""
    dids = files.path("freepbx-dids")
    dids.write_text("".join(line for line in dids.read_text().splitlines(keepends=True)
                            if not line.startswith(",12,")))
    conf = files.path("sip")
    text = conf.read_text()
    twice = f"[{files.faults['duplicate_of']}]"
    first = text.index(twice)
    second = text.index(twice, first + 1)
    end = text.find("\n\n", second)
    conf.write_text(text[:second] + text[end + 2:])


def planned(govmigrate, ws: Path, files) -> None:
    """The files fixed, mail and phones inventoried, the plan generated."""
    fix_the_files(files)
    govmigrate("-w", ws, "inventory", "mail")
    govmigrate("-w", ws, "inventory", "phones", expect=None)
    govmigrate("-w", ws, "plan", "generate", expect=None)


def test_errors_and_warnings_differ_in_words_json_levels_and_exit_codes(govmigrate, faulty):
    ws, _boxes, files = faulty
    result = govmigrate("-w", ws, "inventory", "phones", expect=int(ExitCode.USAGE))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    did_at = files.faults["bad_did"]
    assert any(line.startswith(f"error: pbx/health/{did_at}: extension: DID '12' is not a valid number") and
               line.endswith(f"extension {files.faults['bad_did_for']} is held") for line in errors), errors
    assert any("is defined twice" in line and files.faults["duplicate_section"].split(" and ")[1] in line
               for line in errors), errors
    assert not [line for line in result.stderr.splitlines() if line.startswith("warning: ") and "DID '12'" in line]
    doc = json.loads(govmigrate("-w", ws, "inventory", "phones", "--json", expect=int(ExitCode.USAGE)).stdout)
    levels = {p["message"].split(";")[0]: p["severity"] for p in doc["problems"]}
    assert levels["DID '12' is not a valid number in region BZ (+501)"] == "error"
    rows = {r["number"]: r for r in doc["extensions"]}
    assert set(rows) == set(files.expected), "no ministry's phones silently dropped"
    assert {n for n, r in rows.items() if r["held"]} == {files.faults["bad_did_for"], files.faults["duplicate_of"]}
    assert rows[files.faults["bad_did_for"]]["dids"], "the good DIDs of the same file are kept"
    assert rows["2001"]["name"] == BREAK_NAME and rows["2002"]["name"] == COLON_NAME
    assert rows[files.faults["fax"]]["tech"] == "custom" and rows[files.faults["fax"]]["line"] == "by-hand"
    # The plan says which of a wave's phones are held.
    govmigrate("-w", ws, "inventory", "mail")
    govmigrate("-w", ws, "plan", "generate", expect=None)
    plans = "".join(p.read_text() for p in (ws / "plans").glob("*.yaml"))
    held_line = next(line for line in plans.splitlines() if f"- health:{files.faults['bad_did_for']} " in line)
    assert "HELD by an error in the PBX files" in held_line
    # check reads the PBX files too: the same errors, exit 2; fixed files pass.
    checked = govmigrate("-w", ws, "check", expect=int(ExitCode.USAGE))
    assert f"pbx/health/{did_at}: extension: DID '12'" in checked.stderr and "problem" in checked.stderr
    fix_the_files(files)
    assert govmigrate("-w", ws, "check", expect=None).exit_code in (0, 1)
    again = govmigrate("-w", ws, "inventory", "phones", "--json", expect=None)
    assert again.exit_code in (0, 1) and not [p for p in json.loads(again.stdout)["problems"]
                                                if p["severity"] == "error"]
    assert not [r for r in json.loads(again.stdout)["extensions"] if r["held"]], "fixed files hold nothing"


def test_the_inventory_shows_outbound_caller_id_and_numbers_stay_numbers_in_csv(govmigrate, faulty):
    ws, _boxes, files = faulty
    fix_the_files(files)
    table = govmigrate("-w", ws, "inventory", "phones", expect=None)
    assert "outbound CID" in table.stdout
    with_one = next(n for n, e in files.expected.items() if len(e.dids) == 1 and e.tech != "custom")
    with_two = next(n for n, e in files.expected.items() if len(e.dids) == 2)
    rows = {r["number"]: r for r in csv.DictReader(io.StringIO(govmigrate("-w", ws, "inventory", "phones", "--csv",
                                                                          expect=None).stdout))}
    assert rows[with_one]["dids"] == files.expected[with_one].dids[0], "a number is not a formula: no apostrophe"
    assert rows[with_two]["dids"].startswith("'+501"), "two numbers in one cell are text, guarded"
    assert rows[with_one]["outbound_cid"].endswith(f"<{files.expected[with_one].dids[0][4:]}>")
    for output in (table.stdout, table.stderr):
        assert "None" not in output


def test_plan_files_stay_yaml_whatever_the_names_hold_and_replace_repairs_a_broken_one(govmigrate, faulty):
    ws, _boxes, files = faulty
    planned(govmigrate, ws, files)
    waves = {p.stem: p for p in (ws / "plans").glob("*.yaml") if p.stem != "index"}
    holding = next(p for p in waves.values() if "health:2001" in p.read_text())
    text = holding.read_text()
    assert "Ana\\r\\nwhite_glove: true" in text, "the line break is written as an escape inside the comment"
    assert "\r" not in text
    assert [line.split("#")[0].strip() for line in text.splitlines() if line.startswith("white_glove")] == [
        "white_glove: false"], "no line added"
    doc = yaml.safe_load(text)
    assert doc["white_glove"] is False and "health:2001" in doc["extensions"]
    govmigrate("-w", ws, "plan", "validate")
    # A file an earlier govmigrate wrote with the raw name no longer parses ...
    holding.write_text(text.replace("Ana\\r\\nwhite_glove: true", "Ana\r\nwhite_glove: true"))
    broken = govmigrate("-w", ws, "plan", "validate", expect=int(ExitCode.USAGE))
    assert holding.name in broken.stderr
    # ... and plan generate --replace repairs it.
    govmigrate("-w", ws, "plan", "generate", "--replace", expect=None)
    assert yaml.safe_load(holding.read_text())["white_glove"] is False
    govmigrate("-w", ws, "plan", "validate")


def test_the_fax_line_is_moved_by_hand_not_given_an_account(govmigrate, faulty):
    ws, _boxes, files = faulty
    planned(govmigrate, ws, files)
    fax = f"health:{files.faults['fax']}"
    wave = next(p.stem for p in (ws / "plans").glob("*.yaml") if p.stem != "index"
                and fax in (yaml.safe_load(p.read_text()).get("extensions") or []))
    govmigrate("-w", ws, "plan", "approve", wave)
    doc = json.loads(govmigrate("-w", ws, "voip", "export", "--wave", wave, "--format", "kamailio", "--json").stdout)
    assert doc["moved_by_hand"] == {fax: "not a SIP phone (custom): moved by hand, no account on the platform"}
    subscribers = (ws / "exports" / wave / "kamailio" / "db_text" / "subscriber").read_text()
    assert f"\n{len(doc['provisioned'])}:" in subscribers and f":{files.faults['fax']}:" not in subscribers
    fp = json.loads(govmigrate("-w", ws, "voip", "export", "--wave", wave, "--format", "freepbx", "--json").stdout)
    numbers = [r["extension"] for r in csv.DictReader(io.StringIO(Path(fp["files"][0]).read_text()))]
    assert files.faults["fax"] not in numbers
    text = govmigrate("-w", ws, "voip", "export", "--wave", wave, "--format", "csv")
    assert f"{fax} moved by hand: not a SIP phone (custom)" in text.stderr
    assert "None" not in text.stdout + text.stderr


def test_status_finds_a_user_without_accents_or_case_and_prints_no_none(govmigrate, faulty):
    ws, boxes, files = faulty
    fix_the_files(files)
    govmigrate("-w", ws, "inventory", "mail")
    govmigrate("-w", ws, "inventory", "phones", expect=None)
    accented = next(b for b in boxes if not b.display_name.isascii())
    plain = "".join(c for c in unicodedata.normalize("NFKD", accented.display_name)
                    if not unicodedata.combining(c)).upper()
    result = govmigrate("-w", ws, "status", plain)
    assert accented.email in result.stdout and "None" not in result.stdout
    report = govmigrate("-w", ws, "report", expect=None)
    assert "None" not in report.stdout + report.stderr


def test_a_partly_planned_completion_without_a_date_is_said_in_words():
    from migrate.cli.report_cmd import _when
    from migrate.core.timezones import Zone
    from migrate.reports.programme import Completion

    utc = Zone.utc()
    assert _when(Completion(None, "partly planned"), utc) == "partly planned"
    dated = _when(Completion("2027-03-01T04:00+00:00", "partly planned"), utc)
    assert dated.startswith("2027-03-01 04:00") and dated.endswith(" (partly planned)") and "None" not in dated


@pytest.mark.parametrize("text", ["a\u2028b", "nel\x85here", "line\nbreak", "q: #z", "tab\there", "bom\ufeff"])
def test_plan_data_from_outside_reads_back_exactly(text):
    from migrate.plans.model import PlanWindow, WaveFile
    from migrate.plans.render import render_wave

    wave = WaveFile(version=1, wave="wave-01", title=f"Ministry {text}", kind="ministry", window=PlanWindow(),
                    notes=text, mailboxes=[])
    rendered = render_wave(wave, header=[f"Wave wave-01: {text}"], mailbox_notes={},
                           extension_notes={})
    assert WaveFile.model_validate(yaml.safe_load(rendered)) == wave
    assert not set("\x85\u2028\u2029\r") & set(rendered), "no character YAML takes for a line break"
    assert all(not line or line.startswith(("#", " ", "version", "wave", "title", "kind", "white_glove", "window",
                                            "cutover_domains", "notes", "mailboxes")) for line in rendered.split("\n"))
