"""Wave plans without servers: the planner's rules, the plan files, validation, approval, diff and move.

The inventory's results are written into the state store directly (as ``inventory mail`` would), so each
test chooses exactly the sizes, flags and failures it is about. Runs are refused before any server is
contacted when the plan is not approved, changed or invalid, so those refusals are pinned here too.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from migrate.core.config import load_project
from migrate.core.errors import ExitCode
from migrate.core.locks import Lock
from migrate.core.registry import register_users
from migrate.core.store import open_store
from migrate.plans.planner import cutover_domains
from tests.lab import scenario

MB = 1_000_000


def _secret(ws: Path) -> str:
    (ws / "secrets").mkdir(exist_ok=True, mode=0o700)
    path = ws / "secrets" / "pw"
    path.write_text("not-used-offline\n")
    path.chmod(0o600)
    return "file:secrets/pw"


def make_workspace(ws: Path, users: dict[str, list[tuple]], *, waves: dict | None = None,
                   domains: dict[str, list[str]] | None = None, timezone: str | None = None) -> Path:
    """``users``: source id → rows of (email, flags, bytes or an error text, display name (optional));
    ``timezone``: the project file's (none: this host's).

    Servers point at a closed port: nothing here may contact one. The state store is the workspace's state.db,
    or the lab's PostgreSQL where a test module runs on both engines (``scenario.engine_state``)."""
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "users").mkdir(exist_ok=True)
    secret = _secret(ws)
    ministries = {"health": "Ministry of Health", "education": "Ministry of Education", "it": "IT Office"}
    sources = []
    for source_id, rows in users.items():
        lines = ["email,login,display_name,password,flags"]
        for row in rows:
            email, flags = row[0], row[1]
            name = row[3] if len(row) > 3 else email.split("@")[0].replace(".", " ").title()
            lines.append(f"{email},{email},{name},,{flags}")
        (ws / "users" / f"{source_id}.csv").write_text("\n".join(lines) + "\n")
        sources.append({
            "id": source_id, "ministry": ministries.get(source_id, source_id),
            "domains": (domains or {}).get(source_id, [f"{source_id}.gov.bz"]),
            "server": {"type": "imap", "host": "127.0.0.1", "port": 9, "tls": "implicit",
                       "login": {"method": "master_user", "user": "migrator", "password": secret}},
            "users": f"users/{source_id}.csv"})
    doc = {"version": 1, "name": "plan test programme",
           "central": {"imap": {"host": "127.0.0.1", "port": 9, "tls": "implicit"},
                       "login": {"method": "master_user", "user": "migrator", "password": secret}},
           "sources": sources}
    if waves:
        doc["waves"] = waves
    state_url = scenario.state_url()
    if state_url:
        doc["state"] = scenario.state_section(state_url)
    if timezone:
        doc["timezone"] = timezone
    (ws / "migration.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    project = load_project(ws / "migration.yaml")
    store = scenario.workspace_store(ws) if state_url else open_store(ws / "state.db", create=True)
    try:
        register_users(project, store)
        for rows in users.values():
            for row in rows:
                email, measured = row[0], row[2]
                mailbox = store.mailbox(email)
                if measured is None:
                    continue
                if isinstance(measured, str):
                    store.record_inventory(mailbox.id, ok=False, error=measured)
                else:
                    store.record_inventory(mailbox.id, ok=True, messages=max(1, measured // 50_000), bytes_=measured)
    finally:
        store.close()
    return ws


def plan_doc(ws: Path, wave: str) -> dict:
    return yaml.safe_load((ws / "plans" / f"{wave}.yaml").read_text())


def generate(govmigrate, ws: Path, *args: str, expect: int = 0) -> dict:
    return json.loads(govmigrate("-w", ws, "plan", "generate", "--json", *args, expect=expect).stdout)


def two_ministries(tmp_path: Path, **kw) -> Path:
    return make_workspace(tmp_path / "ws", {
        "health": [("ana.pilot@health.gov.bz", "pilot", 2 * MB), ("bob@health.gov.bz", "", 30 * MB),
                   ("cy@health.gov.bz", "", 10 * MB), ("minister@health.gov.bz", "vip", 5 * MB)],
        "education": [("eve.pilot@education.gov.bz", "pilot", 1 * MB), ("fay@education.gov.bz", "", 4 * MB),
                      ("gus@education.gov.bz", "vip", 3 * MB)],
    }, **kw)


# -- the planner's rules ------------------------------------------------------------------------------------


def test_pilot_first_then_one_wave_per_ministry_with_the_vips_white_glove(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    result = generate(govmigrate, ws)
    assert [w["wave"] for w in result["waves"]] == ["pilot", "wave-01", "wave-02"]
    assert sorted(plan_doc(ws, "pilot")["mailboxes"]) == ["ana.pilot@health.gov.bz", "eve.pilot@education.gov.bz"]
    assert plan_doc(ws, "pilot")["kind"] == "pilot"
    health = plan_doc(ws, "wave-01")
    assert sorted(health["mailboxes"]) == ["bob@health.gov.bz", "cy@health.gov.bz", "minister@health.gov.bz"]
    assert health["white_glove"] is True and health["title"] == "Ministry of Health"
    assert health["cutover_domains"] == ["health.gov.bz"]
    assert plan_doc(ws, "wave-02")["cutover_domains"] == ["education.gov.bz"]
    assert plan_doc(ws, "pilot")["cutover_domains"] == []
    index = yaml.safe_load((ws / "plans" / "index.yaml").read_text())
    assert index["waves"] == ["pilot", "wave-01", "wave-02"] and index["excluded"] == []
    store = open_store(ws / "state.db")
    try:
        assert {m.email: (m.wave, m.state) for m in store.mailboxes()}["bob@health.gov.bz"] == ("wave-01", "planned")
        assert [w.id for w in store.waves()] == ["pilot", "wave-01", "wave-02"]
        assert any(e.action == "generate" for e in store.events(obj="plan"))
    finally:
        store.close()


def test_limits_split_a_ministry_but_never_a_domain_that_fits_a_wave(govmigrate, tmp_path):
    users = {"health": [(f"u{i}@health.gov.bz", "", 1 * MB) for i in range(3)]
             + [(f"h{i}@hq.health.gov.bz", "", 1 * MB) for i in range(2)]
             + [(f"r{i}@rural.health.gov.bz", "", 1 * MB) for i in range(2)]}
    ws = make_workspace(tmp_path / "ws", users, waves={"max_mailboxes": 4, "pilot": {"count": 0}},
                        domains={"health": ["health.gov.bz", "hq.health.gov.bz", "rural.health.gov.bz"]})
    result = generate(govmigrate, ws)
    waves = {w["wave"]: plan_doc(ws, w["wave"])["mailboxes"] for w in result["waves"]}
    assert list(waves) == ["wave-01", "wave-02"], "7 mailboxes at 4 per wave: two waves, no pilot (count 0)"
    for domain in ("health.gov.bz", "hq.health.gov.bz", "rural.health.gov.bz"):
        holders = [w for w, emails in waves.items() if any(e.endswith("@" + domain) for e in emails)]
        assert len(holders) == 1, f"{domain} was split over {holders}"
    assert all(len(m) <= 4 for m in waves.values())
    assert plan_doc(ws, "wave-01")["title"] == "Ministry of Health (1 of 2)"


def test_a_domain_bigger_than_a_wave_spans_as_few_waves_as_the_gb_limit_allows(govmigrate, tmp_path):
    users = {"health": [(f"u{i}@health.gov.bz", "", 400 * MB) for i in range(5)]}
    ws = make_workspace(tmp_path / "ws", users, waves={"max_gb": 1, "pilot": {"count": 0}})
    result = generate(govmigrate, ws)
    sizes = [len(plan_doc(ws, w["wave"])["mailboxes"]) for w in result["waves"]]
    assert sizes == [2, 2, 1], "1 GB per wave: 2 + 2 + 1 mailboxes of 0.4 GB"
    assert [plan_doc(ws, w["wave"])["cutover_domains"] for w in result["waves"]] == [[], [], ["health.gov.bz"]]


def test_vips_stay_together_in_their_ministrys_last_wave(govmigrate, tmp_path):
    users = {"health": [(f"u{i}@health.gov.bz", "", 1 * MB) for i in range(5)]
             + [("vip1@health.gov.bz", "vip", 1 * MB), ("vip2@health.gov.bz", "vip", 1 * MB)]}
    ws = make_workspace(tmp_path / "ws", users, waves={"max_mailboxes": 4, "pilot": {"count": 0}})
    result = generate(govmigrate, ws)
    docs = [plan_doc(ws, w["wave"]) for w in result["waves"]]
    vip_waves = [d["wave"] for d in docs if any(m.startswith("vip") for m in d["mailboxes"])]
    assert vip_waves == [docs[-1]["wave"]], "both VIPs in one wave: the ministry's last"
    assert docs[-1]["white_glove"] and not any(d["white_glove"] for d in docs[:-1])
    assert docs[-1]["cutover_domains"] == ["health.gov.bz"]


def test_without_pilot_flags_the_smallest_mailboxes_of_the_it_office_are_the_pilot(govmigrate, tmp_path):
    ws = make_workspace(tmp_path / "ws", {
        "health": [("tiny@health.gov.bz", "", 1)],
        "it": [("big@it.gov.bz", "", 50 * MB), ("small@it.gov.bz", "", 2 * MB), ("smaller@it.gov.bz", "", 1 * MB),
               ("boss@it.gov.bz", "vip", 1)],
    }, waves={"pilot": {"count": 2, "from_source": "it"}})
    result = generate(govmigrate, ws, expect=int(ExitCode.PARTIAL))  # finished, with a warning: exit 1
    assert sorted(plan_doc(ws, "pilot")["mailboxes"]) == ["small@it.gov.bz", "smaller@it.gov.bz"]
    assert any("nobody is flagged" in w for w in result["warnings"])


def test_failed_unmeasured_and_skipped_mailboxes_are_left_out_with_the_reason(govmigrate, tmp_path):
    ws = make_workspace(tmp_path / "ws", {"health": [
        ("ok@health.gov.bz", "", 1 * MB), ("broken@health.gov.bz", "", "source health: login refused: no such user"),
        ("never@health.gov.bz", "", None), ("gone@health.gov.bz", "skip", 1 * MB)]})
    result = generate(govmigrate, ws, expect=int(ExitCode.PARTIAL))
    reasons = {e["email"]: e["reason"] for e in result["excluded"]}
    assert reasons["broken@health.gov.bz"] == "inventory failed: source health: login refused: no such user"
    assert reasons["never@health.gov.bz"].startswith("not measured yet")
    assert reasons["gone@health.gov.bz"] == "flagged skip in the user list"
    planned = [m for w in result["waves"] for m in plan_doc(ws, w["wave"])["mailboxes"]]
    assert planned == ["ok@health.gov.bz"]
    index = yaml.safe_load((ws / "plans" / "index.yaml").read_text())
    assert {e["email"] for e in index["excluded"]} == set(reasons)
    store = open_store(ws / "state.db")
    try:
        assert store.mailbox("gone@health.gov.bz").state == "skipped"
        assert store.mailbox("broken@health.gov.bz").wave is None
    finally:
        store.close()


def test_estimates_use_the_default_rate_until_a_run_measured_one_and_warn_about_the_window(govmigrate, tmp_path):
    ws = make_workspace(tmp_path / "ws", {"health": [(f"u{i}@health.gov.bz", "", 900 * MB) for i in range(2)]},
                        waves={"default_rate_mb_s": 0.1, "window": {"hours": 2}, "pilot": {"count": 0}})
    wave = generate(govmigrate, ws, expect=int(ExitCode.PARTIAL))["waves"][0]
    assert wave["rate_basis"] == "default" and not wave["fits_window"]
    assert wave["estimated_hours"] == pytest.approx(1800 * MB / (0.1 * MB) / 3600)
    assert "does not fit the 2 h window" in (ws / "plans" / "wave-01.yaml").read_text()
    store = open_store(ws / "state.db")
    try:
        store.record_throughput("health", 100, 50 * MB, 1.0)  # 50 MB/s per mailbox stream
    finally:
        store.close()
    shown = json.loads(govmigrate("-w", ws, "plan", "show", "--json").stdout)["waves"][0]
    assert shown["rate_basis"] == "measured"
    assert shown["estimated_hours"] == pytest.approx(1800 * MB / (2 * 50 * MB) / 3600), "two streams in parallel"
    assert shown["fits_window"]


def test_first_date_gives_every_wave_a_window_a_week_apart(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    generate(govmigrate, ws, "--first-date", "2027-02-01", "--days-between", "7")
    assert [str(plan_doc(ws, w)["window"]["date"]) for w in ("pilot", "wave-01", "wave-02")] == \
        ["2027-02-01", "2027-02-08", "2027-02-15"]
    assert plan_doc(ws, "pilot")["window"]["start"] == "22:00"


def test_cutover_domain_is_the_wave_holding_its_last_mailbox():
    order = [("pilot", ["a@x.bz", "b@y.bz"]), ("wave-01", ["c@x.bz"]), ("wave-02", ["d@z.bz"])]
    assert cutover_domains(order) == {"pilot": ["y.bz"], "wave-01": ["x.bz"], "wave-02": ["z.bz"]}


def test_generate_refuses_to_overwrite_a_plan_unless_asked(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    generate(govmigrate, ws)
    result = govmigrate("-w", ws, "plan", "generate", expect=int(ExitCode.USAGE))
    assert "already exists" in result.stderr and "--replace" in result.stderr
    generate(govmigrate, ws, "--replace")


def test_replace_keeps_a_wave_that_has_started_as_it_was(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    generate(govmigrate, ws)
    store = open_store(ws / "state.db")
    try:
        store.set_mailbox_state(store.mailbox("ana.pilot@health.gov.bz").id, "prestaged")
    finally:
        store.close()
    pilot_before = (ws / "plans" / "pilot.yaml").read_text()
    users = ws / "users" / "health.csv"
    users.write_text(users.read_text() + "new.pilot@health.gov.bz,new.pilot@health.gov.bz,New,,pilot\n")
    result = generate(govmigrate, ws, "--replace", expect=int(ExitCode.PARTIAL))  # the newcomer is not measured
    assert result["kept"] == ["pilot"]
    assert (ws / "plans" / "pilot.yaml").read_text() == pilot_before
    assert [w["wave"] for w in result["waves"]] == ["pilot", "wave-01", "wave-02"]


# -- plan files: validation ------------------------------------------------------------------------------


def test_invalid_plan_files_are_reported_with_file_line_and_field(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    generate(govmigrate, ws)
    path = ws / "plans" / "wave-01.yaml"
    lines = path.read_text().splitlines()
    lines = [ln.replace("hours: 6", "hours: -1") if ln.strip().startswith("hours:") else ln for ln in lines]
    lines = [ln.replace("date: null", "date: 2027-02-31") for ln in lines]
    lines.insert(next(i for i, ln in enumerate(lines) if ln.startswith("notes:")), "colour: blue")
    lines.append("  - eve.pilot@education.gov.bz")   # already in the pilot
    lines.append("  - nobody@health.gov.bz")
    path.write_text("\n".join(lines) + "\n")
    text = path.read_text().splitlines()
    result = govmigrate("-w", ws, "plan", "validate", expect=int(ExitCode.USAGE))
    err = result.stderr

    def line_of(fragment: str) -> int:
        return next(i for i, ln in enumerate(text, 1) if fragment in ln)

    assert f"{path}:{line_of('colour: blue')}: colour: unknown key" in err
    assert f"{path}:{line_of('hours: -1')}: window.hours:" in err
    assert f"{path}:{line_of('date: 2027-02-31')}: window.date:" in err
    assert "Traceback" not in err
    # Schema errors keep the cross-file checks from running on this file; fix them and the rest show.
    fixed = path.read_text().replace("colour: blue\n", "").replace("hours: -1", "hours: 6") \
        .replace("date: 2027-02-31", "date: null")
    path.write_text(fixed)
    text = fixed.splitlines()
    err = govmigrate("-w", ws, "plan", "validate", expect=int(ExitCode.USAGE)).stderr
    assert f"{path}:{line_of('- eve.pilot@education.gov.bz')}: mailboxes[3]: eve.pilot@education.gov.bz is also in " \
           "wave pilot" in err
    assert f"{path}:{line_of('- nobody@health.gov.bz')}: mailboxes[4]: nobody@health.gov.bz is not in any user list" \
        in err
    # A wrong cut-over list: wave-01 does not hold education's last mailboxes (wave-02 does).
    path.write_text(fixed.replace("  - health.gov.bz", "  - health.gov.bz\n  - education.gov.bz"))
    text = path.read_text().splitlines()
    err = govmigrate("-w", ws, "plan", "validate", expect=int(ExitCode.USAGE)).stderr
    assert (f"{path}:{line_of('cutover_domains:')}: cutover_domains: should be [health.gov.bz]: education.gov.bz "
            "does not belong here (its last mailboxes move in wave-02)") in err
    # A domain no source lists: named at its own line.
    path.write_text(fixed.replace("  - health.gov.bz", "  - health.gov.bz\n  - defence.gov.bz"))
    text = path.read_text().splitlines()
    err = govmigrate("-w", ws, "plan", "validate", expect=int(ExitCode.USAGE)).stderr
    assert (f"{path}:{line_of('- defence.gov.bz')}: cutover_domains[1]: defence.gov.bz is not a domain of any "
            "source in migration.yaml") in err


def test_wave_file_missing_from_the_index_and_index_naming_a_missing_file(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    generate(govmigrate, ws)
    (ws / "plans" / "wave-02.yaml").rename(ws / "plans" / "wave-09.yaml")
    err = govmigrate("-w", ws, "plan", "validate", expect=int(ExitCode.USAGE)).stderr
    assert "no plan file" in err and "wave-02.yaml" in err
    assert "wave-09.yaml:1: wave wave-09 is not listed" in err
    assert "must be called 'wave-09'" in err


def test_yaml_syntax_error_is_a_line_level_problem(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    generate(govmigrate, ws)
    path = ws / "plans" / "pilot.yaml"
    path.write_text(path.read_text().replace("title: Pilot", "title: [Pilot"))
    err = govmigrate("-w", ws, "plan", "validate", "pilot", expect=int(ExitCode.USAGE)).stderr
    assert f"{path}:" in err and "YAML syntax error" in err


# -- approval, changes, runs refused ---------------------------------------------------------------------


def test_approve_records_the_hash_and_who_approved(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    generate(govmigrate, ws)
    out = govmigrate("-w", ws, "plan", "approve", "pilot", env={"GOVMIGRATE_ACTOR": "pm.jones"}).stdout
    assert "pilot: approved by pm.jones" in out
    store = open_store(ws / "state.db")
    try:
        row = store.wave("pilot")
        assert row.approved_by == "pm.jones" and len(row.plan_hash) == 64
        events = store.events(obj="wave/pilot")
        assert events[-1].action == "approve" and events[-1].actor == "pm.jones"
        assert row.plan_hash[:16] in events[-1].detail
    finally:
        store.close()
    again = govmigrate("-w", ws, "plan", "approve", "pilot").stdout
    assert "already approved" in again
    shown = {w["wave"]: w["approval"] for w in json.loads(govmigrate("-w", ws, "plan", "show", "--json").stdout)["waves"]}
    assert shown == {"pilot": "approved", "wave-01": "not approved", "wave-02": "not approved"}


def test_the_hash_leaves_defaults_out_so_new_optional_fields_void_no_approval(govmigrate, tmp_path):
    from migrate.plans.model import WaveFile

    bare = WaveFile(version=1, wave="wave-09", mailboxes=["a@health.gov.bz"])
    assert set(bare.canonical()) == {"version", "wave", "mailboxes"}, "defaults stay out of the canonical form"
    spelled_out = WaveFile(version=1, wave="wave-09", mailboxes=["a@health.gov.bz"], title="", white_glove=False,
                           cutover_domains=[], notes="", window={"start": "22:00", "hours": 6.0})
    assert spelled_out.hash == bare.hash, "writing a default out changes nothing"
    assert WaveFile(version=1, wave="wave-09", mailboxes=["a@health.gov.bz"], notes="x").hash != bare.hash

    # An approval recorded before defaults were left out (the first schema, in full) stays valid.
    ws = two_ministries(tmp_path)
    generate(govmigrate, ws)
    govmigrate("-w", ws, "plan", "approve", "pilot")
    store = open_store(ws / "state.db")
    try:
        data = WaveFile.model_validate(store.wave("pilot").doc)
    finally:
        store.close()
    conn = sqlite3.connect(ws / "state.db")
    conn.execute("UPDATE waves SET plan_hash = ? WHERE id = 'pilot'", (data.legacy_hash,))
    conn.commit()
    conn.close()
    shown = {w["wave"]: w["approval"] for w in json.loads(govmigrate("-w", ws, "plan", "show", "--json").stdout)["waves"]}
    assert shown["pilot"] == "approved"
    diff = json.loads(govmigrate("-w", ws, "plan", "diff", "pilot", "--json").stdout)
    assert diff[0]["status"] == "same" and diff[0]["changes"] == [], diff


def test_run_refuses_an_unapproved_wave(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    generate(govmigrate, ws)
    result = govmigrate("-w", ws, "run", "pilot", expect=int(ExitCode.NOT_APPROVED))
    assert "wave pilot is not approved" in result.stderr and "plan approve pilot" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_edit_after_approval_is_refused_by_run_and_shown_by_diff(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    generate(govmigrate, ws)
    govmigrate("-w", ws, "plan", "approve", "wave-01", env={"GOVMIGRATE_ACTOR": "pm.jones"})
    path = ws / "plans" / "wave-01.yaml"
    # Comments and layout are not part of what was approved...
    path.write_text("# reviewed by the health IT lead\n" + path.read_text())
    assert json.loads(govmigrate("-w", ws, "plan", "diff", "wave-01", "--json").stdout)[0]["approval"] == "approved"
    # ...the window is.
    path.write_text(path.read_text().replace("date: null", "date: 2027-03-05"))
    result = govmigrate("-w", ws, "run", "wave-01", expect=int(ExitCode.NOT_APPROVED))
    assert "changed since pm.jones approved wave wave-01" in result.stderr
    assert "plan diff wave-01" in result.stderr
    diff = json.loads(govmigrate("-w", ws, "plan", "diff", "--json").stdout)
    wave01 = next(d for d in diff if d["wave"] == "wave-01")
    assert wave01["status"] == "changed" and wave01["approval"] == "changed"
    assert wave01["changes"] == [{"field": "window.date", "recorded": None, "file": "2027-03-05"}]
    text = govmigrate("-w", ws, "plan", "diff", "wave-01").stdout
    assert "window.date: None -> '2027-03-05'" in text


def test_run_refuses_an_invalid_plan_file_with_exit_2(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    generate(govmigrate, ws)
    govmigrate("-w", ws, "plan", "approve", "pilot")
    path = ws / "plans" / "pilot.yaml"
    path.write_text(path.read_text().replace("kind: pilot", "kind: pilot\nkinds: typo"))
    result = govmigrate("-w", ws, "run", "pilot", expect=int(ExitCode.USAGE))
    assert f"{path}:" in result.stderr and "kinds: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_second_run_of_a_wave_is_refused_naming_the_holder(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    generate(govmigrate, ws)
    govmigrate("-w", ws, "plan", "approve", "pilot")
    with Lock(ws / ".locks", "wave pilot", "govmigrate run pilot --pass prestage"):
        result = govmigrate("-w", ws, "run", "pilot", expect=int(ExitCode.LOCKED))
    assert "wave pilot is locked by govmigrate run pilot --pass prestage (pid" in result.stderr


def test_approve_refuses_an_invalid_wave(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    generate(govmigrate, ws)
    path = ws / "plans" / "wave-02.yaml"
    path.write_text(path.read_text().replace("white_glove: true", "white_glove: maybe"))
    result = govmigrate("-w", ws, "plan", "approve", "wave-02", expect=int(ExitCode.USAGE))
    assert "white_glove" in result.stderr
    store = open_store(ws / "state.db")
    try:
        assert store.wave("wave-02").plan_hash is None
    finally:
        store.close()


# -- plan move -------------------------------------------------------------------------------------------


def test_move_rewrites_both_waves_and_their_cutover_domains_and_voids_approval(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    generate(govmigrate, ws)
    govmigrate("-w", ws, "plan", "approve", "pilot", "wave-01", "wave-02")
    out = govmigrate("-w", ws, "plan", "move", "gus@education.gov.bz", "--to", "wave-01").stdout
    assert "moved gus@education.gov.bz from wave-02 to wave-01" in out
    assert "gus@education.gov.bz" in plan_doc(ws, "wave-01")["mailboxes"]
    assert "gus@education.gov.bz" not in plan_doc(ws, "wave-02")["mailboxes"]
    # education.gov.bz still has fay in wave-02, so its cut-over stays there.
    assert plan_doc(ws, "wave-01")["cutover_domains"] == ["health.gov.bz"]
    govmigrate("-w", ws, "plan", "move", "fay", "--to", "wave-01")
    assert plan_doc(ws, "wave-01")["cutover_domains"] == ["education.gov.bz", "health.gov.bz"]
    assert plan_doc(ws, "wave-02")["cutover_domains"] == [] and plan_doc(ws, "wave-02")["mailboxes"] == []
    govmigrate("-w", ws, "plan", "validate", expect=int(ExitCode.PARTIAL))  # valid, with warnings
    shown = {w["wave"]: w["approval"] for w in json.loads(govmigrate("-w", ws, "plan", "show", "--json").stdout)["waves"]}
    assert shown == {"pilot": "approved", "wave-01": "changed", "wave-02": "changed"}
    diff = {d["wave"]: d for d in json.loads(govmigrate("-w", ws, "plan", "diff", "--json").stdout)}
    assert {"email": "gus@education.gov.bz", "from": "wave-02"} in diff["wave-01"]["added"]
    assert {"email": "fay@education.gov.bz", "to": "wave-01"} in diff["wave-02"]["removed"]
    log = json.loads(govmigrate("-w", ws, "log", "--object", "mailbox/gus@education.gov.bz", "--json").stdout)
    assert log[-1]["action"] == "move" and "wave-02 -> wave-01" in log[-1]["detail"]


def test_move_takes_a_mailbox_out_of_the_excluded_list(govmigrate, tmp_path):
    ws = make_workspace(tmp_path / "ws", {"health": [("ok@health.gov.bz", "", 1 * MB),
                                                      ("late@health.gov.bz", "", None)]},
                        waves={"pilot": {"count": 0}})
    generate(govmigrate, ws, expect=int(ExitCode.PARTIAL))
    govmigrate("-w", ws, "plan", "move", "late@health.gov.bz", "--to", "wave-01")
    index = yaml.safe_load((ws / "plans" / "index.yaml").read_text())
    assert index["excluded"] == []
    assert sorted(plan_doc(ws, "wave-01")["mailboxes"]) == ["late@health.gov.bz", "ok@health.gov.bz"]
    warnings = govmigrate("-w", ws, "plan", "validate", expect=int(ExitCode.PARTIAL)).stderr
    assert "late@health.gov.bz: inventory not measured yet" in warnings


def test_plan_commands_without_a_plan_say_how_to_make_one(govmigrate, tmp_path):
    ws = two_ministries(tmp_path)
    result = govmigrate("-w", ws, "plan", "show", expect=int(ExitCode.USAGE))
    assert "no wave plan" in result.stderr and "plan generate" in result.stderr
    result = govmigrate("-w", ws, "run", "pilot", expect=int(ExitCode.USAGE))
    assert "no wave plan" in result.stderr


def test_generate_without_an_inventory_says_to_run_one(govmigrate, tmp_path):
    ws = make_workspace(tmp_path / "ws", {"health": [("a@health.gov.bz", "", None)]})
    result = govmigrate("-w", ws, "plan", "generate", expect=int(ExitCode.USAGE))
    assert "inventory mail" in result.stderr


def test_generate_after_an_inventory_that_reached_no_mailbox_is_a_clear_error_not_a_crash(govmigrate, tmp_path):
    ws = make_workspace(tmp_path / "ws", {"health": [
        ("a@health.gov.bz", "", "source health (127.0.0.1:9): connection refused (nothing listening)"),
        ("b@health.gov.bz", "", "source health (127.0.0.1:9): connection refused (nothing listening)")]})
    result = govmigrate("-w", ws, "plan", "generate", expect=int(ExitCode.PARTIAL))
    assert "no mailbox can be planned: all 2 were left out" in result.stderr
    assert "connection refused" in result.stderr and "Traceback" not in result.stderr
    assert not (ws / "plans" / "index.yaml").exists()


def test_a_store_of_schema_1_is_upgraded_in_place_keeping_its_data(tmp_path):
    import sqlite3

    from migrate.core.store import MIGRATIONS, SCHEMA_VERSION

    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0].statements("sqlite"):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO sources VALUES ('health', 'Ministry of Health', 'imap', '[]', 'x')")
    conn.execute("INSERT INTO mailboxes(source_id, email, login, state, wave, updated_at) "
                 "VALUES ('health', 'a@health.gov.bz', 'a', 'planned', 'pilot', 'x')")
    conn.execute("INSERT INTO waves(id, position, plan_file, updated_at) VALUES ('pilot', 0, 'plans/pilot.yaml', 'x')")
    conn.close()
    store = open_store(path)
    try:
        assert store.schema_version == SCHEMA_VERSION >= 2
        row = store.mailbox("a@health.gov.bz")
        assert (row.state, row.wave, row.prior_state) == ("planned", "pilot", None)
        assert store.wave("pilot").doc is None and store.runs() == []
    finally:
        store.close()
