"""Text from outside never paints the operator's terminal: control characters from a PBX file, a DNS TXT record
and a server's error reply reach the terminal escaped (``\\x1b``, ``\\n``), in tables, messages, progress and
log lines alike, and a name with a line break stays on its line."""

from __future__ import annotations

import csv
import io
import logging

import pytest
import yaml
from rich.console import Console

from migrate.cli.app import App, _Console
from migrate.cli.output import emit_table, plain
from migrate.cli.progress import LiveProgress
from migrate.core.errors import ExitCode
from migrate.core.logs import setup_logging
from migrate.core.printable import printable
from migrate.core.progress import ProgressEvent
from tests.lab import scenario
from tests.lab.pbx import add_pbx, write_pbx
from tests.lab.proxy import RecordingProxy
from tests.test_dns_check import HEALTH, Workspaces

#: What a hostile name carries: a window title (OSC 0), a screen clear, a bell, a NUL, a C1 CSI, and line breaks.
TITLE = "\x1b]0;owned\x07"
CLEAR = "\x1b[2J"
HOSTILE_NAME = f"Ana {TITLE}Pérez{CLEAR}\x00\x9b31m\r\nFAKE: line"
RAW = ("\x1b", "\x07", "\x00", "\x9b", "\r")


def _clean(text: str) -> None:
    """No raw control character a terminal would act on, nor a line break inside a name."""
    for char in RAW:
        assert char not in text, f"{char!r} reached the terminal raw"
    assert "\nFAKE: line" not in text, "a name's line break printed a line of its own"


def test_printable_escapes_every_control_character_and_keeps_the_rest():
    assert printable(HOSTILE_NAME) == "Ana \\x1b]0;owned\\x07Pérez\\x1b[2J\\x00\\x9b31m\\r\\nFAKE: line"
    assert printable("tab\there\u2028next") == "tab\\there\\u2028next"
    assert printable("Ñandú [b] :memo: 100%") == "Ñandú [b] :memo: 100%"


def test_tables_messages_progress_and_log_lines_show_control_characters_escaped():
    out, err = io.StringIO(), io.StringIO()
    app = App(workspace_dir=__import__("pathlib").Path("."))
    # Consoles as the CLI makes them, writing to buffers that act as terminals (colour codes and all).
    app.out = _Console(file=out, markup=False, emoji=False, highlight=False, force_terminal=True, width=200)
    app.err = _Console(file=err, markup=False, emoji=False, highlight=False, force_terminal=True, width=200)
    emit_table(app, f"phones of {HOSTILE_NAME}", [("name", "name")], [{"name": HOSTILE_NAME}])
    app.info(f"note: {HOSTILE_NAME} has no user")
    app.warn(f"{HOSTILE_NAME}: the caller ID is not a number")
    app.err.print(plain(HOSTILE_NAME, style="red"))
    _clean(out.getvalue().replace("\x1b[", "") + err.getvalue().replace("\x1b[", ""))  # colour codes aside
    progress = LiveProgress(app, "SIP checks", unit="items")
    with progress.progress:
        progress(ProgressEvent("plan", total_messages=1))
        progress(ProgressEvent("start", HOSTILE_NAME))
        progress(ProgressEvent("failed", HOSTILE_NAME, detail=f"refused: {HOSTILE_NAME}"))
    printed = out.getvalue() + err.getvalue()
    # Rich's own colour codes (ESC [ ... m) are there: this is a terminal. Nothing else is.
    assert "\x1b]" not in printed and CLEAR not in printed and "\x07" not in printed and "\x00" not in printed
    assert "\x9b" not in printed and "\nFAKE: line" not in printed  # (a live display redraws with CR)
    assert printed.count("\\x1b]0;owned\\x07") >= 5, printed
    assert "\\r\\nFAKE: line" in printed
    # Log lines (cron, a pipe): one line per record, escaped.
    stream = io.StringIO()
    handler = setup_logging(verbose=1, stream=stream)
    try:
        logging.getLogger("migrate.test").info("mailbox %s: refused", HOSTILE_NAME)
    finally:
        logging.getLogger().removeHandler(handler)
    _clean(stream.getvalue())
    assert stream.getvalue().count("\n") == 1 and "\\x1b]0;owned" in stream.getvalue()


def test_a_console_that_reads_nothing_special_still_gets_text_not_control_characters():
    """The CLI's console class is where every string becomes text: a plain rich Console would not escape."""
    buf = io.StringIO()
    _Console(file=buf, force_terminal=True, markup=False, highlight=False).print(f"x {TITLE}y")
    assert "\\x1b]0;owned\\x07" in buf.getvalue() and "\x07" not in buf.getvalue()
    raw = io.StringIO()
    Console(file=raw, force_terminal=True, markup=False, highlight=False).print(f"x {TITLE}y")
    assert "\x1b]0;owned" in raw.getvalue(), "the premise: rich alone passes a window-title sequence through"


