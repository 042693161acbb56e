"""Exchange calendars and contacts: the sync copies them from the lab's EWS responder into a real Radicale
(CalDAV/CardDAV) as the data centre's groupware, keyed by UID; without a DAV target they become per-user
.ics/.vcf files in the workspace."""

from __future__ import annotations

import base64
import csv
import io
import json
import stat

import pytest

from migrate.core.errors import ExitCode
from migrate.mailbox.groupware import export_path
from tests.lab import corpus, ews_groupware, scenario
from tests.lab.radicale import RadicaleServer

pytestmark = pytest.mark.lab


@pytest.fixture
def exchange(tmp_path):
    """An Exchange ministry with calendars and contacts, the central IMAP host, and a workspace (no DAV yet)."""
    boxes = corpus.ministry(seed="dav", domain="finance.gov.bz", users=2, messages=4, login_style="email")
    ws = tmp_path / "ws"
    lab = scenario.ews_lab(ws, boxes)
    responder = lab.extra[0]
    placed = ews_groupware.add_groupware(responder.store)
    yield ws, boxes, responder, placed
    lab.stop()


@pytest.fixture
def radicale():
    server = RadicaleServer().start()
    yield server
    server.cleanup()


def _dav_state(radicale: RadicaleServer, email: str) -> tuple[dict, dict]:
    """What Radicale holds for a user, read with the caldav client: (UID → VCALENDAR, UID → vCard text)."""
    import caldav
    import vobject
    from icalendar import Calendar

    client = radicale.client()
    home = f"{radicale.url}{email.lower()}/"
    events = {}
    for event in caldav.Calendar(client=client, url=home + "calendar/").events():
        cal = Calendar.from_ical(event.data)
        uid = str(cal.walk("VEVENT")[0].get("UID"))
        assert uid not in events, f"{email}: UID {uid} is in the calendar twice"
        events[uid] = cal
    report = client.request(home + "contacts/", "REPORT",
                            '<C:addressbook-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav">'
                            "<D:prop><C:address-data/></D:prop></C:addressbook-query>", {"Depth": "1"})
    cards = {}
    for data in report.tree.iter("{urn:ietf:params:xml:ns:carddav}address-data"):
        card = vobject.readOne(data.text)
        assert card.uid.value not in cards, f"{email}: contact {card.uid.value} twice"
        cards[card.uid.value] = data.text
    return events, cards


def _sync(govmigrate, ws, *users, code: int = 0) -> list[dict]:
    result = govmigrate("-w", ws, "sync", *(users or ("--all",)), "--json", expect=code)
    return json.loads(result.stdout)


def test_calendars_and_contacts_arrive_in_dav_once_and_changes_update_in_place(govmigrate, exchange, radicale):
    ws, boxes, responder, placed = exchange
    scenario.add_dav(ws, radicale)
    rows = _sync(govmigrate, ws)
    for row in rows:
        got = {g["kind"]: g for g in row["groupware"]}
        assert got["calendar"]["copied"] == 3 and got["contacts"]["copied"] == 3, row
    for box in boxes:
        events, cards = _dav_state(radicale, box.email)
        want = {o.uid for o in placed[box.email.lower()] if o.kind == "calendar"}
        assert set(events) == want
        series = events[ews_groupware.series(box.email.split("@")[0]).uid]
        vevents = list(series.walk("VEVENT"))
        master = next(v for v in vevents if not v.get("RECURRENCE-ID"))
        moved = [v for v in vevents if v.get("RECURRENCE-ID")]
        assert len(moved) == 1, f"{box.email}: the series lost its modified occurrence"
        moved = moved[0]
        assert str(master.get("RRULE").to_ical().decode()) == "FREQ=WEEKLY;COUNT=10;BYDAY=WE"
        assert master["DTSTART"].params["TZID"] == "America/Belize"
        assert [str(d.dt) for e in [master.get("EXDATE")] for d in e.dts] == ["2026-12-30 09:00:00-06:00"]
        assert str(moved["SUMMARY"]) == "Cabinet briefing (moved)"
        assert moved["DTSTART"].dt.hour == 14 and str(moved["DTSTART"].dt.tzinfo) in ("America/Belize", "CST")
        assert [str(z["TZID"]) for z in series.walk("VTIMEZONE")] == ["America/Belize"]
        assert all("METHOD" not in cal for cal in events.values())   # RFC 4791 §4.1
        assert len(cards) == 3
        assert any("José Pérez" in text for text in cards.values())
        assert any("O'Brien" in text for text in cards.values())

    # A second pass copies nothing.
    rows = _sync(govmigrate, ws)
    for row in rows:
        assert all(g["copied"] == 0 and g["updated"] == 0 for g in row["groupware"]), row

    # An event changed at the source is updated under the same UID.
    box = boxes[0]
    local = box.email.split("@")[0]
    uid = f"{local}-allday@lab.gov.bz"
    new = ews_groupware.find(responder.store, box.email, "calendar", uid).message.raw.replace(
        b"National Heroes and Benefactors Day", b"Heroes Day (office closed)")
    ews_groupware.change(responder.store, box.email, "calendar", uid, new)
    rows = _sync(govmigrate, ws)
    got = {g["kind"]: g for g in rows[[r["mailbox"] for r in rows].index(box.email)]["groupware"]}
    assert got["calendar"]["updated"] == 1 and got["calendar"]["copied"] == 0
    events, _cards = _dav_state(radicale, box.email)
    assert len(events) == 3
    assert str(events[uid].walk("VEVENT")[0]["SUMMARY"]) == "Heroes Day (office closed)"

    # verify compares counts and UIDs; status shows where they are.
    results = json.loads(govmigrate("-w", ws, "verify", "--all", "--json").stdout)
    for result in results:
        assert result["matches"], result
        assert {g["kind"]: g["dest"] for g in result["groupware"]} == {"calendar": 3, "contacts": 3}
    status = govmigrate("-w", ws, "status", box.email).stdout
    assert "calendar" in status and "contacts" in status and "3 of 3" in status
    report = json.loads(govmigrate("-w", ws, "report", "--json").stdout)
    assert report["groupware"]["calendar_copied"] == 6 and report["groupware"]["contacts_copied"] == 6
    assert report["groupware"]["exported_mailboxes"] == 0


