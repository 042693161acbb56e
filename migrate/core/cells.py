"""Text that goes into spreadsheet cells: OWASP's advice against CSV injection, in one place for listings
(``migrate.cli.output``) and provisioning files (``migrate.voip.export``)."""

from __future__ import annotations

import re

#: A cell starting with one of these could be read as a formula by a spreadsheet.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: One number, signed or not (an E.164 DID, a negative count): a spreadsheet reads it as that number, never as a
#: formula, so it needs no guard (and a ``'`` would turn ``+5012223333`` into text that is no longer the number).
_NUMBER_RE = re.compile(r"^[+-]?[0-9]+(\.[0-9]+)?$")


def formula_safe(text: str) -> str:
    """``text`` as a spreadsheet shows it as text: a leading ``'`` where it could start a formula (one plain
    number is left as it is)."""
    if text.startswith(FORMULA_STARTS) and not _NUMBER_RE.match(text):
        return "'" + text
    return text
