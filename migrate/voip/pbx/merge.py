"""All of a ministry's PBX files as one list of extensions: each input read by its reader, files with errors left
out whole, one Extension per number merged from every file that describes it, and DIDs attached.

Which file wins a field
-----------------------
The same number in several inputs of one source (a FreePBX export, the pjsip.conf it generated, voicemail.conf)
is one extension. For each field the first family in its row below that has a value wins; the running
configuration (what phones registered with, what voicemail sends) is taken over an export of the database that
generates it, and names over caller-ID strings:

==================  =================================================================
field               families, the winner first
==================  =================================================================
name                freepbx-extensions, voicemail, kamailio, pjsip, sip
tech, transport     pjsip, sip, freepbx-extensions, kamailio
secret              pjsip, sip, kamailio, freepbx-extensions
callerid            pjsip, sip, freepbx-extensions, kamailio
outbound_cid        freepbx-extensions, pjsip, sip
voicemail_box       voicemail, freepbx-extensions, pjsip, sip
voicemail_email     voicemail, freepbx-extensions
voicemail_pin       voicemail, freepbx-extensions
device              freepbx-extensions, pjsip, sip, kamailio
link_email          freepbx-extensions, kamailio
extra (each key)    pjsip, sip, kamailio, voicemail, freepbx-extensions
dids                every DIDs file (freepbx-dids), in input order
==================  =================================================================

Two secrets, PINs or voicemail e-mails that differ are a warning naming both places (never the values).

Families: kamailio-dbtext and kamailio-csv are one family (``kamailio``); every other format is its own.

Errors, and which definition is taken
-------------------------------------
A bad row or section is an error naming its file, line and field; it is left out and the rest of the file is
read. The extension an error concerns (the row's or section's number, the extension a bad DID row routes to) is
*held*: it is recorded with the reason, and neither exported nor cut over until the file is fixed or the
operator overrides it (``--force --reason``). Where a number is defined twice, both places are named and one
definition is taken:

=====================================================  ===========================================================
defined twice                                          taken
=====================================================  ===========================================================
in one sip.conf                                        the later section (chan_sip applies a peer's sections in
                                                       order, so the later values win)
in one file of any other format, or one DIDs file      the first
in two files of one family                             the one of the file listed first under ``pbx: inputs``
in two ministries that share a dial plan               the one of the source listed first in the project file;
                                                       the other source's is left out
=====================================================  ===========================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from migrate.core.config import Project, Source
from migrate.core.errors import Problem, UsageError
from migrate.voip.model import PHONE, Extension, PbxInventory, line_kind
from migrate.voip.pbx import asterisk, freepbx, kamailio
from migrate.voip.pbx.conf import parse_conf
from migrate.voip.pbx.records import FileRead, Findings, Place, Record, held_numbers, held_suffix
from migrate.voip.pbx.textfile import read_text

ORDER: dict[str, tuple[str, ...]] = {
    "name": ("freepbx-extensions", "voicemail", "kamailio", "pjsip", "sip"),
    "tech": ("pjsip", "sip", "freepbx-extensions", "kamailio"),
    "transport": ("pjsip", "sip", "freepbx-extensions", "kamailio"),
    "secret": ("pjsip", "sip", "kamailio", "freepbx-extensions"),
    "callerid": ("pjsip", "sip", "freepbx-extensions", "kamailio"),
    "outbound_cid": ("freepbx-extensions", "pjsip", "sip"),
    "voicemail_box": ("voicemail", "freepbx-extensions", "pjsip", "sip"),
    "voicemail_email": ("voicemail", "freepbx-extensions"),
    "voicemail_pin": ("voicemail", "freepbx-extensions"),
    "device": ("freepbx-extensions", "pjsip", "sip", "kamailio"),
    "link_email": ("freepbx-extensions", "kamailio"),
}
EXTRA_ORDER = ("pjsip", "sip", "kamailio", "voicemail", "freepbx-extensions")
#: Fields whose disagreement between files matters, with how a warning names them.
CONFLICTS = {"secret": "the SIP secret", "voicemail_pin": "the voicemail PIN",
             "voicemail_email": "the voicemail e-mail"}
#: Families that describe phones (a voicemail box without one of these is a box without a phone).
DEVICE_FAMILIES = frozenset({"freepbx-extensions", "pjsip", "sip", "kamailio"})
_CONF_READERS = {"pjsip": asterisk.read_pjsip, "sip": asterisk.read_sip, "voicemail": asterisk.read_voicemail}


@dataclass
class SourcePbx(PbxInventory):
    """A source's PBX inventory that still knows its files, so that a number another ministry of the same dial
    plan defines can be left out (or held) afterwards and the rest merged again."""

    dial_plan: str = ""
    reads: list[FileRead] = field(default_factory=list, repr=False, compare=False)
    #: Numbers another source of the dial plan takes: every record of them is left out here.
    taken_elsewhere: set[str] = field(default_factory=set, repr=False, compare=False)
    #: Errors found across files or sources (not by one file's reader), and the numbers they hold.
    cross: list[Problem] = field(default_factory=list, repr=False, compare=False)
    cross_held: dict[str, list[Problem]] = field(default_factory=dict, repr=False, compare=False)

    def hold(self, number: str, problem: Problem) -> None:
        self.cross.append(problem)
        self.cross_held.setdefault(number, []).append(problem)


def read_pbx(project: Project, source: Source) -> PbxInventory:
    """Every PBX input of ``source``, read and merged into one Extension per number. Never raises for what is
    in the files: every finding is a Problem in the inventory (an error leaves its row or section out, and holds
    the extension it concerns)."""
    inventory = SourcePbx(source.id, dial_plan=project.config.dial_plan(source))
    if source.pbx is None:
        return inventory
    region = project.config.phones.region
    already: set[str] = set()
    for pbx_input in source.pbx.inputs:
        path = project.resolve_path(pbx_input.path)
        inventory.reads.append(read_input(path, pbx_input.path, pbx_input.format, pbx_input.encoding,
                                          region=region, base_dir=project.base_dir, already_read=already))
    _same_family(inventory)
    _assemble(inventory)
    return inventory


def read_input(path: Path, shown: str, fmt: str, encoding: str = "auto", *, region: str = "BZ",
               base_dir: Path | None = None, already_read: set[str] | None = None) -> FileRead:
    """One input file (and, for Asterisk files, what it includes) read by the reader of its format."""
    findings = Findings()
    read = FileRead(shown, fmt)
    already = already_read if already_read is not None else set()
    real = os.path.realpath(path)
    if fmt in _CONF_READERS:
        if real in already:
            findings.note(Place(shown, None), "path", "already read as an #include of an earlier input; not read "
                                                      "twice")
        else:
            conf = parse_conf(path, shown, encoding, findings, base_dir=base_dir or path.parent,
                              already_read=already)
            read.paths = conf.paths
            read.records = _CONF_READERS[fmt](conf, findings)
    else:
        already.add(real)
        read.paths = [real]
        text = read_text(path, shown, encoding, findings)
        if text is not None:
            if fmt == "freepbx-extensions":
                read.records = freepbx.read_extensions(text, shown, findings)
            elif fmt == "freepbx-dids":
                read.dids = freepbx.read_dids(text, shown, findings, region)
            elif fmt == "kamailio-dbtext":
                read.records = kamailio.read_dbtext(text, shown, findings)
            elif fmt == "kamailio-csv":
                read.records = kamailio.read_csv(text, shown, findings)
            else:
                raise ValueError(f"unknown PBX input format {fmt!r}")
    read.problems = findings.problems
    read.held = findings.held
    return read


def _same_family(inventory: SourcePbx) -> None:
    """A number (or DID route) a file of the same family already defines: the earlier file's is taken, the later
    one left out with an error naming both; the extension is held."""
    seen: dict[tuple[str, str], tuple[Place, str | None]] = {}
    for read in inventory.reads:
        if read.format == "freepbx-dids":
            items = [(r.key, r.origin, r.target, read.left_out_routes, "extension",
                      f"DID {r.did} is already routed at {{first}}; the route there is taken and this one left out")
                     for r in read.dids]
        else:
            items = [(r.number, r.origin, r.number, read.left_out, "number",
                      f"extension {r.number} is already defined at {{first}}; the one there is taken and this one "
                      "left out") for r in read.records]
        for key, origin, number, left_out, field_name, message in items:
            first = seen.setdefault((read.family, key), (origin, number))
            if first[0] is origin:
                continue
            left_out.add(key)
            held = held_numbers([first[1], number])
            problem = Problem(origin.file, origin.line, field_name, message.format(first=first[0]) + held_suffix(held))
            inventory.cross.append(problem)
            for n in held:
                inventory.cross_held.setdefault(n, []).append(problem)


def _assemble(inventory: SourcePbx) -> None:
    """(Re)build the inventory's extensions, problems and file counts from its reads."""
    problems: list[Problem] = [p for read in inventory.reads for p in read.problems] + inventory.cross
    grouped: dict[str, list[Record]] = {}
    for read in inventory.reads:
        for record in read.taken_records:
            if record.number not in inventory.taken_elsewhere:
                grouped.setdefault(record.number, []).append(record)
    extensions = {number: _merge(records, inventory, problems) for number, records in grouped.items()}
    counts: dict[str, int] = {}
    for read in inventory.reads:
        counts[read.file] = counts.get(read.file, 0) + sum(
            1 for r in read.taken_records if r.number not in inventory.taken_elsewhere)
    for read in inventory.reads:
        for route in read.taken_routes:
            if route.target is None:
                continue
            extension = extensions.get(route.target)
            if extension is None:
                problems.append(Problem(route.origin.file, route.origin.line, "destination",
                                        f"DID {route.did} is routed to extension {route.target}, which no file of "
                                        "this source defines; not carried", "warning"))
                continue
            if route.did not in extension.dids:
                extension.dids.append(route.did)
            extension.origins.append(str(route.origin))
            counts[read.file] = counts.get(read.file, 0) + 1
    holds: dict[str, list[Problem]] = {}
    for source in [*(read.held for read in inventory.reads), inventory.cross_held]:
        for number, errors in source.items():
            holds.setdefault(number, []).extend(e for e in errors if e not in holds.get(number, []))
    for number, errors in holds.items():
        if number in extensions:
            extensions[number].held = [str(e) for e in errors]
    device_files = list(dict.fromkeys(read.file for read in inventory.reads
                                      if read.family in DEVICE_FAMILIES and read.taken_records))
    for number, records in grouped.items():
        extension = extensions[number]
        first = records[0].origin
        families = {r.family for r in records}
        if device_files and not families & DEVICE_FAMILIES:
            problems.append(Problem(first.file, first.line, "number",
                                    f"mailbox {extension.voicemail_box or number} has no extension in "
                                    f"{', '.join(device_files)}; kept as an extension without a phone", "warning"))
        if extension.secret is None and "secret_form" not in extension.extra and line_kind(extension.tech) == PHONE:
            problems.append(Problem(first.file, first.line, "secret",
                                    f"extension {number} has no SIP secret in any file; `voip export` will need "
                                    "--new-secrets for it", "warning"))
    inventory.extensions = sorted(extensions.values(), key=lambda e: (len(e.number), e.number))
    inventory.problems = problems
    inventory.files = counts