def test_verify_finds_an_event_missing_from_dav(govmigrate, exchange, radicale):
    ws, boxes, _responder, _placed = exchange
    scenario.add_dav(ws, radicale)
    _sync(govmigrate, ws)
    box = boxes[0]
    import caldav

    calendar = caldav.Calendar(client=radicale.client(), url=f"{radicale.url}{box.email.lower()}/calendar/")
    calendar.events()[0].delete()
    result = govmigrate("-w", ws, "verify", box.email, "--json", expect=1)
    row = json.loads(result.stdout)[0]
    assert not row["matches"]
    cal = next(g for g in row["groupware"] if g["kind"] == "calendar")
    assert cal["source"] == 3 and cal["dest"] == 2 and len(cal["missing"]) == 1
    table = govmigrate("-w", ws, "verify", box.email, expect=1).stdout
    assert f"calendar: missing: UID {cal['missing'][0]}" in table


def test_without_dav_calendars_and_contacts_are_exported_to_private_files(govmigrate, exchange):
    ws, boxes, _responder, _placed = exchange
    rows = _sync(govmigrate, ws)
    for box in boxes:
        for kind, begin in (("calendar", b"BEGIN:VCALENDAR"), ("contacts", b"BEGIN:VCARD")):
            path = export_path(ws, box.email, kind)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            data = path.read_bytes()
            assert data.startswith(begin)
        from icalendar import Calendar

        cal = Calendar.from_ical(export_path(ws, box.email, "calendar").read_bytes())
        assert len({str(v["UID"]) for v in cal.walk("VEVENT")}) == 3
        assert [str(z["TZID"]) for z in cal.walk("VTIMEZONE")] == ["America/Belize"]
        assert export_path(ws, box.email, "contacts").read_bytes().count(b"BEGIN:VCARD") == 3
    assert all(g["location"].endswith((".ics", ".vcf")) for r in rows for g in r["groupware"])
    again = _sync(govmigrate, ws)
    assert all(g["copied"] == 0 and g["updated"] == 0 for r in again for g in r["groupware"])
    table = govmigrate("-w", ws, "sync", "--all").stdout
    assert f"{boxes[0].email}: contacts: 3 at the source, 0 new, 0 updated, 0 refused" in table
    status = govmigrate("-w", ws, "status", boxes[0].email).stdout
    assert str(export_path(ws, boxes[0].email, "calendar")) in status.replace("\n", "")
    report = govmigrate("-w", ws, "report").stdout
    assert "6 of 6 calendar items" in report and "2 mailboxes had no central DAV server" in report
    rows_csv = list(csv.DictReader(io.StringIO(govmigrate("-w", ws, "report", "--csv").stdout)))
    programme = next(r for r in rows_csv if r["level"] == "programme")
    assert (programme["calendar_items"], programme["calendar_copied"], programme["contacts_copied"]) == ("6", "6", "6")
    html = ws / "programme.html"
    govmigrate("-w", ws, "report", "--html", html)
    page = html.read_text()
    assert 'data-metric="ministry-calendar">6 of 6<' in page and 'id="groupware-files"' in page
    results = json.loads(govmigrate("-w", ws, "verify", "--all", "--json").stdout)
    assert all(r["matches"] and {g["dest"] for g in r["groupware"]} == {3} for r in results)


def test_wrong_dav_password_fails_clearly_and_never_shows_the_password(govmigrate, exchange, radicale):
    ws, _boxes, _responder, _placed = exchange
    real = radicale.password
    scenario.add_dav(ws, radicale)
    radicale.set_password("another-password-entirely")
    result = govmigrate("-w", ws, "-vv", "sync", "--all", expect=int(ExitCode.AUTH))
    output = result.stdout + result.stderr
    assert "refused the password" in output and "central DAV server" in output
    assert "Traceback" not in output
    basic = base64.b64encode(f"{radicale.user}:{real}".encode()).decode()
    assert real not in output and basic not in output and "another-password-entirely" not in output


