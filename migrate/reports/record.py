"""A wave's record for the change board (``report --wave W``): its approval, what its gates found, what each
pass did to each mailbox, the DNS changes applied and the SIP results, and its events. From the store only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from migrate.core import lifecycle
from migrate.core.errors import UsageError
from migrate.core.store import Event, RunRow, SipCheckRow, Store
from migrate.dns.changes import ChangeSet

#: Wave events that say what a gate or a pre-flight found (refused, or forced with a reason); the first and the
#: last two are the names events had before every step's gate was the runner's.
GATE_ACTIONS = ("preflight-failed", "gate-refused", "gate-forced", "phone step-refused", "sip confirm-refused")
#: The columns of the per-mailbox table: the state each pass (and the cut-over) leads to.
MILESTONES = (("prestage", lifecycle.PRESTAGED), ("delta", lifecycle.DELTA_SYNCED),
              ("final", lifecycle.FINAL_SYNCED), ("cut-over", lifecycle.CUT_OVER), ("done", lifecycle.DONE))


@dataclass
class MailboxRecord:
    email: str
    display_name: str
    state: str
    #: Milestone → when it was first reached (UTC, as stored), or None.
    reached: dict[str, str | None]
    copied_messages: int
    copied_bytes: int
    #: The last failure's reason, if it failed at some point (and when).
    last_failure: str | None = None
    failed_at: str | None = None
    #: Messages not copied, with why (refused by the central host, or not exportable by the source: an
    #: Exchange item is named by subject, date and size).
    not_copied: list[dict[str, Any]] = field(default_factory=list)
    #: The migration host whose sync of it last ended.
    host: str | None = None
    #: Mail rules, out-of-office, shared folders and delegates: how many the last sync moved, and each one it
    #: did not move or moved switched off (kind, name, state, reason), for the helpdesk to tell the user.
    settings_moved: int = 0
    settings_not_moved: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class WaveRecord:
    wave: str
    title: str
    window: str
    approved_by: str | None
    approved_at: str | None
    plan_hash: str | None
    gates: list[Event] = field(default_factory=list)
    mailboxes: list[MailboxRecord] = field(default_factory=list)
    #: Show which host copied each mailbox (several hosts worked the wave).
    show_hosts: bool = False
    runs: list[RunRow] = field(default_factory=list)
    #: Per cut-over domain: its state and the changes applied (before and after), from the baseline.
    domains: list[dict[str, Any]] = field(default_factory=list)
    #: The newest SIP check of each subject, for this wave.
    sip_checks: list[SipCheckRow] = field(default_factory=list)
    extensions: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def wave_record(store: Store, wave_id: str) -> WaveRecord:
    row = store.wave(wave_id)
    if row is None:
        raise UsageError(f"no wave {wave_id!r} in the state store", hint="govmigrate plan show lists the waves")
    doc = row.doc or {}
    window = doc.get("window") or {}
    record = WaveRecord(
        wave_id, doc.get("title", ""),
        f"{window.get('date')} {window.get('start') or '22:00'}, {window.get('hours') or 6:g} h"
        if window.get("date") else "not scheduled",
        row.approved_by, row.approved_at, row.plan_hash)
    record.events = store.events(obj=f"wave/{wave_id}")
    record.gates = [e for e in record.events if e.action in GATE_ACTIONS]
    record.runs = store.runs(wave_id)
    for mailbox in store.mailboxes(wave=wave_id):
        record.mailboxes.append(_mailbox_record(store, mailbox))
    # Which host copied each mailbox matters once several did: hosts differ, or the wave's passes were queued.
    record.show_hosts = (len({m.host for m in record.mailboxes if m.host}) > 1
                         or bool(store.work_items(wave=wave_id)))
    for domain in doc.get("cutover_domains", []):
        dns = store.dns_domain(domain)
        changes = ChangeSet.from_dict(dns.changes).rows() if dns and dns.changes else []
        record.domains.append({"domain": domain, "state": dns.state if dns else "unchanged",
                               "detail": dns.detail if dns else "", "switched_at": dns.switched_at if dns else None,
                               "baseline_file": dns.baseline_file if dns else None, "changes": changes,
                               "forced_reason": dns.forced_reason if dns else None})
    record.sip_checks = store.sip_checks(wave=wave_id)
    record.extensions = [{"key": e.key, "name": e.name, "state": e.state, "reason": e.state_reason or ""}
                         for e in store.extensions(wave=wave_id)]
    return record


def record_json(record: WaveRecord) -> dict[str, Any]:
    """The record as ``report --wave W --json`` prints it: each run under its columns' names."""
    doc = asdict(record)
    doc["runs"] = [run.as_dict() for run in record.runs]
    return doc


def _mailbox_record(store: Store, mailbox) -> MailboxRecord:
    reached: dict[str, str | None] = {name: None for name, _ in MILESTONES}
    by_state = {state: name for name, state in MILESTONES}
    last_failure = failed_at = None
    for event in store.events(obj=f"mailbox/{mailbox.email}"):
        match = lifecycle.STATE_EVENT.match(event.detail) if event.action == "state" else None
        if match is None:
            continue
        new = match.group(2)
        if new in by_state and reached[by_state[new]] is None:
            reached[by_state[new]] = event.at
        if new == lifecycle.FAILED:
            last_failure, failed_at = match.group(3) or "failed", event.at
    not_copied = [{"folder": m.folder, "size": m.size, "why": m.error}
                  for m in store.failed_messages(mailbox.id)]
    settings = store.settings(mailbox.id, "sync")
    return MailboxRecord(mailbox.email, mailbox.display_name, mailbox.state, reached, mailbox.copied_messages,
                         mailbox.copied_bytes, last_failure, failed_at, not_copied, mailbox.last_sync_host,
                         settings_moved=sum(1 for s in settings if s.state == "moved"),
                         settings_not_moved=[{"kind": s.kind, "name": s.name, "state": s.state, "reason": s.reason}
                                             for s in settings if s.state != "moved"])
