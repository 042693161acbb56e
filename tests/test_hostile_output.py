"""Hostile names reach people intact: what a server or user list holds is shown exactly in tables, lines and
live progress (never read as rich markup or emoji codes), cannot become a formula in --csv output, and a
reader that goes away (`| head`) ends a command quietly."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from migrate.cli.app import App
from migrate.cli.output import csv_cell, emit_table, plain_table
from migrate.cli.progress import LiveProgress
from migrate.core.progress import ProgressEvent
from migrate.core.store import open_store
from tests.conftest import Runner
from tests.lab import corpus, scenario

#: Folder names as the source server lists them ("/" is its separator, so "Notes [" exists too). Dovecot
#: refuses control characters in names, so the tab and CR cases are tested on csv_cell alone.
HOSTILE = ["Notes [/old]", "[Gmail]", "[gmail]", "[bold red]x[/]", "Plan :memo:",
           '=HYPERLINK("evil.example","click")', "+SUM(1+1)", "-2+3", "@cmd"]
DISPLAY_NAME = "Odd [b]Names[/b] :memo:"
ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A source mailbox with hostile folder names and display name, inventoried once."""
    ws = tmp_path_factory.mktemp("hostile") / "ws"
    box = corpus.generate_mailbox(seed="hostile", email="odd@health.gov.bz", login="odd", password="pw-odd-names",
                                  display_name=DISPLAY_NAME, messages=12, edge_cases=False,
                                  user_folders=[tuple(name.split("/")) for name in HOSTILE])
    lab, _ = scenario.small_lab(ws, seed="hostile", boxes=[box])
    try:
        Runner()("-w", ws, "inventory", "mail")
        yield ws, box
    finally:
        lab.stop()


def _recorded_names(govmigrate, ws: Path) -> set[str]:
    doc = json.loads(govmigrate("-w", ws, "inventory", "show", "--json").stdout)
    return {f["name"] for s in doc["sources"] for m in s["mailboxes"] for f in m["folder_list"]}


def test_hostile_folder_names_appear_exactly_in_the_folder_table(hostile, govmigrate):
    ws, _ = hostile
    assert set(HOSTILE) <= _recorded_names(govmigrate, ws), "the server holds every name, and JSON keeps it"
    table = govmigrate("-w", ws, "inventory", "show", "--folders").stdout  # exit 0, not 70 (MarkupError)
    assert set(HOSTILE) <= set(_column(table, "folder"))


def _column(table: str, heading: str) -> list[str]:
    """One column of a plain table (what a command prints to a pipe), cut where the rule under the headings
    puts it: names hold spaces, so splitting on them would not do."""
    lines = table.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("-") and set(line) <= {"-", " "})
    spans = [m.span() for m in re.finditer(r"-+", lines[at])]
    names = [lines[at - 1][a:b].strip() for a, b in spans]
    a, b = spans[names.index(heading)]
    return [line[a:b].strip() for line in lines[at + 1:] if line.strip()]


def test_csv_cells_that_could_be_formulas_start_with_a_quote_and_nothing_else_changes(hostile, govmigrate):
    ws, box = hostile
    text = govmigrate("-w", ws, "inventory", "show", "--folders", "--csv").stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    folders = {r["folder"] for r in rows}
    for name in HOSTILE:
        assert ("'" + name if name[0] in "=+-@" else name) in folders
    assert sum(int(r["messages"]) for r in rows) == box.messages, "numbers stay numbers"
    mailbox_rows = list(csv.DictReader(io.StringIO(govmigrate("-w", ws, "inventory", "show", "--csv").stdout)))
    assert mailbox_rows[0]["display_name"] == DISPLAY_NAME


