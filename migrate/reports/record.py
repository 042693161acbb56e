"""A wave's record for the change board (``report --wave W``): its approvals (each one: what it covered, when
and why it lapsed, which runs ran under it), what its gates found, what each pass did to each mailbox and
what the last verification found, the DNS changes applied and the SIP results, and its events. From the store
only; times as stored (UTC), for the renderer to show in the programme's zone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from migrate.core import lifecycle
from migrate.core.errors import UsageError
from migrate.core.store import ApprovalRow, Event, RunRow, SipCheckRow, Store, VerificationRow
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
    #: Its last verification, and whether it still stands (no copy since).
    verified: VerificationRow | None = None
    verified_current: bool = False

    #: Mail rules, out-of-office, shared folders and delegates: how many the last sync moved, and each one it
    #: did not move or moved switched off (kind, name, state, reason), for the helpdesk to tell the user.
    settings_moved: int = 0
    settings_not_moved: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ApprovalLine:
    """One approval of the wave, numbered from 1 in the order given."""

    number: int
    approved_by: str
    approved_at: str
    plan_hash: str
    plan_file: str
    #: What it covered: mailboxes, phone extensions, cut-over domains, window; None when not recorded (an
    #: approval given before govmigrate kept them).
    covered: dict[str, Any] | None
    #: What changed since the approval before it.
    changes: str | None
    #: in force | lapsed | replaced
    status: str
    ended_at: str | None = None
    end_reason: str | None = None
    #: The ids of the runs that ran under it.
    runs: list[int] = field(default_factory=list)


@dataclass
class WaveRecord:
    wave: str
    title: str
    window: str
    approved_by: str | None
    approved_at: str | None
    plan_hash: str | None
    #: The window as planned: date (None: not scheduled), start (wall-clock, programme's zone), hours.
    window_date: str | None = None
    window_start: str = "22:00"
    window_hours: float = 6.0
    #: approved | lapsed | not approved
    approval_state: str = "not approved"
    approvals: list[ApprovalLine] = field(default_factory=list)
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
    #: What the runs recorded copying, and what the mailboxes hold copied (they differ when a run was killed:
    #: its counts were never written).
    runs_copied: tuple[int, int] = (0, 0)
    mailboxes_copied: tuple[int, int] = (0, 0)
    killed_runs: int = 0

    def approval_of(self, run: RunRow) -> ApprovalLine | None:
        return next((a for a in self.approvals if run.id in a.runs), None)


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
        row.approved_by, row.approved_at, row.plan_hash, window.get("date"), window.get("start") or "22:00",
        window.get("hours") or 6.0)
    record.events = store.events(obj=f"wave/{wave_id}")
    record.gates = [e for e in record.events if e.action in GATE_ACTIONS]
    record.runs = store.runs(wave_id)
    record.approvals = approval_history(store.approvals(wave_id), record.runs)
    if record.approvals:
        record.approval_state = "approved" if record.approvals[-1].status == "in force" else "lapsed"
    elif row.plan_hash:
        record.approval_state = "approved"
    checks = store.verifications()
    for mailbox in store.mailboxes(wave=wave_id):
        record.mailboxes.append(_mailbox_record(store, mailbox, checks.get(mailbox.id)))
    finished = [r for r in record.runs if r.result != "killed"]
    record.runs_copied = (sum(r.messages or 0 for r in finished), sum(r.bytes or 0 for r in finished))
    record.mailboxes_copied = (sum(m.copied_messages for m in record.mailboxes),
                               sum(m.copied_bytes for m in record.mailboxes))
    record.killed_runs = sum(r.result == "killed" for r in record.runs)
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


def _covered(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    window = doc.get("window") or {}
    return {"mailboxes": len(doc.get("mailboxes", [])), "extensions": len(doc.get("extensions", [])),
            "cutover_domains": list(doc.get("cutover_domains", [])), "window_date": window.get("date"),
            "window_start": window.get("start") or "22:00", "window_hours": window.get("hours") or 6.0}


def approval_history(approvals: list[ApprovalRow], runs: list[RunRow]) -> list[ApprovalLine]:
    """Every approval of a wave with how it ended (lapsed, with why; replaced by the next; or in force) and the
    runs that ran under it (recorded with the run; runs recorded before are matched to the last approval given
    before they started)."""
    lines = []
    for i, a in enumerate(approvals):
        following = approvals[i + 1] if i + 1 < len(approvals) else None
        if a.lapsed_at:
            status, ended_at, reason = "lapsed", a.lapsed_at, a.lapse_reason
        elif following is not None:
            status, ended_at, reason = "replaced", following.approved_at, f"replaced by approval {i + 2}"
        else:
            status, ended_at, reason = "in force", None, None
        lines.append(ApprovalLine(i + 1, a.approved_by, a.approved_at, a.plan_hash, a.plan_file, _covered(a.doc),
                                  a.changes, status, ended_at, reason))
    by_id = {a.id: line for a, line in zip(approvals, lines, strict=True)}
    for run in runs:
        line = by_id.get(run.approval_id) if run.approval_id is not None else None
        if line is not None:
            line.runs.append(run.id)
    return lines


def _mailbox_record(store: Store, mailbox, check: VerificationRow | None = None) -> MailboxRecord:
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
    not_copied = [{"folder": m.folder, "size": m.size, "why": m.error, "accepted": m.accepted}
                  for m in store.failed_messages(mailbox.id)]
    current = check is not None and not (mailbox.last_sync_at and check.verified_at < mailbox.last_sync_at)
    settings = store.settings(mailbox.id, "sync")
    return MailboxRecord(mailbox.email, mailbox.display_name, mailbox.state, reached, mailbox.copied_messages,
                         mailbox.copied_bytes, last_failure, failed_at, not_copied, mailbox.last_sync_host,
                         check, current, settings_moved=sum(1 for s in settings if s.state == "moved"),
                         settings_not_moved=[{"kind": s.kind, "name": s.name, "state": s.state, "reason": s.reason}
                                             for s in settings if s.state != "moved"])
