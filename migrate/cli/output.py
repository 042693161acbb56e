"""Shared output switches for listing commands: a rich table by default, ``--json`` or ``--csv`` on stdout."""

from __future__ import annotations

import csv
import functools
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click
from rich.table import Table

from migrate.cli.app import App
from migrate.reports.units import human_bytes

__all__ = ["emit_csv", "emit_json", "emit_table", "human_bytes", "output_options"]


def output_options(func: Callable) -> Callable:
    """Adds ``--json`` and ``--csv``; the command receives ``fmt`` ("table", "json" or "csv")."""

    @click.option("--json", "fmt", flag_value="json", help="Print JSON on stdout.")
    @click.option("--csv", "fmt", flag_value="csv", help="Print CSV on stdout.")
    @functools.wraps(func)
    def wrapper(*args: Any, fmt: str | None = None, **kwargs: Any) -> Any:
        return func(*args, fmt=fmt or "table", **kwargs)

    return wrapper


def emit_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def emit_csv(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})


def _cell(value: Any) -> Any:
    if isinstance(value, (list, tuple, set, frozenset)):
        return " ".join(str(v) for v in value)
    return "" if value is None else value


def emit_table(app: App, title: str | None, columns: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]],
               *, footer: dict[str, Any] | None = None) -> None:
    """``columns``: (key, heading) pairs; headings ending in '>' are right-aligned numbers."""
    table = Table(title=title, show_footer=footer is not None, title_justify="left")
    for key, heading in columns:
        right = heading.endswith(">")
        table.add_column(heading.rstrip(">"), justify="right" if right else "left",
                         footer=str(_cell(footer.get(key))) if footer else "")
    for row in rows:
        table.add_row(*(str(_cell(row.get(key))) for key, _ in columns))
    app.out.print(table)

