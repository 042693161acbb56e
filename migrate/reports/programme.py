"""The programme report for project managers: progress per ministry and per wave, failures, finish dates.

Assembled from the state store only (the waves as approved or generated, the mailboxes' lifecycle and
sync counts, measured throughput) into plain records; the CLI renders them as tables, JSON or CSV, and
a later HTML report can render the same records.

Definitions: a mailbox is *done* when its final pass copied everything (final-synced, cut-over or done);
*moved* counts the messages and bytes govmigrate copied to the central host; *total* is each mailbox's
size at the source as last measured (last sync, else inventory). A wave's *planned completion* is the
end of its maintenance window (its date, start and length, wall-clock times in the programme's time zone),
or later when the copy still to do is estimated to take longer than the window; a wave without a date has
none, and neither then has its ministry nor the programme. A past window with work left is *overdue*.
Mailboxes in no wave make a ministry's or the programme's completion *partly planned* (the date covers the
planned waves only). The *forecast* (:mod:`migrate.reports.forecast`) says what the runs so far predict.
Every time leaves here as ISO 8601 with its UTC offset, in the programme's zone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from migrate.core import lifecycle
from migrate.core.config import Project
from migrate.core.store import ApprovalRow, GroupwareSummaryRow, RunRow, Store, VerificationRow, now
from migrate.core.timezones import Zone, iso
from migrate.core.units import gb
from migrate.plans.catalog import Catalog, MailboxInfo
from migrate.plans.estimate import Rates, estimate
from migrate.plans.model import PlanWindow
from migrate.reports.forecast import (
    ProgrammeForecast,
    WaveForecast,
    WaveInput,
    forecast,
    programme_forecast,
)
from migrate.reports.words import plural

IN_PROGRESS = (lifecycle.PRESTAGING, lifecycle.PRESTAGED, lifecycle.DELTA_SYNCED)


@dataclass
class Counts:
    mailboxes: int = 0
    done: int = 0
    in_progress: int = 0
    planned: int = 0
    unplanned: int = 0
    failed: int = 0
    skipped: int = 0
    messages_total: int = 0
    messages_moved: int = 0
    bytes_total: int = 0
    bytes_moved: int = 0
    #: Messages not copied (refused by the central host, or that the source cannot export), accepted or not.
    messages_not_copied: int = 0

    def add(self, m: MailboxInfo) -> None:
        self.mailboxes += 1
        state = m.row.state
        if state in lifecycle.MOVED:
            self.done += 1
        elif state in IN_PROGRESS:
            self.in_progress += 1
        elif state == lifecycle.FAILED:
            self.failed += 1
        elif state == lifecycle.SKIPPED:
            self.skipped += 1
        elif m.row.wave:
            self.planned += 1
        else:
            self.unplanned += 1
        if state != lifecycle.SKIPPED:
            self.messages_total += m.messages or 0
            self.bytes_total += m.size or 0
        self.messages_moved += m.row.copied_messages
        self.bytes_moved += m.row.copied_bytes
        self.messages_not_copied += m.row.failed_messages

    @property
    def to_migrate(self) -> int:
        return self.mailboxes - self.skipped


@dataclass
class Completion:
    #: When the work is planned to be finished (ISO 8601 with its offset, in the programme's zone), or None.
    at: str | None
    #: done | scheduled | partly planned | overdue | not scheduled | nothing planned
    status: str
    note: str = ""


@dataclass
class PhoneCounts:
    """Phone extensions: on the hosted platform (cut over or done) of all, and where the others are."""

    total: int = 0
    moved: int = 0
    provisioned: int = 0
    registered: int = 0
    failed: int = 0

    def add(self, state: str) -> None:
        self.total += 1
        self.moved += state in lifecycle.PHONE_MOVED
        self.provisioned += state == lifecycle.PROVISIONED
        self.registered += state == lifecycle.REGISTERED
        self.failed += state == lifecycle.FAILED


@dataclass
class VerifyCounts:
    """The data consistency ``govmigrate verify`` last found, over mailboxes to migrate: matched, with differences
    (or the check failed), verified before their last copy (the check no longer stands), and never verified."""

    matched: int = 0
    differing: int = 0
    not_verified: int = 0
    stale: int = 0
    #: The newest verification counted (ISO 8601 with offset), or None.
    last_at: str | None = None

    def add(self, m: MailboxInfo, check: VerificationRow | None, zone: Zone) -> None:
        if m.row.state == lifecycle.SKIPPED:
            return
        if check is None:
            self.not_verified += 1
            return
        if m.row.last_sync_at and check.verified_at < m.row.last_sync_at:
            self.stale += 1
            return
        if check.matches:
            self.matched += 1
        else:
            self.differing += 1
        at = iso(zone.from_store(check.verified_at))
        self.last_at = max(self.last_at or "", at or "") or None

    def merge(self, other: VerifyCounts) -> None:
        self.matched += other.matched
        self.differing += other.differing
        self.not_verified += other.not_verified
        self.stale += other.stale
        if other.last_at and (self.last_at is None or other.last_at > self.last_at):
            self.last_at = other.last_at

    @property
    def any(self) -> bool:
        return bool(self.matched or self.differing)


@dataclass
class WaveLine:
    id: str
    title: str
    kind: str
    white_glove: bool
    approval: str
    window_date: str | None
    window_start: str
    window_hours: float
    cutover_domains: list[str]
    ministries: list[str]
    counts: Counts
    remaining_hours: float
    completion: Completion
    last_run: dict[str, Any] | None = None
    phones: PhoneCounts = field(default_factory=lambda: PhoneCounts())
    #: approved | lapsed | not approved: the wave's approval as the store knows it.
    approval_state: str = "not approved"
    #: When its last approval lapsed (ISO 8601 with offset), if it did.
    approval_lapsed_at: str | None = None
    #: When the window starts (ISO 8601 with offset), or None.
    window_starts: str | None = None
    forecast: WaveForecast = field(default_factory=lambda: WaveForecast("not scheduled"))
    verification: VerifyCounts = field(default_factory=lambda: VerifyCounts())
    #: Its cut-over domains whose MX the DNS cut-over switched to the central host.
    domains_cut_over: list[str] = field(default_factory=list)


@dataclass
class GroupwareCounts:
    """Exchange calendar items and contacts: at the source (last pass), copied, refused, and how many mailboxes'
    went to export files in the workspace rather than the central DAV server."""

    calendar_items: int = 0
    calendar_copied: int = 0
    contacts: int = 0
    contacts_copied: int = 0
    failed: int = 0
    exported_mailboxes: int = 0

    def add(self, row: GroupwareSummaryRow) -> None:
        if row.kind == "calendar":
            self.calendar_items += row.source_items
            self.calendar_copied += row.copied
            if not row.location.startswith(("https://", "http://")):
                self.exported_mailboxes += 1
        else:
            self.contacts += row.source_items
            self.contacts_copied += row.copied
        self.failed += row.failed

    @property
    def any(self) -> bool:
        return bool(self.calendar_items or self.contacts or self.failed)


@dataclass
class MinistryLine:
    source_id: str
    ministry: str
    domains: list[str]
    waves: list[str]
    counts: Counts
    completion: Completion
    #: The ministry's domains whose MX points at the central host (the DNS cut-over switched them):
    #: the plan's "compliance by all Ministries".
    domains_cut_over: list[str] = field(default_factory=list)
    phones: PhoneCounts = field(default_factory=lambda: PhoneCounts())
    groupware: GroupwareCounts = field(default_factory=lambda: GroupwareCounts())
    verification: VerifyCounts = field(default_factory=lambda: VerifyCounts())


@dataclass
class FailureLine:
    email: str
    ministry: str
    wave: str | None
    state: str
    reason: str


@dataclass
class ProgrammeReport:
    programme: str
    generated_at: str
    totals: Counts
    ministries: list[MinistryLine]
    waves: list[WaveLine]
    failures: list[FailureLine]
    completion: Completion
    rate_note: str = ""
    notes: list[str] = field(default_factory=list)
    groupware: GroupwareCounts = field(default_factory=lambda: GroupwareCounts())
    #: The programme's time zone, e.g. ``America/Belize (UTC-06:00)``: every time of the report is in it.
    zone: str = "UTC"
    forecast: ProgrammeForecast = field(default_factory=lambda: ProgrammeForecast("nothing planned"))
    phones: PhoneCounts = field(default_factory=lambda: PhoneCounts())
    domains: int = 0
    domains_cut_over: int = 0
    verification: VerifyCounts = field(default_factory=lambda: VerifyCounts())
    #: Mail rules, out-of-office, shared folders and delegates: state → how many, as the syncs left them
    #: (moved, held, not-moved, failed) and as the inventory found them (to-move, cannot-move).
    settings: dict[str, int] = field(default_factory=dict)


def _settings_counts(store: Store) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in store.settings():
        if row.name != "*":
            counts[row.state] = counts.get(row.state, 0) + 1
    return counts


def _window(doc: dict[str, Any] | None) -> PlanWindow:
    w = (doc or {}).get("window") or {}
    return PlanWindow(date=w.get("date"), start=w.get("start") or "22:00", hours=w.get("hours") or 6.0)


def _wave_completion(window: PlanWindow, counts: Counts, remaining_hours: float, last_finish: str | None,
                     today: dt.datetime, zone: Zone) -> Completion:
    if counts.to_migrate and counts.done == counts.to_migrate:
        return Completion(iso(zone.from_store(last_finish)) if last_finish else None, "done")
    if not counts.to_migrate:
        return Completion(None, "nothing planned")
    start, end = window.starts(), window.ends()
    if start is None or end is None:
        return Completion(None, "not scheduled", "no window date set")
    start, end = zone.wall(start), zone.wall(end)
    if end < today:
        return Completion(None, "overdue", f"the window of {window.date} has passed with work left")
    if remaining_hours > window.hours:
        return Completion(iso(start + dt.timedelta(hours=remaining_hours)), "scheduled",
                          f"the copy left (about {remaining_hours:.1f} h) is longer than the window")
    return Completion(iso(end), "scheduled")


def _latest(stamps) -> str | None:
    """The latest of ISO 8601 times (compared as times: offsets differ across a daylight-saving change)."""
    return max((t for t in stamps if t), key=dt.datetime.fromisoformat, default=None)


def _combine(parts: list[tuple[str, Completion]], unplanned: int) -> Completion:
    """The completion of a group of waves: the latest, if every wave with work left has one. Mailboxes in
    no wave make it "partly planned": the date covers the planned waves only."""
    if not parts:
        return Completion(None, "not scheduled" if unplanned else "nothing planned",
                          f"{plural(unplanned, 'mailbox')} in no wave" if unplanned else "")
    note = f"{plural(unplanned, 'mailbox')} in no wave not included" if unplanned else ""
    open_ = [(w, c) for w, c in parts if c.status not in ("done", "nothing planned")]
    if not open_:
        return Completion(_latest(c.at for _, c in parts), "partly planned" if unplanned else "done", note)
    waiting = [(w, c) for w, c in open_ if c.status in ("not scheduled", "overdue")]
    if waiting:
        kinds = sorted({c.status for _, c in waiting})
        status = "overdue" if kinds == ["overdue"] else "not scheduled"
        return Completion(None, status, f"{', '.join(w for w, _ in waiting)}: {' / '.join(kinds)}"
                          + (f"; {note}" if note else ""))
    return Completion(_latest(c.at for _, c in open_), "partly planned" if unplanned else "scheduled", note)


def build_report(project: Project, store: Store, *, today: dt.datetime | None = None) -> ProgrammeReport:
    """The programme as the store knows it now (``today``: the moment to report at; a naive one is a wall-clock
    time in the programme's zone)."""
    zone = project.zone
    today = zone.now() if today is None else (zone.wall(today) if today.tzinfo is None else today)
    catalog = Catalog(project, store)
    rates = Rates(project, store)
    mailboxes = catalog.in_sources()
    checks = store.verifications()
    ministry_of = {s.id: s.ministry for s in project.config.sources}
    runs_by_wave: dict[str | None, list[RunRow]] = {}
    for run in store.runs():
        runs_by_wave.setdefault(run.wave, []).append(run)
    approvals_of: dict[str, list[ApprovalRow]] = {}
    for approval in store.approvals():
        approvals_of.setdefault(approval.wave, []).append(approval)
    waves: list[WaveLine] = []
    inputs: list[WaveInput] = []
    for row in store.waves():
        members = [m for m in mailboxes if m.row.wave == row.id]
        counts = Counts()
        verification = VerifyCounts()
        remaining: dict[str, list[int]] = {}
        for m in members:
            counts.add(m)
            verification.add(m, checks.get(m.row.id), zone)
            if m.row.state not in lifecycle.MOVED and m.row.state != lifecycle.SKIPPED:
                acc = remaining.setdefault(m.source_id, [0, 0])
                acc[0] += 1
                acc[1] += m.remaining_bytes
        hours = estimate(rates, {s: (v[0], v[1]) for s, v in remaining.items()}).hours if remaining else 0.0
        window = _window(row.doc)
        starts = zone.wall(window.starts()) if window.starts() else None  # type: ignore[arg-type]
        runs = runs_by_wave.get(row.id, [])
        last = runs[-1] if runs else None
        last_finish = max((r.finished_at for r in runs if r.finished_at and r.result == "ok"), default=None)
        doc = row.doc or {}
        history = approvals_of.get(row.id, [])
        state, approval = _approval(history, row.approved_by if row.plan_hash else None)
        lapsed_at = history[-1].lapsed_at if state == "lapsed" else None
        waves.append(WaveLine(
            id=row.id, title=doc.get("title", ""), kind=doc.get("kind", "ministry"),
            white_glove=bool(doc.get("white_glove")), approval=approval,
            window_date=window.date.isoformat() if window.date else None, window_start=window.start,
            window_hours=window.hours, cutover_domains=list(doc.get("cutover_domains", [])),
            ministries=sorted({ministry_of.get(m.source_id, m.source_id) for m in members}), counts=counts,
            remaining_hours=round(hours, 2),
            completion=_wave_completion(window, counts, hours, last_finish, today, zone),
            last_run={"pass": last.pass_name, "started_at": last.started_at, "finished_at": last.finished_at,
                      "result": last.result} if last else None,
            approval_state=state, window_starts=iso(starts), verification=verification,
            approval_lapsed_at=iso(zone.from_store(lapsed_at)) if lapsed_at else None))
        inputs.append(WaveInput(row.id, counts.to_migrate, counts.done, counts.failed, counts.in_progress, hours,
                                starts, window.hours, state == "approved",
                                zone.from_store(last_finish) if last_finish else None))
    by_wave = {w.id: w for w in waves}
    phones_of: dict[str, PhoneCounts] = {}
    phones = PhoneCounts()
    for ext in store.extensions():
        phones.add(ext.state)
        phones_of.setdefault(f"source/{ext.source_id}", PhoneCounts()).add(ext.state)
        if ext.wave in by_wave:
            by_wave[ext.wave].phones.add(ext.state)
    dns_state = {row.domain: row.state for row in store.dns_domains()}
    for w in waves:
        w.domains_cut_over = [d for d in w.cutover_domains
                              if (dns_state.get(d.lower()) or "") in lifecycle.DOMAIN_SWITCHED]
    source_of = {m.row.id: m.source_id for m in mailboxes}
    groupware_of: dict[str, GroupwareCounts] = {}
    groupware = GroupwareCounts()
    for g in store.groupware_summary():
        if g.mailbox_id in source_of:
            groupware_of.setdefault(source_of[g.mailbox_id], GroupwareCounts()).add(g)
            groupware.add(g)
    ministries: list[MinistryLine] = []
    for source in project.config.sources:
        members = [m for m in mailboxes if m.source_id == source.id]
        counts = Counts()
        verification = VerifyCounts()
        for m in members:
            counts.add(m)
            verification.add(m, checks.get(m.row.id), zone)
        wave_ids = [w.id for w in waves if any(m.row.wave == w.id for m in members)]
        parts = [(w, _ministry_share(by_wave[w], members)) for w in wave_ids]
        switched = [d for d in source.domains if (dns_state.get(d.lower()) or "") in lifecycle.DOMAIN_SWITCHED]
        ministries.append(MinistryLine(source.id, source.ministry, list(source.domains), wave_ids, counts,
                                       _combine(parts, counts.unplanned), switched,
                                       phones_of.get(f"source/{source.id}", PhoneCounts()),
                                       groupware_of.get(source.id, GroupwareCounts()), verification))
    totals = Counts()
    verification = VerifyCounts()
    for line in ministries:
        verification.merge(line.verification)
    for m in mailboxes:
        totals.add(m)
    failures = [FailureLine(m.email, ministry_of.get(m.source_id, m.source_id), m.row.wave, m.row.state,
                            m.row.state_reason or m.row.last_sync_result or "")
                for m in mailboxes if m.row.state == lifecycle.FAILED]
    measured = bool(rates.per_source or rates.overall)
    rate = ("throughput measured in earlier runs" if measured
            else f"the default rate of {project.config.waves.default_rate_mb_s:g} MB/s (no run measured yet)")
    attempted = totals.done + totals.in_progress + totals.failed
    wave_forecasts = forecast(inputs, failure_rate=totals.failed / attempted if attempted else None, now=today,
                              zone=zone)
    for w in waves:
        w.forecast = wave_forecasts[w.id]
    basis = (f"the copy left at {rate}; failure rate so far "
             + (f"{totals.failed:,} of {plural(attempted, 'mailbox')} attempted ({totals.failed / attempted:.0%})"
                if attempted else "not measured yet (nothing attempted)")
             + (f"; {plural(totals.unplanned, 'mailbox')} in no wave not included" if totals.unplanned else ""))
    return ProgrammeReport(project.config.name, now(), totals, ministries, waves, failures,
                           _combine([(w.id, w.completion) for w in waves], totals.unplanned),
                           rate_note=f"estimates use {rate}", groupware=groupware, zone=zone.describe(),
                           forecast=programme_forecast(wave_forecasts, attempted=attempted, failed=totals.failed,
                                                       unplanned=totals.unplanned, basis=basis),
                           phones=phones, domains=sum(len(m.domains) for m in ministries),
                           domains_cut_over=sum(len(m.domains_cut_over) for m in ministries),
                           verification=verification, settings=_settings_counts(store))


def _ministry_share(wave: WaveLine, members: list[MailboxInfo]) -> Completion:
    """A ministry's part of a (possibly shared) wave: done when its own mailboxes in it are."""
    mine = [m for m in members if m.row.wave == wave.id]
    counts = Counts()
    for m in mine:
        counts.add(m)
    if counts.to_migrate and counts.done == counts.to_migrate:
        return Completion(wave.completion.at if wave.completion.status == "done" else None, "done")
    return wave.completion


def _approval(history: list[ApprovalRow], approved_by: str | None) -> tuple[str, str]:
    """(approved | lapsed | not approved, in words) as the store knows it: whether the plan file was edited since
    is for ``plan diff`` (and a run) to say."""
    if history and history[-1].lapsed_at is None:
        return "approved", f"approved by {history[-1].approved_by}"
    if history:
        return "lapsed", "approval lapsed"
    if approved_by:  # a store whose approvals predate the history (no approve event)
        return "approved", f"approved by {approved_by}"
    return "not approved", "not approved"


def as_json(report: ProgrammeReport) -> dict[str, Any]:
    doc = asdict(report)
    for group in [doc["totals"], *(m["counts"] for m in doc["ministries"]), *(w["counts"] for w in doc["waves"])]:
        group["gb_total"] = gb(group["bytes_total"])
        group["gb_moved"] = gb(group["bytes_moved"])
    return doc


CSV_COLUMNS = ("level", "id", "name", "mailboxes", "done", "in_progress", "planned", "unplanned", "failed",
               "skipped", "messages_moved", "messages_total", "messages_not_copied", "gb_moved", "gb_total", "bytes_moved", "bytes_total",
               "domains", "domains_cut_over", "phones", "phones_moved", "calendar_items", "calendar_copied",
               "contacts", "contacts_copied", "window", "approval", "estimated_completion", "completion_status", "note",
               "forecast", "schedule", "days_late", "verified_matched", "verified_differing", "not_verified")


def csv_rows(report: ProgrammeReport) -> list[dict[str, Any]]:
    """One row for the programme, one per ministry, one per wave: a shape spreadsheets take as it is."""

    def row(level: str, id_: str, name: str, counts: Counts, completion: Completion, verified: VerifyCounts,
            **extra: Any) -> dict[str, Any]:
        return {"level": level, "id": id_, "name": name, **asdict(counts), "gb_moved": gb(counts.bytes_moved),
                "gb_total": gb(counts.bytes_total), "estimated_completion": completion.at or "",
                "completion_status": completion.status, "note": completion.note,
                "verified_matched": verified.matched, "verified_differing": verified.differing,
                "not_verified": verified.not_verified + verified.stale, **extra}

    def groupware(g: GroupwareCounts) -> dict[str, int]:
        return {"calendar_items": g.calendar_items, "calendar_copied": g.calendar_copied, "contacts": g.contacts,
                "contacts_copied": g.contacts_copied}

    f = report.forecast
    rows = [row("programme", "", report.programme, report.totals, report.completion, report.verification,
                domains=report.domains, domains_cut_over=report.domains_cut_over, phones=report.phones.total,
                phones_moved=report.phones.moved, forecast=f.forecast_end or "", schedule=f.verdict,
                days_late=f.days_late, **groupware(report.groupware))]
    rows += [row("ministry", m.source_id, m.ministry, m.counts, m.completion, m.verification, domains=len(m.domains),
                 domains_cut_over=len(m.domains_cut_over), phones=m.phones.total, phones_moved=m.phones.moved,
                 **groupware(m.groupware))
             for m in report.ministries]
    rows += [row("wave", w.id, w.title, w.counts, w.completion, w.verification, approval=w.approval,
                 phones=w.phones.total, phones_moved=w.phones.moved,
                 window=f"{w.window_starts} {w.window_hours:g}h" if w.window_starts else "",
                 forecast=w.forecast.forecast_end or "", schedule=w.forecast.status, days_late=w.forecast.days_late)
             for w in report.waves]
    return rows
