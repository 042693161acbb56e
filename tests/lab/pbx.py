"""Realistic PBX files for a lab ministry, generated from a seed: the phones of the ministry's mail users plus
the extensions every ministry has without a user, written in the formats asked for, as the tools write them.

For each corpus mailbox there is one extension (numbered from ``first``, in the mailboxes' order). Most carry
the user's address as voicemail e-mail (they link by e-mail); about one in four has a voicemail box without
e-mail and only the user's display name (they link by name). Reception, Conference Room 2 and Fax belong to no
user. DIDs (Belize numbers, +501 and seven digits, written as trunks deliver them: national, with the country
code, in E.164) ring some extensions; the ministry's main number goes to an IVR (a destination that is not an
extension). Every phone has a SIP secret, every voicemail box a PIN. Formats listed in ``latin1`` are written in
Windows-1252, as older PBX tools write "José Pérez".

:func:`write_pbx` returns the files and what a reader must find in them (:class:`ExpectedExtension`, per
number); :meth:`PbxFiles.mapping` and :func:`add_pbx` put the ``pbx:`` section in a workspace's migration.yaml.

Faults real exports carry, on request (:class:`Faults`): one DID among the good ones that is not a number
(``12``), one phone's section defined twice in sip.conf or pjsip.conf, names from the FreePBX export that hold a
line break or ``: `` and ``#`` (a CSV cell may hold anything), and the fax line as FreePBX keeps a fax: a custom
device (a dial string), not a SIP phone. :attr:`PbxFiles.faults` says where each is.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import yaml

FILENAMES = {
    "freepbx-extensions": "extensions.csv",
    "freepbx-dids": "dids.csv",
    "pjsip": "pjsip.conf",
    "sip": "sip.conf",
    "voicemail": "voicemail.conf",
    "kamailio-dbtext": "subscriber",
    "kamailio-csv": "subscriber.csv",
}
#: The extensions without a user every ministry has: (name, has a voicemail box, has a DID).
UNLINKED = (("Reception", True, True), ("Conference Room 2", False, False), ("Fax", False, True))
#: Belmopan's government exchange: seven-digit national numbers 822-xxxx.
DID_PREFIX = "822"


class Person(Protocol):
    """What the generator needs of a corpus mailbox (tests/lab/corpus.py CorpusMailbox)."""

    email: str
    display_name: str


@dataclass(frozen=True)
class ExpectedExtension:
    """What reading the generated files must give for one number."""

    number: str
    #: As the chosen formats carry it ("" when none carries a name: a Kamailio subscriber table alone).
    name: str
    secret: str | None
    pin: str | None
    #: E.164, in the order the DIDs file lists them.
    dids: tuple[str, ...]
    #: The voicemail e-mail as read (None: no box, no e-mail, or no format that carries it).
    email: str | None
    #: The corpus user the phone belongs to (None for Reception, Conference Room 2, Fax).
    user: str | None
    #: How it should link to that user with these formats: "email", "name", or None.
    link: str | None
    tech: str | None
    voicemail_box: str | None
    #: An error in the files concerns it: the reader holds it.
    held: bool = False


@dataclass(frozen=True)
class Faults:
    """What to get wrong in the files, as exports from other people's PBXs do."""

    #: A DID row whose number is ``12`` (too short), routed to the first phone that has DIDs.
    bad_did: bool = False
    #: The second phone's section written twice in sip.conf (or its endpoint in pjsip.conf).
    duplicate_section: bool = False
    #: Phone index → the name the FreePBX extensions export gives it (line breaks, ": ", "#" and all).
    names: tuple[tuple[int, str], ...] = ()
    #: The Fax line as a FreePBX custom device (tech custom, a dial string, no secret): not a SIP phone.
    fax_custom: bool = False