def _merge(records: list[Record], inventory: SourcePbx, problems: list[Problem]) -> Extension:
    number = records[0].number
    extension = Extension(source_id=inventory.source_id, dial_plan=inventory.dial_plan, number=number)
    for name, order in ORDER.items():
        candidates = [r for r in records if name in r.fields]
        if not candidates:
            continue
        candidates.sort(key=lambda r: order.index(r.family) if r.family in order else len(order))
        chosen = candidates[0]
        setattr(extension, name, chosen.fields[name])
        if name not in CONFLICTS:
            continue
        for other in candidates[1:]:
            mine, theirs = chosen.fields[name], other.fields[name]
            if isinstance(mine, str) and isinstance(theirs, str):
                differs = mine.strip().lower() != theirs.strip().lower()
            else:
                differs = mine != theirs
            if differs:
                at = chosen.at[name]
                problems.append(Problem(at.file, at.line, name,
                                        f"extension {number}: {CONFLICTS[name]} here differs from the one at "
                                        f"{other.at[name]}; the one here is taken ({chosen.family} before "
                                        f"{other.family})", "warning"))
    for record in sorted(records, key=lambda r: EXTRA_ORDER.index(r.family) if r.family in EXTRA_ORDER else 99):
        for key, value in record.extra.items():
            extension.extra.setdefault(key, value)
    for record in records:
        for place in record.places:
            if str(place) not in extension.origins:
                extension.origins.append(str(place))
    return extension