# -- the project file's central.dav ---------------------------------------------------------------------------

def _add_dav(project, **fields) -> int:
    """Add a ``central.dav`` section after the central host's ``connections`` line; returns the url's line."""
    text = project.read_text()
    anchor = "  connections: 8 "
    assert anchor in text
    lines = "".join(f"    {k}: {v}\n" for k, v in fields.items())
    head, tail = text.split(anchor, 1)
    first, rest = tail.split("\n", 1)
    project.write_text(head + anchor + first + "\n  dav:\n" + lines + rest)
    return next(n for n, line in enumerate(project.read_text().splitlines(), 1) if line.startswith("    url:"))


@pytest.mark.parametrize(("url", "field", "message"), [
    ("http://dav.gov.bz/", "central.dav.url", "an http:// url sends the DAV login"),
    ("https://migrator:hunter2@dav.gov.bz/", "central.dav.url", "must not hold a user name or password"),
    ("ftp://dav.gov.bz/", "central.dav.url", "must be an http:// or https:// URL"),
])
def test_dav_url_problems_name_file_line_and_field(govmigrate, example_workspace, example_secrets, monkeypatch,
                                                  url, field, message):
    monkeypatch.setenv("GOVMIGRATE_DAV_PASSWORD", "example-dav-password")
    project = example_workspace / "migration.yaml"
    line = _add_dav(project, url=url, user="migrator", password="env:GOVMIGRATE_DAV_PASSWORD")
    result = govmigrate("-w", example_workspace, "check", expect=int(ExitCode.USAGE))
    assert f"migration.yaml:{line}: {field}: {message}" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


def test_dav_over_http_is_accepted_on_loopback_or_when_allowed(govmigrate, example_workspace, example_secrets,
                                                             monkeypatch):
    monkeypatch.setenv("GOVMIGRATE_DAV_PASSWORD", "example-dav-password")
    project = example_workspace / "migration.yaml"
    original = project.read_text()
    for fields in ({"url": "http://127.0.0.1:5232/"}, {"url": "http://dav.gov.bz/", "allow_cleartext": "true"}):
        project.write_text(original)
        _add_dav(project, **fields, user="migrator", password="env:GOVMIGRATE_DAV_PASSWORD")
        result = govmigrate("-w", example_workspace, "check", expect=None)
        assert "central.dav" not in result.stderr, result.stderr


def test_dav_password_must_be_a_secret_reference(govmigrate, example_workspace, example_secrets):
    project = example_workspace / "migration.yaml"
    _add_dav(project, url="https://dav.gov.bz/", user="migrator", password="hunter2-plain")
    result = govmigrate("-w", example_workspace, "check", expect=int(ExitCode.USAGE))
    assert "central.dav.password" in result.stderr
    assert "hunter2-plain" not in result.stdout + result.stderr


def test_a_dav_server_that_is_down_stops_the_sync_before_any_mailbox_is_read(govmigrate, exchange, radicale):
    ws, _boxes, responder, _placed = exchange
    scenario.add_dav(ws, radicale)
    radicale.stop()
    responder.clear_log()
    result = govmigrate("-w", ws, "sync", "--all", expect=int(ExitCode.UNREACHABLE))
    assert "central DAV server" in result.stderr and "connection refused" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not responder.requests_for("FindItem"), "no mailbox was read"


def test_an_item_exchange_cannot_export_is_reported_and_copied_once_it_can(govmigrate, exchange, radicale):
    ws, boxes, responder, _placed = exchange
    scenario.add_dav(ws, radicale)
    box = boxes[0]
    local = box.email.split("@")[0]
    broken = ews_groupware.find(responder.store, box.email, "calendar", f"{local}-allday@lab.gov.bz")
    responder.break_item(broken.item_id, "conversion-failed")
    rows = _sync(govmigrate, ws, box.email, code=int(ExitCode.PARTIAL))
    calendar = next(g for g in rows[0]["groupware"] if g["kind"] == "calendar")
    assert calendar["copied"] == 2 and len(calendar["failed"]) == 1
    assert "ErrorMimeContentConversionFailed" in calendar["failed"][0]["error"]
    assert "2 of 3 items copied, 1 not copied" in govmigrate("-w", ws, "status", box.email).stdout
    events, _cards = _dav_state(radicale, box.email)
    assert len(events) == 2

    del responder.broken_items[broken.item_id]      # the item is repaired at the source
    rows = _sync(govmigrate, ws, box.email)
    calendar = next(g for g in rows[0]["groupware"] if g["kind"] == "calendar")
    assert calendar["copied"] == 1 and not calendar["failed"]
    status = json.loads(govmigrate("-w", ws, "status", box.email, "--json").stdout)
    calendar = next(g for g in status["groupware"] if g["kind"] == "calendar")
    assert (calendar["copied"], calendar["failed"], calendar["source_items"]) == (3, 0, 3)
    assert len(_dav_state(radicale, box.email)[0]) == 3
