"""The HTML reports as a project manager and a change board see them: opened in a real headless Chromium (Debian's
``chromium`` and ``chromium-driver``, driven with selenium; no browser is downloaded), for a lab programme run
against real Dovecot servers: the pilot moved under two approvals (the first lapsed when a mailbox was moved
into it), then the last wave run with one of its mailboxes missing on the central host (failed, forced).

The pages log no console error, make no network request, are not blank and show the store's numbers; the
failing wave is marked and moves the forecast; the pilot's record shows its approval history; an axe-core audit
(the copy the PyPI package axe-selenium-python ships, injected into the page) finds no serious or critical
violation; at 390 px the page is no wider than the screen and the charts' text is readable; printed to A4 the
demo's programme (``make demo``, run here into a temporary directory) is at most two pages with the summary on
the first, and the badges keep their colours without background graphics."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from tests.conftest import Runner
from tests.lab import scenario

pytestmark = pytest.mark.lab

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
MOVED = ("final-synced", "cut-over", "done")
#: The done status's badge colour (#2e7d32) as a PDF fill colour: no text or line of the page has it.
DONE_RGB = (0x2E / 255, 0x7D / 255, 0x32 / 255)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def browser():
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not shutil.which(path):
            pytest.fail(f"{path} is missing: install the Debian package {package} (make test does)")
    os.environ["SE_OFFLINE"] = "true"  # selenium must never try to download a driver or a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1366,1000", "--no-first-run", "--disable-background-networking"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def lab_programme(tmp_path_factory):
    """(workspace, the programme's JSON report before the failing run). Windows from next week; the pilot run
    under approval 1 (prestage), its approval lapsed by `plan move`, approved again and run to the end; then
    wave-01, one of whose two mailboxes the central host lacks, run with --force: that one failed."""
    govmigrate = Runner()
    ws = tmp_path_factory.mktemp("report") / "ws"
    lab, boxes = scenario.small_lab(ws, seed="htmlreport", users=4, messages=4)
    try:
        (ws / "migration.yaml").write_text((ws / "migration.yaml").read_text() + "timezone: America/Belize\n")
        vip = next(b.email for b in boxes if "vip" in b.user_flags)
        other = next(b.email for b in boxes if not b.user_flags)
        lab.central.users.pop(vip)  # the central mail team has not created this one yet
        lab.central._write_users()
        govmigrate("-w", ws, "inventory", "mail")
        first = (dt.date.today() + dt.timedelta(days=7)).isoformat()
        govmigrate("-w", ws, "plan", "generate", "--first-date", first, expect=None)
        govmigrate("-w", ws, "plan", "approve", "pilot")
        govmigrate("-w", ws, "run", "pilot", "--pass", "prestage")
        govmigrate("-w", ws, "plan", "move", other, "--to", "pilot")  # the pilot's approval lapses
        govmigrate("-w", ws, "plan", "approve", "pilot")
        for step in ("prestage", "delta", "final"):
            govmigrate("-w", ws, "run", "pilot", "--pass", step)
        pilot = next(b.email for b in boxes if "pilot" in b.user_flags)
        govmigrate("-w", ws, "verify", pilot, other)
        before = json.loads(govmigrate("-w", ws, "report", "--json").stdout)
        govmigrate("-w", ws, "plan", "approve", "wave-01")
        govmigrate("-w", ws, "run", "wave-01", "--pass", "prestage", "--force", expect=1)
        yield ws, before
    finally:
        lab.stop()


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory) -> Path:
    """The programme report ``make demo`` writes, the demo run into a temporary directory."""
    place = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if k != "GOVMIGRATE_WORKSPACE"}
    run = subprocess.run([sys.executable, "-m", "tests.lab.demo"], cwd=ROOT, capture_output=True, text=True,
                         env={**env, "GOVMIGRATE_DEMO_DIR": str(place), "PYTHONPATH": str(ROOT)}, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return next((place / "demo-workspace" / "reports").glob("programme-*.html"))


def store_figures(ws: Path) -> dict:
    with sqlite3.connect(ws / "state.db") as db:
        states = [s for (s,) in db.execute("SELECT state FROM mailboxes WHERE state != 'skipped'")]
    return {"done": sum(s in MOVED for s in states), "total": len(states), "failed": states.count("failed")}


def png_is_blank(png: bytes) -> bool:
    """True when the decoded image has (almost) one colour: a blank page."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        if kind == b"IDAT":
            idat += png[pos + 8:pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(idat))) <= 3


