"""FreePBX Bulk Handler exports: the extensions CSV and the DIDs (inbound routes) CSV, as FreePBX writes them.

Bulk Handler builds its export from what every installed module contributes, so the columns, and their order,
differ from one PBX to the next: core gives the user and device (extension, name, description, tech, secret,
callerid, outboundcid, transport, dial, sipdriver, mailbox "1001@device", ...), voicemail its ``voicemail_*``
columns (``voicemail`` is the mailbox context, or ``novm``), findmefollow its ``findmefollow_*``. A module with
data for an extension core does not know (a voicemail box left behind) gives a row with no extension number.
FreePBX's importer lower-cases the header, so upper-case headers are read alike. The DIDs export is core's
``incoming`` table: cidnum, extension (the DID), destination ("context,exten,priority"), description and more.
"""

from __future__ import annotations

import re

import phonenumbers

from migrate.voip.pbx.csvtable import read_table
from migrate.voip.pbx.records import (
    LEFT_OUT,
    NUMBER_RE,
    DidRoute,
    Findings,
    Place,
    Record,
    check_email,
    duplicate_in_file,
    is_email,
    protocol_of,
    secret,
)

FORMAT = "freepbx-extensions"
#: Columns turned into Extension fields (everything else non-empty is kept in ``extra``).
USED = frozenset({
    "extension", "name", "tech", "secret", "callerid", "outboundcid", "voicemail", "voicemail_enable",
    "voicemail_email", "voicemail_vmpwd", "email", "email_address", "userman_email", "mail", "mac",
})
#: Columns a mail address for the extension's user may be in (User Management and local additions).
EMAIL_COLUMNS = ("email", "email_address", "userman_email", "mail")
_TECH_OF_DRIVER = {"chan_pjsip": "pjsip", "chan_sip": "sip"}


def read_extensions(text: str, shown: str, findings: Findings) -> list[Record]:
    table = read_table(text, shown, findings, concerns=lambda cells: cells.get("extension"))
    if table is None:
        return []
    header, rows = table
    if "extension" not in header:
        findings.error(Place(shown, 1), "extension",
                       "no 'extension' column: not a Bulk Handler extensions export")
        return []
    records: list[Record] = []
    for row in rows:
        number = row.get("extension")
        if not number:
            findings.warning(row.at, "extension",
                             "a row without an extension number (FreePBX exports one for a voicemail box whose "
                             "extension is gone); left out")
            continue
        if not NUMBER_RE.match(number):
            findings.error(row.at, "extension", f"{number!r} is not an extension number (FreePBX accepts digits "
                                                f"only); this row is {LEFT_OUT}")
            continue
        record = Record(FORMAT, number, row.at)
        record.set("name", row.get("name"))
        tech = row.get("tech").lower() or _TECH_OF_DRIVER.get(row.get("sipdriver").lower(), "")
        record.set("tech", tech)
        value = row.get("secret")
        if value == "REGEN":
            findings.note(row.at, "secret", "secret is REGEN (FreePBX makes a new one when it imports the row): "
                                            "there is no secret to carry")
        elif value:
            record.set("secret", secret(value, row.at))
        record.set("callerid", row.get("callerid"))
        record.set("outbound_cid", row.get("outboundcid"))
        transport = row.get("transport")
        record.set("transport", protocol_of(transport) if transport else None)
        context = row.get("voicemail")
        enabled = row.get("voicemail_enable").lower() in ("yes", "true", "1", "on")
        if context.lower() != "novm" and (context or enabled):
            record.set("voicemail_box", f"{number}@{context or 'default'}")
            pin = row.get("voicemail_vmpwd")
            if pin:
                record.set("voicemail_pin", secret(pin, row.at))
            email = row.get("voicemail_email")
            if email:
                record.set("voicemail_email", email)
                check_email(email, record, "voicemail_email", findings)
        link = row.get(*EMAIL_COLUMNS)
        user = row.get("user")
        if not link and "@" in user:
            link = user
        if link:
            if is_email(link):
                record.set("link_email", link)
            else:
                findings.warning(row.at, "email", f"{link!r} is not an e-mail address; not used to link")
        record.set("device", row.get("mac"))
        for name, value in row.cells.items():
            if name not in USED:
                record.keep(name, value.strip())
        for column, value in row.unnamed.items():
            record.keep(f"column {column}", value.strip())
        records.append(record)
    return duplicate_in_file(records, findings)


