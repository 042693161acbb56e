"""PBX files as text: the encodings their tools write (UTF-8, or Windows-1252/Latin-1 on older systems),
read strictly, with the place of whatever cannot be read."""

from __future__ import annotations

import codecs
from pathlib import Path

from migrate.voip.pbx.records import Findings, Place

_UTF16_32 = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _line_of(raw: bytes, offset: int) -> int:
    return raw[:offset].count(b"\n") + 1


def read_text(path: Path, shown: str, encoding: str, findings: Findings) -> str | None:
    """The file's text, or None after an error in ``findings``.

    ``encoding``: ``auto`` tries UTF-8 strictly, then Windows-1252 (a superset of Latin-1 for printable
    text, as Windows and older PBX tools write "José Pérez") and says so in a warning; ``utf-8``, ``latin-1``
    and ``cp1252`` are taken as they are. A UTF-8 byte order mark is dropped."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        findings.error(Place(shown, None), "path", f"cannot read the file: {exc.strerror}")
        return None
    for bom in _UTF16_32:
        if raw.startswith(bom):
            findings.error(Place(shown, 1), "encoding",
                           "the file is UTF-16 or UTF-32 (a byte order mark says so); save it as UTF-8")
            return None
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    if encoding == "auto":
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            first_bad = _line_of(raw, exc.start)
            try:
                text = raw.decode("cp1252")
            except UnicodeDecodeError as exc2:
                findings.error(Place(shown, _line_of(raw, exc2.start)), "encoding",
                               f"neither UTF-8 nor Windows-1252 text (byte 0x{raw[exc2.start]:02X}); save the "
                               "file as UTF-8, or name its encoding in the project file")
                return None
            findings.warning(Place(shown, first_bad), "encoding",
                             "not UTF-8: read as Windows-1252 (Latin-1); check that accented names such as "
                             "'José Pérez' read right, or set encoding: in the project file")
    else:
        codec = {"utf-8": "utf-8", "latin-1": "latin-1", "cp1252": "cp1252"}[encoding]
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError as exc:
            findings.error(Place(shown, _line_of(raw, exc.start)), "encoding",
                           f"not {encoding} text (byte 0x{raw[exc.start]:02X}); save the file as {encoding} "
                           "or set encoding: auto")
            return None
    nul = text.find("\x00")
    if nul >= 0:
        findings.error(Place(shown, text.count("\n", 0, nul) + 1), "encoding",
                       "the file holds NUL bytes: not a text file")
        return None
    return text