@pytest.mark.parametrize("value, cell", [
    ("=1+1", "'=1+1"), ("+1+1", "'+1+1"), ("-1+cmd|' /C calc'!A0", "'-1+cmd|' /C calc'!A0"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("a=1", "a=1"), ("", ""), (None, ""), (-5, -5), (2.5, 2.5),
    (["-x", "y"], "'-x y"),
    # One plain number is that number to a spreadsheet, never a formula: a DID stays +5012223333 (issue 24).
    ("+1", "+1"), ("-1", "-1"), ("+5012223333", "+5012223333"), ("-2.5", "-2.5"),
    (["+5012223333", "+5012223334"], "'+5012223333 +5012223334"),
])
def test_csv_cell_follows_owasp_for_strings_only(value, cell):
    assert csv_cell(value) == cell


def test_lines_printed_for_people_keep_brackets_and_emoji_codes(hostile, govmigrate):
    ws, box = hostile
    first = govmigrate("-w", ws, "status", box.email).stdout.splitlines()[0]
    assert first == f"{DISPLAY_NAME} <{box.email}>"


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_tables_show_data_literally_even_on_a_console_that_reads_markup(tmp_path, terminal):
    buf = io.StringIO()
    # rich's defaults: markup and emoji codes on; on a terminal rich draws the table, to a pipe it is plain text.
    app = App(tmp_path, out=Console(file=buf, width=200, force_terminal=terminal, color_system=None))
    emit_table(app, "folders of [bold]x[/]", [("folder", "folder"), ("n", "n>")],
               [{"folder": "Notes [/old]", "n": 1}, {"folder": "[gmail] :memo:", "n": None}],
               footer={"folder": "[/total]", "n": 1})
    out = buf.getvalue()
    for text in ("folders of [bold]x[/]", "Notes [/old]", "[gmail] :memo:", "[/total]"):
        assert text in out
    assert ("│" in out) is terminal, out


def test_live_progress_prints_a_hostile_failure_reason_literally(tmp_path):
    buf = io.StringIO()
    app = App(tmp_path, err=Console(file=buf, force_terminal=True, width=200))  # markup and emoji codes on
    live = LiveProgress(app, "sync")
    reason = "folder Notes [/old]: [bold red]refused[/] by [gmail] :memo:"
    with live.progress:
        live(ProgressEvent("plan", total_messages=2, total_bytes=200))
        live(ProgressEvent("start", "[b]odd[/b]@health.gov.bz", total_messages=2, total_bytes=200))
        live(ProgressEvent("failed", "[b]odd[/b]@health.gov.bz", detail=reason))
        live(ProgressEvent("note", detail="next: [/x] :memo:"))
    out = ANSI.sub("", buf.getvalue())
    assert f"failed [b]odd[/b]@health.gov.bz: {reason}" in out
    assert "next: [/x] :memo:" in out
    assert "\x1b[31mfailed" in buf.getvalue(), "our own word keeps its colour"


# -- `govmigrate ... | head` ---------------------------------------------------------------------------


def _workspace_with_events(ws: Path, count: int) -> Path:
    Runner()("init", ws)
    store = open_store(ws / "state.db")
    try:
        for i in range(count):
            store.add_event(f"mailbox/user{i}@health.gov.bz", "synced", f"copied {i} messages of a long mailbox")
    finally:
        store.close()
    return ws


def _pipe(ws: Path, args: str, reader: str) -> subprocess.CompletedProcess:
    """govmigrate in a real process, its stdout piped into ``reader``; the status is govmigrate's own."""
    env = {**scenario.lab_env(), "PY": sys.executable, "WS": str(ws), "PYTHONPATH": str(ROOT)}
    # Block-buffered stdout, as people run it. (Unbuffered, a big write to a pipe whose reader left returns a
    # short count that nothing checks: the output is cut, quietly, and the status is 0.)
    env.pop("PYTHONUNBUFFERED", None)
    return subprocess.run(["bash", "-c", f'set -o pipefail; "$PY" -m migrate -w "$WS" log {args} | {reader}'],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def many_events(tmp_path_factory) -> Path:
    return _workspace_with_events(tmp_path_factory.mktemp("pipe") / "ws", 4000)


@pytest.mark.parametrize("fmt", ["--csv", "--json", ""])
def test_piping_a_long_listing_into_head_ends_quietly_with_141(many_events, fmt):
    done = _pipe(many_events, fmt, "head -1")
    assert done.stderr == ""
    assert done.returncode == 141
    assert len(done.stdout.splitlines()) == 1


@pytest.mark.parametrize("fmt", ["--csv", "--json", ""])
def test_a_reader_gone_before_anything_is_written_also_ends_quietly_with_141(tmp_path, fmt):
    # Output small enough to wait in Python's buffer until exit (CSV, JSON) or to go in one write (table),
    # and a reader that has closed its end before govmigrate writes anything.
    ws = _workspace_with_events(tmp_path / "ws", 3)
    done = _pipe(ws, fmt, "(exec 0<&-; sleep 2)")
    assert done.stderr == ""
    assert done.returncode == 141


def test_a_reader_that_reads_everything_changes_nothing(tmp_path):
    ws = _workspace_with_events(tmp_path / "ws", 3)
    done = _pipe(ws, "--csv", "cat")
    assert (done.returncode, done.stderr) == (0, "")
    assert len(list(csv.DictReader(io.StringIO(done.stdout)))) >= 3


def test_a_table_written_to_a_pipe_is_plain_aligned_columns_one_line_per_row(tmp_path):
    buf = io.StringIO()
    app = App(tmp_path, out=Console(file=buf, width=40))       # not a terminal, and narrower than the rows
    long = "a-folder-name-much-longer-than-forty-columns-of-a-terminal"
    emit_table(app, "folders", [("folder", "folder"), ("n", "messages>")],
               [{"folder": "INBOX", "n": 7}, {"folder": "日本語", "n": 12_345}, {"folder": "two\nlines\x1b[2J", "n": None},
                {"folder": long, "n": 1}],
               footer={"folder": "total", "n": 12_353})
    assert buf.getvalue().splitlines() == [
        "folders",
        "folder                                                      messages",
        "----------------------------------------------------------  --------",
        "INBOX                                                              7",
        "日本語                                                         12345",   # three characters, six cells
        "two\\nlines\\x1b[2J",
        long + "         1",
        "----------------------------------------------------------  --------",
        "total                                                          12353",
    ]
    # Widths are terminal cells: the column is as wide as the widest name shows, not as its character count.
    assert plain_table(None, [("f", "f"), ("n", "n>")], [{"f": "日本語", "n": 1}, {"f": "INBOX", "n": 2}]) == [
        "f       n", "------  -", "日本語  1", "INBOX   2"]
