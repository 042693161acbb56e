"""The helpdesk's view of one user: wave and window, mailbox state in plain words, counts, and what happens next.

Built from the state store only, like every report; the CLI renders it. Technical reasons recorded by
the sync engine (``source health (...): login refused: ...``) are translated into sentences a helpdesk
can read out, with the original kept alongside for the sysadmin.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from migrate.core import lifecycle
from migrate.core.config import Project
from migrate.core.store import MailboxRow, NotCopiedRow, Store
from migrate.plans.catalog import Catalog
from migrate.plans.model import PlanWindow
from migrate.voip.link import normal_name
from migrate.voip.model import line_kind

STATE_TEXT = {
    lifecycle.NEW: "Not in any approved migration wave yet.",
    lifecycle.PLANNED: "Planned: in a wave, nothing copied yet. The user works as usual.",
    lifecycle.PRESTAGING: "Copying the existing mail to the central host in advance (started, not finished). "
                          "The user works as usual.",
    lifecycle.PRESTAGED: "The existing mail has been copied to the central host in advance. The user works as usual.",
    lifecycle.DELTA_SYNCED: "Copied in advance and brought up to date since. The user works as usual.",
    lifecycle.FINAL_SYNCED: "All mail copied in the final pass; waiting for the switch of the domain to the "
                            "central host.",
    lifecycle.CUT_OVER: "Switched: new mail now arrives on the central host.",
    lifecycle.DONE: "Migrated. The user works on the central host.",
    lifecycle.FAILED: "The last migration attempt for this mailbox failed.",
    lifecycle.SKIPPED: "Left out of the migration on purpose.",
}

#: (pattern in the recorded reason, sentence for the helpdesk); the first that matches is used.
PLAIN_REASONS: list[tuple[str, str]] = [
    (r"central quota too small|over quota|quota exceeded|OVERQUOTA",
     "The user's new mailbox on the central host is too small for the mail to be copied. The central mail team "
     "must raise its quota."),
    (r"no usable mailbox on the central host|central host.*login refused",
     "The user's new mailbox on the central host does not exist yet (or refuses the migration's login). "
     "The central mail team must create it."),
    (r"source .*login refused|login at the source failed|no password reference",
     "The migration could not log into the user's mailbox on the ministry's mail server."),
    (r"certificate|TLS", "A mail server's security certificate was not accepted, so no connection was made."),
    (r"connection refused|timed out|unreachable|host name not found|connection lost",
     "A mail server could not be reached. The next run tries again."),
    (r"refused it|could not be copied", "Some messages were refused by the central host, for example because "
                                        "they are larger than it accepts."),
    (r"folder\(s\) failed|cannot open source folder", "Some folders of the mailbox could not be read."),
    (r"locked by", "Another migration run was working on this mailbox at the same time."),
    (r"flagged skip", "The ministry's user list marks this mailbox to be left out (flag skip)."),
    (r"inventory failed|not measured", "The mailbox could not be measured in the inventory, so it was not planned."),
]


def find_users(store: Store, text: str) -> list[MailboxRow]:
    """The helpdesk's lookup: an exact address or login first; else every mailbox whose display name or address
    holds ``text``, compared without case or accents ("jose perez" finds "José Pérez")."""
    found = store.find_mailboxes(text)
    wanted = normal_name(text)
    if not wanted:
        return found
    seen = {m.id for m in found}
    if found and any(m.email.lower() == text.lower() or m.login.lower() == text.lower() for m in found):
        return found
    more = [m for m in store.mailboxes() if m.id not in seen
            and (wanted in normal_name(m.display_name) or wanted in normal_name(m.email))]
    return sorted([*found, *more], key=lambda m: m.email)


def plain_reason(reason: str | None) -> str | None:
    if not reason:
        return None
    for pattern, sentence in PLAIN_REASONS:
        if re.search(pattern, reason, re.IGNORECASE):
            return sentence
    return reason


#: How many of a mailbox's messages not copied ``status`` lists (the count is always whole).
MAX_NOT_COPIED = 10

#: A phone's state in the helpdesk's words.
PHONE_TEXT = {
    lifecycle.NEW: "not planned yet; the desk phone still rings on the ministry's PBX",
    lifecycle.PLANNED: "planned; the desk phone still rings on the ministry's PBX",
    lifecycle.PROVISIONED: "set up on the hosted platform; the number still rings on the ministry's PBX",
    lifecycle.REGISTERED: "registers on the hosted platform; the number moves when its DIDs are switched",
    lifecycle.CUT_OVER: "on the hosted platform: calls to the number ring there",
    lifecycle.DONE: "on the hosted platform, checked",
    lifecycle.FAILED: "a step failed; the migration team retries it",
}


@dataclass
class WaveInfo:
    id: str
    title: str
    white_glove: bool
    approved: bool
    window_date: str | None
    window_start: str
    window_hours: float
    cutover_domains: list[str]

    def window_text(self) -> str:
        if not self.window_date:
            return f"not scheduled yet ({self.window_hours:g} h from {self.window_start})"
        return f"{self.window_date} from {self.window_start} for {self.window_hours:g} h"


@dataclass
class StatusView:
    email: str
    login: str
    display_name: str
    ministry: str
    source_id: str
    flags: list[str]
    state: str
    state_text: str
    reason: str | None
    reason_text: str | None
    wave: WaveInfo | None
    #: The wave after which the user's domain switches to the central host.
    cutover_wave: str | None
    #: The user's phone extensions: number, DIDs, voicemail, state.
    phones: list[dict[str, Any]]
    #: The DNS cut-over of the user's domain as the store knows it: state, when it was switched, MX now.
    domain: str
    domain_state: str
    switched_at: str | None
    #: Where the switch stands for the helpdesk (:func:`domain_phase`): not-switched, switching, switched,
    #: switching-back, rolled-back.
    domain_phase: str
    #: Whether the domain's MX points at the central host now (as far as the cut-over's record knows).
    mx_at_central: bool
    mx_now: list[str] | None
    messages_copied: int
    messages_total: int | None
    bytes_copied: int
    bytes_total: int | None
    messages_refused: int
    last_sync_at: str | None
    last_sync_result: str | None
    next_steps: list[str]
    #: The migration host whose sync of it last ended (several hosts can share the work).
    last_sync_host: str | None = None
    events: list[dict[str, str]] = field(default_factory=list)
    #: The messages not copied, with why (the central host refused them, or the source cannot export them).
    messages_not_copied: list[dict[str, Any]] = field(default_factory=list)
    #: Exchange items not migrated by policy (a contact or note kept in a mail folder), with why.
    messages_not_migrated: list[dict[str, Any]] = field(default_factory=list)
    #: Exchange calendars and contacts: per kind, where they went (DAV collection or export file) and counts.
    groupware: list[dict[str, Any]] = field(default_factory=list)
    #: Copies on the central host of messages the user deleted (or moved away) at the source since they were
    #: copied, left there until a pass carrying deletions (the final pass) removes them; not in messages_copied.
    messages_stale: int = 0
    #: Of messages_refused, those someone accepted leaving behind (a final pass forced with a reason).
    messages_accepted: int = 0
    #: A rolled-back cut-over: the mail copied back to the ministry server (messages, bytes), and what was not.
    copied_back: dict[str, Any] | None = None
    #: Mail rules, out-of-office, shared folders and delegates as the last sync left them: kind, name, state,
    #: state_text (the helpdesk's words), reason.
    settings: list[dict[str, Any]] = field(default_factory=list)
    #: When a sync last read them in full (None: never, or the last read failed: the next pass reads them).
    settings_read_at: str | None = None
    #: The same as the inventory found them (to-move, cannot-move, unknown).
    settings_inventory: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def mx_at_central(state: str, unrestored: dict[str, Any] | None) -> bool:
    """Whether a domain's MX points at the central host, from its cut-over state (a rollback that could not
    put the MX back leaves it there)."""
    if state == "rollback-incomplete":
        return not (unrestored or {}).get("mx_restored", False)
    return state in lifecycle.DOMAIN_SWITCHED


def domain_phase(state: str) -> str:
    """Where a domain's switch stands, for the helpdesk: not-switched, switching (being switched now), switched
    (its MX at the central host), switching-back (a rollback under way, not finished), rolled-back."""
    if state == "baselined":
        return "switching"
    if state in lifecycle.DOMAIN_ROLLING_BACK:
        return "switching-back"
    if state in lifecycle.DOMAIN_SWITCHED:
        return "switched"
    if state == "rolled-back":
        return "rolled-back"
    return "not-switched"


def _state_text(mailbox: MailboxRow, domain: str, phase: str, not_copied: int = 0, accepted: int = 0) -> str:
    """The mailbox's state in plain words, true to where its domain's switch stands; once the final pass is past,
    the messages it could not copy are said there too."""
    if mailbox.state == lifecycle.FINAL_SYNCED and phase == "switched":
        return (f"All mail copied in the final pass; the switch of {domain} has begun (its MX points at the central "
                "host) and is not finished: new mail may arrive on either server until it is.")
    if mailbox.state == lifecycle.FINAL_SYNCED and phase in ("switching-back", "rolled-back"):
        return (f"The switch of {domain} was rolled back: the user works on the ministry server again; mail that "
                "reached the central host meanwhile is copied back there.")
    text = STATE_TEXT.get(mailbox.state, mailbox.state)
    if not_copied and mailbox.state in lifecycle.MOVED:
        left = (f"{not_copied} message(s) could not be copied (listed below"
                + (f"; {accepted} accepted to stay behind" if accepted else "") + ")")
        if mailbox.state == lifecycle.FINAL_SYNCED:
            return (f"Copied in the final pass, except {left}; waiting for the switch of the domain to the central "
                    "host.")
        return f"{text} Except: {left}."
    return text


def _wave_info(store: Store, wave_id: str | None) -> WaveInfo | None:
    if not wave_id:
        return None
    row = store.wave(wave_id)
    doc = (row.doc if row else None) or {}
    w = doc.get("window") or {}
    window = PlanWindow(date=w.get("date"), start=w.get("start") or "22:00", hours=w.get("hours") or 6.0)
    return WaveInfo(wave_id, doc.get("title", ""), bool(doc.get("white_glove")), bool(row and row.plan_hash),
                    window.date.isoformat() if window.date else None, window.start, window.hours,
                    list(doc.get("cutover_domains", [])))


def _mx_now(changes: dict | None, switched: bool) -> list[str] | None:
    # Imported here: the DNS modules (dnspython) only for a mailbox whose domain has a recorded change set; the
    # helpdesk's `status USER` should start in well under a third of a second.
    from migrate.dns.changes import mx_now

    return mx_now(changes, switched)


def status_view(project: Project, store: Store, mailbox: MailboxRow, *, events: int = 8) -> StatusView:
    catalog = Catalog(project, store)
    info = catalog.get(mailbox.email)
    domain = mailbox.email.rsplit("@", 1)[1].lower()
    cutover_wave = next((w.id for w in store.waves() if domain in ((w.doc or {}).get("cutover_domains") or [])), None)
    wave = _wave_info(store, mailbox.wave)
    dns_row = store.dns_domain(domain)
    reason = mailbox.state_reason if mailbox.state in (lifecycle.FAILED, lifecycle.SKIPPED) else None
    reason_text = plain_reason(reason)
    if mailbox.state == lifecycle.NEW and info is not None and info.measured is False:
        reason = f"inventory failed: {info.inventory_error}"
        reason_text = ("The inventory could not measure this mailbox, so it is in no wave yet. "
                       + (plain_reason(info.inventory_error) or ""))
    extensions = store.extensions(mailbox_id=mailbox.id)
    total = info.messages if info else mailbox.src_messages
    not_copied = store.failed_messages(mailbox.id)
    accepted = sum(1 for m in not_copied if m.accepted is not None)
    domain_state = dns_row.state if dns_row else "unchanged"
    phase = domain_phase(domain_state)
    mx_central = mx_at_central(domain_state, dns_row.unrestored if dns_row else None)
    return StatusView(
        email=mailbox.email, login=mailbox.login, display_name=mailbox.display_name,
        ministry=info.ministry if info else mailbox.source_id, source_id=mailbox.source_id,
        flags=sorted(mailbox.flags), state=mailbox.state,
        state_text=_state_text(mailbox, domain, phase, len(not_copied), accepted),
        reason=reason, reason_text=reason_text, wave=wave, cutover_wave=cutover_wave,
        phones=[{"extension": e.number, "dial_plan": e.dial_plan, "name": e.name, "dids": list(e.dids),
                 "voicemail": e.voicemail_box, "voicemail_email": e.voicemail_email, "state": e.state,
                 "state_text": PHONE_TEXT.get(e.state, e.state), "reason": e.state_reason, "wave": e.wave,
                 "linked_by": e.link, "sip_check": _last_register_check(store, e.key), "held": list(e.held),
                 "line": line_kind(e.tech)} for e in extensions],
        domain=domain, domain_state=domain_state, domain_phase=phase, mx_at_central=mx_central,
        switched_at=dns_row.switched_at if dns_row else None,
        mx_now=_mx_now(dns_row.changes, mx_central) if dns_row else None,
        # Never more copied than the source holds: what is counted apart (stale) or was measured before the
        # source shrank is not shown as copied beyond it.
        messages_copied=min(mailbox.copied_messages, total) if total is not None else mailbox.copied_messages,
        messages_total=total, messages_stale=store.copied_totals(mailbox.id, stale=True)[0],
        messages_accepted=accepted,
        bytes_copied=mailbox.copied_bytes, bytes_total=info.size if info else mailbox.src_bytes,
        messages_refused=len(not_copied), last_sync_at=mailbox.last_sync_at,
        last_sync_result=mailbox.last_sync_result, last_sync_host=mailbox.last_sync_host,
        next_steps=next_steps(mailbox, wave, cutover_wave, domain, phase) + phone_steps(extensions, wave),
        events=[{"at": e.at, "action": e.action, "detail": e.detail, "actor": e.actor}
                for e in store.events(obj=f"mailbox/{mailbox.email}", limit=events)],
        messages_not_copied=_listed(not_copied),
        messages_not_migrated=_listed(store.failed_messages(mailbox.id, "skipped")),
        groupware=[{"kind": g.kind, "location": g.location, "source_items": g.source_items, "copied": g.copied,
                    "failed": g.failed, "last_sync_at": g.last_sync_at} for g in store.groupware_summary(mailbox.id)],
        copied_back=_copied_back(store, mailbox),
        settings=_settings(store, mailbox, "sync"), settings_read_at=mailbox.settings_read_at,
        settings_inventory=_settings(store, mailbox, "inventory"))


def _copied_back(store: Store, mailbox: MailboxRow) -> dict[str, Any] | None:
    messages, size, failed = store.copied_back(mailbox.id)
    if not messages and not failed:
        return None
    return {"messages": messages, "bytes": size, "not_copied": [{"folder": f, "uid": uid, "why": why}
                                                                for f, uid, why in failed[:MAX_NOT_COPIED]]}


def _settings(store: Store, mailbox: MailboxRow, phase: str) -> list[dict[str, Any]]:
    rows = store.settings(mailbox.id, phase)
    if not rows:  # the words live beside the IMAP and Sieve clients: imported only when there is a row to word
        return []
    from migrate.mailbox.settings import STATE_WORDS

    return [{"kind": r.kind, "name": r.name, "state": r.state, "state_text": STATE_WORDS.get(r.state, r.state),
             "reason": r.reason, "updated_at": r.updated_at} for r in rows]


def _listed(messages: list[NotCopiedRow]) -> list[dict[str, Any]]:
    return [{"folder": m.folder, "size": m.size, "why": m.error, "accepted": m.accepted}
            for m in messages[:MAX_NOT_COPIED]]


def next_steps(mailbox: MailboxRow, wave: WaveInfo | None, cutover_wave: str | None, domain: str,
               phase: str = "not-switched") -> list[str]:
    state = mailbox.state
    when = f"in wave {wave.id}, window {wave.window_text()}" if wave else ""
    switch = (f"{domain} switches to the central host after wave {cutover_wave}" if cutover_wave
              else f"the switch of {domain} to the central host is not planned yet")
    if phase == "rolled-back":
        switch = (f"{domain} switches to the central host again once the migration team repeats the cut-over"
                  + (f" of wave {cutover_wave}" if cutover_wave else ""))
    if phase == "switching-back" and state not in (lifecycle.SKIPPED, lifecycle.NEW):
        return [f"The switch of {domain} back to the ministry server is not finished: the migration team runs "
                f"govmigrate dns rollback --wave {cutover_wave or '<wave>'} again (it lists what is left); until "
                "then the user keeps working where the domain's mail goes (above)."]
    if phase == "switched" and state in (lifecycle.FINAL_SYNCED, lifecycle.FAILED) \
            and lifecycle.rank(lifecycle.level(mailbox)) <= lifecycle.rank(lifecycle.FINAL_SYNCED):
        return [f"The migration team finishes the cut-over of {domain} (govmigrate cutover "
                f"{cutover_wave or '<wave>'}) or rolls it back (govmigrate dns rollback --wave "
                f"{cutover_wave or '<wave>'}); until then new mail may arrive on either server."]
    if state == lifecycle.SKIPPED:
        return ["Nothing: this mailbox is not migrated. Ask the project team if that is wrong."]
    if state == lifecycle.NEW or wave is None:
        return ["The project team plans the mailbox into a wave (govmigrate plan generate / plan move)."]
    steps = []
    if not wave.approved and state not in (lifecycle.CUT_OVER, lifecycle.DONE):
        steps.append(f"Wave {wave.id} still needs the project team's approval.")
    if state in (lifecycle.PLANNED, lifecycle.PRESTAGING):
        steps.append(f"The existing mail is copied in advance {when}; nothing changes for the user yet.")
    elif state == lifecycle.PRESTAGED:
        steps.append(f"A catch-up copy and the final copy follow {when}.")
    elif state == lifecycle.DELTA_SYNCED:
        steps.append(f"The final copy runs {when}.")
    elif state == lifecycle.FAILED:
        steps.append(f"The next run of wave {wave.id} tries again automatically; if the problem above stays, "
                     "pass it on to the migration team.")
    if state in (lifecycle.PLANNED, lifecycle.PRESTAGING, lifecycle.PRESTAGED, lifecycle.DELTA_SYNCED,
                 lifecycle.FINAL_SYNCED, lifecycle.FAILED):
        steps.append(f"Then {switch}; from then on the user reads mail on the central host.")
        if wave.white_glove:
            steps.append("White-glove handling: a named contact checks with the user after the switch.")
    elif state == lifecycle.CUT_OVER:
        steps.append("Help the user set up their mail programme for the central host, then the mailbox is marked done.")
    elif state == lifecycle.DONE:
        steps.append("Nothing: the migration of this mailbox is complete.")
    return steps


def _last_register_check(store: Store, key: str) -> dict[str, Any] | None:
    """The newest SIP registration check of an extension, in the helpdesk's words (None: never checked)."""
    checks = [c for c in store.sip_checks(subject=key) if c.kind == "register"]
    if not checks:
        return None
    last = checks[-1]
    words = {"pass": "its account registered on the hosted platform",
             "warn": "its account registered on the hosted platform (with a warning for the migration team)",
             "fail": "its account could not register on the hosted platform; the migration team is on it",
             "skip": "not checked yet (not set up on the platform yet)",
             "n/a": "nothing to register (not a SIP phone)",
             "note": "its account registered on the hosted platform"}
    return {"result": last.result, "checked_at": last.checked_at, "text": words.get(last.result, ""),
            "detail": last.detail}


def phone_steps(extensions, wave: WaveInfo | None) -> list[str]:
    """What happens next to the user's desk phones (ExtensionRows), in the helpdesk's words."""
    steps = []
    for ext in extensions:
        if ext.state in lifecycle.PHONE_MOVED:
            continue
        where = f"with wave {ext.wave}" if ext.wave else "once it is planned into a wave"
        if ext.state in (lifecycle.NEW, lifecycle.PLANNED):
            text = f"The desk phone (extension {ext.number}) is set up on the hosted platform {where}"
            if wave is not None and ext.wave == wave.id and not wave.approved:
                text += f", once wave {wave.id} is approved"
            steps.append(text + "; its number keeps ringing on the ministry's PBX until it is switched.")
        elif ext.state == lifecycle.PROVISIONED:
            steps.append(f"The desk phone (extension {ext.number}) is set up on the hosted platform; next it "
                         "registers there, then its number is switched to it.")
        elif ext.state == lifecycle.REGISTERED:
            steps.append(f"The desk phone (extension {ext.number}) registers on the hosted platform; its number "
                         "is switched to it next.")
        elif ext.state == lifecycle.FAILED:
            steps.append(f"The desk phone (extension {ext.number}): a step failed; the migration team retries it.")
    return steps
