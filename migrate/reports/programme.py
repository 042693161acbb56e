"""The programme report for project managers: progress per ministry and per wave, failures, finish dates.

Assembled from the state store only (the waves as approved or generated, the mailboxes' lifecycle and
sync counts, measured throughput) into plain records; the CLI renders them as tables, JSON or CSV, and
a later HTML report can render the same records.

Definitions: a mailbox is *done* when its final pass copied everything (final-synced, cut-over or done);
*moved* counts the messages and bytes govmigrate copied to the central host; *total* is each mailbox's
size at the source as last measured (last sync, else inventory). A wave's *estimated completion* is the
end of its maintenance window (its date, start and length), or later when the copy still to do is
estimated to take longer than the window; a wave without a date has none, and neither then has its
ministry nor the programme. A past window with work left is *overdue*. Mailboxes in no wave make a
ministry's or the programme's completion *partly planned* (the date covers the planned waves only).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from migrate.core import lifecycle
from migrate.core.config import Project
from migrate.core.store import GroupwareSummaryRow, RunRow, Store, WaveRow, now
from migrate.core.units import gb
from migrate.plans.catalog import Catalog, MailboxInfo
from migrate.plans.estimate import Rates, estimate
from migrate.plans.model import PlanWindow

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

    @property
    def to_migrate(self) -> int:
        return self.mailboxes - self.skipped


@dataclass
class Completion:
    #: Local date and time the work is expected to be finished, or None.
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


def local_datetime(utc_text: str) -> dt.datetime:
    """A store timestamp (UTC, ``YYYY-MM-DDTHH:MM:SSZ``) as naive local time, as the windows are written."""
    when = dt.datetime.strptime(utc_text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return when.astimezone().replace(tzinfo=None)


def local_text(utc_text: str | None) -> str | None:
    """A store timestamp in local time to the minute, as reports show it; None for none."""
    return _fmt(local_datetime(utc_text)) if utc_text else None


def _fmt(when: dt.datetime | None) -> str | None:
    return when.strftime("%Y-%m-%d %H:%M") if when else None


def _wave_completion(window: PlanWindow, counts: Counts, remaining_hours: float, last_finish: str | None,
                     today: dt.datetime) -> Completion:
    if counts.to_migrate and counts.done == counts.to_migrate:
        return Completion(local_text(last_finish), "done")
    if not counts.to_migrate:
        return Completion(None, "nothing planned")
    start, end = window.starts(), window.ends()
    if start is None or end is None:
        return Completion(None, "not scheduled", "no window date set")
    if end < today:
        return Completion(None, "overdue", f"the window of {window.date} has passed with work left")
    if remaining_hours > window.hours:
        return Completion(_fmt(start + dt.timedelta(hours=remaining_hours)), "scheduled",
                          f"the copy left (about {remaining_hours:.1f} h) is longer than the window")
    return Completion(_fmt(end), "scheduled")


def _combine(parts: list[tuple[str, Completion]], unplanned: int) -> Completion:
    """The completion of a group of waves: the latest, if every wave with work left has one. Mailboxes in
    no wave make it "partly planned": the date covers the planned waves only."""
    if not parts:
        return Completion(None, "not scheduled" if unplanned else "nothing planned",
                          f"{unplanned} mailbox(es) in no wave" if unplanned else "")
    note = f"{unplanned} mailbox(es) in no wave are not included" if unplanned else ""
    open_ = [(w, c) for w, c in parts if c.status not in ("done", "nothing planned")]
    if not open_:
        latest = max((c.at for _, c in parts if c.at), default=None)
        return Completion(latest, "partly planned" if unplanned else "done", note)
    waiting = [(w, c) for w, c in open_ if c.status in ("not scheduled", "overdue")]
    if waiting:
        kinds = sorted({c.status for _, c in waiting})
        status = "overdue" if kinds == ["overdue"] else "not scheduled"
        return Completion(None, status, f"{', '.join(w for w, _ in waiting)}: {' / '.join(kinds)}"
                          + (f"; {note}" if note else ""))
    latest = max(c.at for _, c in open_ if c.at)
    return Completion(latest, "partly planned" if unplanned else "scheduled", note)


def build_report(project: Project, store: Store, *, today: dt.datetime | None = None) -> ProgrammeReport:
    today = today or dt.datetime.now()
    catalog = Catalog(project, store)
    rates = Rates(project, store)
    mailboxes = catalog.in_sources()
    ministry_of = {s.id: s.ministry for s in project.config.sources}
    runs_by_wave: dict[str | None, list[RunRow]] = {}
    for run in store.runs():
        runs_by_wave.setdefault(run.wave, []).append(run)
    waves: list[WaveLine] = []
    for row in store.waves():
        members = [m for m in mailboxes if m.row.wave == row.id]
        counts = Counts()
        remaining: dict[str, list[int]] = {}
        for m in members:
            counts.add(m)
            if m.row.state not in lifecycle.MOVED and m.row.state != lifecycle.SKIPPED:
                acc = remaining.setdefault(m.source_id, [0, 0])
                acc[0] += 1
                acc[1] += m.remaining_bytes
        hours = estimate(rates, {s: (v[0], v[1]) for s, v in remaining.items()}).hours if remaining else 0.0
        window = _window(row.doc)
        runs = runs_by_wave.get(row.id, [])
        last = runs[-1] if runs else None
        last_finish = max((r.finished_at for r in runs if r.finished_at and r.result == "ok"), default=None)
        doc = row.doc or {}
        waves.append(WaveLine(
            id=row.id, title=doc.get("title", ""), kind=doc.get("kind", "ministry"),
            white_glove=bool(doc.get("white_glove")), approval=_approval(row),
            window_date=window.date.isoformat() if window.date else None, window_start=window.start,
            window_hours=window.hours, cutover_domains=list(doc.get("cutover_domains", [])),
            ministries=sorted({ministry_of.get(m.source_id, m.source_id) for m in members}), counts=counts,
            remaining_hours=round(hours, 2), completion=_wave_completion(window, counts, hours, last_finish, today),
            last_run={"pass": last.pass_name, "started_at": last.started_at, "finished_at": last.finished_at,
                      "result": last.result} if last else None))
    by_wave = {w.id: w for w in waves}
    phones_of: dict[str, PhoneCounts] = {}
    for ext in store.extensions():
        phones_of.setdefault(f"source/{ext.source_id}", PhoneCounts()).add(ext.state)
        if ext.wave in by_wave:
            by_wave[ext.wave].phones.add(ext.state)
    dns_state = {row.domain: row.state for row in store.dns_domains()}
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
        for m in members:
            counts.add(m)
        wave_ids = [w.id for w in waves if any(m.row.wave == w.id for m in members)]
        parts = [(w, _ministry_share(by_wave[w], members)) for w in wave_ids]
        switched = [d for d in source.domains if (dns_state.get(d.lower()) or "") in lifecycle.DOMAIN_SWITCHED]
        ministries.append(MinistryLine(source.id, source.ministry, list(source.domains), wave_ids, counts,
                                       _combine(parts, counts.unplanned), switched,
                                       phones_of.get(f"source/{source.id}", PhoneCounts()),
                                       groupware_of.get(source.id, GroupwareCounts())))
    totals = Counts()
    for m in mailboxes:
        totals.add(m)
    failures = [FailureLine(m.email, ministry_of.get(m.source_id, m.source_id), m.row.wave, m.row.state,
                            m.row.state_reason or m.row.last_sync_result or "")
                for m in mailboxes if m.row.state == lifecycle.FAILED]
    rate = ("throughput measured in earlier runs" if rates.per_source or rates.overall
            else f"the default rate of {project.config.waves.default_rate_mb_s:g} MB/s (no run measured yet)")
    return ProgrammeReport(project.config.name, now(), totals, ministries, waves, failures,
                           _combine([(w.id, w.completion) for w in waves], totals.unplanned),
                           rate_note=f"estimates use {rate}", groupware=groupware, settings=_settings_counts(store))


def _ministry_share(wave: WaveLine, members: list[MailboxInfo]) -> Completion:
    """A ministry's part of a (possibly shared) wave: done when its own mailboxes in it are."""
    mine = [m for m in members if m.row.wave == wave.id]
    counts = Counts()
    for m in mine:
        counts.add(m)
    if counts.to_migrate and counts.done == counts.to_migrate:
        return Completion(wave.completion.at if wave.completion.status == "done" else None, "done")
    return wave.completion


