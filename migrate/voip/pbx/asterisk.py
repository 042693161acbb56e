"""Asterisk's own files: pjsip.conf (endpoint, auth and aor objects, FreePBX's split files included), sip.conf
(chan_sip friends, peers and users) and voicemail.conf (``1234 => pin,Full Name,email,pager,options``).

Extensions are the numbered objects: a pjsip endpoint or sip.conf peer with another name ("provider-trunk") is a
trunk, noted and not taken.
"""

from __future__ import annotations

from migrate.core.errors import Problem
from migrate.voip.pbx.conf import ConfFile, Section
from migrate.voip.pbx.records import (
    LEFT_OUT,
    NUMBER_RE,
    Findings,
    Record,
    callerid_name,
    check_email,
    duplicate_in_file,
    protocol_of,
    secret,
)

#: Object types res_pjsip and its modules configure; anything else is a mistake Asterisk would refuse.
PJSIP_TYPES = frozenset({
    "endpoint", "auth", "aor", "identify", "transport", "registration", "global", "system", "domain_alias",
    "acl", "contact", "phoneprov", "outbound-publish", "inbound-publication", "resource_list",
    "asterisk-publication", "outbound_publish", "inbound_publication", "asterisk_publication",
})
#: Options that may be given several times and add up.
REPEATING = frozenset({"allow", "disallow", "permit", "deny", "match", "set_var", "setvar", "contact"})

_HASH_ONLY = ("holds only an MD5 hash of the password ({what}), no clear password: the secret can be carried "
              "only to a platform with the same {realm}; elsewhere `voip export` needs --new-secrets")


def read_pjsip(conf: ConfFile, findings: Findings) -> list[Record]:
    objects: dict[str, dict[str, Section]] = {}
    #: Sections left out, by name: an endpoint that names one of them as its auth or aor is held.
    bad: dict[str, Problem] = {}
    for section in conf.sections:
        if section.template:
            continue
        option = section.get("type")
        if option is None or not option.value:
            bad[section.name] = findings.error(
                section.at, "type", f"[{section.name}] has no type= (endpoint, auth, aor, ...); the section is "
                                    f"{LEFT_OUT}", concerns=[section.name])
            continue
        kind = option.value.lower()
        if kind not in PJSIP_TYPES:
            bad[section.name] = findings.error(
                option.at, "type", f"[{section.name}] has type={option.value}, which is not a pjsip object type; the "
                                   f"section is {LEFT_OUT}", concerns=[section.name])
            continue
        same = objects.setdefault(kind, {})
        if section.name in same:
            bad[section.name] = findings.error(
                section.at, f"[{section.name}]", f"a second type={kind} [{section.name}]: the first, at "
                                                 f"{same[section.name].at}, is taken and this one left out",
                concerns=[section.name])
            continue
        same[section.name] = section
    transports = {name: s.value("protocol").lower() or "udp" for name, s in objects.get("transport", {}).items()}
    auths = objects.get("auth", {})
    aors = objects.get("aor", {})
    records: list[Record] = []
    for name, endpoint in objects.get("endpoint", {}).items():
        if not NUMBER_RE.match(name):
            findings.note(endpoint.at, f"[{name}]", "an endpoint that is not an extension number (a trunk); not "
                                                    "taken")
            continue
        record = Record("pjsip", name, endpoint.at)
        record.set("tech", "pjsip")
        used = {"type", "auth", "aors", "callerid", "mailboxes", "transport"}
        option = endpoint.get("callerid")
        if option:
            record.set("callerid", option.value, option.at)
            record.set("name", callerid_name(option.value), option.at)
        option = endpoint.get("mailboxes")
        if option:
            record.set("voicemail_box", option.value.split(",")[0].strip(), option.at)
        option = endpoint.get("transport")
        if option:
            record.set("transport", transports.get(option.value) or protocol_of(option.value), option.at)
            record.keep("transport", option.value)
        option = endpoint.get("auth")
        if option:
            auth_name = option.value.split(",")[0].strip()
            auth = auths.get(auth_name)
            _hold(findings, name, auth, bad.get(auth_name))
            if auth is not None:
                _take_auth(record, auth, findings)
            elif auth_name not in bad:
                findings.warning(option.at, "auth", f"endpoint {name} names auth [{auth_name}], which no file "
                                                    "read defines; it has no secret here")
        option = endpoint.get("aors")
        for aor_name in (a.strip() for a in (option.value.split(",") if option else [])):
            aor = aors.get(aor_name)
            _hold(findings, name, aor, bad.get(aor_name))
            if aor is None:
                continue
            record.places.append(aor.at)
            for opt in aor.options:
                if opt.key.lower() != "type":
                    record.keep(f"aor.{opt.key}", opt.value, repeats=opt.key.lower() in REPEATING)
        for opt in endpoint.options:
            if opt.key.lower() not in used:
                record.keep(opt.key, opt.value, repeats=opt.key.lower() in REPEATING)
        records.append(record)
    return records


