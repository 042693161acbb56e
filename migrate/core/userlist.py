"""A ministry's user list: the CSV file that names every mailbox to move.

Columns (header row required, any order): ``email`` (required), ``login`` (the user's login on the
ministry server; default: the email address), ``display_name``, ``password`` (a secret reference, for
sources whose login method is ``user_password``), ``flags`` (``pilot``, ``vip``, ``skip``; separated by
spaces, ``;`` or ``|``). Lines starting with ``#`` are comments.

Files as spreadsheets save them are read as they are: cells separated by ``,`` or by ``;`` (Excel in
many locales), told apart by the header row or by Excel's optional first line ``sep=;``; a UTF-8 byte
order mark and CRLF line ends are accepted.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from migrate.core.errors import Problem
from migrate.core.secrets import parse_ref

COLUMNS = ("email", "login", "display_name", "password", "flags")
KNOWN_FLAGS = {"pilot", "vip", "skip"}
_EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([A-Za-z0-9-]+\.)+[A-Za-z]{2,63}$")
_SEP_LINE_RE = re.compile(r"^sep=(.?)\s*$", re.IGNORECASE)
_DELIMITERS = (",", ";")
#: C0 controls and DEL: a login is sent inside an IMAP command, where CR LF would end it and start another.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class UserEntry:
    email: str
    login: str
    display_name: str
    password_ref: str | None
    flags: frozenset[str]
    line: int

    @property
    def domain(self) -> str:
        return self.email.rsplit("@", 1)[1]


def read_user_list(path: Path, *, domains: list[str] | None = None, source_id: str = "",
                   needs_password: bool = False) -> tuple[list[UserEntry], list[Problem]]:
    """Parse a user list; returns the good rows and every problem found (rows with errors are left out)."""
    filename = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return [], [Problem(filename, None, "", f"cannot read user list: {exc.strerror}")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return [], [Problem(filename, line, "", "not UTF-8 text; save the file as UTF-8 CSV")]

    problems: list[Problem] = []
    entries: list[UserEntry] = []
    # Keep physical line numbers: comment lines (and Excel's sep= line) are blanked rather than
    # removed, and csv's line_num counts the lines read so far, quoted line breaks included.
    lines = text.split("\n")
    delimiter = None
    sep = _SEP_LINE_RE.match(lines[0]) if lines else None
    if sep:
        delimiter = sep.group(1)
        if delimiter not in _DELIMITERS:
            return [], [Problem(filename, 1, "", f"the first line names the separator {delimiter!r}; "
                                                 "save the file with ',' or ';' between cells")]
        lines[0] = ""
    lines = ["" if ln.lstrip().startswith("#") else ln for ln in lines]
    if delimiter is None:
        delimiter = _sniff(lines)
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
    header: list[str] | None = None
    header_line = 0
    seen: dict[str, int] = {}
    try:
        end = 0
        for row in reader:
            # A quoted cell may span lines; name the line where its row starts.
            line, end = end + 1, reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if header is None:
                header = [c.strip().lower() for c in row]
                header_line = line
                unknown = [c for c in header if c not in COLUMNS]
                for col in unknown:
                    problems.append(Problem(filename, line, col or "(empty column name)",
                                            f"unknown column; expected some of: {', '.join(COLUMNS)}"))
                if "email" not in header:
                    problems.append(Problem(filename, line, "email", "the header row must have an 'email' column"))
                    return [], problems
                dupes = {c for c in header if header.count(c) > 1}
                for col in dupes:
                    problems.append(Problem(filename, line, col, "column appears more than once"))
                if unknown or dupes:
                    return [], problems
                continue
            if len(row) != len(header):
                problems.append(Problem(filename, line, "",
                                        f"expected {len(header)} columns as in the header, found {len(row)}"))
                continue
            cells = {name: value.strip() for name, value in zip(header, row, strict=True)}
            entry, row_problems = _entry(cells, line, filename, domains, needs_password)
            problems.extend(row_problems)
            if entry is None:
                continue
            key = entry.email.lower()
            if key in seen:
                problems.append(Problem(filename, line, "email",
                                        f"{entry.email} is already listed on line {seen[key]}"))
                continue
            seen[key] = line
            entries.append(entry)
    except csv.Error as exc:
        problems.append(Problem(filename, reader.line_num, "", f"CSV error: {exc}"))
    if header is None:
        problems.append(Problem(filename, header_line or None, "", "the user list is empty (no header row)"))
    return entries, problems


def _sniff(lines: list[str]) -> str:
    """``,`` or ``;``, whichever separates the header row's cells (column names hold neither)."""
    for line in lines:
        if line.strip():
            return ";" if line.count(";") > line.count(",") else ","
    return ","


def _entry(cells: dict[str, str], line: int, filename: str, domains: list[str] | None,
           needs_password: bool) -> tuple[UserEntry | None, list[Problem]]:
    problems = []
    email = cells.get("email", "")
    if not _EMAIL_RE.match(email):
        problems.append(Problem(filename, line, "email", f"{email!r} is not an email address"))
    elif domains and email.rsplit("@", 1)[1].lower() not in domains:
        problems.append(Problem(filename, line, "email",
                                f"domain of {email} is not one of this source's domains ({', '.join(domains)})"))
    for name in ("login", "display_name"):
        control = _CONTROL_RE.search(cells.get(name, ""))
        if control:
            problems.append(Problem(filename, line, name,
                                    f"contains a control character (U+{ord(control.group()):04X}); "
                                    "line breaks, tabs and other control characters are not allowed here"))
    password = cells.get("password") or None
    if password:
        try:
            parse_ref(password)
        except ValueError as exc:
            problems.append(Problem(filename, line, "password", str(exc)))
    elif needs_password:
        problems.append(Problem(filename, line, "password",
                                "this source logs in with each user's password; give a secret reference"))
    flags = frozenset(f for f in re.split(r"[\s;|,]+", cells.get("flags", "").lower()) if f)
    for flag in sorted(flags - KNOWN_FLAGS):
        problems.append(Problem(filename, line, "flags",
                                f"unknown flag {flag!r}; known flags: {', '.join(sorted(KNOWN_FLAGS))}"))
    if problems:
        return None, problems
    email = email[: email.rindex("@")] + email[email.rindex("@"):].lower()
    return UserEntry(
        email=email,
        login=cells.get("login") or email,
        display_name=cells.get("display_name", ""),
        password_ref=password,
        flags=flags,
        line=line,
    ), []
