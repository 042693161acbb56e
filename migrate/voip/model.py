"""What govmigrate knows of a PBX extension, as read from a ministry's PBX files: the records that cross from
the PBX readers (migrate.voip.pbx) to the inventory, the planner and the provisioning export.

Secrets (the SIP password, the voicemail PIN) live only in memory, as masked :class:`Secret` values: the state
store keeps whether an extension has them, never what they are, and the export reads them again from the
PBX files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from migrate.core.errors import Problem
from migrate.core.secrets import Secret

#: What a line is, by its technology (:func:`line_kind`).
PHONE = "phone"
VIRTUAL = "virtual"
BY_HAND = "by-hand"
#: Technologies whose devices are SIP phones: they get an account on the hosted platform (no technology named,
#: as in a Kamailio subscriber table, is a SIP account too).
SIP_TECHS = frozenset({"", "pjsip", "sip"})


def line_kind(tech: str | None) -> str:
    """``phone``: a SIP phone, given an account on the platform; ``virtual``: a user without a device (FreePBX's
    virtual extensions), nothing registers; ``by-hand``: anything else (custom dial strings such as a fax line,
    DAHDI analogue ports, IAX2): not a SIP account, moved by hand and reported so."""
    tech = (tech or "").strip().lower()
    if tech in SIP_TECHS:
        return PHONE
    return VIRTUAL if tech == "virtual" else BY_HAND


def line_text(tech: str | None) -> str:
    """Why a line gets no account, for people ("" for a SIP phone)."""
    kind = line_kind(tech)
    if kind == VIRTUAL:
        return "a virtual extension: no phone to register"
    if kind == BY_HAND:
        return f"not a SIP phone ({(tech or '').strip()}): moved by hand, no account on the platform"
    return ""


@dataclass
class Extension:
    source_id: str
    #: The numbering plan the number is unique in (the source's, or one several ministries share).
    dial_plan: str
    number: str
    name: str = ""
    #: pjsip | sip | iax2 | dahdi | custom | virtual ... as the PBX says.
    tech: str | None = None
    #: udp | tcp | tls | ws | wss, where the PBX says.
    transport: str | None = None
    callerid: str | None = None
    outbound_cid: str | None = None
    voicemail_box: str | None = None
    voicemail_email: str | None = None
    voicemail_pin: Secret | None = None
    #: The SIP password (pjsip auth password, sip.conf secret, FreePBX secret, Kamailio password).
    secret: Secret | None = None
    #: DIDs routed to this extension, E.164 (+5012223333).
    dids: list[str] = field(default_factory=list)
    #: The phone, where the PBX names it (a MAC, a model, a user agent).
    device: str | None = None
    #: A mail address an input names for the extension's user in a column of its own ("email", "user").
    link_email: str | None = None
    #: Every place it was read from, as "file:line".
    origins: list[str] = field(default_factory=list)
    #: Columns and options govmigrate does not use, kept as they were.
    extra: dict[str, str] = field(default_factory=dict)
    #: The PBX file errors that concern it ("file:line: field: message"): while any is there it is *held*,
    #: neither exported nor cut over unless the operator overrides it (--force --reason).
    held: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """How plans and events name it: "<dial plan>:<number>"."""
        return f"{self.dial_plan}:{self.number}"


@dataclass
class PbxInventory:
    """Everything read from one source's PBX files: the extensions (an error leaves its row or section out and
    holds the extension it concerns), and every problem found, each with its file and line."""

    source_id: str
    extensions: list[Extension] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    #: file → how many records were taken from it.
    files: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]