# ---------------------------------------------------------------------------------------------------- DIDs

_DID_CHARS_RE = re.compile(r"^\+?[0-9][0-9 ().-]*$")
_VOICEMAIL_DEST_RE = re.compile(r"^vm[busi]?([0-9]+)$")


def e164(raw: str, region: str) -> str | None:
    """A DID as E.164 (+5012223333), or None when it is not a valid number. National numbers are read in
    ``region``'s plan; letters and dial patterns are refused (phonenumbers would read letters as digits)."""
    if not _DID_CHARS_RE.match(raw.strip()):
        return None
    try:
        number = phonenumbers.parse(raw.strip(), region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def read_dids(text: str, shown: str, findings: Findings, region: str) -> list[DidRoute]:
    table = read_table(text, shown, findings, concerns=lambda cells: _extension_of(cells.get("destination", "")))
    if table is None:
        return []
    header, rows = table
    for column in ("extension", "destination"):
        if column not in header:
            findings.error(Place(shown, 1), column,
                           f"no {column!r} column: not a Bulk Handler DIDs export")
            return []
    routes: list[DidRoute] = []
    first: dict[str, DidRoute] = {}
    code = phonenumbers.country_code_for_region(region)
    for row in rows:
        raw = row.get("extension")
        destination = row.get("destination")
        cid = row.get("cidnum")
        if not raw:
            findings.note(row.at, "extension", f"a route for any DID (no DID number) to {destination!r}; "
                                               "not carried to an extension")
            continue
        target = _extension_of(destination)
        if raw.startswith("_") or re.search(r"[XNZxnz.!\[]", raw):
            findings.error(row.at, "extension", f"DID {raw!r} is a dial pattern, not a number; this row is "
                                                f"{LEFT_OUT}", concerns=[target])
            continue
        did = e164(raw, region)
        if did is None:
            findings.error(row.at, "extension", f"DID {raw!r} is not a valid number in region {region} (+{code}); "
                                                f"this row is {LEFT_OUT}", concerns=[target])
            continue
        key = f"{did}/{cid}"
        if key in first:
            findings.error(row.at, "extension",
                           f"DID {did}{' for caller ID ' + cid if cid else ''} is routed twice in this file: here "
                           f"and at {first[key].origin}; the route at {first[key].origin} is taken",
                           concerns=[first[key].target or _extension_of(first[key].destination), target])
            continue
        if cid:
            findings.note(row.at, "cidnum", f"DID {did} routes only calls from caller ID {cid!r} here; such "
                                            "caller-ID routes are not carried")
            target = None
        elif target is None:
            vm = _voicemail_of(destination)
            what = f"the voicemail of extension {vm}" if vm else repr(destination or "nowhere")
            findings.note(row.at, "destination", f"DID {did} goes to {what}, not to an extension; kept as a "
                                                 "note, not carried")
        first[key] = DidRoute(did, target, row.at, key, destination)
        routes.append(first[key])
    return routes


def _extension_of(destination: str) -> str | None:
    """The extension a FreePBX destination rings ("from-did-direct,1001,1"; "ext-local,1001,1")."""
    parts = [p.strip() for p in destination.split(",")]
    if len(parts) >= 2 and parts[0].lower() in ("from-did-direct", "ext-local") and NUMBER_RE.match(parts[1]):
        return parts[1]
    return None


def _voicemail_of(destination: str) -> str | None:
    parts = [p.strip() for p in destination.split(",")]
    if len(parts) >= 2 and parts[0].lower() == "ext-local":
        match = _VOICEMAIL_DEST_RE.match(parts[1].lower())
        if match:
            return match.group(1)
    return None
