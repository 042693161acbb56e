"""Plan files as text: YAML meant for people, with govmigrate's facts and advice as comments.

The data is written so that it reads back exactly (``load_yaml`` of the text gives the model's data): a scalar
that cannot be plain is written by PyYAML's emitter (double-quoted, every control character and line break
escaped). Comments are regenerated whenever govmigrate writes a file, so people put their remarks in ``notes``;
they carry names from PBX files and user lists, so every character that YAML or a terminal would take for a
line break or a control (CR, LF, NEL, the Unicode line and paragraph separators, the other C0 and C1 controls)
is written as an escape (``\n``): no text from outside can end a comment and start a line of data.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import yaml

from migrate.plans.model import IndexFile, WaveFile

_PLAIN_RE = re.compile(r"^[A-Za-z0-9@._/()+-][A-Za-z0-9@._/()+, :-]*$")
#: What may not stand in a comment as it is: C0 and C1 controls, DEL, and YAML's and Unicode's line breaks.
_UNSAFE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def comment_text(text: str) -> str:
    """Text for a comment: one line, whatever it holds (``Ana\nwhite_glove: true`` stays on the comment's line)."""
    return _UNSAFE_RE.sub(lambda m: _ESCAPES.get(m.group(), f"\\u{ord(m.group()):04x}"), text)


def scalar(value: Any) -> str:
    """One YAML scalar: plain where that reads back as the same value, else double-quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str):
        value = str(value)
    if value and _PLAIN_RE.match(value) and not value.endswith(" ") and _reads_back(value):
        return value
    return yaml.safe_dump(value, default_style='"', allow_unicode=True, width=2**31 - 1,
                          explicit_end=False).removesuffix("\n")


def _reads_back(text: str) -> bool:
    try:
        return yaml.safe_load(text) == text
    except yaml.YAMLError:
        return False


def _aligned(rows: list[tuple[str, str]], indent: str = "") -> list[str]:
    """Lines of ``text  # comment`` with the comments in one column."""
    width = max((len(text) for text, note in rows if note), default=0)
    out = []
    for text, note in rows:
        out.append(f"{indent}{text.ljust(width)}  # {comment_text(note)}" if note else f"{indent}{text}")
    return out


def comment_block(lines: list[str]) -> list[str]:
    return [f"# {comment_text(line)}".rstrip() for line in lines]


def render_wave(wave: WaveFile, *, header: list[str], mailbox_notes: dict[str, str],
                extension_notes: dict[str, str] | None = None) -> str:
    w = wave.window
    lines = comment_block(header)
    lines += ["#", "# Lines starting with # are rewritten by govmigrate; put remarks in notes. After an edit:",
              f"# govmigrate plan validate, then govmigrate plan approve {wave.wave}.",
              f"version: {wave.version}",
              f"wave: {scalar(wave.wave)}",
              f"title: {scalar(wave.title)}"]
    lines += _aligned([
        (f"kind: {wave.kind}", "pilot | ministry | phones"),
        (f"white_glove: {scalar(wave.white_glove)}",
         "VIPs: extra care, a named helpdesk contact, a check with each user after cut-over"
         if wave.white_glove else "true for VIP handling"),
    ])
    lines.append("window:")
    lines += _aligned([
        (f"date: {scalar(w.date)}",
         "day of the maintenance window, YYYY-MM-DD (null: not scheduled yet)"),
        (f"start: {scalar(w.start)}", "in the programme's time zone (migration.yaml: timezone)"),
        (f"hours: {scalar(w.hours)}", "length of the window"),
    ], indent="  ")
    if wave.cutover_domains:
        lines.append("cutover_domains:  # the last mailboxes of these domains move in this wave; their DNS follows")
        lines += [f"  - {scalar(d)}" for d in wave.cutover_domains]
    else:
        lines.append("cutover_domains: []  # no domain completes in this wave")
    lines.append(f"notes: {scalar(wave.notes)}")
    if wave.mailboxes:
        lines.append("mailboxes:")
        lines += _aligned([(f"- {scalar(m)}", mailbox_notes.get(m.lower(), "")) for m in wave.mailboxes],
                          indent="  ")
    else:
        lines.append("mailboxes: []")
    if wave.extensions:  # left out when there are none: wave files without phones read as before
        lines.append("extensions:  # PBX extensions that move to the hosted VOIP platform in this wave")
        lines += _aligned([(f"- {scalar(e)}", (extension_notes or {}).get(e, "")) for e in wave.extensions],
                          indent="  ")
    return "\n".join(lines) + "\n"


def render_index(index: IndexFile, *, header: list[str], wave_notes: dict[str, str]) -> str:
    lines = comment_block(header)
    lines += ["#", "# The waves run in the order listed here; each has its own file, plans/<wave>.yaml.",
              f"version: {index.version}",
              f"programme: {scalar(index.programme)}"]
    if index.generated_at:
        lines.append(f"generated_at: {scalar(index.generated_at)}")
    if index.generated_by:
        lines.append(f"generated_by: {scalar(index.generated_by)}")
    lines.append("waves:")
    lines += _aligned([(f"- {scalar(w)}", wave_notes.get(w, "")) for w in index.waves], indent="  ")
    if index.excluded:
        lines.append("excluded:  # in no wave, and why")
        for e in index.excluded:
            lines.append(f"  - email: {scalar(e.email)}")
            lines.append(f"    reason: {scalar(e.reason)}")
    else:
        lines.append("excluded: []")
    return "\n".join(lines) + "\n"
