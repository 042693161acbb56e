"""The HTML programme report as a project manager sees it: opened in a real headless Chromium (Debian's
``chromium`` and ``chromium-driver``, driven with selenium; no browser is downloaded), for a lab programme run
against real Dovecot servers with a failed mailbox and an overdue wave. The page logs no console error, makes
no network request, is not blank, and shows the store's numbers."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import zlib
from pathlib import Path

import pytest

from tests.lab import scenario

pytestmark = pytest.mark.lab

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
MOVED = ("final-synced", "cut-over", "done")


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
                "--window-size=1400,1000", "--no-first-run", "--disable-background-networking"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def lab_programme(tmp_path, govmigrate):
    """The pilot moved (final-synced); wave-01 run with one mailbox the central host lacks (failed, forced);
    every window in January: the waves with work left are overdue."""
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="htmlreport", users=3, messages=4)
    try:
        missing = next(b.email for b in boxes if "pilot" not in b.user_flags)
        lab.central.users.pop(missing)  # the central mail team has not created this one yet
        lab.central._write_users()
        govmigrate("-w", ws, "inventory", "mail")
        govmigrate("-w", ws, "plan", "generate", "--first-date", "2026-01-05", expect=None)
        govmigrate("-w", ws, "plan", "approve", "pilot")
        for step in ("prestage", "delta", "final"):
            govmigrate("-w", ws, "run", "pilot", "--pass", step)
        govmigrate("-w", ws, "plan", "approve", "wave-01")
        govmigrate("-w", ws, "run", "wave-01", "--pass", "prestage", "--force", expect=1)
        yield ws
    finally:
        lab.stop()


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


def test_the_report_opens_in_chromium_offline_and_shows_the_stores_numbers(govmigrate, browser, lab_programme):
    from selenium.webdriver.common.by import By

    ws = lab_programme
    path = Path(govmigrate("-w", ws, "report", "--html").stdout.strip())
    browser.get_log("browser")  # start with empty logs
    browser.get_log("performance")
    browser.get(path.as_uri())

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
    assert ministry.text == f"{figures['done']} / {figures['total']}"
    status = browser.find_element(By.CSS_SELECTOR, '[data-wave="wave-01"] [data-metric="wave-status"]').text
    assert status == "overdue"
    failed = [e.get_attribute("data-failed") for e in browser.find_elements(By.CSS_SELECTOR, "[data-failed]")]
    with sqlite3.connect(ws / "state.db") as db:
        assert failed == [e for (e,) in db.execute("SELECT email FROM mailboxes WHERE state = 'failed'")]
    charts = browser.find_elements(By.CSS_SELECTOR, ".chart svg")
    assert len(charts) == 2 and all(c.size["height"] > 100 for c in charts), "the burn-up charts are drawn"