@dataclass
class PbxFiles:
    source_id: str
    directory: Path
    #: (format, path, encoding for the project file), in the order to list them.
    inputs: list[tuple[str, Path, str]]
    expected: dict[str, ExpectedExtension]
    dial_plan: str | None = None
    #: The main number (E.164), routed to an IVR: a DID that is kept only as a note.
    main_number: str = ""
    #: Every other file written (the pjsip files pjsip.conf includes).
    included: list[Path] = field(default_factory=list)
    #: Where each fault asked for is: bad_did ("file:line") and the extension it routes to (bad_did_for),
    #: duplicate_section ("file:line and file:line") and its number (duplicate_of), fax (the number).
    faults: dict[str, str] = field(default_factory=dict)

    def mapping(self, ws: Path) -> dict:
        """The source's ``pbx:`` section, paths relative to the workspace (where migration.yaml is)."""
        section: dict = {}
        if self.dial_plan:
            section["dial_plan"] = self.dial_plan
        section["inputs"] = [{"format": fmt, "path": os.path.relpath(path, ws), "encoding": encoding}
                             for fmt, path, encoding in self.inputs]
        return section

    def path(self, fmt: str) -> Path:
        return next(path for f, path, _ in self.inputs if f == fmt)


@dataclass
class _Phone:
    number: str
    name: str
    user: str | None
    email: str | None       # voicemail e-mail as written
    voicemail: bool
    secret: str
    pin: str | None
    dids: list[str]         # national, seven digits
    link: str | None        # "email" | "name" | None, as designed
    tech: str | None = None  # as FreePBX keeps it, where it is not the PBX's own (a custom fax device)


def write_pbx(directory: Path, boxes: list[Person], *, seed: str, source_id: str, domain: str,
              formats: tuple[str, ...] = ("freepbx-extensions", "freepbx-dids"), first: int = 2001,
              latin1: tuple[str, ...] = (), pjsip_split: bool = True, upper_case_headers: bool = False,
              dial_plan: str | None = None, faults: Faults = Faults()) -> PbxFiles:
    """Write the ministry's PBX files into ``directory`` and say what they hold."""
    if not set(formats) - {"freepbx-dids"}:
        raise ValueError("a DIDs file alone defines no extension; add an extensions format")
    unknown = set(formats) - set(FILENAMES)
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}")
    if "pjsip" in formats and "sip" in formats:
        raise ValueError("one PBX speaks pjsip or chan_sip to its phones, not both")
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{seed}/{source_id}/pbx")
    phones, main = _phones(rng, boxes, first)
    if faults.fax_custom:
        fax = next(p for p in phones if p.name == "Fax")
        fax.tech, fax.secret = "custom", ""
    tech = "sip" if "sip" in formats else "pjsip"
    files = PbxFiles(source_id, directory, [], {}, dial_plan, "+501" + main)
    names = dict(faults.names)
    twice = phones[1].number if faults.duplicate_section else None
    writers = {
        "freepbx-extensions": lambda: _freepbx_extensions(phones, tech, upper_case_headers, names),
        "freepbx-dids": lambda: _freepbx_dids(phones, main, bad=faults.bad_did),
        "sip": lambda: _sip_conf(phones, twice=twice),
        "voicemail": lambda: _voicemail_conf(phones, domain),
        "kamailio-dbtext": lambda: _kamailio_dbtext(phones, domain),
        "kamailio-csv": lambda: _kamailio_csv(phones, domain),
    }
    for fmt in formats:
        encoding = "cp1252" if fmt in latin1 else "utf-8"
        path = directory / FILENAMES[fmt]
        if fmt == "pjsip":
            parts = _pjsip_split(phones, twice) if pjsip_split else {"pjsip.conf": _pjsip_single(phones)}
            for name, text in parts.items():
                (directory / name).write_bytes(text.encode(encoding))
                if name != "pjsip.conf":
                    files.included.append(directory / name)
        else:
            path.write_bytes(writers[fmt]().encode(encoding))
        files.inputs.append((fmt, path, "auto"))
    files.expected = _expected(phones, formats, tech, names)
    _locate_faults(files, faults, phones, twice)
    return files


def _locate_faults(files: PbxFiles, faults: Faults, phones: list[_Phone], twice: str | None) -> None:
    """Say where each fault is, and which extensions a reader holds for it."""
    held: set[str] = set()
    if faults.bad_did and "freepbx-dids" in {f for f, _, _ in files.inputs}:
        lines = files.path("freepbx-dids").read_text(encoding="utf-8").split("\n")
        line = next(i for i, text in enumerate(lines, 1) if text.startswith(",12,"))
        files.faults["bad_did"] = f"{FILENAMES['freepbx-dids']}:{line}"
        files.faults["bad_did_for"] = next(p.number for p in phones if p.dids)
        held.add(files.faults["bad_did_for"])
    if twice is not None:
        conf = next((f for f, _, _ in files.inputs if f in ("sip", "pjsip")), None)
        if conf is not None:
            path = files.directory / ("sip.conf" if conf == "sip" else "pjsip.endpoint.conf")
            lines = path.read_text(encoding="utf-8").split("\n")
            at = [i for i, text in enumerate(lines, 1) if text == f"[{twice}]"]
            files.faults["duplicate_section"] = f"{path.name}:{at[0]} and {path.name}:{at[-1]}"
            files.faults["duplicate_of"] = twice
            held.add(twice)
    if faults.fax_custom:
        files.faults["fax"] = next(p.number for p in phones if p.name == "Fax")
    files.expected = {n: replace(e, held=n in held) for n, e in files.expected.items()}


