"""User lists as people really save them: `;` (Excel in many locales), Excel's `sep=` line, a UTF-8 BOM and
CRLF; every problem still names its file and line, and a login that could break out of an IMAP command is
refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate.core.userlist import read_user_list

DOMAINS = ["health.gov.bz"]


def write(tmp_path: Path, text: str, name: str = "users.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def read(path: Path):
    entries, problems = read_user_list(path, domains=DOMAINS)
    return entries, [str(p) for p in problems]


def test_semicolon_separated_with_bom_and_crlf_as_excel_saves_it(tmp_path):
    path = write(tmp_path, "\ufeffemail;login;display_name;password;flags\r\n"
                           "ana.lopez@health.gov.bz;alopez;\"López, Ana\";;pilot vip\r\n"
                           "\r\n"
                           "# a comment between rows\r\n"
                           "ben.ortiz@health.gov.bz;bortiz;Ben Ortiz;;\r\n")
    entries, problems = read(path)
    assert problems == []
    assert [(e.email, e.login, e.display_name, e.line) for e in entries] == [
        ("ana.lopez@health.gov.bz", "alopez", "López, Ana", 2),
        ("ben.ortiz@health.gov.bz", "bortiz", "Ben Ortiz", 5)]
    assert entries[0].flags == {"pilot", "vip"}


def test_comma_separated_with_crlf_and_a_semicolon_inside_a_quoted_cell(tmp_path):
    path = write(tmp_path, "email,login,display_name,flags\r\n"
                           "ana.lopez@health.gov.bz,alopez,\"Lopez; Ana\",\"pilot;vip\"\r\n")
    entries, problems = read(path)
    assert problems == []
    assert entries[0].display_name == "Lopez; Ana" and entries[0].flags == {"pilot", "vip"}
    assert entries[0].login == "alopez", "CR of CRLF must not stay in the last cell"


@pytest.mark.parametrize("sep", [";", ","])
def test_excel_sep_line_names_the_separator_and_keeps_line_numbers(tmp_path, sep):
    path = write(tmp_path, f"sep={sep}\r\n"
                           f"email{sep}login\r\n"
                           f"ana.lopez@health.gov.bz{sep}alopez\r\n"
                           f"not-an-address{sep}x\r\n")
    entries, problems = read(path)
    assert [(e.email, e.login, e.line) for e in entries] == [("ana.lopez@health.gov.bz", "alopez", 3)]
    assert problems == [f"{path}:4: email: 'not-an-address' is not an email address"]


def test_a_sep_line_naming_another_separator_is_refused_on_line_1(tmp_path):
    path = write(tmp_path, "sep=|\nemail|login\nana.lopez@health.gov.bz|alopez\n")
    entries, problems = read(path)
    assert entries == []
    assert problems == [f"{path}:1: the first line names the separator '|'; save the file with ',' or ';' "
                        "between cells"]


def test_problems_in_a_semicolon_file_name_file_line_and_field(tmp_path):
    path = write(tmp_path, "\ufeffemail;login;display_name;password;flags\r\n"
                           "ana.lopez@health.gov.bz;alopez;Ana;;\r\n"
                           "jane@finance.gov.bz;jane;Jane;;\r\n"
                           "ana.lopez@health.gov.bz;again;Ana again;;\r\n"
                           "ok@health.gov.bz;ok;Ok;;superuser\r\n"
                           "short@health.gov.bz;short\r\n")
    _, problems = read(path)
    assert problems == [
        f"{path}:3: email: domain of jane@finance.gov.bz is not one of this source's domains (health.gov.bz)",
        f"{path}:4: email: ana.lopez@health.gov.bz is already listed on line 2",
        f"{path}:5: flags: unknown flag 'superuser'; known flags: pilot, skip, vip",
        f"{path}:6: expected 5 columns as in the header, found 2",
    ]


@pytest.mark.parametrize("field,value,code", [
    ("login", "alopez\r\nA1 DELETE INBOX", "U+000D"),
    ("login", "al\nopez", "U+000A"),
    ("login", "al\x00opez", "U+0000"),
    ("login", "al\x1bopez", "U+001B"),
    ("display_name", "Ana\x7fLopez", "U+007F"),
    ("display_name", "Ana\r\nLopez", "U+000D"),
    ("display_name", "Ana\tLopez", "U+0009"),
])
def test_control_characters_in_login_or_display_name_are_refused(tmp_path, field, value, code):
    cells = {"login": "alopez", "display_name": "Ana Lopez", field: value}
    quoted = '"' + cells[field] + '"'
    cells[field] = quoted
    path = write(tmp_path, "email;login;display_name\r\n"
                           "ben.ortiz@health.gov.bz;bortiz;Ben\r\n"
                           f"ana.lopez@health.gov.bz;{cells['login']};{cells['display_name']}\r\n"
                           "cy.ng@health.gov.bz;cng;Cy\r\n")
    entries, problems = read(path)
    # The bad row starts on line 3 (a quoted line break makes it span two lines), the good rows stay.
    assert problems == [f"{path}:3: {field}: contains a control character ({code}); line breaks, tabs and "
                        "other control characters are not allowed here"]
    assert [e.email for e in entries] == ["ben.ortiz@health.gov.bz", "cy.ng@health.gov.bz"]


def test_check_accepts_a_semicolon_file_with_bom_and_crlf_and_names_a_bad_row(govmigrate, example_workspace,
                                                                            example_secrets):
    users = example_workspace / "users" / "health.csv"
    rows = [line.replace(",", ";") for line in users.read_text().splitlines()]
    users.write_bytes(("\ufeff" + "\r\n".join(rows) + "\r\n").encode())
    good = govmigrate("-w", example_workspace, "check")
    count = sum(1 for r in rows if r and not r.startswith("#")) - 1
    assert f"{count + 2} mailboxes" in good.stdout  # the finance list is still the comma-separated one

    bad_line = len(rows) + 1
    users.write_bytes(users.read_bytes() + b'eve@health.gov.bz;"eve\r\nA1 LOGOUT";Eve;;\r\n')
    bad = govmigrate("-w", example_workspace, "check", expect=2)
    assert f"health.csv:{bad_line}: login: contains a control character (U+000D)" in bad.stderr
    assert "Traceback" not in bad.stderr