def _approval(row: WaveRow) -> str:
    """As the store knows it: whether the plan file changed since is for ``plan diff`` to say."""
    return f"approved by {row.approved_by}" if row.plan_hash else "not approved"


def as_json(report: ProgrammeReport) -> dict[str, Any]:
    doc = asdict(report)
    for group in [doc["totals"], *(m["counts"] for m in doc["ministries"]), *(w["counts"] for w in doc["waves"])]:
        group["gb_total"] = gb(group["bytes_total"])
        group["gb_moved"] = gb(group["bytes_moved"])
    return doc


CSV_COLUMNS = ("level", "id", "name", "mailboxes", "done", "in_progress", "planned", "unplanned", "failed",
               "skipped", "messages_moved", "messages_total", "gb_moved", "gb_total", "bytes_moved", "bytes_total",
               "domains", "domains_cut_over", "phones", "phones_moved", "calendar_items", "calendar_copied",
               "contacts", "contacts_copied", "window", "approval", "estimated_completion", "completion_status", "note")


def csv_rows(report: ProgrammeReport) -> list[dict[str, Any]]:
    """One row for the programme, one per ministry, one per wave: a shape spreadsheets take as it is."""

    def row(level: str, id_: str, name: str, counts: Counts, completion: Completion, **extra: Any) -> dict[str, Any]:
        return {"level": level, "id": id_, "name": name, **asdict(counts), "gb_moved": gb(counts.bytes_moved),
                "gb_total": gb(counts.bytes_total), "estimated_completion": completion.at or "",
                "completion_status": completion.status, "note": completion.note, **extra}

    def groupware(g: GroupwareCounts) -> dict[str, int]:
        return {"calendar_items": g.calendar_items, "calendar_copied": g.calendar_copied, "contacts": g.contacts,
                "contacts_copied": g.contacts_copied}

    rows = [row("programme", "", report.programme, report.totals, report.completion, **groupware(report.groupware))]
    rows += [row("ministry", m.source_id, m.ministry, m.counts, m.completion, domains=len(m.domains),
                 domains_cut_over=len(m.domains_cut_over), phones=m.phones.total, phones_moved=m.phones.moved,
                 **groupware(m.groupware))
             for m in report.ministries]
    rows += [row("wave", w.id, w.title, w.counts, w.completion, approval=w.approval, phones=w.phones.total,
                 phones_moved=w.phones.moved,
                 window=f"{w.window_date} {w.window_start} {w.window_hours:g}h" if w.window_date else "")
             for w in report.waves]
    return rows