def check_dial_plans(inventories: list[PbxInventory], project: Project) -> list[Problem]:
    """The same number in two ministries that share a dial plan: an error naming both places. The source listed
    first in the project file keeps its extension, held until one of the files is fixed; every definition of the
    number in the later source is left out, and that inventory is merged again without it. The problems are
    added to both inventories' problems; returns them."""
    order = {source.id: i for i, source in enumerate(project.config.sources)}
    plans: dict[str, list[PbxInventory]] = {}
    for inventory in inventories:
        try:
            plan = project.config.dial_plan(project.source(inventory.source_id))
        except UsageError:  # a source no longer in the project file: it shares no dial plan
            continue
        plans.setdefault(plan, []).append(inventory)
    found: list[Problem] = []
    for plan, members in plans.items():
        if len(members) < 2:
            continue
        members.sort(key=lambda inv: order.get(inv.source_id, len(order)))
        owner: dict[str, tuple[PbxInventory, Extension]] = {}
        for inventory in members:
            for extension in list(inventory.extensions):
                if extension.number in owner:
                    found.extend(_clash(owner[extension.number], (inventory, extension), plan))
                else:
                    owner[extension.number] = (inventory, extension)
        for inventory in {id(m): m for m in members}.values():
            if isinstance(inventory, SourcePbx):
                _assemble(inventory)
    return found


