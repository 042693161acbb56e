"""Text from outside as it may be shown to a person: the one escaping of control characters.

A PBX name, a caller ID, a DNS TXT record, a folder name or a server's error reply may hold ``ESC ] 0;...``
(which sets the window title), ``ESC [ 2 J`` (which clears the screen), a bell, a NUL, or a line break that
would print as a line of its own. Everything the command line shows (tables, messages, progress, log lines)
passes :func:`printable`: each C0 and C1 control character and each Unicode line or paragraph separator is
shown as its escape (``\\x1b``, ``\\n``), so the text stays on its line and cannot paint the terminal.
"""

from __future__ import annotations

import re

#: C0 controls (tab and line feed included), DEL, C1 controls, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character shown as its escape (module docstring); the rest unchanged."""
    return _CONTROL.sub(_escape, text) if _CONTROL.search(text) else text