def add_pbx(ws: Path, source_id: str, files: PbxFiles) -> None:
    """Give the workspace's source ``source_id`` the ``pbx:`` section for ``files``."""
    path = ws / "migration.yaml"
    doc = yaml.safe_load(path.read_text())
    for source in doc["sources"]:
        if source["id"] == source_id:
            source["pbx"] = files.mapping(ws)
            break
    else:
        raise KeyError(f"no source {source_id!r} in {path}")
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


# ---------------------------------------------------------------------------------------------- the plan

def _phones(rng: random.Random, boxes: list[Person], first: int) -> tuple[list[_Phone], str]:
    used: set[str] = set()

    def did() -> str:
        while True:
            number = f"{DID_PREFIX}{rng.randrange(0, 10000):04d}"
            if number not in used:
                used.add(number)
                return number

    main = did()
    name_links = set(rng.sample(range(1, len(boxes)), max(1, len(boxes) // 4))) if len(boxes) > 1 else set()
    phones = []
    for i, box in enumerate(boxes):
        by_name = i in name_links
        dids = [did(), did()] if i == 0 else ([did()] if rng.random() < 0.5 else [])
        phones.append(_Phone(
            number=str(first + i), name=box.display_name, user=box.email,
            email=None if by_name else box.email, voicemail=True,
            secret=f"sip-{rng.getrandbits(48):012x}", pin=str(rng.randrange(1000, 1000000)),
            dids=dids, link="name" if by_name else "email"))
    for j, (name, voicemail, has_did) in enumerate(UNLINKED):
        phones.append(_Phone(
            number=str(first + len(boxes) + j), name=name, user=None, email=None, voicemail=voicemail,
            secret=f"sip-{rng.getrandbits(48):012x}", pin=str(rng.randrange(1000, 1000000)) if voicemail else None,
            dids=[did()] if has_did else [], link=None))
    return phones, main


def _expected(phones: list[_Phone], formats: tuple[str, ...], tech: str,
              names: dict[int, str]) -> dict[str, ExpectedExtension]:
    devices = {"freepbx-extensions", "pjsip", "sip", "kamailio-dbtext", "kamailio-csv"} & set(formats)
    vm_formats = {"freepbx-extensions", "voicemail"} & set(formats)
    named = {"freepbx-extensions", "pjsip", "sip"} & set(formats)
    expected = {}
    for index, phone in enumerate(phones):
        custom = phone.tech == "custom"
        present = bool(devices - ({"pjsip", "sip"} if custom else set())) or (phone.voicemail and "voicemail" in formats)
        if not present:
            continue
        has_box = phone.voicemail and bool(vm_formats)
        name = phone.name if (named or (has_box and "voicemail" in formats)) else ""
        if index in names and "freepbx-extensions" in formats:
            name = names[index]
        email = phone.email if has_box else None
        if phone.user is None:
            link = None
        elif email:
            link = "email"
        else:
            link = "name" if name else None
        box = None
        if phone.voicemail and (vm_formats or {"pjsip", "sip"} & set(formats)):
            box = f"{phone.number}@default"
        expected[phone.number] = ExpectedExtension(
            number=phone.number, name=name,
            secret=(phone.secret or None) if devices - {"freepbx-dids"} else None,
            pin=phone.pin if has_box else None,
            dids=tuple("+501" + d for d in phone.dids) if "freepbx-dids" in formats else (),
            email=email, user=phone.user, link=link,
            tech=("custom" if custom and "freepbx-extensions" in formats else None if custom else
                  tech if named else None),
            voicemail_box=box)
    return expected


# --------------------------------------------------------------------------------------------- FreePBX

#: A FreePBX 16 Bulk Handler extensions export with core (pjsip), voicemail and findmefollow installed.
FREEPBX_COLUMNS = (
    "extension", "name", "description", "tech", "cid_masquerade", "sipname", "outboundcid", "ringtimer",
    "callwaiting", "call_screen", "pinless", "password", "emergency_cid", "noanswer_dest", "noanswer_cid",
    "busy_dest", "busy_cid", "chanunavail_dest", "chanunavail_cid", "concurrency_limit", "devicetype", "user",
    "id", "dial", "secret", "sipdriver", "dtmfmode", "context", "transport", "callerid", "mailbox",
    "max_contacts", "accountcode", "allow", "disallow", "devicedata", "voicemail_enable", "voicemail_vmpwd",
    "voicemail_email", "voicemail_pager", "voicemail_options", "voicemail_same_exten", "disable_star_voicemail",
    "voicemail", "findmefollow_strategy", "findmefollow_grptime", "findmefollow_grplist", "findmefollow_postdest",
    "findmefollow_enabled",
)
FREEPBX_DID_COLUMNS = ("cidnum", "extension", "destination", "privacyman", "alertinfo", "ringing", "fanswer",
                       "mohclass", "description", "grppre", "delay_answer", "pricid", "pmmaxretries",
                       "pmminlength", "reversal", "rvolume", "indication_zone")


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    # As PHP's fputcsv writes: quotes only where needed, "\n" line ends.
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(rows)
    return out.getvalue()


def _freepbx_extensions(phones: list[_Phone], tech: str, upper: bool, names: dict[int, str]) -> str:
    header = [c.upper() if upper else c for c in FREEPBX_COLUMNS]
    rows = [header]
    for index, p in enumerate(phones):
        n = p.number
        name = names.get(index, p.name)
        values = {
            "extension": n, "name": name, "description": name, "tech": p.tech or tech,
            "outboundcid": f'"{p.name}" <{p.dids[0]}>' if p.dids else "", "ringtimer": "0",
            "callwaiting": "enabled", "call_screen": "0", "pinless": "disabled", "concurrency_limit": "3",
            "devicetype": "fixed", "user": n, "id": n, "dial": f"{'PJSIP' if tech == 'pjsip' else 'SIP'}/{n}",
            "secret": p.secret, "sipdriver": f"chan_{tech}", "dtmfmode": "rfc4733", "context": "from-internal",
            "transport": "0.0.0.0-udp" if tech == "pjsip" else "udp,tcp,tls", "callerid": f"device <{n}>",
            "mailbox": f"{n}@device", "max_contacts": "1", "allow": "ulaw&alaw", "devicedata": n,
            "voicemail_enable": "yes" if p.voicemail else "", "voicemail_vmpwd": p.pin or "",
            "voicemail_email": p.email or "", "voicemail_options": "attach=yes|saycid=no|envelope=no|delete=no"
            if p.voicemail else "", "voicemail_same_exten": "no" if p.voicemail else "",
            "disable_star_voicemail": "no" if p.voicemail else "", "voicemail": "default" if p.voicemail else "novm",
            "findmefollow_strategy": "ringallv2-prim", "findmefollow_grptime": "20", "findmefollow_grplist": n,
            "findmefollow_postdest": f"ext-local,{n},dest",
        }
        if p.tech == "custom":  # FreePBX's custom device: a dial string, no secret, no SIP driver
            values.update({"dial": f"DAHDI/g0/{n}", "secret": "", "sipdriver": "", "transport": "",
                           "dtmfmode": "", "max_contacts": "", "allow": ""})
        rows.append([values.get(column, "") for column in FREEPBX_COLUMNS])
    return _csv(rows)


def _did_forms(national: str, i: int) -> str:
    """A DID as trunks deliver it: national, with the country code, or E.164, in turn."""
    return (national, "501" + national, "+501" + national)[i % 3]


def _freepbx_dids(phones: list[_Phone], main: str, *, bad: bool = False) -> str:
    rows = [list(FREEPBX_DID_COLUMNS)]

    def route(did: str, destination: str, description: str) -> list[str]:
        values = {"extension": did, "destination": destination, "privacyman": "0", "mohclass": "default",
                  "description": description, "delay_answer": "0", "pmmaxretries": "3", "pmminlength": "10",
                  "indication_zone": "default"}
        return [values.get(column, "") for column in FREEPBX_DID_COLUMNS]

    rows.append(route(main, "ivr-1,s,1", "Main number"))
    i = 0
    for p in phones:
        for national in p.dids:
            rows.append(route(_did_forms(national, i), f"from-did-direct,{p.number},1", f"{p.name} direct"))
            i += 1
            if bad and i == 1:  # a typo among good rows: a number far too short
                rows.append(route("12", f"from-did-direct,{p.number},1", f"{p.name} old"))
    return _csv(rows)


# --------------------------------------------------------------------------------------------- Asterisk

def _endpoint_lines(p: _Phone) -> list[str]:
    lines = ["type=endpoint", f"aors={p.number}", f"auth={p.number}-auth", "tos_audio=ef", "tos_video=af41",
             "cos_audio=5", "cos_video=4", "allow=ulaw,alaw,gsm,g726,g722", "context=from-internal",
             f"callerid={p.name} <{p.number}>", "dtmf_mode=rfc4733", "aggregate_mwi=yes", "use_avpf=no",
             "rtcp_mux=no", "ice_support=no", "media_use_received_transport=no", "trust_id_inbound=yes",
             "user_eq_phone=no", "send_connected_line=yes", "media_encryption=no", "timers=yes",
             "timers_min_se=90", "direct_media=yes"]
    if p.voicemail:
        lines += [f"mailboxes={p.number}@default", "mwi_subscribe_replaces_unsolicited=yes"]
    lines += ["transport=0.0.0.0-udp", "rewrite_contact=yes", "force_rport=yes", "rtp_symmetric=yes"]
    return lines


def _pjsip_split(phones: list[_Phone], twice: str | None = None) -> dict[str, str]:
    """As FreePBX writes it: pjsip.conf includes the generated files (and the custom ones, here empty)."""
    head = ";--------------------------------------------------------------------------------;\n" \
           "; Do NOT edit this file as it is auto-generated by FreePBX.                      ;\n" \
           ";--------------------------------------------------------------------------------;\n"
    endpoint, auth, aor = [head], [head], [head]
    for p in phones:
        if p.tech == "custom":
            continue  # a custom device has no pjsip endpoint
        endpoint.append(f"[{p.number}]\n" + "\n".join(_endpoint_lines(p)) + "\n\n")
        auth.append(f"[{p.number}-auth]\ntype=auth\nauth_type=userpass\npassword={p.secret}\nusername={p.number}\n\n")
        aor.append(f"[{p.number}]\ntype=aor\nmax_contacts=1\nremove_existing=yes\nqualify_frequency=60\n"
                   "maximum_expiration=7200\nminimum_expiration=60\n\n")
    if twice is not None:  # a hand edit that pasted one endpoint again
        endpoint.append(f"[{twice}]\n" + "\n".join(_endpoint_lines(next(p for p in phones if p.number == twice)))
                        + "\n\n")
    endpoint.append("[telco-trunk]\ntype=endpoint\ntransport=0.0.0.0-udp\ncontext=from-pstn\ndisallow=all\n"
                    "allow=ulaw,alaw\naors=telco-trunk\nsend_rpid=no\nrewrite_contact=yes\n\n")
    aor.append("[telco-trunk]\ntype=aor\nqualify_frequency=60\ncontact=sip:sip.telco.example.bz:5060\n\n")
    return {
        "pjsip.conf": head + "#include pjsip_custom.conf\n#include pjsip.transports.conf\n"
                             "#include pjsip.endpoint.conf\n#include pjsip.aor.conf\n#include pjsip.auth.conf\n\n"
                             "[global]\ntype=global\nuser_agent=FPBX-16.0.40(18.20.0)\n",
        "pjsip_custom.conf": "",
        "pjsip.transports.conf": head + "[0.0.0.0-udp]\ntype=transport\nprotocol=udp\nbind=0.0.0.0:5060\n"
                                        "allow_reload=no\ntos=cs3\ncos=3\n",
        "pjsip.endpoint.conf": "".join(endpoint),
        "pjsip.auth.conf": "".join(auth),
        "pjsip.aor.conf": "".join(aor),
    }


def _pjsip_single(phones: list[_Phone]) -> str:
    """As a person writes it by hand: one file, templates, endpoint, auth and aor sharing the number's name."""
    out = ["; pjsip.conf -- phones of the ministry\n\n",
           "[transport-udp]\ntype=transport\nprotocol=udp\nbind=0.0.0.0\n\n",
           "[phone](!)\ntype=endpoint\ncontext=from-internal\ndisallow=all\nallow=ulaw ; G.711\nallow=alaw\n"
           "transport=transport-udp\ndirect_media=no\n\n",
           "[userpass](!)\ntype=auth\nauth_type=userpass\n\n",
           "[single](!)\ntype=aor\nmax_contacts=1\nremove_existing=yes\n\n"]
    for p in phones:
        if p.tech == "custom":
            continue
        lines = [f"[{p.number}](phone)", f"auth={p.number}", f"aors={p.number}", f'callerid="{p.name}" <{p.number}>']
        if p.voicemail:
            lines.append(f"mailboxes={p.number}@default")
        out.append("\n".join(lines) + "\n")
        out.append(f"[{p.number}](userpass)\nusername={p.number}\npassword={p.secret}\n")
        out.append(f"[{p.number}](single)\n\n")
    return "".join(out)


def _sip_conf(phones: list[_Phone], twice: str | None = None) -> str:
    out = ["[general]\ncontext=default\nallowguest=no\nudpbindaddr=0.0.0.0:5060\ntcpenable=yes\n"
           "transport=udp\nsrvlookup=yes\nlanguage=es\n\n"]
    again = [p for p in phones if p.number == twice]
    for p in [*phones, *again]:
        if p.tech == "custom":
            continue
        lines = [f"[{p.number}]", "type=friend", "host=dynamic", f"secret={p.secret}",
                 f'callerid="{p.name}" <{p.number}>', "context=from-internal", "transport=udp,tcp",
                 "disallow=all", "allow=ulaw", "allow=alaw", "nat=force_rport,comedia", "qualify=yes"]
        if p.voicemail:
            lines.insert(5, f"mailbox={p.number}@default")
        out.append("\n".join(lines) + "\n\n")
    out.append("[telco]\ntype=peer\nhost=sip.telco.example.bz\ninsecure=port,invite\ncontext=from-pstn\n")
    return "".join(out)


def _voicemail_conf(phones: list[_Phone], domain: str) -> str:
    out = ["[general]\nformat=wav49|gsm|wav\n", f"serveremail=voicemail@{domain}\n",
           "attach=yes\nmaxmsg=100\nmaxsecs=180\nskipms=3000\nmaxsilence=10\nsilencethreshold=128\n"
           "maxlogins=3\nemaildateformat=%A, %B %d, %Y at %r\npagerdateformat=%A, %B %d, %Y at %r\n"
           "sendvoicemail=yes\n\n",
           "[zonemessages]\ncentral=America/Belize|'vm-received' Q 'digits/at' IMp\n"
           "military=Zulu|'vm-received' q 'digits/at' H N 'hours' 'phonetic/z_p'\n\n",
           "[default]\n"]
    for p in phones:
        if p.voicemail:
            out.append(f"{p.number} => {p.pin},{p.name},{p.email or ''},,attach=yes|saycid=no|envelope=no|"
                       "delete=no\n")
    return "".join(out)


# --------------------------------------------------------------------------------------------- Kamailio

def _kamailio_rows(phones: list[_Phone], domain: str) -> list[list[str]]:
    rows = []
    for i, p in enumerate([p for p in phones if p.tech != "custom"], start=1):
        ha1 = hashlib.md5(f"{p.number}:{domain}:{p.secret}".encode(), usedforsecurity=False).hexdigest()
        ha1b = hashlib.md5(f"{p.number}@{domain}:{domain}:{p.secret}".encode(), usedforsecurity=False).hexdigest()
        rows.append([str(i), p.number, domain, p.secret, ha1, ha1b])
    return rows


def _kamailio_dbtext(phones: list[_Phone], domain: str) -> str:
    def escape(value: str) -> str:
        return (value.replace("\\", "\\\\").replace(":", "\\:").replace("\n", "\\n").replace("\r", "\\r")
                .replace("\t", "\\t"))

    lines = ["id(int,auto) username(string) domain(string) password(string) ha1(string) ha1b(string) "]
    lines += [":".join(escape(v) for v in row) for row in _kamailio_rows(phones, domain)]
    return "\n".join(lines) + "\n"


def _kamailio_csv(phones: list[_Phone], domain: str) -> str:
    return _csv([["id", "username", "domain", "password", "ha1", "ha1b"], *_kamailio_rows(phones, domain)])
