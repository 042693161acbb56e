"""What every PBX file reader hands the merge: partial extension records that know where each field was read,
DID routes, and the problems found, for one input file.

A reader never decides what wins between files; it only says what its own file holds and where.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from migrate.core.errors import Problem
from migrate.core.secrets import Secret

#: Input formats that describe the same side of an extension: the same number twice within one family is one
#: extension defined twice (an error); across families it is one extension seen from several files (merged).
FAMILY = {
    "freepbx-extensions": "freepbx-extensions",
    "freepbx-dids": "freepbx-dids",
    "pjsip": "pjsip",
    "sip": "sip",
    "voicemail": "voicemail",
    "kamailio-dbtext": "kamailio",
    "kamailio-csv": "kamailio",
}

#: An extension number as PBXs number them (FreePBX refuses anything else). Other names (pjsip trunks, sip.conf
#: providers, Kamailio users such as "alice") are not extensions.
NUMBER_RE = re.compile(r"^[0-9]{1,15}$")
_EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([A-Za-z0-9-]+\.)+[A-Za-z]{2,63}$")

#: Column and option names that hold credentials: never kept in ``extra`` (which reaches the state store).
SECRET_KEYS = frozenset({
    "secret", "password", "md5secret", "md5_cred", "ha1", "ha1b", "voicemail_vmpwd", "vmpwd", "pin",
    "remotesecret", "auth.password", "auth.md5_cred",
})


def is_email(value: str) -> bool:
    return bool(_EMAIL_RE.match(value))


@dataclass(frozen=True)
class Place:
    """A file (as shown to people) and a line in it."""

    file: str
    line: int | None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


def secret(value: str, at: Place) -> Secret:
    """A PBX secret: masked, and not registered with the redactor (there are thousands, and none meets a
    message: readers never quote values)."""
    return Secret(value, str(at), remember=False)


@dataclass
class Record:
    """One extension as one file describes it. ``fields`` uses :class:`~migrate.voip.model.Extension` field
    names; ``at`` says where each came from."""

    format: str
    number: str
    origin: Place
    fields: dict[str, object] = field(default_factory=dict)
    at: dict[str, Place] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    #: Every place the record was read from (a pjsip endpoint, its auth, its aor), the origin first.
    places: list[Place] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.places:
            self.places.append(self.origin)

    @property
    def family(self) -> str:
        return FAMILY[self.format]

    def set(self, name: str, value: object, at: Place | None = None) -> None:
        """Take a field; empty values are not information and are left out."""
        if value is None or value == "":
            return
        self.fields[name] = value
        self.at[name] = at or self.origin

    def keep(self, key: str, value: str, *, repeats: bool = False) -> None:
        """Keep an option or column govmigrate does not use, unless it holds a credential. A later value
        replaces an earlier one, except for options that may repeat (allow=ulaw, allow=alaw), kept together."""
        key = key.strip()
        if not key or key.lower() in SECRET_KEYS or value == "":
            return
        if repeats and key in self.extra and value not in self.extra[key].split(","):
            self.extra[key] = f"{self.extra[key]},{value}"
        else:
            self.extra[key] = value


@dataclass(frozen=True)
class DidRoute:
    """A DID as a DIDs file routes it: to an extension (``target``), or elsewhere, or only for some callers
    (``target`` None: not carried, and said in a note)."""

    did: str            # E.164
    target: str | None
    origin: Place
    key: str            # what makes the route unique in FreePBX: the DID and the caller ID it matches
    #: The destination as the file gives it ("from-did-direct,2001,1").
    destination: str = ""


class Findings:
    """The problems of one file (and the files it includes), each with its place and field, and the extensions
    an error concerns: those are *held* (kept, but neither exported nor cut over until the file is fixed or the
    operator decides)."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        #: Extension number → the errors that hold it.
        self.held: dict[str, list[Problem]] = {}

    def error(self, at: Place, field: str, message: str, *, concerns: Iterable[str | None] = ()) -> Problem:
        """An error; ``concerns``: the extension numbers it holds (None and non-numbers are ignored), named at
        the end of the message."""
        numbers = held_numbers(concerns)
        problem = Problem(at.file, at.line, field, message + held_suffix(numbers), "error")
        self.problems.append(problem)
        for number in numbers:
            self.held.setdefault(number, []).append(problem)
        return problem

    def warning(self, at: Place, field: str, message: str) -> None:
        self.problems.append(Problem(at.file, at.line, field, message, "warning"))

    def note(self, at: Place, field: str, message: str) -> None:
        self.problems.append(Problem(at.file, at.line, field, message, "note"))

    def hold(self, number: str, problem: Problem) -> None:
        """Hold an extension for an error said elsewhere (a section whose template or auth was wrong)."""
        if NUMBER_RE.match(number) and problem not in self.held.get(number, []):
            self.held.setdefault(number, []).append(problem)

    def extend(self, problems: list[Problem]) -> None:
        self.problems.extend(problems)

    @property
    def has_errors(self) -> bool:
        return any(p.severity == "error" for p in self.problems)