def _where(extension: Extension) -> tuple[str, int | None]:
    file, _, line = (extension.origins[0] if extension.origins else "").rpartition(":")
    return file or extension.source_id, int(line) if line.isdigit() else None


def _clash(kept: tuple[PbxInventory, Extension], dropped: tuple[PbxInventory, Extension],
           plan: str) -> list[Problem]:
    (first, ext1), (later, ext2) = kept, dropped
    number = ext1.number
    (file1, line1), (file2, line2) = _where(ext1), _where(ext2)
    at1, at2 = f"{file1}:{line1}" if line1 else file1, f"{file2}:{line2}" if line2 else file2
    left = Problem(file2, line2, "number",
                   f"extension {number} is also defined by source {first.source_id} at {at1}, and both number in "
                   f"dial plan {plan!r}: the one of source {first.source_id} is taken (held) and this one left out")
    held = Problem(file1, line1, "number",
                   f"extension {number} is also defined by source {later.source_id} at {at2}, and both number in "
                   f"dial plan {plan!r}: this one is taken and held until one of the files is fixed")
    if isinstance(later, SourcePbx):
        later.taken_elsewhere.add(number)
        later.cross.append(left)
    else:  # an inventory built elsewhere: its files cannot be merged again, so the clashing extension goes
        later.problems.append(left)
        later.extensions = [e for e in later.extensions if e is not ext2]
    if isinstance(first, SourcePbx):
        first.hold(number, held)
    else:
        first.problems.append(held)
        ext1.held.append(str(held))
    return [left, held]
