"""Text that goes into spreadsheet cells: OWASP's advice against CSV injection, in one place for listings
(``migrate.cli.output``) and provisioning files (``migrate.voip.export``)."""

from __future__ import annotations

#: A cell starting with one of these could be read as a formula by a spreadsheet.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(text: str) -> str:
    """``text`` as a spreadsheet shows it as text: a leading ``'`` where it could start a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text