def show(browser, path: Path, width: int = 1366) -> None:
    """Open a report as a screen ``width`` CSS pixels wide shows it (a phone below 600)."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600})
    browser.get(path.as_uri())


def report(govmigrate, ws: Path, *args: str) -> Path:
    return Path(govmigrate("-w", ws, "report", *args, "--html").stdout.strip())


def printed(browser, path: Path) -> list[str]:
    """The report printed to PDF as Chromium prints it (the page's own @page size, A4; no background graphics):
    the text of each page."""
    from pypdf import PdfReader

    browser.get(path.as_uri())
    pdf = base64.b64decode(browser.execute_cdp_cmd("Page.printToPDF", {"preferCSSPageSize": True,
                                                                       "printBackground": False})["data"])
    return [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]


def test_the_report_opens_in_chromium_offline_and_shows_the_stores_numbers(govmigrate, browser, lab_programme):
    from selenium.webdriver.common.by import By

    ws, _ = lab_programme
    path = report(govmigrate, ws)
    browser.get_log("browser")  # start with empty logs
    browser.get_log("performance")
    show(browser, path)

    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == [], errors
    requests = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requests.append(message["params"]["request"]["url"])
    assert requests and all(url == path.as_uri() for url in requests), requests

    assert not png_is_blank(browser.get_screenshot_as_png())

    def metric(name: str) -> str:
        return browser.find_element(By.CSS_SELECTOR, f'[data-metric="{name}"]').text

    figures = store_figures(ws)
    assert figures["failed"] == 1 and 0 < figures["done"] < figures["total"]
    assert (int(metric("mailboxes-done")), int(metric("mailboxes-total")), int(metric("failures"))) == \
        (figures["done"], figures["total"], figures["failed"])
    ministry = browser.find_element(By.CSS_SELECTOR, '[data-ministry="health"] [data-metric="ministry-done"]')
    assert ministry.text == f"{figures['done']} of {figures['total']}"
    failed = [e.get_attribute("data-failed") for e in browser.find_elements(By.CSS_SELECTOR, "[data-failed]")]
    with sqlite3.connect(ws / "state.db") as db:
        assert failed == [e for (e,) in db.execute("SELECT email FROM mailboxes WHERE state = 'failed'")]
    charts = browser.find_elements(By.CSS_SELECTOR, ".chart svg")
    assert len(charts) == 2 and all(c.size["height"] > 100 for c in charts), "the burn-up charts are drawn"
    assert all(c.get_attribute("role") == "img" and "done" in c.get_attribute("aria-label") for c in charts)
    # Every time carries the programme's zone: Belize is UTC-06:00 all year (CST).
    assert "America/Belize (UTC-06:00)" in browser.find_element(By.TAG_NAME, "footer").text
    assert metric("forecast-end").endswith(" CST")


def test_a_failing_wave_is_marked_and_moves_the_forecast(govmigrate, browser, lab_programme):
    from selenium.webdriver.common.by import By

    ws, before = lab_programme
    after = json.loads(govmigrate("-w", ws, "report", "--json").stdout)
    assert before["forecast"]["verdict"] == "on schedule"
    was, now = ({w["id"]: w for w in doc["waves"]}["wave-01"] for doc in (before, after))
    assert was["forecast"]["status"] in ("scheduled", "not approved")
    assert now["counts"]["failed"] == 1
    assert now["forecast"]["status"] == "failing"
    moved = dt.datetime.fromisoformat(now["forecast"]["forecast_end"])
    assert moved > dt.datetime.fromisoformat(was["forecast"]["forecast_end"]), "the forecast moves"
    assert after["forecast"]["verdict"] == "behind" and after["forecast"]["days_late"] >= 1
    assert after["forecast"]["forecast_end"] == now["forecast"]["forecast_end"]

    show(browser, report(govmigrate, ws))
    badge = browser.find_element(By.CSS_SELECTOR, '#waves [data-wave="wave-01"] [data-metric="wave-status"]')
    assert badge.text == "failing"
    assert browser.find_element(By.CSS_SELECTOR, '[data-wave="wave-01"][data-status="failing"]')  # the timeline
    assert "behind the plan" in browser.find_element(By.CSS_SELECTOR, '[data-metric="schedule"]').text
    attention = browser.find_element(By.CSS_SELECTOR, '[data-metric="attention"]').text
    assert "wave-01 (failing" in attention and "failed" in attention


def test_a_wave_whose_approval_lapsed_shows_its_history_and_each_runs_approval(govmigrate, browser,
                                                                                lab_programme):
    from selenium.webdriver.common.by import By

    ws, _ = lab_programme
    show(browser, report(govmigrate, ws, "--wave", "pilot"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#approvals tbody tr")
    assert [r.get_attribute("data-status") for r in rows] == ["lapsed", "in force"]
    first, second = rows
    ended = first.find_element(By.CSS_SELECTOR, '[data-metric="approval-end"]').text
    assert ended.startswith("lapsed at ") and "was moved (wave-01 → pilot)" in ended and "1 mailbox added" in ended
    assert "1 mailbox added" in second.text, "what changed since the approval before"
    assert "1 mailbox" in first.text and "2 mailboxes" in second.text, "what each approval covered"
    with sqlite3.connect(ws / "state.db") as db:
        runs = [(i, p) for i, p in db.execute("SELECT id, pass FROM runs WHERE wave = 'pilot' ORDER BY id")]
    assert len(runs) == 4
    under = {r.get_attribute("data-run"): r.find_element(By.CSS_SELECTOR, '[data-metric="run-approval"]').text
             for r in browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")}
    assert under == {str(runs[0][0]): "approval 1", **{str(i): "approval 2" for i, _ in runs[1:]}}
    assert "(run " in first.find_element(By.CSS_SELECTOR, '[data-metric="approval-runs"]').text
    assert "Approved by" in browser.find_element(By.CSS_SELECTOR, '[data-metric="approval"]').text
    # Plain words and the verify: no lifecycle code as a mailbox's state, each verified mailbox matched.
    states = [e.text for e in browser.find_elements(By.CSS_SELECTOR, '#mailboxes [data-metric="state"]')]
    assert states and not any(s in ("final-synced", "prestaged") for s in states), states
    verified = [e.text for e in browser.find_elements(By.CSS_SELECTOR, '#mailboxes [data-metric="verified"]')]
    assert verified and all(v.startswith("matched") for v in verified), verified


def audit(browser) -> list[dict]:
    """axe-core's serious and critical violations of the page on screen (its WCAG 2.0 A and AA, WCAG 2.1 AA and
    best-practice rules). The script runs through the browser's debugging protocol, which the page's content
    policy (no script at all) does not govern."""
    from axe_selenium_python import Axe

    axe = Axe(browser)
    axe.inject()
    results = axe.run(options="{runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa', 'best-practice']}}")
    assert results.get("passes"), "axe ran its checks"
    return [{"rule": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in results["violations"] if v["impact"] in ("serious", "critical")]


def test_both_reports_pass_an_accessibility_audit(govmigrate, browser, lab_programme):
    ws, _ = lab_programme
    for path in (report(govmigrate, ws), report(govmigrate, ws, "--wave", "pilot"),
                 report(govmigrate, ws, "--wave", "wave-01")):
        for width in (1366, 390):
            show(browser, path, width)
            assert audit(browser) == [], (path.name, width)
        tables = browser.execute_script(
            "return [...document.querySelectorAll('table')].map(t => [!!t.caption, t.querySelectorAll('th').length,"
            " t.querySelectorAll('th[scope]').length, t.querySelectorAll('td').length])")
        assert tables and all(caption and heads == scoped and heads for caption, heads, scoped, _ in tables), \
            "every table has a caption, and header cells, each with its scope"


def test_on_a_phone_the_page_fits_the_screen_and_the_charts_text_is_readable(govmigrate, browser, lab_programme):
    ws, _ = lab_programme
    for path in (report(govmigrate, ws), report(govmigrate, ws, "--wave", "pilot")):
        show(browser, path, 390)
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 390, path.name
        broken = browser.execute_script(
            "return [...document.querySelectorAll('body *')].filter(e => getComputedStyle(e).wordBreak == "
            "'break-all').map(e => e.textContent.slice(0, 40))")
        assert broken == [], "nothing splits an address or a host name mid-word"
    show(browser, report(govmigrate, ws), 390)
    sizes = browser.execute_script(  # each text's font size as drawn: its size in the drawing times the scale
        "return [...document.querySelectorAll('.chart svg text, .timeline svg text')]"
        ".filter(t => t.textContent.trim()).map(t => { const svg = t.ownerSVGElement;"
        " const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;"
        " return parseFloat(getComputedStyle(t).fontSize) * scale; })")
    assert sizes and min(sizes) >= 9.5, f"chart text is drawn {min(sizes):.1f} px high at 390 px"


def test_the_printed_demo_programme_is_a_summary_page_and_at_most_one_more(browser, demo_report):
    pages = printed(browser, demo_report)
    assert len(pages) <= 2, f"{len(pages)} pages"
    summary = pages[0]
    assert "mailboxes done" in summary and "of mail moved" in summary and "Burn-up" in summary
    assert "Compliance per ministry" not in summary, "the detail starts on a page of its own"
    assert "Compliance per ministry" in pages[1] and "Wave timeline" in pages[1]
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d CST", summary), "times carry the demo's zone"


def test_badges_keep_their_colours_in_print_without_background_graphics(govmigrate, browser, lab_programme):
    """The done badge is a CSS background: printed only because the page asks to keep its colours. (The charts'
    lines and the timeline's bars are drawn, not backgrounds, and the legend has the colour too: they are removed
    first, so that only the badge can show the green.)"""
    from pypdf import PdfReader

    ws, _ = lab_programme
    browser.get(report(govmigrate, ws).as_uri())
    browser.execute_script("document.querySelectorAll('svg, .legend').forEach(s => s.remove())")
    pdf = base64.b64decode(browser.execute_cdp_cmd("Page.printToPDF", {"preferCSSPageSize": True,
                                                                       "printBackground": False})["data"])
    fills = set()
    for page in PdfReader(io.BytesIO(pdf)).pages:
        content = page.get_contents()
        text = content.get_data().decode("latin-1") if content is not None else ""
        fills |= {tuple(float(v) for v in m) for m in re.findall(r"([\d.]+) ([\d.]+) ([\d.]+) rg", text)}
    assert any(all(abs(a - b) < 0.01 for a, b in zip(fill, DONE_RGB, strict=True)) for fill in fills), fills


def test_a_programme_of_47_waves_prints_its_timeline_on_one_page_after_the_summary(govmigrate, browser, tmp_path):
    from tests.test_plan import MB, generate, make_workspace

    ws = make_workspace(tmp_path / "ws", {"health": [(f"u{i:02d}@health.gov.bz", "pilot" if i == 0 else "", MB)
                                                     for i in range(47)]},
                        waves={"max_mailboxes": 1}, timezone="America/Belize")
    generate(govmigrate, ws, "--first-date", (dt.date.today() + dt.timedelta(days=7)).isoformat(), expect=None)
    path = report(govmigrate, ws)
    show(browser, path, round((297 - 2 * 12) / 25.4 * 96))  # as wide as the printed page's content
    assert len(browser.execute_script("return document.querySelectorAll('.timeline g[data-wave]')")) == 47
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        height = browser.execute_script("return document.querySelector('.timeline svg').getBoundingClientRect()"
                                        ".height")
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    page = (210 - 2 * 10) / 25.4 * 96   # A4 landscape, 10 mm margins top and bottom, in CSS pixels
    assert height <= page, f"the timeline is {height:.0f} px high; a page holds {page:.0f}"
    pages = printed(browser, path)
    assert "mailboxes done" in pages[0] and "Compliance per ministry" not in pages[0]
