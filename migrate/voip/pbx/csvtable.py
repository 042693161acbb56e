"""CSV exports as PBX tools write them (FreePBX Bulk Handler, database dumps of Kamailio's subscriber table): a
header row whose names are compared case-insensitively, then rows, each kept with the line it starts on."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass

from migrate.voip.pbx.records import LEFT_OUT, Findings, Place


@dataclass
class Row:
    at: Place
    cells: dict[str, str]
    #: Cells under an empty column name (FreePBX exports can end their header in ",,,"), by column number.
    unnamed: dict[int, str]

    def get(self, *names: str) -> str:
        """The first non-empty cell among ``names`` (lower-case column names), stripped."""
        for name in names:
            value = self.cells.get(name, "").strip()
            if value:
                return value
        return ""


def read_table(text: str, shown: str, findings: Findings, *,
               concerns: Callable[[dict[str, str]], str | None] | None = None) -> tuple[list[str], list[Row]] | None:
    """Header and rows, or None after an error that leaves nothing to read (no header, not CSV). A row whose
    cell count differs from the header's is an error, as FreePBX's own importer refuses it ("Header row and data
    row count do not match"): that row is left out, and the extension ``concerns`` names from its cells (as far
    as they go) is held."""
    lines = text.split("\n")
    delimiter = _sniff(lines)
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
    header: list[str] | None = None
    rows: list[Row] = []
    end = 0
    try:
        for cells in reader:
            # A quoted cell may span lines; name the line its row starts on.
            line, end = end + 1, reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            if header is None:
                header = [c.strip().lower() for c in cells]
                seen: set[str] = set()
                for name in header:
                    if name and name in seen:
                        # PHP's array_combine, which FreePBX reads with, keeps the last such column.
                        findings.note(Place(shown, line), name,
                                      "column appears more than once; its last cell in each row is taken")
                    seen.add(name)
                continue
            if len(cells) != len(header):
                partial = {name: value.strip() for name, value in zip(header, cells, strict=False) if name}
                findings.error(Place(shown, line), "",
                               f"this row has {len(cells)} cells and the header {len(header)} (FreePBX's importer "
                               f"refuses such a row too); {LEFT_OUT}",
                               concerns=[concerns(partial) if concerns else None])
                continue
            named: dict[str, str] = {}
            unnamed: dict[int, str] = {}
            for i, (name, value) in enumerate(zip(header, cells, strict=True)):
                if name:
                    named[name] = value
                elif value.strip():
                    unnamed[i + 1] = value
            rows.append(Row(Place(shown, line), named, unnamed))
    except csv.Error as exc:
        findings.error(Place(shown, reader.line_num), "", f"not readable as CSV: {exc}")
        return None
    if header is None:
        findings.error(Place(shown, None), "", "the file is empty (no header row)")
        return None
    return header, rows


def _sniff(lines: list[str]) -> str:
    """The header row's separator: ``,`` (FreePBX, most exports), ``;`` (spreadsheets in many locales) or a
    tab (mysql --batch)."""
    for line in lines:
        if line.strip():
            counts = {d: line.count(d) for d in (",", ";", "\t")}
            best = max(counts, key=lambda d: counts[d])
            return best if counts[best] else ","
    return ","
