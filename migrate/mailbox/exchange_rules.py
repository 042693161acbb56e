"""Exchange inbox rules and out-of-office settings as one Sieve script (RFC 5228 with fileinto, imap4flags,
copy, body, date, relational and vacation), for the central host's Pigeonhole.

A rule is translated only when every one of its conditions, exceptions and actions has a Sieve equivalent
(:data:`CONDITIONS`, :data:`ACTIONS`); otherwise it is listed, with its name and what has none, and nothing of
it is written. Exchange combines a rule's conditions with AND, the strings of one condition with OR, and a
rule applies unless one of its exceptions matches: ``allof(conditions..., not anyof(exceptions...))``. Rules
keep their priority order; a rule disabled in Outlook, and a rule that forwards outside the government while
the project file does not allow that, is written disabled (``if false { ... }``) and reported as held.

Out-of-office: turned on (Enabled), or scheduled and not yet over, it becomes a ``vacation`` action ahead of
the rules (Exchange replies whatever the rules do), guarded by the scheduled times in UTC
(``currentdate :zone "+0000"``); the internal reply goes to senders inside the government, the external
reply to the others unless Exchange sends none outside. An out-of-office whose end has passed is not turned
on. Every text from the server reaches the script through sievelib's quoting.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sievelib import tools
from sievelib.commands import Command, get_command_instance
from sievelib.factory import FiltersSet

from migrate.mailbox.sieve import inside

#: The script's name on the central host.
SCRIPT = "exchange-rules"

#: exchangelib Conditions field → what it becomes (None: no Sieve equivalent, with why).
CONDITIONS: dict[str, str | None] = {
    "contains_subject_strings": "subject",
    "contains_sender_strings": "from",
    "contains_recipient_strings": "to or cc",
    "contains_body_strings": "body",
    "contains_subject_or_body_strings": "subject or body",
    "contains_header_strings": "header",
    "from_addresses": "from",
    "sent_to_addresses": "to or cc",
    "sent_to_me": "to",
    "sent_cc_me": "cc",
    "sent_to_or_cc_me": "to or cc",
    "not_sent_to_me": "not to",
    "within_size_range": "size",
    "importance": "importance",
}
#: Conditions without a Sieve equivalent, in words for the listing.
NO_EQUIVALENT = {
    "categories": "a category condition (categories are not part of the delivered message)",
    "flagged_for_action": "a follow-up flag condition",
    "from_connected_accounts": "a connected-account condition",
    "has_attachments": "an attachment condition",
    "is_approval_request": "an approval-request condition",
    "is_automatic_forward": "an automatic-forward condition",
    "is_automatic_reply": "an automatic-reply condition",
    "is_encrypted": "an encrypted-message condition",
    "is_meeting_request": "a meeting-request condition",
    "is_meeting_response": "a meeting-response condition",
    "is_ndr": "a non-delivery-report condition",
    "is_permission_controlled": "a rights-protected condition",
    "is_read_receipt": "a read-receipt condition",
    "is_signed": "a signed-message condition",
    "is_voicemail": "a voicemail condition",
    "item_classes": "a message-class condition",
    "message_classifications": "a message-classification condition",
    "sent_only_to_me": "a 'sent only to me' condition",
    "sensitivity": "a sensitivity condition",
    "within_date_range": "a date-range condition",
}
#: Actions with a Sieve equivalent.
ACTIONS = ("move_to_folder", "copy_to_folder", "delete", "permanent_delete", "mark_as_read", "mark_importance",
           "assign_categories", "forward_to_recipients", "redirect_to_recipients", "stop_processing_rules")
NO_ACTION = {
    "forward_as_attachment_to_recipients": "forwarding as an attachment",
    "send_sms_alert_to_recipients": "a text-message alert",
    "server_reply_with_message": "a reply with a template message",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class ExchangeRule:
    """One inbox rule as read over EWS, reduced to plain values (see :mod:`migrate.mailbox.ews_settings`)."""

    name: str
    priority: int
    enabled: bool
    conditions: dict[str, Any] = field(default_factory=dict)
    exceptions: dict[str, Any] = field(default_factory=dict)
    actions: dict[str, Any] = field(default_factory=dict)
    #: Exchange marks it unsupported or in error (a client-only rule, a rule whose folder is gone).
    broken: str | None = None


@dataclass
class OutOfOffice:
    state: str                       # Enabled | Scheduled | Disabled
    audience: str = "All"            # who outside gets the external reply: None | Known | All
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    internal: str = ""
    external: str = ""


@dataclass
class Outcome:
    """What became of one rule (or the out-of-office reply): moved, held (written, switched off), not-moved."""

    kind: str            # rule | vacation
    name: str
    state: str
    reason: str


@dataclass
class Translation:
    #: The script (None when there is nothing to write).
    script: str | None
    outcomes: list[Outcome]


@dataclass
class Context:
    """What the translation needs to know about the mailbox and the central host."""

    email: str
    government: tuple[str, ...]
    #: An EWS folder id or distinguished id → its folder's name on the central host (None: not moved).
    folder: Callable[[str], str | None]
    #: An Exchange category → the IMAP keyword the mail sync gives it.
    keyword: Callable[[str], str]
    allow_forwarding: bool
    now: dt.datetime


class _NoEquivalent(Exception):
    """Part of a rule has no Sieve equivalent (the message says which)."""


def _clean(text: str) -> str:
    return _CONTROL.sub(" ", text)


def _q(text: str) -> str:
    return tools.quote(_clean(text))


def _ql(values: Iterable[str]) -> list[str]:
    return [_q(v) for v in values]


def _cmd(name: str, *args: tuple[str, Any]) -> Command:
    cmd = get_command_instance(name, None, False)
    for atype, value in args:
        cmd.check_next_arg(atype, value, check_extension=False)
    return cmd


def _of(name: str, tests: list[Command]) -> Command:
    if len(tests) == 1:
        return tests[0]
    cmd = get_command_instance(name, None, False)
    for test in tests:
        cmd.check_next_arg("test", test)
    return cmd


def _not(test: Command) -> Command:
    return _cmd("not", ("test", test))


class _Builder:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.requires: list[str] = []

    def need(self, *extensions: str) -> None:
        for ext in extensions:
            if ext not in self.requires:
                self.requires.append(ext)

    # -- conditions -----------------------------------------------------------------------------------

    def condition(self, name: str, value: Any) -> Command:
        if name in NO_EQUIVALENT or name not in CONDITIONS:
            raise _NoEquivalent(NO_EQUIVALENT.get(name, f"a {name.replace('_', ' ')} condition"))
        me = self.ctx.email
        if name == "contains_subject_strings":
            return _cmd("header", ("tag", ":contains"), ("stringlist", ['"subject"']), ("stringlist", _ql(value)))
        if name == "contains_sender_strings":
            return _cmd("header", ("tag", ":contains"), ("stringlist", ['"from"', '"sender"']),
                        ("stringlist", _ql(value)))
        if name == "contains_recipient_strings":
            return _cmd("header", ("tag", ":contains"), ("stringlist", ['"to"', '"cc"']), ("stringlist", _ql(value)))
        if name == "contains_header_strings":
            raise _NoEquivalent("a condition on any header's text")
        if name == "contains_body_strings":
            self.need("body")
            return _cmd("body", ("tag", ":contains"), ("tag", ":text"), ("stringlist", _ql(value)))
        if name == "contains_subject_or_body_strings":
            self.need("body")
            return _of("anyof", [_cmd("header", ("tag", ":contains"), ("stringlist", ['"subject"']),
                                      ("stringlist", _ql(value))),
                                 _cmd("body", ("tag", ":contains"), ("tag", ":text"), ("stringlist", _ql(value)))])
        if name == "from_addresses":
            return _cmd("address", ("tag", ":all"), ("tag", ":is"), ("stringlist", ['"from"']),
                        ("stringlist", _ql(value)))
        if name == "sent_to_addresses":
            return _cmd("address", ("tag", ":all"), ("tag", ":is"), ("stringlist", ['"to"', '"cc"']),
                        ("stringlist", _ql(value)))
        if name in ("sent_to_me", "sent_cc_me", "sent_to_or_cc_me", "not_sent_to_me"):
            headers = {"sent_to_me": ['"to"'], "sent_cc_me": ['"cc"'], "sent_to_or_cc_me": ['"to"', '"cc"'],
                       "not_sent_to_me": ['"to"']}[name]
            test = _cmd("address", ("tag", ":all"), ("tag", ":is"), ("stringlist", headers), ("stringlist", [_q(me)]))
            if not value:
                raise _NoEquivalent(f"a '{name.replace('_', ' ')}' condition that is switched off")
            return _not(test) if name == "not_sent_to_me" else test
        if name == "within_size_range":
            low, high = value
            tests = []
            if low:      # at least ``low`` bytes: over low - 1
                tests.append(_cmd("size", ("tag", ":over"), ("number", max(0, int(low) - 1))))
            if high:
                tests.append(_cmd("size", ("tag", ":under"), ("number", int(high) + 1)))
            if not tests:
                raise _NoEquivalent("an empty size condition")
            return _of("allof", tests)
        if name == "importance":
            # Exchange's Importance (RFC 2156 header Importance: high/normal/low).
            return _cmd("header", ("tag", ":is"), ("stringlist", ['"importance"']), ("stringlist", [_q(str(value))]))
        raise _NoEquivalent(f"a {name.replace('_', ' ')} condition")

    # -- actions ----------------------------------------------------------------------------------------

    def actions(self, rule: ExchangeRule) -> tuple[list[Command], list[str]]:
        """The rule's actions as Sieve commands (flags first: imap4flags marks what is filed after it), and the
        forwarding addresses outside the government."""
        unknown = [a for a in rule.actions if a not in ACTIONS]
        if unknown:
            raise _NoEquivalent(NO_ACTION.get(unknown[0], f"a {unknown[0].replace('_', ' ')} action"))
        a = rule.actions
        flags: list[Command] = []
        files: list[Command] = []
        sends: list[Command] = []
        tail: list[Command] = []
        outside: list[str] = []
        if a.get("mark_as_read"):
            flags.append(_cmd("addflag", ("stringlist", [_q("\\Seen")])))
        if a.get("mark_importance"):
            if str(a["mark_importance"]).lower() != "high":
                raise _NoEquivalent(f"marking importance {a['mark_importance']} (IMAP has only a flag)")
            flags.append(_cmd("addflag", ("stringlist", [_q("\\Flagged")])))
        if a.get("assign_categories"):
            flags.append(_cmd("addflag", ("stringlist", _ql(self.ctx.keyword(c) for c in a["assign_categories"]))))
        if flags:
            self.need("imap4flags")
        for key, copy in (("copy_to_folder", True), ("move_to_folder", False)):
            if a.get(key):
                target = self.ctx.folder(a[key])
                if target is None:
                    raise _NoEquivalent("its folder is not on the central host")
                self.need("fileinto")
                if copy:
                    self.need("copy")
                    files.append(_cmd("fileinto", ("tag", ":copy"), ("string", _q(target))))
                else:
                    files.append(_cmd("fileinto", ("string", _q(target))))
        for key in ("forward_to_recipients", "redirect_to_recipients"):
            for address in a.get(key) or ():
                self.need("copy")
                # Exchange keeps the message where the rule leaves it; so does redirect :copy.
                sends.append(_cmd("redirect", ("tag", ":copy"), ("string", _q(address))))
                if not inside(address, self.ctx.government):
                    outside.append(address)
        if a.get("delete") and not files:
            trash = self.ctx.folder("deleteditems")
            if trash is None:
                raise _NoEquivalent("deleting (the Deleted Items folder is not on the central host)")
            self.need("fileinto")
            files.append(_cmd("fileinto", ("string", _q(trash))))
        if a.get("permanent_delete"):
            tail.append(_cmd("discard"))
        if a.get("stop_processing_rules"):
            tail.append(_cmd("stop"))
        commands = flags + files + sends + tail
        if not commands:
            raise _NoEquivalent("no action")
        return commands, outside

    # -- one rule -----------------------------------------------------------------------------------------

    def rule(self, rule: ExchangeRule) -> tuple[Command, list[str]]:
        tests = [self.condition(k, v) for k, v in sorted(rule.conditions.items())]
        exceptions = [self.condition(k, v) for k, v in sorted(rule.exceptions.items())]
        if exceptions:
            tests.append(_not(_of("anyof", exceptions)))
        test = _of("allof", tests) if tests else _cmd("true")
        commands, outside = self.actions(rule)
        block = _cmd("if", ("test", test))
        for command in commands:
            block.addchild(command)
        return block, outside


def _utc(when: dt.datetime) -> str:
    # Compared with currentdate's "iso8601" part in UTC ("2026-12-01T08:00:00+00:00"): the value without its
    # zone is a prefix of the current date's, so "ge" and "le" order them correctly to the second.
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _reply(text: str) -> tuple[tuple[str, Any], ...]:
    """A vacation reason: plain text, or (when Exchange holds HTML, as Outlook writes it) a MIME part."""
    text = _clean(text).strip()
    if re.search(r"<(html|body|p|div|br)\b", text, re.IGNORECASE):
        part = f"Content-Type: text/html; charset=utf-8\r\n\r\n{text}"
        return (("tag", ":mime"), ("string", tools.quote(part)))
    return (("string", tools.quote(text)),)


def vacation(oof: OutOfOffice, ctx: Context, build: _Builder) -> tuple[Command | None, Outcome]:
    """The out-of-office reply as a guarded ``vacation`` (None when it is not turned on)."""
    name = "out of office"
    if oof.state == "Disabled":
        return None, Outcome("vacation", name, "not-moved", "it was off at the source; nothing to move")
    if oof.state == "Scheduled":
        if oof.end is not None and oof.end <= ctx.now:
            return None, Outcome("vacation", name, "not-moved",
                                 f"it ended on {oof.end.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC; not turned on")
        if oof.start is None or oof.end is None:
            return None, Outcome("vacation", name, "not-moved", "it is scheduled without start or end times")
    if not (oof.internal or "").strip():
        return None, Outcome("vacation", name, "not-moved", "it has no reply text")
    build.need("vacation")
    guards: list[Command] = []
    if oof.state == "Scheduled":
        build.need("date", "relational")
        assert oof.start is not None and oof.end is not None
        guards += [_cmd("currentdate", ("tag", ":zone"), ("string", '"+0000"'), ("tag", ":value"), ("string", '"ge"'),
                        ("string", '"iso8601"'), ("stringlist", [_q(_utc(oof.start))])),
                   _cmd("currentdate", ("tag", ":zone"), ("string", '"+0000"'), ("tag", ":value"), ("string", '"le"'),
                        ("string", '"iso8601"'), ("stringlist", [_q(_utc(oof.end))]))]
    domains = [p for d in ctx.government for p in (d, f"*.{d}")]
    internal = _cmd("address", ("tag", ":domain"), ("tag", ":matches"), ("stringlist", ['"from"']),
                    ("stringlist", _ql(domains)))
    block = _cmd("if", ("test", _of("allof", guards) if guards else _cmd("true")))
    external_text = (oof.external or "").strip()
    audience = oof.audience or "All"
    same = external_text == oof.internal.strip()
    if audience == "All" and (same or not external_text):
        block.addchild(_cmd("vacation", *_reply(oof.internal)))
        who = "every sender"
    else:
        inner = _cmd("if", ("test", internal))
        inner.addchild(_cmd("vacation", *_reply(oof.internal)))
        block.addchild(inner)
        who = "senders inside the government"
        if audience == "All" and external_text:
            other = get_command_instance("else", None, False)
            other.addchild(_cmd("vacation", *_reply(external_text)))
            block.addchild(other)
            who = "senders inside the government, its external text to the others"
        elif audience == "Known":
            who += " (Exchange replied to known outside contacts too; the central host cannot tell who they are)"
    when = "on" if oof.state == "Enabled" else \
        f"from {oof.start.astimezone(dt.UTC):%Y-%m-%d %H:%M} to {oof.end.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"  # type: ignore[union-attr]
    return block, Outcome("vacation", name, "moved", f"a vacation reply {when}, to {who}")


def translate(rules: list[ExchangeRule], oof: OutOfOffice | None, ctx: Context) -> Translation:
    """One script for the mailbox: the out-of-office reply first, then the rules by priority."""
    build = _Builder(ctx)
    filters: list[tuple[str, Command, bool]] = []   # (name, command, enabled)
    outcomes: list[Outcome] = []
    names: set[str] = set()
    if oof is not None:
        block, outcome = vacation(oof, ctx, build)
        outcomes.append(outcome)
        if block is not None:
            filters.append(("out of office", block, True))
            names.add("out of office")
    for rule in sorted(rules, key=lambda r: r.priority):
        name = _clean(rule.name).strip() or f"rule {rule.priority}"
        while name in names:
            name += " (2)"
        names.add(name)
        if rule.broken:
            outcomes.append(Outcome("rule", name, "not-moved", rule.broken))
            continue
        try:
            saved = list(build.requires)
            block, outside = build.rule(rule)
        except _NoEquivalent as exc:
            build.requires = saved
            outcomes.append(Outcome("rule", name, "not-moved", f"not translated: {exc} has no Sieve equivalent"
                                    if "no Sieve" not in str(exc) else str(exc)))
            continue
        if outside and not ctx.allow_forwarding:
            filters.append((name, block, False))
            outcomes.append(Outcome("rule", name, "held", "it forwards mail outside the government (to "
                                    f"{', '.join(outside)}); moved switched off, as the project file does not "
                                    "allow such forwarding"))
        elif not rule.enabled:
            filters.append((name, block, False))
            outcomes.append(Outcome("rule", name, "moved", "moved switched off, as it was at the source"))
        else:
            filters.append((name, block, True))
            outcomes.append(Outcome("rule", name, "moved",
                                    "moved" + (f"; it forwards outside the government (to {', '.join(outside)}), "
                                               "as the project file allows" if outside else "")))
    if not filters:
        return Translation(None, outcomes)
    fs = FiltersSet(SCRIPT)
    for ext in build.requires:
        fs.require(ext)
    for name, block, enabled in filters:
        fs.filters.append({"name": name, "content": block, "enabled": True})
        if not enabled:
            fs.disablefilter(name)
    out = io.StringIO()
    fs.tosieve(out)
    return Translation(out.getvalue(), outcomes)
