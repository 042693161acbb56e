"""The plan file schema: one YAML file per wave (``plans/<wave>.yaml``) and an index (``plans/index.yaml``).

Only decisions live in the data of a wave file (its id, title, window, white-glove handling, the domains it
cuts over, notes and the mailboxes); sizes and estimates are comments that govmigrate writes and
rewrites. A wave's hash is taken over its canonical data, so comments and layout may change without
voiding an approval, while any change to what the wave does voids it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from migrate.core.config import Strict, short_name

PLAN_VERSION = 1
INDEX_FILE = "index.yaml"
PILOT = "pilot"
WAVE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@([A-Za-z0-9-]+\.)+[A-Za-z]{2,63}$")


def wave_id(number: int) -> str:
    """Ministry waves are numbered ``wave-01``, ``wave-02``, …; the pilot is ``pilot``."""
    return f"wave-{number:02d}"


def wave_number(wave: str) -> int | None:
    m = re.match(r"^wave-(\d+)$", wave)
    return int(m.group(1)) if m else None


class PlanWindow(Strict):
    """The wave's maintenance window: its date (set by people), local start time and length."""

    date: dt.date | None = None
    start: str = "22:00"
    hours: float = Field(6.0, gt=0, le=72)

    @field_validator("start")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not re.match(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", value):
            raise ValueError("must be a time of day as HH:MM, e.g. 22:00")
        return value

    def starts(self) -> dt.datetime | None:
        if self.date is None:
            return None
        hour, minute = (int(x) for x in self.start.split(":"))
        return dt.datetime.combine(self.date, dt.time(hour, minute))

    def ends(self) -> dt.datetime | None:
        start = self.starts()
        return None if start is None else start + dt.timedelta(hours=self.hours)


class WaveFile(Strict):
    version: Literal[1]
    wave: str
    title: str = ""
    kind: Literal["pilot", "ministry", "phones"] = "ministry"
    #: VIP mailboxes: extra care, a named contact, checks with the user after cut-over.
    white_glove: bool = False
    window: PlanWindow = PlanWindow()
    #: Domains whose last mailboxes move in this wave: their DNS cut-over follows this wave.
    cutover_domains: list[str] = []
    notes: str = ""
    mailboxes: list[str] = []
    #: PBX extensions that move to the hosted VOIP platform in this wave, as "<dial plan>:<number>".
    extensions: list[str] = []

    @field_validator("wave")
    @classmethod
    def _wave_id(cls, value: str) -> str:
        return short_name(value, "wave-01")

    @field_validator("cutover_domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        return [d.strip().lower() for d in value]

    @field_validator("mailboxes")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not _EMAIL_RE.match(v)]
        if bad:
            raise ValueError(f"not an email address: {', '.join(map(repr, bad))}")
        return value

    @field_validator("extensions")
    @classmethod
    def _extension_keys(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not _EXTENSION_RE.match(v)]
        if bad:
            raise ValueError(f"not an extension as <dial plan>:<number> (e.g. health:1001): {', '.join(map(repr, bad))}")
        return value

    def canonical(self) -> dict[str, Any]:
        """The wave's data in a fixed form: what the hash covers and what the store records. Fields at their
        default value are left out, so that adding an optional field (phones, say) to wave files later
        changes no wave's hash and voids no approval."""
        doc = self.model_dump(mode="json", exclude_defaults=True)
        doc["version"], doc["wave"] = self.version, self.wave
        if self.mailboxes:
            doc["mailboxes"] = sorted(m.lower() for m in self.mailboxes)
        if self.cutover_domains:
            doc["cutover_domains"] = sorted(set(self.cutover_domains))
        if self.extensions:
            doc["extensions"] = sorted(self.extensions)
        return doc

    @property
    def hash(self) -> str:
        return doc_hash(self.canonical())

    def full(self) -> dict[str, Any]:
        """Every field, defaults included, lists sorted: what `plan diff` compares."""
        doc = self.model_dump(mode="json")
        doc["mailboxes"] = sorted(m.lower() for m in self.mailboxes)
        doc["cutover_domains"] = sorted(set(self.cutover_domains))
        doc["extensions"] = sorted(self.extensions)
        return doc

    @property
    def legacy_hash(self) -> str:
        """The hash as govmigrate took it before defaults were left out (every field of the first wave-file
        schema written in full), so that approvals recorded then stay valid."""
        return doc_hash({k: v for k, v in self.full().items() if k in _FIRST_SCHEMA})


#: The fields of wave files when approvals were first recorded (see WaveFile.legacy_hash).
_FIRST_SCHEMA = {"version", "wave", "title", "kind", "white_glove", "window", "cutover_domains", "notes",
                 "mailboxes"}


_EXTENSION_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}:[0-9A-Za-z*#+_.-]{1,32}$")


def doc_hash(doc: dict[str, Any]) -> str:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def full_doc(doc: dict[str, Any] | None) -> dict[str, Any]:
    """A wave as the store recorded it (canonical: defaults left out) with every field back, to compare; as it is
    if it no longer validates."""
    try:
        return WaveFile.model_validate(doc).full()
    except ValidationError:
        return dict(doc or {})


#: The fields a wave's change is told by (besides its mailboxes and extensions), in the order people read them.
COMPARED_FIELDS = ("title", "kind", "white_glove", "notes", "cutover_domains")


def field_changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, before, after) for each field and window part that differs between two full wave documents."""
    changes = [(key, before.get(key), after.get(key)) for key in (*COMPARED_FIELDS, "extensions")
               if before.get(key) != after.get(key)]
    for key in ("date", "start", "hours"):
        old, new = (before.get("window") or {}).get(key), (after.get("window") or {}).get(key)
        if old != new:
            changes.append((f"window.{key}", old, new))
    return changes


def _listed(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def describe_change(before_doc: dict[str, Any] | None, after_doc: dict[str, Any]) -> str:
    """What changed in a wave between two recorded documents, in words for a change board (``nothing in the
    wave changed`` when nothing did)."""
    before, after = full_doc(before_doc), full_doc(after_doc)
    parts = []
    for key, noun in (("mailboxes", "mailbox"), ("extensions", "phone extension")):
        was, now_ = set(before.get(key) or []), set(after.get(key) or [])
        for items, verb in ((sorted(now_ - was), "added"), (sorted(was - now_), "taken out")):
            if items:
                plural = noun + ("es" if noun.endswith("x") else "s") if len(items) != 1 else noun
                parts.append(f"{len(items)} {plural} {verb} ({_listed(items)})")
    for key, old, new in field_changes(before, after):
        if key == "extensions":
            continue
        parts.append(f"{key.replace('_', ' ').replace('.', ' ')} {old if old not in (None, '') else 'none'} → "
                     f"{new if new not in (None, '') else 'none'}")
    return "; ".join(parts) or "nothing in the wave changed"


class Excluded(Strict):
    email: str
    reason: str


class IndexFile(Strict):
    version: Literal[1]
    programme: str = ""
    generated_at: str | None = None
    generated_by: str | None = None
    #: The waves in the order they run.
    waves: list[str] = Field(min_length=1)
    #: Mailboxes in no wave, and why.
    excluded: list[Excluded] = []

    @field_validator("waves")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not WAVE_ID_RE.match(v)]
        if bad:
            raise ValueError(f"not a wave id: {', '.join(map(repr, bad))}")
        return value