# -- from outside, through the command line --------------------------------------------------------------------


def test_a_pbx_name_and_caller_id_with_control_characters_are_shown_escaped(govmigrate, tmp_path):
    ws = tmp_path / "ws"
    lab, boxes = scenario.small_lab(ws, seed="ctl", users=2, messages=2)
    try:
        files = write_pbx(ws / "pbx" / "health", boxes, seed="ctl", source_id="health", domain=scenario.MODERN_DOMAIN,
                          formats=("freepbx-extensions",))
        path = next(p for fmt, p, _ in files.inputs if fmt == "freepbx-extensions")
        rows = list(csv.reader(io.StringIO(path.read_text())))
        header = rows[0]
        rows[1][header.index("name")] = HOSTILE_NAME.replace("\x00", "")  # a NUL makes it no text file at all
        rows[1][header.index("outboundcid")] = f'"{TITLE}Boss{CLEAR}" <2025550100>'
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        path.write_text(buf.getvalue())
        add_pbx(ws, "health", files)
        result = govmigrate("-w", ws, "inventory", "phones", expect=None)
        assert result.exit_code in (0, 1) and "Traceback" not in result.stderr, result.stderr
        _clean(result.stdout + result.stderr)
        assert "\\x1b]0;owned\\x07" in result.stdout + result.stderr
        for flags in (("-v",), ("--log-json",)):
            logged = govmigrate("-w", ws, *flags, "inventory", "phones", expect=None)
            _clean(logged.stdout + logged.stderr)
    finally:
        lab.stop()


@pytest.fixture
def make_dns_workspace(tmp_path):
    made = Workspaces(tmp_path)
    yield made
    made.close()


def test_a_txt_record_with_control_characters_is_shown_escaped_by_dns_plan_and_check(govmigrate, make_dns_workspace):
    # Zone-file \DDD escapes: ESC (027) ] 0 ; ... BEL (007), ESC [ 2 J, CR LF.
    w = make_dns_workspace({HEALTH: ['@ TXT "v=spf1 mx -all"',
                                     '@ TXT "verify=\\027]0;owned\\007x\\027[2J\\013\\010y"']})
    for args in (("plan", "--wave", "pilot"), ("check",)):
        result = govmigrate("-w", w.ws, "dns", *args, expect=None)
        assert result.exit_code in (0, 1) and "Traceback" not in result.stderr, result.stderr
        _clean(result.stdout + result.stderr)
    shown = govmigrate("-w", w.ws, "dns", "plan", "--wave", "pilot").stdout
    assert "\\x1b]0;owned\\x07" in shown.replace("\n", "").replace("│", "").replace(" ", ""), shown


def test_a_servers_error_reply_with_control_characters_is_shown_escaped(govmigrate, tmp_path):
    """A central host (here: a man in the middle) whose refusal carries a terminal escape and a line break."""
    ws = tmp_path / "ws"
    lab, _boxes = scenario.small_lab(ws, seed="ctlreply", users=1, messages=2)
    proxy = RecordingProxy(lab.central.port,
                           rewrite={b"Authentication failed.": b"Authentication \x1b]0;owned\x07failed\r\nFAKE: line"})
    try:
        doc = yaml.safe_load((ws / "migration.yaml").read_text())
        doc["central"]["imap"]["port"] = proxy.port
        doc["central"]["imap"]["tls"] = "none"
        doc["central"]["imap"].pop("ca_file", None)
        doc["central"]["imap"]["allow_cleartext"] = True
        (ws / "migration.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        secret = ws / "secrets" / "central-master"
        secret.write_text("not-the-central-master-password\n")
        result = govmigrate("-w", ws, "sync", "--all", expect=int(ExitCode.AUTH))
        assert "central host refused" in result.stderr
        _clean(result.stdout + result.stderr)
        # (IMAP ends the reply at its CR LF: what follows is a line of garbage the client reads no more)
        assert "\\x1b]0;owned\\x07failed" in result.stderr, result.stderr
    finally:
        proxy.close()
        lab.stop()


def test_an_errors_text_is_escaped_by_the_error_boundary(govmigrate, tmp_path):
    """An error message that carries text as it came (here an argument naming no mailbox) is escaped where every
    error is printed, not by each message's author."""
    ws = tmp_path / "ws"
    lab, _boxes = scenario.small_lab(ws, seed="ctlerr", users=1, messages=1)
    try:
        result = govmigrate("-w", ws, "verify", f"ann{TITLE}\r\nFAKE: line", expect=int(ExitCode.USAGE))
        assert "not in any user list" in result.stderr
        _clean(result.stdout + result.stderr)
        assert "ann\\x1b]0;owned\\x07\\r\\nFAKE: line" in result.stderr, result.stderr
    finally:
        lab.stop()
