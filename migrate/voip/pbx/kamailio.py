"""Kamailio's subscriber table: as a db_text file, or as a CSV export of the same table.

db_text, as Kamailio's db_text module reads it: the first line declares the columns, ``name(type[,null|auto])``
separated by spaces (types int, double, str/string, blob, time); each further line is a row whose fields are
separated by ``:``, where ``\\:``, ``\\\\``, ``\\n``, ``\\r``, ``\\t`` and ``\\0`` are escapes and any other
backslash makes Kamailio refuse the table; an empty field is NULL.

Kamailio keeps the password in clear (``password``) and/or as digests (``ha1`` = MD5 of user:domain:password,
``ha1b`` with user@domain). A row with only digests has no secret to provision anywhere but the same SIP domain:
that is recorded in ``extra`` and said in a warning. Digests are never kept.
"""

from __future__ import annotations

import hashlib
import re

from migrate.voip.pbx.csvtable import read_table
from migrate.voip.pbx.records import (
    LEFT_OUT,
    NUMBER_RE,
    Findings,
    Place,
    Record,
    duplicate_in_file,
    is_email,
    secret,
)

_COLUMN_RE = re.compile(r"^([^\s(]+)\(\s*([A-Za-z]+)\s*(?:,\s*([A-Za-z]+)\s*)?\)$")
_TYPES = {"i": "int", "d": "double", "s": "str", "b": "blob", "t": "time"}
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", ":": ":", "0": "\x00"}
USED = frozenset({"username", "domain", "password", "ha1", "ha1b", "email_address", "first_name", "last_name",
                  "rpid"})


def read_dbtext(text: str, shown: str, findings: Findings) -> list[Record]:
    lines = text.split("\n")
    header_line = next((i for i, line in enumerate(lines) if line.strip()), None)
    if header_line is None:
        findings.error(Place(shown, None), "", "the file is empty (no column definitions)")
        return []
    columns: list[tuple[str, str]] = []
    for token in lines[header_line].split():
        match = _COLUMN_RE.match(token)
        kind = _TYPES.get(match.group(2)[0].lower()) if match else None
        if not match or kind is None:
            findings.error(Place(shown, header_line + 1), token.split("(")[0],
                           "not a db_text column definition name(type[,null|auto]); the file is left out")
            return []
        columns.append((match.group(1).lower(), kind))
    rows: list[tuple[Place, dict[str, str]]] = []
    names = [name for name, _ in columns]
    for index in range(header_line + 1, len(lines)):
        line = lines[index].rstrip("\r")
        if not line:
            continue
        at = Place(shown, index + 1)
        fields = _split(line)
        # The user name as far as the row can be read, to hold that extension (never a message's text).
        user = dict(zip(names, fields or _split(line, lenient=True), strict=False)).get("username", "").strip()
        if fields is None:
            findings.error(at, "", "a backslash that is not one of db_text's escapes (\\: \\\\ \\n \\r \\t \\0); "
                                   f"Kamailio refuses such a row; {LEFT_OUT}", concerns=[user])
            continue
        if len(fields) != len(columns):
            findings.error(at, "", f"this row has {len(fields)} fields and the header {len(columns)} columns; "
                                   f"{LEFT_OUT}", concerns=[user])
            continue
        bad = [name for (name, kind), value in zip(columns, fields, strict=True)
               if kind == "int" and value and not re.fullmatch(r"-?[0-9]+", value)]
        if bad:
            findings.error(at, bad[0], f"not an integer in an int column; this row is {LEFT_OUT}", concerns=[user])
            continue
        rows.append((at, dict(zip(names, fields, strict=True))))
    return _records("kamailio-dbtext", [c for c, _ in columns], rows, shown, findings)


def _split(line: str, *, lenient: bool = False) -> list[str] | None:
    """A db_text row's fields; None when it holds a backslash db_text does not know (``lenient``: kept as it is)."""
    fields: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\":
            if i + 1 >= len(line) or line[i + 1] not in _ESCAPES:
                if not lenient:
                    return None
                current.append(ch)
                i += 1
                continue
            current.append(_ESCAPES[line[i + 1]])
            i += 2
            continue
        if ch == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    fields.append("".join(current))
    return fields


def read_csv(text: str, shown: str, findings: Findings) -> list[Record]:
    table = read_table(text, shown, findings, concerns=lambda cells: cells.get("username"))
    if table is None:
        return []
    header, rows = table
    return _records("kamailio-csv", header, [(row.at, row.cells) for row in rows], shown, findings)


def _records(fmt: str, header: list[str], rows: list[tuple[Place, dict[str, str]]], shown: str,
             findings: Findings) -> list[Record]:
    if "username" not in header:
        findings.error(Place(shown, 1), "username", "no 'username' column: not Kamailio's subscriber table")
        return []
    records: list[Record] = []
    for at, cells in rows:
        cells = {k: v.strip() for k, v in cells.items()}
        user = cells.get("username", "")
        if not user:
            findings.error(at, "username", f"a subscriber without a username; this row is {LEFT_OUT}")
            continue
        if not NUMBER_RE.match(user):
            findings.note(at, "username", f"subscriber {user!r} is not an extension number; not taken")
            continue
        record = Record(fmt, user, at)
        domain = cells.get("domain", "")
        record.keep("kamailio_domain", domain)
        password, ha1 = cells.get("password", ""), cells.get("ha1", "").lower()
        if password:
            record.set("secret", secret(password, at))
            digest = hashlib.md5(f"{user}:{domain}:{password}".encode(), usedforsecurity=False).hexdigest()
            if ha1 and domain and digest != ha1:
                findings.warning(at, "ha1", f"subscriber {user}: ha1 does not match the password for domain "
                                            f"{domain}; the clear password is taken")
        elif ha1 or cells.get("ha1b"):
            findings.warning(at, "password", f"subscriber {user}: "
                             "only ha1 digests, no clear password: the secret can be carried only to the same SIP "
                             f"domain ({domain or 'its domain'}); elsewhere `voip export` needs --new-secrets")
            record.extra["secret_form"] = "ha1"
        email = cells.get("email_address", "")
        if email:
            if is_email(email):
                record.set("link_email", email)
            else:
                findings.warning(at, "email_address", f"{email!r} is not an e-mail address; not used to link")
        record.set("name", " ".join(p for p in (cells.get("first_name", ""), cells.get("last_name", "")) if p))
        record.set("callerid", cells.get("rpid", ""))
        for name, value in cells.items():
            if name not in USED:
                record.keep(name, value)
        records.append(record)
    return duplicate_in_file(records, findings, what="subscriber")
