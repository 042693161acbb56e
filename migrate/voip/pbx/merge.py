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

Families: kamailio-dbtext and kamailio-csv are one family (``kamailio``); every other format is its own. The
same number twice within a family is one extension defined twice: an error, and the later file is left out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from migrate.core.config import Project, Source
from migrate.core.errors import Problem, UsageError
from migrate.voip.model import Extension, PbxInventory
from migrate.voip.pbx import asterisk, freepbx, kamailio
from migrate.voip.pbx.conf import parse_conf
from migrate.voip.pbx.records import FileRead, Findings, Place, Record
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
    """A source's PBX inventory that still knows its files, so that a file can be left out afterwards (a
    number another ministry of the same dial plan defines) and the rest merged again."""

    dial_plan: str = ""
    reads: list[FileRead] = field(default_factory=list, repr=False, compare=False)


def read_pbx(project: Project, source: Source) -> PbxInventory:
    """Every PBX input of ``source``, read and merged into one Extension per number. Never raises for what is
    in the files: every finding is a Problem in the inventory (errors leave their whole file out)."""
    inventory = SourcePbx(source.id, dial_plan=project.config.dial_plan(source))
    if source.pbx is None:
        return inventory
    region = project.config.phones.region
    already: set[str] = set()
    for pbx_input in source.pbx.inputs:
        path = project.resolve_path(pbx_input.path)
        inventory.reads.append(read_input(path, pbx_input.path, pbx_input.format, pbx_input.encoding,
                                          region=region, base_dir=project.base_dir, already_read=already))
    _reject_duplicates(inventory.reads)
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
    return read


def _reject_duplicates(reads: list[FileRead]) -> None:
    """A number (or DID route) a file of the same family already defines: the later file is left out."""
    seen: dict[tuple[str, str], Place] = {}
    for read in reads:
        if read.rejected:
            continue
        if read.format == "freepbx-dids":
            keys = [(route.key, route.origin, f"DID {route.did}") for route in read.dids]
            verb = "routed"
        else:
            keys = [(r.number, r.origin, f"extension {r.number}") for r in read.records]
            verb = "defined"
        for key, at, what in keys:
            first = seen.get((read.family, key))
            if first is not None:
                read.rejected_by.append(Problem(
                    at.file, at.line, "number" if verb == "defined" else "extension",
                    f"{what} is already {verb} at {first}; this file is left out"))
        if not read.rejected_by:
            for key, at, _ in keys:
                seen[(read.family, key)] = at


def _assemble(inventory: SourcePbx) -> None:
    """(Re)build the inventory's extensions, problems and file counts from its reads."""
    problems: list[Problem] = []
    for read in inventory.reads:
        problems.extend(read.problems)
        problems.extend(read.rejected_by)
    accepted = [read for read in inventory.reads if not read.rejected]
    grouped: dict[str, list[Record]] = {}
    for read in accepted:
        for record in read.records:
            grouped.setdefault(record.number, []).append(record)
    extensions = {number: _merge(records, inventory, problems) for number, records in grouped.items()}
    counts: dict[str, int] = {}
    for read in inventory.reads:
        counts[read.file] = counts.get(read.file, 0) + (0 if read.rejected else len(read.records))
    for read in accepted:
        for route in read.dids:
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
    device_files = [read.file for read in accepted if read.family in DEVICE_FAMILIES]
    for number, records in grouped.items():
        extension = extensions[number]
        first = records[0].origin
        families = {r.family for r in records}
        if device_files and not families & DEVICE_FAMILIES:
            problems.append(Problem(first.file, first.line, "number",
                                    f"mailbox {extension.voicemail_box or number} has no extension in "
                                    f"{', '.join(device_files)}; kept as an extension without a phone", "warning"))
        if extension.secret is None and "secret_form" not in extension.extra:
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
    """The same number in two ministries that share a dial plan: an error naming both places. The file of the
    source listed later in the project file is left out (every such file of it that defines the number), and
    that inventory is merged again without it; the problems are also added to that inventory's problems.
    Returns the problems found."""
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
        owner: dict[str, tuple[str, str]] = {}
        for inventory in members:
            clashes = [e for e in inventory.extensions if e.number in owner]
            if clashes:
                found.extend(_leave_out(inventory, clashes, owner, plan))
            for extension in inventory.extensions:
                owner.setdefault(extension.number, (inventory.source_id, extension.origins[0]
                                                    if extension.origins else inventory.source_id))
    return found


def _leave_out(inventory: PbxInventory, clashes: list[Extension], owner: dict[str, tuple[str, str]],
               plan: str) -> list[Problem]:
    def message(number: str) -> str:
        source_id, where = owner[number]
        return (f"extension {number} is also defined by source {source_id} at {where}, and both number in dial "
                f"plan {plan!r}; this file is left out")

    found: list[Problem] = []
    numbers = {e.number for e in clashes}
    if isinstance(inventory, SourcePbx):
        for read in inventory.reads:
            if read.rejected:
                continue
            for record in read.records:
                if record.number in numbers:
                    problem = Problem(record.origin.file, record.origin.line, "number", message(record.number))
                    read.rejected_by.append(problem)
                    found.append(problem)
        _assemble(inventory)
        return found
    # An inventory built elsewhere: its files cannot be merged again, so the clashing extensions go.
    for extension in clashes:
        file, _, line = (extension.origins[0] if extension.origins else "").rpartition(":")
        problem = Problem(file or inventory.source_id, int(line) if line.isdigit() else None, "number",
                          message(extension.number))
        inventory.problems.append(problem)
        found.append(problem)
    inventory.extensions = [e for e in inventory.extensions if e.number not in numbers]
    return found
