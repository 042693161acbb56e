r"""Provisioning files for the hosted VOIP platform, written from a list of extensions: a FreePBX Bulk Handler
import, Kamailio db_text tables, or a neutral CSV. Pure functions over :class:`~migrate.voip.model.Extension`;
no store, no command line.

**Secrets.** Every writer takes the extension's own SIP password (read from the PBX files), or, with
``new_secrets=True``, a new strong one for every extension (24 letters and digits from :mod:`secrets`, about 142
bits), returned in :attr:`ExportResult.new_secrets` so the caller can hand them on. ``secrets`` (extension key
→ :class:`Secret`) overrides both, for passwords made once and written in several formats. An extension that
would register but has no password is refused, with every such extension named, before anything is written.
Every file is created mode 0600 (``os.open`` with the mode, in a temporary name beside the target, then renamed
over it), so a secret or a hash of one is never readable by others, not even for a moment. The files of one
export are renamed into place only once all of them are written, so a run that fails while writing (a full
disk) leaves the previous export as it was and no temporary file.

**Data is data.** Names, e-mail addresses and caller IDs come from ministry PBX files. In CSV files every free-text
cell that could start a spreadsheet formula (``=``, ``+``, ``-``, ``@``, tab, CR) gets a leading ``'`` (OWASP's
advice, as ``migrate.cli.output.csv_cell`` does for listings). Cells govmigrate validated itself (extension
numbers: digits; DIDs: E.164) are written as they are, so that ``+5012223333`` stays a number FreePBX can route.
FreePBX turns its import into Asterisk configuration, so there control characters in free text become spaces
(a newline in a name must not start a line of pjsip.conf) and a generated caller ID quotes the name with
``"``, ``<``, ``>`` and ``\`` taken out (a name must not bring a number of its own). A password is never
changed: one that would start a formula, holds a control character or is FreePBX's ``REGEN`` is refused (use
``new_secrets``). db_text values are escaped as Kamailio's db_text reads them (``\\``, ``\:``, ``\n``,
``\r``, ``\t``, ``\0`` for a backslash, colon, newline, CR, tab and NUL).

**Which extensions** (:func:`migrate.voip.model.line_kind`). SIP phones (``pjsip``, ``sip``, or no technology
named) get an account: ``pjsip`` in the FreePBX file. ``virtual`` extensions (FreePBX's users without a device)
are written to the FreePBX and neutral files without a password; they cannot register, so the Kamailio tables
leave them (and their DIDs) out and :attr:`ExportResult.skipped` says so. Every other line (``custom`` dial
strings such as a fax line, ``dahdi`` analogue ports, ``iax2``) is not a SIP phone: it gets no account in any
platform file and is reported as moved by hand (:attr:`ExportResult.by_hand`); the neutral CSV lists it with
its own technology and no password.

Formats
-------

``freepbx`` (:func:`write_freepbx`): two files for FreePBX's Bulk Handler (Admin → Bulk Handler → Import).

* ``extensions.csv``, the columns FreePBX core and voicemail import: ``extension`` (digits), ``name`` (the
  number where the PBX gave none: FreePBX refuses a blank name), ``tech`` (pjsip or virtual), ``secret``,
  ``callerid`` (``Name <number>`` unless the PBX had one), ``outboundcid``, ``voicemail`` (the voicemail
  context: ``default``, or ``novm``), ``voicemail_enable`` (``yes`` or empty), ``voicemail_vmpwd`` (the PIN;
  FreePBX refuses an enabled mailbox without one, so a mailbox with no PIN is refused unless ``new_secrets``,
  which also makes a new 6-digit PIN, returned in :attr:`ExportResult.new_pins`), ``voicemail_email``.
* ``dids.csv``: ``description``, ``extension`` (the DID, E.164), ``cidnum`` (empty: any caller) and
  ``destination`` (``from-did-direct,<extension>,1``: FreePBX's inbound route to an extension).

``kamailio`` (:func:`write_kamailio`): a db_text database directory for auth_db and alias_db (a wave's export,
:func:`render_format`, puts it in ``OUT/db_text/`` and the clear passwords govmigrate made in
``OUT/phones-passwords.csv``, the neutral CSV's columns, for configuring the phones: never for the platform).

* ``subscriber`` (version 7): ``id``, ``username`` (the extension number), ``domain`` (the SIP domain),
  ``password`` (always NULL: the column is declared ``password(string,null)`` so no clear password is ever
  stored), ``ha1`` = H(username:domain:password) and ``ha1b`` = H(username@domain:domain:password), H being MD5
  (or SHA-256, RFC 8760, with ``algorithm="SHA-256"``, for a Kamailio whose auth module uses that algorithm).
  Kamailio is set up with ``calculate_ha1`` 0, ``password_column`` ha1 and ``password_column_2`` ha1b.
* ``dbaliases`` (version 1): one row per DID, ``alias_username`` (the DID, E.164), ``alias_domain``,
  ``username``, ``domain``: what ``alias_db_lookup("dbaliases")`` rewrites a call to a DID with. alias_db's table
  rather than usrloc's ``aliases``: that one is a location table, filled by REGISTERs and expiring with them,
  while a DID's route must hold whether or not the phone is registered.
* ``version``: the rows for ``version``, ``subscriber`` and ``dbaliases``, so the directory is a complete db_text
  database (Kamailio 5.6 does not check them when the table is named in ``auth_check``, but kamctl and modules
  with a fixed table do).

``csv`` (:func:`write_csv`): one row per extension, UTF-8, a header line, every column always present:

========================= =============================================================================
``key``                   ``<dial plan>:<number>``, as plans and events name the extension
``source``                the source (ministry) id it was read from
``dial_plan``             the numbering plan the number is unique in
``extension``             the extension number
``name``                  the display name
``tech``                  the technology the PBX gave (pjsip, sip, iax2, dahdi, virtual, ...), or empty
``transport``             udp, tcp, tls, ws or wss where the PBX said, or empty
``callerid``              the caller ID the PBX set, or empty
``outbound_cid``          the outbound caller ID, or empty
``secret``                the SIP password (empty for virtual extensions)
``secret_origin``         ``pbx`` (read from the PBX files), ``kept`` (made by govmigrate once and kept),
                          ``new`` (made by this call), ``given`` (passed by the caller) or empty
``voicemail_box``         the voicemail box number, or empty
``voicemail_email``       where voicemail is sent, or empty
``voicemail_pin``         the voicemail PIN, or empty
``dids``                  the DIDs routed to the extension, E.164, separated by spaces
``device``                the phone (MAC, model, user agent) where the PBX named it, or empty
``link_email``            a mail address an input gave for the extension's user, or empty
``origins``               every ``file:line`` it was read from, separated by ``; ``
``extra``                 the PBX's columns and options govmigrate does not use, as a JSON object
========================= =============================================================================
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import secrets as _random
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from migrate.core.cells import FORMULA_STARTS, formula_safe
from migrate.core.errors import UsageError
from migrate.core.secrets import Secret
from migrate.voip.model import BY_HAND, PHONE, VIRTUAL, Extension, line_kind, line_text

if TYPE_CHECKING:
    from migrate.core.config import Project

__all__ = ["ExportError", "ExportResult", "Rendered", "csv_text_cell", "dbtext_value", "generate_pin",
           "generate_secret", "ha1", "render_csv", "render_format", "render_freepbx", "render_kamailio", "write_all",
           "write_csv", "write_freepbx", "write_kamailio", "write_rendered"]

FREEPBX_EXTENSION_COLUMNS = ("extension", "name", "tech", "secret", "callerid", "outboundcid", "voicemail",
                             "voicemail_enable", "voicemail_vmpwd", "voicemail_email")
FREEPBX_DID_COLUMNS = ("description", "extension", "cidnum", "destination")
NEUTRAL_COLUMNS = ("key", "source", "dial_plan", "extension", "name", "tech", "transport", "callerid",
                   "outbound_cid", "secret", "secret_origin", "voicemail_box", "voicemail_email", "voicemail_pin",
                   "dids", "device", "link_email", "origins", "extra")
#: Kamailio 5.x table definitions (Debian's db_text templates), except ``password``, which may be NULL here.
SUBSCRIBER_HEADER = ("id(int,auto) username(string) domain(string) password(string,null) ha1(string) "
                     "ha1b(string)")
DBALIASES_HEADER = "id(int,auto) alias_username(string) alias_domain(string) username(string) domain(string)"
VERSION_HEADER = "id(int,auto) table_name(string) table_version(int)"
TABLE_VERSIONS = {"version": 1, "subscriber": 7, "dbaliases": 1}
ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}

SECRET_LENGTH = 24
_SECRET_ALPHABET = string.ascii_letters + string.digits
PIN_LENGTH = 6

_NUMBER_RE = re.compile(r"^[0-9]{1,20}$")
_USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_CALLERID_DELIMITERS = re.compile(r'["<>\\]')


class ExportError(UsageError):
    """The extensions cannot be exported as asked; nothing was written."""


@dataclass
class ExportResult:
    #: Every file written, in the order the format lists them.
    files: list[Path] = field(default_factory=list)
    #: Extension key → the new SIP password made for it (``new_secrets=True``).
    new_secrets: dict[str, Secret] = field(default_factory=dict)
    #: Extension key → the new voicemail PIN made for a mailbox that had none (FreePBX, ``new_secrets=True``).
    new_pins: dict[str, Secret] = field(default_factory=dict)
    #: Extension key → why it is not in the files (Kamailio: virtual extensions, which cannot register).
    skipped: dict[str, str] = field(default_factory=dict)
    #: Extension key → why it gets no account anywhere: lines that are not SIP phones, moved by hand.
    by_hand: dict[str, str] = field(default_factory=dict)


@dataclass
class Rendered:
    """An export checked and rendered, not written yet: every file's path and text, and what it amounts to.
    :func:`write_all` writes them all or none."""

    files: list[tuple[Path, str]]
    result: ExportResult
    #: Files an earlier export wrote that this one has nothing for (a passwords file no longer due): removed
    #: once the new files are in place.
    stale: list[Path] = field(default_factory=list)


# -- cells --------------------------------------------------------------------------------------------------


def csv_text_cell(value: str | None) -> str:
    """A free-text CSV cell a spreadsheet shows as text: a leading ``'`` where it could start a formula."""
    return formula_safe("" if value is None else str(value))