def held_numbers(concerns: Iterable[str | None]) -> list[str]:
    """The extension numbers among ``concerns``, once each (None and other names are not extensions)."""
    return list(dict.fromkeys(n for n in concerns if n and NUMBER_RE.match(n)))


def held_suffix(numbers: list[str]) -> str:
    """How an error ends that holds extensions: "; extension 2001 is held"."""
    if not numbers:
        return ""
    return f"; extension {' and '.join(numbers)} {'is' if len(numbers) == 1 else 'are'} held"


#: How an error on one row or section ends: the rest of the file is kept.
LEFT_OUT = "left out (the rest of the file is read)"


@dataclass
class FileRead:
    """One input file read by its reader: what it holds, and what is wrong with it. A bad row or section is left
    out with an error; everything else of the file is taken. The extensions an error concerns are ``held``."""

    file: str
    format: str
    records: list[Record] = field(default_factory=list)
    dids: list[DidRoute] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    #: Resolved paths read for this input (itself and what it includes).
    paths: list[str] = field(default_factory=list)
    #: Extension number → the errors (of this file) that hold it.
    held: dict[str, list[Problem]] = field(default_factory=dict)
    #: Records (by number) and DID routes (by key) that another file defines first: left out.
    left_out: set[str] = field(default_factory=set)
    left_out_routes: set[str] = field(default_factory=set)

    @property
    def family(self) -> str:
        return FAMILY[self.format]

    @property
    def taken_records(self) -> list[Record]:
        return [r for r in self.records if r.number not in self.left_out]

    @property
    def taken_routes(self) -> list[DidRoute]:
        return [r for r in self.dids if r.key not in self.left_out_routes]


def duplicate_in_file(records: list[Record], findings: Findings, what: str = "extension", *,
                      last_wins: bool = False, why: str = "") -> list[Record]:
    """The same number twice within one file: an error at the second naming the first and saying which is
    taken; the extension is held. Returns the records without the ones not taken. ``last_wins``: the later
    definition is taken (as chan_sip applies a peer's sections in order); else the first."""
    first: dict[str, Record] = {}
    dropped: set[int] = set()
    for record in records:
        earlier = first.get(record.number)
        if earlier is None:
            first[record.number] = record
            continue
        taken, other = (record, earlier) if last_wins else (earlier, record)
        findings.error(record.origin, "number",
                       f"{what} {record.number} is defined twice: here and at {earlier.origin}; the one at "
                       f"{taken.origin} is taken{why}", concerns=[record.number])
        dropped.add(id(other))
        first[record.number] = taken
    return [r for r in records if id(r) not in dropped]


_PROTOCOLS = ("udp", "tcp", "tls", "wss", "ws")


def protocol_of(value: str) -> str | None:
    """The transport protocol a PBX setting names: ``udp``; chan_sip's list ``udp,tcp,tls`` (the first is the
    default); FreePBX's pjsip transport names ``0.0.0.0-udp``; ``transport-tls``. None when it cannot tell."""
    first = value.split(",")[0].strip().lower()
    if first in _PROTOCOLS:
        return first
    for protocol in _PROTOCOLS:
        if first.endswith(("-" + protocol, "_" + protocol)):
            return protocol
    return None


_CALLERID_RE = re.compile(r'^\s*(?:"((?:[^"\\]|\\.)*)"|([^<]*?))\s*(?:<([^>]*)>)?\s*$')


def callerid_name(value: str) -> str:
    """The name part of a caller ID (``"Jane Doe" <1001>``); FreePBX's placeholder ``device <1001>`` has none."""
    match = _CALLERID_RE.match(value)
    if not match:
        return ""
    name = (match.group(1) if match.group(1) is not None else match.group(2) or "").strip()
    if match.group(1) is None and (name.lower() == "device" or name.isdigit()):
        return ""
    return name.replace('\\"', '"')


def check_email(value: str, record: Record, field: str, findings: Findings) -> None:
    """A voicemail e-mail must be addresses (Asterisk sends the message there). One that is not is kept and
    said in a warning; one that holds the record's secret (a value in the wrong column) is neither kept nor
    quoted."""
    bad = [part for part in re.split(r"[,;|]", value) if part.strip() and not is_email(part.strip())]
    if not bad:
        return
    secrets = [s.reveal() for s in (record.fields.get("secret"), record.fields.get("voicemail_pin"))
               if isinstance(s, Secret)]
    at = record.at.get(field, record.origin)
    if any(s and s in value for s in secrets):
        # A secret in the wrong column: neither quoted nor kept (it would reach the store and every listing).
        record.fields.pop(field, None)
        record.at.pop(field, None)
        findings.warning(at, field, f"the value is not an e-mail address (extension {record.number}) and holds the "
                                    "record's secret: not kept")
        return
    findings.warning(at, field, f"{value!r} is not an e-mail address (extension {record.number}); kept, but voicemail "
                                "cannot be sent there and it cannot link the extension to a mail user")
