"""Phones in the wave plan, from extensions already in the store (the PBX files and Kamailio are tested
elsewhere): each linked extension in its user's wave, the ones without a user in their ministry's last wave
or a phones-only wave, plan files that list them with their user, approval hashes that cover them while
old approvals of waves without phones stay valid, and validation by file and line."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from migrate.core.errors import ExitCode
from migrate.core.store import open_store
from migrate.voip.link import Linker
from migrate.voip.model import Extension
from tests.test_plan import generate, plan_doc, two_ministries


def add_phones(ws: Path, extensions: list[Extension]) -> None:
    store = open_store(ws / "state.db")
    try:
        linker = Linker(store.mailboxes())
        for ext in extensions:
            ext_id = store.upsert_extension(ext, seen_at="2026-11-30T00:00:00Z")
            link, _problems = linker.link(ext)
            store.link_extension(ext_id, link.mailbox.id if link.mailbox else None, link.how)
    finally:
        store.close()


def ext(source: str, number: str, name: str, email: str | None = None) -> Extension:
    return Extension(source, source, number, name=name, voicemail_email=email, origins=[f"pbx/{source}.csv:2"])


PHONES = [
    ext("health", "1001", "Ana Pilot", "ana.pilot@health.gov.bz"),
    ext("health", "1002", "Bob"),                                  # linked by display name only
    ext("health", "1009", "Reception"),                            # no user
    ext("education", "2001", "Gus", "gus@education.gov.bz"),
    ext("education", "2099", "Fax"),
]


def test_extensions_move_in_their_users_waves_and_rooms_in_the_ministrys_last(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    add_phones(ws, PHONES)
    generate(govmigrate, ws)
    assert plan_doc(ws, "pilot")["extensions"] == ["health:1001"]
    health = next(w for w in ("wave-01", "wave-02") if plan_doc(ws, w)["title"].endswith("Health"))
    education = "wave-02" if health == "wave-01" else "wave-01"
    assert sorted(plan_doc(ws, health)["extensions"]) == ["health:1002", "health:1009"]
    assert sorted(plan_doc(ws, education)["extensions"]) == ["education:2001", "education:2099"]
    text = (ws / "plans" / f"{health}.yaml").read_text()
    assert "health:1002  # Bob, user bob@health.gov.bz (linked by name only: confirm)" in text
    assert "health:1009  # Reception, no user" in text
    store = open_store(ws / "state.db")
    try:
        states = {e.key: (e.wave, e.state) for e in store.extensions()}
        assert states["health:1001"] == ("pilot", "planned")
        assert any(e.action == "state" for e in store.events(obj="extension/health:1001"))
    finally:
        store.close()
    govmigrate("-w", ws, "plan", "validate")


def test_a_phones_only_policy_gives_rooms_a_wave_of_their_own(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    doc = yaml.safe_load((ws / "migration.yaml").read_text())
    doc["phones"] = {"unlinked": "phones-only"}
    (ws / "migration.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    add_phones(ws, PHONES)
    plan = generate(govmigrate, ws, expect=int(ExitCode.PARTIAL))  # it says where the rooms went (a warning)
    order = [w["wave"] for w in plan["waves"]]
    assert "phones-health" in order and "phones-education" in order
    assert plan_doc(ws, "phones-health")["extensions"] == ["health:1009"]
    assert plan_doc(ws, "phones-health")["kind"] == "phones" and plan_doc(ws, "phones-health")["mailboxes"] == []
    health_last = max(i for i, w in enumerate(order) if w.startswith("wave-") and
                      plan_doc(ws, w)["title"].endswith("Health"))
    assert order.index("phones-health") == health_last + 1


def test_approval_covers_extensions_and_old_approvals_without_phones_stay_valid(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    generate(govmigrate, ws)
    govmigrate("-w", ws, "plan", "approve", "pilot")   # approved before phones existed
    path = ws / "plans" / "pilot.yaml"
    assert "extensions" not in path.read_text(), "a wave file without phones reads as before"
    add_phones(ws, PHONES)
    shown = {w["wave"]: w["approval"] for w in json.loads(govmigrate("-w", ws, "plan", "show", "--json").stdout)["waves"]}
    assert shown["pilot"] == "approved", "phones in the inventory void no approval"
    path.write_text(path.read_text() + "extensions:\n  - health:1001\n")
    shown = {w["wave"]: w["approval"] for w in json.loads(govmigrate("-w", ws, "plan", "show", "--json").stdout)["waves"]}
    assert shown["pilot"] == "changed", "a phone added to a wave changes what was approved"
    diff = json.loads(govmigrate("-w", ws, "plan", "diff", "pilot", "--json").stdout)[0]
    assert {"field": "extensions", "recorded": [], "file": ["health:1001"]} in diff["changes"]
    govmigrate("-w", ws, "plan", "approve", "pilot")
    shown = {w["wave"]: w["approval"] for w in json.loads(govmigrate("-w", ws, "plan", "show", "--json").stdout)["waves"]}
    assert shown["pilot"] == "approved"


def test_extensions_are_validated_by_file_and_line(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    add_phones(ws, PHONES)
    generate(govmigrate, ws)
    path = ws / "plans" / "pilot.yaml"
    text = path.read_text().replace("  - health:1001", "  - health:1001\n  - health:1002\n  - health:7777\n  - bad key")
    path.write_text(text)
    err = govmigrate("-w", ws, "plan", "validate", expect=int(ExitCode.USAGE)).stderr
    assert f"{path}:" in err and "extensions: not an extension as <dial plan>:<number>" in err
    path.write_text(text.replace("\n  - bad key", ""))
    lines = path.read_text().splitlines()
    err = govmigrate("-w", ws, "plan", "validate", expect=int(ExitCode.USAGE)).stderr
    line_7777 = next(i for i, ln in enumerate(lines, 1) if "health:7777" in ln)
    assert f"{path}:{line_7777}: extensions[2]: health:7777 is not in the phone inventory" in err
    assert "health:1002 is also in wave" in err


def test_phones_inventoried_after_a_wave_started_join_it_and_it_must_be_approved_again(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    generate(govmigrate, ws)
    govmigrate("-w", ws, "plan", "approve", "pilot")
    store = open_store(ws / "state.db")
    try:
        store.start_run("pilot", "prestage")  # the pilot's mail has started moving
    finally:
        store.close()
    add_phones(ws, PHONES)
    plan = generate(govmigrate, ws, "--replace", expect=int(ExitCode.PARTIAL))
    assert plan_doc(ws, "pilot")["extensions"] == ["health:1001"], "Ana's phone follows her into the pilot"
    assert plan_doc(ws, "pilot")["mailboxes"] == ["ana.pilot@health.gov.bz", "eve.pilot@education.gov.bz"]
    assert any("pilot has started; it gains 1 phone extension(s) (health:1001): approve it again" in w
               for w in plan["warnings"]), plan["warnings"]
    shown = {w["wave"]: w["approval"] for w in json.loads(govmigrate("-w", ws, "plan", "show", "--json").stdout)["waves"]}
    assert shown["pilot"] == "not approved", "a regenerated wave is approved again before it goes on"
    store = open_store(ws / "state.db")
    try:
        assert {e.key: (e.wave, e.state) for e in store.extensions()}["health:1001"] == ("pilot", "planned")
    finally:
        store.close()