def _one_line(value: str | None) -> str:
    """Free text for a file another program turns into configuration: control characters (a newline that
    would start a new line of pjsip.conf) become spaces."""
    return _CONTROL_RE.sub(" ", value or "")


def _callerid(name: str, number: str) -> str:
    """``"Name" <number>`` with the characters that delimit a caller ID taken out of the name, so a name
    cannot supply a number of its own."""
    clean = _CALLERID_DELIMITERS.sub("", _one_line(name)).strip()
    return f'"{clean}" <{number}>'


def dbtext_value(value: str) -> str:
    """A string as Kamailio's db_text reads it back: backslash, ``:``, newline, CR, tab and NUL escaped."""
    out = []
    for char in value:
        if char == "\\":
            out.append("\\\\")
        elif char == ":":
            out.append("\\:")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif char == "\0":
            out.append("\\0")
        else:
            out.append(char)
    return "".join(out)


def ha1(username: str, domain: str, password: Secret, algorithm: str = "MD5") -> str:
    """The digest HA1 (RFC 2617, RFC 8760): H(username:domain:password) in hex, the domain being the realm."""
    digest = ALGORITHMS[algorithm]
    return digest(f"{username}:{domain}:{password.reveal()}".encode()).hexdigest()


def generate_secret() -> Secret:
    """A new SIP password: 24 letters and digits (about 142 bits), typeable on a phone's web page."""
    return Secret("".join(_random.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH)), "new", remember=False)