def _hold(findings: Findings, number: str, section: Section | None, problem: Problem | None = None) -> None:
    """Hold extension ``number`` for the errors of a section it is made of whose name is not its number (an auth
    or aor; errors in a section named by the number hold it already), and for a section it names that was left
    out."""
    for error in ([*section.errors] if section is not None else []) + ([problem] if problem else []):
        findings.hold(number, error)


def _take_auth(record: Record, auth: Section, findings: Findings) -> None:
    record.places.append(auth.at)
    auth_type = auth.value("auth_type").lower() or "userpass"
    password = auth.get("password")
    md5 = auth.get("md5_cred")
    if auth_type != "md5" and password and password.value:
        record.set("secret", secret(password.value, password.at), password.at)
    elif md5 and md5.value:
        findings.warning(md5.at, "md5_cred", f"extension {record.number}: [{auth.name}] "
                         + _HASH_ONLY.format(what="md5_cred", realm=f"realm ({auth.value('realm') or 'asterisk'})"))
        record.extra["secret_form"] = "md5_cred"
    username = auth.value("username")
    if username and username != record.number:
        record.keep("auth.username", username)
    for opt in auth.options:
        if opt.key.lower() not in ("type", "password", "md5_cred", "username"):
            record.keep(f"auth.{opt.key}", opt.value)


SIP_SPECIAL = frozenset({"general", "authentication"})
SIP_TYPES = frozenset({"friend", "peer", "user"})


def read_sip(conf: ConfFile, findings: Findings) -> list[Record]:
    records: list[Record] = []
    for section in conf.sections:
        if section.template or section.name.lower() in SIP_SPECIAL:
            continue
        kind = section.value("type").lower()
        if not kind:
            # chan_sip logs "Section lacks type" and skips the section; so does this reader, and says so.
            findings.warning(section.at, "type", f"[{section.name}] has no type= (friend, peer or user); chan_sip "
                                                 "skips such a section, and so does this reader")
            continue
        if kind not in SIP_TYPES:
            findings.warning(section.at, "type", f"[{section.name}] has type={kind}, which chan_sip does not know; "
                                                 "skipped as chan_sip skips it")
            continue
        if not NUMBER_RE.match(section.name):
            findings.note(section.at, f"[{section.name}]", f"a {kind} that is not an extension number (a trunk); "
                                                           "not taken")
            continue
        record = Record("sip", section.name, section.at)
        record.set("tech", "sip")
        used = {"type", "secret", "md5secret", "callerid", "mailbox", "transport"}
        option = section.get("secret")
        if option and option.value:
            record.set("secret", secret(option.value, option.at), option.at)
        elif section.get("md5secret"):
            option = section.get("md5secret")
            findings.warning(option.at, "md5secret", f"extension {record.number}: "
                             + _HASH_ONLY.format(what="md5secret", realm="realm"))
            record.extra["secret_form"] = "md5secret"
        option = section.get("callerid")
        if option:
            record.set("callerid", option.value, option.at)
            record.set("name", callerid_name(option.value), option.at)
        if "name" not in record.fields and section.get("fullname"):
            option = section.get("fullname")
            record.set("name", option.value, option.at)
        option = section.get("mailbox")
        if option:
            record.set("voicemail_box", option.value.split(",")[0].strip(), option.at)
        option = section.get("transport")
        if option:
            record.set("transport", protocol_of(option.value), option.at)
            record.keep("transport", option.value)
        for opt in section.options:
            if opt.key.lower() not in used:
                record.keep(opt.key, opt.value, repeats=opt.key.lower() in REPEATING)
        records.append(record)
    return duplicate_in_file(records, findings, last_wins=True,
                             why=" (chan_sip applies the sections of one name in order: the later one wins)")


VOICEMAIL_SPECIAL = frozenset({"general", "zonemessages"})


def read_voicemail(conf: ConfFile, findings: Findings) -> list[Record]:
    records: list[Record] = []
    for section in conf.sections:
        if section.template or section.name.lower() in VOICEMAIL_SPECIAL:
            continue
        for option in section.options:
            box = option.key
            if not NUMBER_RE.match(box):
                findings.note(option.at, box, f"mailbox {box!r} in [{section.name}] is not an extension number; "
                                              "not taken")
                continue
            # As app_voicemail splits it: the options (after the fourth comma) may hold commas of their own.
            pin, name, email, pager, options = ([p.strip() for p in option.value.split(",", 4)] + [""] * 5)[:5]
            record = Record("voicemail", box, option.at)
            record.set("voicemail_box", f"{box}@{section.name}")
            if pin.startswith("-"):
                # A leading '-' stops the user changing the PIN; it is not part of it.
                record.extra["voicemail_pin_fixed"] = "yes"
                pin = pin[1:]
            if pin:
                record.set("voicemail_pin", secret(pin, option.at))
            record.set("name", name)
            if email:
                record.set("voicemail_email", email)
                check_email(email, record, "voicemail_email", findings)
            record.keep("voicemail_pager", pager)
            record.keep("voicemail_options", options)
            records.append(record)
    return duplicate_in_file(records, findings, what="mailbox")
