"""Shared output switches for listing commands: a rich table by default, ``--json`` or ``--csv`` on stdout.

Everything shown here may hold names from a ministry's server or user list, so data meets rich only through
:func:`plain` and meets a spreadsheet only through :func:`csv_cell`.
"""

from __future__ import annotations

import csv
import functools
import json
import sys
from collections.abc import Callable, Collection, Sequence
from typing import Any

import click
from rich.text import Text

from migrate.cli.app import App
from migrate.core.cells import formula_safe
from migrate.core.printable import printable
from migrate.core.secrets import RedactingWriter, redact
from migrate.core.units import human_bytes

__all__ = ["csv_cell", "emit_csv", "emit_json", "emit_table", "human_bytes", "output_options", "plain"]

#: OWASP's CSV-injection advice: a cell starting with one of these may run as a formula in a spreadsheet.


def output_options(func: Callable | None = None, *, csv: bool = True) -> Callable:
    """Adds ``--json`` (and ``--csv`` unless ``csv=False``: a result with no rows to put in a spreadsheet); the
    command receives ``fmt`` ("table", "json" or "csv"). Use as ``@output_options`` or
    ``@output_options(csv=False)``."""

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: Any, fmt: str | None = None, **kwargs: Any) -> Any:
            return func(*args, fmt=fmt or "table", **kwargs)

        if csv:
            wrapper = click.option("--csv", "fmt", flag_value="csv", help="Print CSV on stdout.")(wrapper)
        return click.option("--json", "fmt", flag_value="json", help="Print the result as JSON on stdout.")(wrapper)

    return decorate(func) if func is not None else decorate


def emit_json(doc: Any) -> None:
    sys.stdout.write(redact(json.dumps(doc, indent=2, ensure_ascii=False, default=str)) + "\n")


def emit_csv(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    writer = csv.DictWriter(RedactingWriter(sys.stdout), fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(row.get(k)) for k in columns})


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: text that could start a formula gets a leading ``'``.

    Only strings: numbers stay numbers, so a negative count is still a number in the spreadsheet.
    """
    value = _cell(value)
    return formula_safe(value) if isinstance(value, str) else value


def plain(value: Any, style: str = "") -> Text:
    """``value`` as text rich shows exactly: never read as markup (``[/old]``) or an emoji code (``:memo:``),
    its control characters escaped (``\x1b``, ``\n``: it cannot paint the terminal or break its line).

    Our own words may carry a ``style``; the characters of the data are never interpreted.
    """
    return Text(printable(str(_cell(value))), style=style)


def _cell(value: Any) -> Any:
    if isinstance(value, (list, tuple, set, frozenset)):
        return " ".join(str(v) for v in value)
    return "" if value is None else value


def emit_table(app: App, title: str | None, columns: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]],
               *, footer: dict[str, Any] | None = None, no_wrap: Collection[str] = ()) -> None:
    """``columns``: (key, heading) pairs; headings ending in '>' are right-aligned numbers, which never wrap,
    nor do the columns named in ``no_wrap``.

    On a terminal the table is rich's; written to a file or a pipe (a cron job's log, ``| grep``, ``| less``) it
    is plain aligned columns, one line per row that never wraps (:func:`plain_table`)."""
    if not app.out.is_terminal:
        for line in plain_table(title, columns, rows, footer=footer):
            app.out.file.write(line + "\n")
        return
    from rich.table import Table  # here: a command that prints no table need not load it

    table = Table(title=plain(title) if title else None, show_footer=footer is not None, title_justify="left")
    for key, heading in columns:
        right = heading.endswith(">")
        table.add_column(plain(heading.rstrip(">")), justify="right" if right else "left",
                         no_wrap=right or key in no_wrap, footer=plain(footer.get(key)) if footer else "")
    for row in rows:
        table.add_row(*(plain(row.get(key)) for key, _ in columns))
    app.out.print(table)


def plain_table(title: str | None, columns: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]], *,
                footer: dict[str, Any] | None = None) -> list[str]:
    """The lines of a table as plain text: the title, the headings, a rule, the rows (and a rule and the footer),
    columns two spaces apart, numbers right-aligned. Every cell passes :func:`printable` (a name from a server
    cannot break its line or paint the terminal) and widths are counted in terminal cells (CJK names line up).
    Nothing is read as markup: no markup is interpreted here at all. Rendering rich's table cost a 500-row
    listing 0.2 s; this costs a few milliseconds."""
    from rich.cells import cell_len

    def text(value: Any) -> str:
        return printable(str(_cell(value)))

    right = [heading.endswith(">") for _, heading in columns]
    grid = [[text(heading.rstrip(">")) for _, heading in columns]]
    grid += [[text(row.get(key)) for key, _ in columns] for row in rows]
    if footer is not None:
        grid.append([text(footer.get(key)) for key, _ in columns])
    widths = [max(cell_len(line[i]) for line in grid) for i in range(len(columns))]

    def line(cells: list[str]) -> str:
        out = []
        for cell, width, numeric in zip(cells, widths, right, strict=True):
            pad = " " * (width - cell_len(cell))
            out.append(pad + cell if numeric else cell + pad)
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    lines = [text(title)] if title else []
    lines += [line(grid[0]), rule]
    lines += [line(cells) for cells in grid[1:len(rows) + 1]]
    if footer is not None:
        lines += [rule, line(grid[-1])]
    return lines