def generate_pin() -> Secret:
    return Secret("".join(_random.choice(string.digits) for _ in range(PIN_LENGTH)), "new", remember=False)


# -- checks -------------------------------------------------------------------------------------------------


def _label(ext: Extension) -> str:
    return f"{ext.key} ({ext.name})" if ext.name else ext.key


def _registers(ext: Extension) -> bool:
    """A SIP phone: it gets an account (a password) on the platform."""
    return line_kind(ext.tech) == PHONE


def _by_hand(extensions: Sequence[Extension]) -> dict[str, str]:
    return {e.key: line_text(e.tech) for e in extensions if line_kind(e.tech) == BY_HAND}


def _check_dids(extensions: Sequence[Extension]) -> list[str]:
    problems = []
    routed: dict[str, str] = {}
    for ext in extensions:
        for did in ext.dids:
            if not _E164_RE.match(did):
                problems.append(f"{_label(ext)}: DID {did!r} is not an E.164 number (+ and 7 to 15 digits)")
            elif did in routed and routed[did] != ext.key:
                problems.append(f"DID {did} is routed to both {routed[did]} and {ext.key}")
            routed.setdefault(did, ext.key)
    return problems


def _check_unique(extensions: Sequence[Extension], by_number: bool) -> list[str]:
    """Keys must be unique; ``by_number``: numbers too (one platform, one SIP domain, one numbering)."""
    problems = []
    seen: dict[str, str] = {}
    for ext in extensions:
        ident = ext.number if by_number else ext.key
        if ident in seen:
            what = f"extension number {ext.number}" if by_number else f"extension {ext.key}"
            problems.append(f"{what} appears twice ({seen[ident]} and {ext.key}); one platform needs each once")
        seen.setdefault(ident, ext.key)
    return problems


