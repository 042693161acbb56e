"""The HTML reports: one self-contained file each (no network at all: no CDN, no web fonts, no scripts), charts
as inline SVG readable without JavaScript, printable on A4 landscape (a one-page summary first), readable on a
phone, and meant to meet WCAG 2.1 AA (the browser tests audit them with axe-core).

Jinja2 templates (``migrate/templates/``) with autoescaping on and undefined names an error: every name from a
server, a user list or a PBX file is text. The burn-up charts are pygal's SVG (series names and axes are ours,
never data from outside; pygal's configuration script is dropped, since nothing in the file runs), each with a
title, a text alternative and the same numbers as a table; the wave timeline is drawn by the template from
positions computed here. Every time is shown in the programme's time zone, named.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import jinja2
import pygal
from markupsafe import Markup, escape

from migrate.core.store import actor
from migrate.core.timezones import Zone, abbreviation, show
from migrate.core.units import human_bytes
from migrate.reports import words
from migrate.reports.history import WAVE_STATUSES, BurnUp, FailureGroup, Point, wave_status
from migrate.reports.programme import ProgrammeReport, WaveLine
from migrate.reports.record import MILESTONES, WaveRecord

#: Each status's badge and bar: (background, text). Every pair has a contrast of at least 4.5:1, and every
#: status is also written out: colour is never the only signal.
STATUS_COLOURS = {
    "done": ("#2e7d32", "#ffffff"),
    "failing": ("#b71c1c", "#ffffff"),
    "overdue": ("#8e3b00", "#ffffff"),
    "at risk": ("#ffd54f", "#3e2723"),
    "in progress": ("#1565c0", "#ffffff"),
    "not approved": ("#5f6368", "#ffffff"),
    "scheduled": ("#d6e8fa", "#0d3c6e"),
    "not scheduled": ("#eeeeee", "#212121"),
    "nothing planned": ("#f5f5f5", "#424242"),
}
#: The burn-up's lines: done (solid, on top), planned (dashed), forecast (dotted), today (a vertical line).
SERIES = {"planned": ("#5f6368", "8, 5"), "forecast": ("#c43e00", "3, 4"), "today": ("#212121", "2, 3"),
          "done": ("#2e7d32", None)}
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL | re.IGNORECASE)
_PYGAL_TITLE = re.compile(r"<title>Pygal</title>")
#: At most this many x-axis labels on a chart.
MAX_TICKS = 8


class Renderer:
    """The templates' environment, with the filters that show times in the programme's zone and numbers
    with thousands separators."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        env = jinja2.Environment(loader=jinja2.PackageLoader("migrate", "templates"), autoescape=True,
                                 undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                 extensions=["jinja2.ext.do"])
        env.filters.update(size=size, num=num, when=self.when, when_utc=self.when_utc, at=self.at,
                           plain_state=lambda s: words.word(words.MAILBOX_STATES, s),
                           plain_phone=lambda s: words.word(words.PHONE_STATES, s),
                           plain_domain=lambda s: words.word(words.DOMAIN_STATES, s),
                           plain_step=words.step_word, plain_result=lambda s: words.word(words.RUN_RESULTS, s),
                           plain_event=lambda s: words.word(words.EVENTS, s),
                           plain_check=lambda s: words.word(words.CHECK_RESULTS, s),
                           extension=words.extension_text)
        env.globals.update(plural=words.plural, pct=pct, colours=STATUS_COLOURS, wave_status=wave_status,
                           zone=zone, window_text=lambda d, s, h: window_text(d, s, h, zone))
        self.env = env

    def when(self, stamp: str | None) -> Markup:
        """A stored UTC timestamp in the programme's zone, named: ``2030-06-01 22:05 CST`` (in a ``time`` element
        carrying the UTC moment); '' for none; the text itself if it is no timestamp."""
        if not stamp:
            return Markup("")
        try:
            local = self.zone.from_store(stamp)
        except ValueError:
            return escape(stamp)
        return Markup(f'<time datetime="{escape(stamp)}">{_unbroken(show(local))}</time>')

    def when_utc(self, stamp: str | None) -> Markup:
        """As :meth:`when`, with the UTC time beside it, for records: ``2030-06-01 22:05 CST (04:05 UTC)``."""
        shown = self.when(stamp)
        try:
            utc = dt.datetime.strptime(stamp or "", "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return shown
        day = "" if self.zone.from_store(stamp or "").date() == utc.date() else f"{utc:%Y-%m-%d} "
        return shown + Markup(f' <span class="utc">({day}{utc:%H:%M} UTC)</span>')

    def at(self, iso_text: str | None) -> Markup:
        """An ISO 8601 time (the report's records) as people read it, named: ``2030-06-02 04:00 CST`` (never
        broken across lines at its hyphens)."""
        return _unbroken(self.zone.show_iso(iso_text)) if iso_text else Markup("")

    def render(self, template: str, **values: Any) -> str:
        return self.env.get_template(template).render(**values)


def _unbroken(shown: str) -> Markup:
    """A shown time whose date and whose time of day each stay on one line (a line may break between them,
    never at a date's hyphens)."""
    day, _, rest = shown.partition(" ")
    return Markup(f'<span class="when">{escape(day)}</span> <span class="when">{escape(rest)}</span>')


def size(n: int | float | None) -> str:
    """Bytes for people, with thousands separators: ``1,234.5 GB``."""
    text = human_bytes(n or 0) or "0 B"
    number, _, unit = text.partition(" ")
    return f"{float(number):,.1f} {unit}" if unit != "B" else f"{int(float(number)):,} B"


def num(n: int | float | None) -> str:
    return f"{n or 0:,}"


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "–"


def _wall(when: dt.datetime, zone: Zone) -> dt.datetime:
    """An aware time as naive wall-clock time in the zone (the charts' axis)."""
    return when.astimezone(zone.tz).replace(tzinfo=None)


def even_ticks(first: dt.datetime, last: dt.datetime, most: int = MAX_TICKS) -> list[dt.datetime]:
    """Evenly spaced midnights covering [first, last]: every day, 2, 7, 14 or 28 days, whichever gives at most
    ``most`` labels."""
    start = dt.datetime.combine(first.date(), dt.time())
    days = max(1, (last - start).days + 1)
    step = next((s for s in (1, 2, 7, 14, 28, 56, 91, 182, 364) if days / s <= most - 1), 364)
    if step >= 7:  # weekly and longer steps start on a Monday
        start -= dt.timedelta(days=start.weekday())
    ticks = [start]
    while ticks[-1] < last:
        ticks.append(ticks[-1] + dt.timedelta(days=step))
    return ticks


def _daily(points: list[Point]) -> list[Point]:
    """A line's points thinned to the last of each day (the first point kept): a programme of thousands of
    mailboxes draws and tabulates one point a day, not one per state change."""
    out: list[Point] = []
    for p in points:
        if len(out) > 1 and out[-1].at.date() == p.at.date():
            out[-1] = p
        else:
            out.append(p)
    return out


def chart_series(burn: BurnUp) -> dict[str, list[Point]]:
    return {"done": _daily(burn.actual), "planned": burn.planned, "forecast": burn.forecast}


def _unit(burn: BurnUp) -> tuple[str, float]:
    return ("GB", 1e9) if burn.total_bytes >= 1e9 else ("MB", 1e6)


def burn_up_svg(burn: BurnUp, zone: Zone, *, by_bytes: bool = False) -> Markup:
    """A burn-up chart as inline SVG: done, planned, forecast and today, with titled axes, evenly spaced dates
    and a text alternative (``role="img"`` and ``aria-label``)."""
    unit, scale = _unit(burn)
    series = chart_series(burn)
    now = burn.now or zone.now()
    moments = [p.at for line in series.values() for p in line] + [now]
    first, last = _wall(min(moments), zone), _wall(max(moments), zone)
    ceiling = (burn.total_bytes / scale) if by_bytes else burn.total_mailboxes
    chart = pygal.DateTimeLine(
        js=[], disable_xml_declaration=True, width=760, height=400, dots_size=3, show_dots=True,
        x_label_rotation=0, truncate_label=-1, truncate_legend=-1, legend_at_bottom=True,
        legend_at_bottom_columns=4, show_x_guides=True, margin_right=36,
        x_labels=even_ticks(first, last), x_value_formatter=lambda d: d.strftime("%d %b %Y"),
        x_title=f"date ({zone.name})", y_title=f"data done ({unit})" if by_bytes else "mailboxes done",
        value_formatter=(lambda v: f"{v:,.1f}") if by_bytes else (lambda v: f"{v:,.0f}"),
        range=(0, max(1, ceiling)),
        style=pygal.style.Style(background="white", plot_background="white", font_family="DejaVu Sans, sans-serif",
                                foreground="#212121", foreground_strong="#212121", foreground_subtle="#616161",
                                label_font_size=15, major_label_font_size=15, legend_font_size=15,
                                title_font_size=17, value_font_size=14, tooltip_font_size=14,
                                colors=tuple(colour for colour, _ in SERIES.values())))

    def values(points: list[Point]) -> list[tuple[dt.datetime, float]]:
        return [(_wall(p.at, zone), (p.bytes / scale) if by_bytes else p.mailboxes) for p in points]

    for name, (_colour, dashes) in SERIES.items():
        stroke: dict[str, Any] = {"width": 4 if name == "done" else 2.5}
        if dashes:
            stroke["dasharray"] = dashes
        if name == "today":
            chart.add("today", [(_wall(now, zone), 0), (_wall(now, zone), max(1, ceiling))], stroke_style=stroke,
                      show_dots=False)
        else:
            chart.add(name, values(series[name]), stroke_style=stroke)
    title = f"Burn-up: {'data' if by_bytes else 'mailboxes'} done over time"
    svg = _SCRIPT.sub("", chart.render(is_unicode=True))
    # pygal names each legend entry's element the same in every chart: ids must be unique in the page.
    svg = svg.replace('id="activate-serie-', f'id="{"bytes" if by_bytes else "mailboxes"}-activate-serie-')
    svg = _PYGAL_TITLE.sub(f"<title>{escape(title)}</title>", svg, count=1)
    label = escape(f"{title}. {chart_summary(burn, zone, by_bytes=by_bytes)}")
    return Markup(svg.replace("<svg ", f'<svg role="img" aria-label="{label}" ', 1))


def chart_summary(burn: BurnUp, zone: Zone, *, by_bytes: bool = False) -> str:
    """The chart in one sentence (its text alternative)."""
    unit, scale = _unit(burn)

    def amount(p: Point) -> str:
        return f"{p.bytes / scale:,.1f} {unit}" if by_bytes else words.plural(p.mailboxes, "mailbox")

    total = (f"{burn.total_bytes / scale:,.1f} {unit}" if by_bytes
             else words.plural(burn.total_mailboxes, "mailbox"))
    parts = [f"{amount(burn.actual[-1]) if burn.actual else 'nothing'} done of {total} by {show(burn.now)}"]
    if burn.planned:
        parts.append(f"the plan reaches {amount(burn.planned[-1])} on {show(burn.planned[-1].at)}")
    if burn.forecast:
        parts.append(f"the forecast reaches {amount(burn.forecast[-1])} on {show(burn.forecast[-1].at)}")
    return "; ".join(parts) + "."


def chart_table(burn: BurnUp, *, by_bytes: bool = False) -> dict[str, Any]:
    """The chart's numbers as rows (one per moment any line has a point) for the table beside it."""
    unit, scale = _unit(burn)
    rows: dict[dt.datetime, dict[str, str]] = {}
    for name, points in chart_series(burn).items():
        for p in points:
            value = f"{p.bytes / scale:,.1f}" if by_bytes else f"{p.mailboxes:,}"
            rows.setdefault(p.at, {})[name] = value
    return {"unit": unit if by_bytes else "mailboxes",
            "rows": [{"at": show(at), **cells} for at, cells in sorted(rows.items())]}


def timeline(waves: list[WaveLine], today: dt.date) -> dict[str, Any]:
    """Positions of the timeline's bars (one per scheduled wave, on its window date), in a 1000-wide box; the
    rows get closer with many waves, so that a programme of 50 waves prints on one page."""
    dated = [w for w in waves if w.window_date]
    unscheduled = [w for w in waves if not w.window_date]
    if not dated:
        return {"rows": [], "height": 0, "ticks": [], "unscheduled": unscheduled, "statuses": WAVE_STATUSES}
    pitch = 24 if len(dated) <= 15 else (16 if len(dated) <= 30 else 12)
    font = 13 if pitch == 24 else (11 if pitch == 16 else 9)
    dates = [dt.date.fromisoformat(w.window_date or "") for w in dated] + [today]
    first, last = min(dates), max(dates) + dt.timedelta(days=1)
    span = max(1, (last - first).days)

    def x(day: dt.date) -> float:
        return 170 + 810 * (day - first).days / span

    rows = []
    top = 40
    for i, w in enumerate(dated):
        day = dt.date.fromisoformat(w.window_date or "")
        status = wave_status(w)
        left, width = round(x(day), 1), max(6.0, round(810 / span, 1))
        late = left > 700  # the label goes right of its bar, or left of it near the right edge
        rows.append({"wave": w.id, "title": w.title, "date": w.window_date, "status": status,
                     "colour": STATUS_COLOURS[status][0], "x": left, "y": top + pitch * i, "width": width,
                     "height": pitch - 6, "label_x": left - 4 if late else left + width + 4,
                     "anchor": "end" if late else "start",
                     "done": f"{w.counts.done:,} of {w.counts.to_migrate:,} done"})
    ticks = [dt.datetime.combine(t, dt.time()) for t in (first, last)]
    ticks = even_ticks(ticks[0], ticks[1], most=7)
    return {"rows": rows, "height": top + pitch * len(dated) + 10, "font": font, "pitch": pitch,
            "today_x": round(x(today), 1), "today": today.isoformat(),
            "ticks": [{"x": round(x(t.date()), 1), "label": t.strftime("%d %b")} for t in ticks
                      if first <= t.date() <= last],
            "unscheduled": unscheduled, "statuses": WAVE_STATUSES}


def render_programme(report: ProgrammeReport, burn: BurnUp, failures: list[FailureGroup], *, workspace: Path,
                     zone: Zone, today: dt.datetime | None = None) -> str:
    now = today or burn.now or zone.now()
    attention = [w for w in report.waves if wave_status(w) in ("failing", "overdue", "at risk")]
    return Renderer(zone).render(
        "programme.html.j2",
        r=report, t=report.totals, f=report.forecast, burn=burn, failures=failures, attention=attention,
        show_domains=bool(report.domains), show_phones=bool(report.phones.total),
        show_groupware=report.groupware.any,
        mailboxes_chart=burn_up_svg(burn, zone) if burn.actual or burn.planned else None,
        bytes_chart=burn_up_svg(burn, zone, by_bytes=True) if burn.actual or burn.planned else None,
        mailboxes_table=chart_table(burn), bytes_table=chart_table(burn, by_bytes=True),
        timeline=timeline(report.waves, now.astimezone(zone.tz).date()),
        generated=show(now), zone_text=report.zone, zone_abbr=abbreviation(now.astimezone(zone.tz)),
        workspace=str(workspace.resolve()), who=actor())


def window_text(date: str | None, start: str, hours: float, zone: Zone) -> str:
    """A window with its zone: ``2030-06-01 22:00 CST to 2030-06-02 04:00 CST (6 h)``; '' when it has no date."""
    if not date:
        return ""
    begins = zone.wall(dt.datetime.combine(dt.date.fromisoformat(date), dt.time.fromisoformat(start)))
    return f"{show(begins)} to {show(begins + dt.timedelta(hours=hours))} ({hours:g} h)"


def render_wave(record: WaveRecord, *, workspace: Path, generated_at: str, zone: Zone,
                line: WaveLine | None = None) -> str:
    """The wave's record; ``line`` (its line of the programme report) adds its schedule and forecast."""
    renderer = Renderer(zone)
    return renderer.render(
        "wave.html.j2", w=record, line=line, milestones=[name for name, _ in MILESTONES],
        window=window_text(record.window_date, record.window_start, record.window_hours, zone),
        generated=renderer.when(generated_at), zone_text=zone.describe(), workspace=str(workspace.resolve()),
        who=actor())