def _secret_problem(value: str, what: str, *, csv_format: bool, freepbx: bool) -> str | None:
    if not value:
        return f"its {what} is empty"
    if _CONTROL_RE.search(value):
        return f"its {what} holds a control character"
    if csv_format and value.startswith(FORMULA_STARTS):
        return f"its {what} starts with {value[0]!r}, which a spreadsheet would run as a formula"
    if freepbx and value == "REGEN":
        return f"its {what} is FreePBX's keyword REGEN, which would make FreePBX replace it"
    return None


def _resolve_secrets(extensions: Sequence[Extension], given: Mapping[str, Secret] | None, new_secrets: bool,
                     *, csv_format: bool, freepbx: bool) -> tuple[dict[str, Secret], dict[str, str], dict[str, Secret]]:
    """Extension key → the password to write, → where it came from; and the new ones made. Raises with every
    extension that has no usable password, naming each (never the value)."""
    chosen: dict[str, Secret] = {}
    origin: dict[str, str] = {}
    made: dict[str, Secret] = {}
    missing: list[str] = []
    unusable: list[str] = []
    for ext in extensions:
        if not _registers(ext):
            continue
        if given and ext.key in given:
            secret, where = given[ext.key], "given"
        elif new_secrets:
            secret = made[ext.key] = generate_secret()
            where = "new"
        elif ext.secret is not None and ext.secret.reveal():
            secret, where = ext.secret, "pbx"
        else:
            missing.append(_label(ext))
            continue
        problem = _secret_problem(secret.reveal(), "SIP password", csv_format=csv_format, freepbx=freepbx)
        if problem:
            unusable.append(f"{_label(ext)}: {problem}")
            continue
        chosen[ext.key], origin[ext.key] = secret, where
    if missing or unusable:
        parts = []
        if missing:
            parts.append(f"{len(missing)} extension{'s have' if len(missing) != 1 else ' has'} no SIP password in "
                         f"the PBX files: {', '.join(missing)}")
        if unusable:
            parts.append(f"{len(unusable)} SIP password{'s' if len(unusable) != 1 else ''} cannot be written as "
                         f"they are: {'; '.join(unusable)}")
        raise ExportError("; ".join(parts) + "; nothing was written",
                          hint="export with --new-secrets to give every extension a new strong password (made once "
                               "and kept)")
    return chosen, origin, made


def _refuse(problems: list[str]) -> None:
    if problems:
        raise ExportError("cannot export: " + "; ".join(problems) + "; nothing was written")


# -- files --------------------------------------------------------------------------------------------------


def write_all(files: list[tuple[Path, str]]) -> list[Path]:
    """Write every file or none: each into a temporary file created 0600 beside its target (never a wider mode,
    not even before a chmod), flushed to disk, then renamed over the target (a symlink there is replaced, never
    followed)."""
    temps: list[tuple[Path, Path]] = []
    try:
        for target, text in files:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = target.parent / f".{target.name}.{_random.token_hex(6)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            temps.append((tmp, target))
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        for tmp, target in temps:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise
    return [target for target, _ in files]


def _csv_text(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def _freepbx_paths(out: Path | str | tuple[Path | str, Path | str]) -> tuple[Path, Path]:
    if isinstance(out, tuple):
        extensions_path, dids_path = (Path(p) for p in out)
        if extensions_path == dids_path:
            raise ExportError("the FreePBX extensions and DIDs files need two different paths")
        return extensions_path, dids_path
    directory = Path(out)
    if directory.exists() and not directory.is_dir():
        raise ExportError(f"{directory}: give a directory for the FreePBX export (it writes extensions.csv and "
                          "dids.csv), or the two file paths")
    return directory / "extensions.csv", directory / "dids.csv"


# -- the formats --------------------------------------------------------------------------------------------


def render_freepbx(extensions: Sequence[Extension], out: Path | str | tuple[Path | str, Path | str], *,
                   secrets: Mapping[str, Secret] | None = None, new_secrets: bool = False,
                   pins: Mapping[str, Secret] | None = None) -> Rendered:
    """The FreePBX files, checked and rendered (:func:`write_freepbx` writes them). ``pins``: voicemail PINs
    made for boxes the PBX gave none (extension key → PIN), as ``secrets`` gives passwords."""
    extensions = list(extensions)
    by_hand = _by_hand(extensions)
    extensions = [e for e in extensions if e.key not in by_hand]
    problems = _check_unique(extensions, by_number=True) + _check_dids(extensions)
    problems += [f"{_label(e)}: FreePBX extension numbers are digits only" for e in extensions
                 if not _NUMBER_RE.match(e.number)]
    _refuse(problems)
    chosen, _, made = _resolve_secrets(extensions, secrets, new_secrets, csv_format=True, freepbx=True)

    chosen_pins: dict[str, Secret] = {}
    new_pins: dict[str, Secret] = {}
    missing_pin: list[str] = []
    bad_pin: list[str] = []
    for ext in extensions:
        if not ext.voicemail_box:
            continue
        pin = ext.voicemail_pin.reveal() if ext.voicemail_pin is not None else ""
        if not pin:
            if pins and ext.key in pins:
                chosen_pins[ext.key] = pins[ext.key]
            elif new_secrets:
                chosen_pins[ext.key] = new_pins[ext.key] = generate_pin()
            else:
                missing_pin.append(_label(ext))
            continue
        problem = _secret_problem(pin, "voicemail PIN", csv_format=True, freepbx=False)
        if problem:
            bad_pin.append(f"{_label(ext)}: {problem}")
        else:
            chosen_pins[ext.key] = ext.voicemail_pin  # type: ignore[assignment]
    if missing_pin or bad_pin:
        parts = []
        if missing_pin:
            parts.append(f"FreePBX refuses a voicemail box without a PIN, and these have none: {', '.join(missing_pin)}")
        if bad_pin:
            parts.append("; ".join(bad_pin))
        raise ExportError("; ".join(parts) + "; nothing was written",
                          hint="export with --new-secrets to give PIN-less boxes a new PIN (made once and kept)")

    ext_rows = []
    did_rows = []
    for ext in extensions:
        registers = _registers(ext)
        name = _one_line(ext.name).strip() or ext.number
        box = bool(ext.voicemail_box)
        ext_rows.append([
            ext.number,
            csv_text_cell(name),
            "pjsip" if registers else "virtual",
            chosen[ext.key].reveal() if registers else "",
            csv_text_cell(_one_line(ext.callerid) if ext.callerid else _callerid(name, ext.number)),
            csv_text_cell(_one_line(ext.outbound_cid)),
            "default" if box else "novm",
            "yes" if box else "",
            chosen_pins[ext.key].reveal() if box else "",
            csv_text_cell(_one_line(ext.voicemail_email)) if box else "",
        ])
        for did in ext.dids:
            did_rows.append([csv_text_cell(f"{name} ({ext.number})"), did, "",
                             f"from-did-direct,{ext.number},1"])
    extensions_path, dids_path = _freepbx_paths(out)
    return Rendered([(extensions_path, _csv_text(FREEPBX_EXTENSION_COLUMNS, ext_rows)),
                     (dids_path, _csv_text(FREEPBX_DID_COLUMNS, did_rows))],
                    ExportResult(new_secrets=made, new_pins=new_pins, by_hand=by_hand))


def write_freepbx(extensions: Sequence[Extension], out: Path | str | tuple[Path | str, Path | str], *,
                  secrets: Mapping[str, Secret] | None = None, new_secrets: bool = False,
                  pins: Mapping[str, Secret] | None = None) -> ExportResult:
    """FreePBX Bulk Handler files: ``out`` is a directory (``extensions.csv`` and ``dids.csv`` in it) or the
    pair of paths (extensions, DIDs). See the module docstring for the columns."""
    return _write(render_freepbx(extensions, out, secrets=secrets, new_secrets=new_secrets, pins=pins))


def render_kamailio(extensions: Sequence[Extension], out_dir: Path | str, *, domain: str,
                    secrets: Mapping[str, Secret] | None = None, new_secrets: bool = False,
                    algorithm: str = "MD5") -> Rendered:
    """The Kamailio tables, checked and rendered (:func:`write_kamailio` writes them)."""
    domain = domain.strip().lower().rstrip(".")
    if not _DOMAIN_RE.match(domain):
        raise ExportError(f"{domain!r} is not a SIP domain name (e.g. voice.gov.bz)")
    if algorithm not in ALGORITHMS:
        raise ExportError(f"digest algorithm {algorithm!r}: use one of {', '.join(ALGORITHMS)}")
    extensions = list(extensions)
    by_hand = _by_hand(extensions)
    skipped = {e.key: "a virtual extension cannot register" for e in extensions if line_kind(e.tech) == VIRTUAL}
    subscribers = [e for e in extensions if _registers(e)]
    problems = _check_unique(subscribers, by_number=True) + _check_dids(subscribers)
    problems += [f"{_label(e)}: {e.number!r} is not usable as a SIP user name (letters, digits, '.', '_', '-')"
                 for e in subscribers if not _USERNAME_RE.match(e.number)]
    _refuse(problems)
    chosen, _, made = _resolve_secrets(subscribers, secrets, new_secrets, csv_format=False, freepbx=False)

    d = dbtext_value(domain)
    subscriber_rows = []
    alias_rows = []
    for n, ext in enumerate(subscribers, start=1):
        user = dbtext_value(ext.number)
        secret = chosen[ext.key]
        subscriber_rows.append(f"{n}:{user}:{d}::{ha1(ext.number, domain, secret, algorithm)}:"
                               f"{ha1(f'{ext.number}@{domain}', domain, secret, algorithm)}\n")
        for did in ext.dids:
            alias_rows.append(f"{len(alias_rows) + 1}:{dbtext_value(did)}:{d}:{user}:{d}\n")
    version_rows = [f"{n}:{table}:{version}\n" for n, (table, version) in enumerate(TABLE_VERSIONS.items(), 1)]
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: give a directory for the Kamailio export (it writes subscriber, dbaliases "
                          "and version)")
    return Rendered([(out / "subscriber", SUBSCRIBER_HEADER + "\n" + "".join(subscriber_rows)),
                     (out / "dbaliases", DBALIASES_HEADER + "\n" + "".join(alias_rows)),
                     (out / "version", VERSION_HEADER + "\n" + "".join(version_rows))],
                    ExportResult(new_secrets=made, skipped=skipped, by_hand=by_hand))


def write_kamailio(extensions: Sequence[Extension], out_dir: Path | str, *, domain: str,
                   secrets: Mapping[str, Secret] | None = None, new_secrets: bool = False,
                   algorithm: str = "MD5") -> ExportResult:
    """Kamailio db_text tables in ``out_dir``: ``subscriber``, ``dbaliases`` and ``version`` (see the module
    docstring). ``domain`` is the SIP domain, the realm the HA1 values are computed for."""
    return _write(render_kamailio(extensions, out_dir, domain=domain, secrets=secrets, new_secrets=new_secrets,
                                  algorithm=algorithm))


def render_csv(extensions: Sequence[Extension], path: Path | str, *, secrets: Mapping[str, Secret] | None = None,
               new_secrets: bool = False, pins: Mapping[str, Secret] | None = None,
               origins: Mapping[str, str] | None = None) -> Rendered:
    """The neutral CSV, checked and rendered (:func:`write_csv` writes it). ``origins``: what to say in
    ``secret_origin`` for given secrets (default ``given``)."""
    extensions = list(extensions)
    _refuse(_check_unique(extensions, by_number=False) + _check_dids(extensions))
    chosen, origin, made = _resolve_secrets(extensions, secrets, new_secrets, csv_format=True, freepbx=False)
    rows = []
    for ext in extensions:
        secret = chosen.get(ext.key)
        pin = ext.voicemail_pin.reveal() if ext.voicemail_pin is not None else ""
        if not pin and ext.voicemail_box and pins and ext.key in pins:
            pin = pins[ext.key].reveal()
        if pin:
            problem = _secret_problem(pin, "voicemail PIN", csv_format=True, freepbx=False)
            if problem:
                raise ExportError(f"{_label(ext)}: {problem}; nothing was written")
        where = origin.get(ext.key, "")
        rows.append([
            csv_text_cell(ext.key),
            csv_text_cell(ext.source_id),
            csv_text_cell(ext.dial_plan),
            csv_text_cell(ext.number),
            csv_text_cell(ext.name),
            csv_text_cell(ext.tech),
            csv_text_cell(ext.transport),
            csv_text_cell(ext.callerid),
            csv_text_cell(ext.outbound_cid),
            secret.reveal() if secret else "",
            (origins or {}).get(ext.key, where) if where == "given" else where,
            csv_text_cell(ext.voicemail_box),
            csv_text_cell(ext.voicemail_email),
            pin,
            " ".join(ext.dids),
            csv_text_cell(ext.device),
            csv_text_cell(ext.link_email),
            csv_text_cell("; ".join(ext.origins)),
            csv_text_cell(json.dumps(ext.extra, ensure_ascii=False, sort_keys=True)) if ext.extra else "",
        ])
    return Rendered([(Path(path), _csv_text(NEUTRAL_COLUMNS, rows))],
                    ExportResult(new_secrets=made, by_hand=_by_hand(extensions)))


def write_csv(extensions: Sequence[Extension], path: Path | str, *, secrets: Mapping[str, Secret] | None = None,
              new_secrets: bool = False, pins: Mapping[str, Secret] | None = None) -> ExportResult:
    """The neutral CSV (columns in the module docstring): everything govmigrate knows of each extension."""
    return _write(render_csv(extensions, path, secrets=secrets, new_secrets=new_secrets, pins=pins))


def _write(rendered: Rendered) -> ExportResult:
    rendered.result.files = write_all(rendered.files)
    return rendered.result


# -- one wave's files ---------------------------------------------------------------------------------------

FORMATS = ("freepbx", "kamailio", "csv")
#: Inside a Kamailio export's directory: the db_text tables, and the clear passwords for the phones.
DB_TEXT_DIR = "db_text"
PASSWORDS_FILE = "phones-passwords.csv"


def default_out(exports_dir: Path, wave_id: str, fmt: str) -> Path:
    """``exports/<wave>/phones.csv`` for the neutral CSV, ``exports/<wave>/<format>/`` for the others."""
    base = exports_dir / wave_id
    return base / "phones.csv" if fmt == "csv" else base / fmt


def render_format(fmt: str, extensions: list[Extension], out: Path, *, domain: str | None,
                  secrets: Mapping[str, Secret], pins: Mapping[str, Secret], algorithm: str = "MD5") -> Rendered:
    """One wave's export in one format, everything inside ``out``, checked and rendered; nothing is written.

    ``secrets`` and ``pins``: the passwords and PINs govmigrate made and keeps (extension key → value); the
    others come from the PBX files. A Kamailio export puts its tables in ``out/db_text/`` and, when it carries
    kept passwords, the clear ones in ``out/phones-passwords.csv`` (the phones are configured from it; the
    tables hold only digests)."""
    if fmt == "freepbx":
        return render_freepbx(extensions, out, secrets=secrets, pins=pins)
    if fmt == "csv":
        return render_csv(extensions, out, secrets=secrets, pins=pins, origins={k: "kept" for k in secrets})
    if fmt != "kamailio":
        raise UsageError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    if not domain:
        raise UsageError("the Kamailio export needs the SIP domain its digests are computed for",
                         hint="set phones: sip_domain: (or sip: domain:) in migration.yaml, e.g. voice.gov.bz")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: give a directory for the Kamailio export (it writes {DB_TEXT_DIR}/ and "
                          f"{PASSWORDS_FILE} in it)")
    rendered = render_kamailio(extensions, out / DB_TEXT_DIR, domain=domain, secrets=secrets, algorithm=algorithm)
    kept = [e for e in extensions if e.key in secrets and _registers(e)]
    clear = out / PASSWORDS_FILE
    if kept:
        rendered.files += render_csv(kept, clear, secrets=secrets, pins=pins,
                                     origins={k: "kept" for k in secrets}).files
    else:
        rendered.stale.append(clear)
    # Tables an earlier govmigrate wrote straight into OUT: left there, they would be loaded by mistake.
    rendered.stale += [out / t for t in TABLE_VERSIONS if _ours(out / t)]
    return rendered


def _ours(path: Path) -> bool:
    """A db_text table this module wrote (its first line is one of our headers)."""
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline().rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return False
    return first in (SUBSCRIBER_HEADER, DBALIASES_HEADER, VERSION_HEADER)


def write_rendered(rendered: Rendered) -> ExportResult:
    """Write a rendered export (all files or none), then remove what it made stale."""
    result = _write(rendered)
    for path in rendered.stale:
        path.unlink(missing_ok=True)
    return result


def sip_domain(project: Project) -> str | None:
    """The hosted platform's SIP domain: ``phones.sip_domain``, else ``sip.domain``."""
    config = project.config
    return config.phones.sip_domain or (config.sip.domain if config.sip is not None else None)
