"""The HTML reports: one self-contained file each (no network at all: no CDN, no web fonts, no scripts), charts
as inline SVG readable without JavaScript, printable on A4 landscape.

Jinja2 templates (``migrate/templates/``) with autoescaping on and undefined names an error: every name from a
server, a user list or a PBX file is text. The burn-up chart is pygal's SVG (series names and axes are ours,
never data from outside; pygal's configuration script is dropped, since nothing in the file runs); the wave
timeline is drawn by the template from positions computed here.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import jinja2
import pygal
from markupsafe import Markup

from migrate.cli.output import human_bytes
from migrate.core.store import actor
from migrate.reports.history import STAMP, WAVE_STATUSES, BurnUp, FailureGroup, wave_status
from migrate.reports.programme import ProgrammeReport, WaveLine, local_text
from migrate.reports.record import MILESTONES, WaveRecord

#: Colours of the timeline and the legend (also told in words: colour is never the only signal).
STATUS_COLOURS = {"done": "#2e7d32", "in progress": "#1565c0", "overdue": "#c62828", "not approved": "#9e9e9e",
                  "scheduled": "#90caf9", "not scheduled": "#e0e0e0"}
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL | re.IGNORECASE)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("migrate", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["bytes"] = lambda n: human_bytes(n) or "0 B"
    env.filters["when"] = _when
    return env


def _when(utc_text: str | None) -> str:
    """A stored UTC timestamp as local time, to the minute; '' for none, the text itself if it is no timestamp."""
    try:
        return local_text(utc_text) or ""
    except ValueError:
        return utc_text or ""


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "–"


def burn_up_svg(burn: BurnUp, *, by_bytes: bool = False) -> Markup:
    """The burn-up chart as inline SVG: done (from the event log) and planned (from the windows)."""
    chart = pygal.DateTimeLine(js=[], disable_xml_declaration=True, width=1000, height=330, dots_size=2,
                               show_dots=True, x_label_rotation=20, truncate_label=-1, legend_at_bottom=True,
                               x_value_formatter=lambda d: d.strftime("%Y-%m-%d"),
                               value_formatter=(lambda v: human_bytes(int(v)) or "0 B") if by_bytes else
                               (lambda v: f"{v:.0f}"), range=(0, max(1, burn.total_bytes if by_bytes else
                                                                  burn.total_mailboxes)),
                               style=pygal.style.Style(background="white", plot_background="white",
                                                       font_family="sans-serif", colors=("#2e7d32", "#1565c0")))

    def series(points) -> list[tuple[dt.datetime, int]]:
        return [(dt.datetime.strptime(p.at, STAMP), p.bytes if by_bytes else p.mailboxes)
                for p in points]

    chart.add("done", series(burn.actual), stroke_style={"width": 3})
    chart.add("planned", series(burn.planned), stroke_style={"width": 2, "dasharray": "6, 4"})
    svg = chart.render(is_unicode=True)
    return Markup(_SCRIPT.sub("", svg))


def timeline(waves: list[WaveLine], today: dt.date) -> dict[str, Any]:
    """Positions of the timeline's bars (one per scheduled wave, on its window date), in a 1000-wide box."""
    dated = [w for w in waves if w.window_date]
    rows = []
    if dated:
        dates = [dt.date.fromisoformat(w.window_date or "") for w in dated] + [today]
        first, last = min(dates), max(dates) + dt.timedelta(days=1)
        span = max(1, (last - first).days)

        def x(day: dt.date) -> float:
            return 160 + 820 * (day - first).days / span

        for i, w in enumerate(dated):
            day = dt.date.fromisoformat(w.window_date or "")
            status = wave_status(w)
            left, width = round(x(day), 1), max(6.0, round(820 / span, 1))
            # The label goes right of its bar, or left of it near the right edge.
            late = left > 760
            rows.append({"wave": w.id, "title": w.title, "date": w.window_date, "status": status,
                         "colour": STATUS_COLOURS[status], "x": left, "y": 30 + 22 * i, "width": width,
                         "label_x": left - 4 if late else left + width + 4, "anchor": "end" if late else "start",
                         "done": f"{w.counts.done}/{w.counts.to_migrate}"})
        ticks = sorted({first, *(dt.date.fromisoformat(w.window_date or "") for w in dated[:: max(1, len(dated) // 8)])})
        return {"rows": rows, "height": 50 + 22 * len(dated), "today_x": round(x(today), 1),
                "ticks": [{"x": round(x(t), 1), "label": t.isoformat()} for t in ticks],
                "unscheduled": [w for w in waves if not w.window_date], "statuses": WAVE_STATUSES}
    return {"rows": [], "height": 0, "today_x": 0, "ticks": [], "statuses": WAVE_STATUSES,
            "unscheduled": list(waves)}


def render_programme(report: ProgrammeReport, burn: BurnUp, failures: list[FailureGroup], *, workspace: Path,
                     today: dt.date | None = None) -> str:
    today = today or dt.date.today()
    t = report.totals
    show_domains = any(m.domains_cut_over for m in report.ministries) or any(w.cutover_domains for w in report.waves)
    show_phones = any(m.phones.total for m in report.ministries)
    show_groupware = report.groupware.any
    return _environment().get_template("programme.html.j2").render(
        r=report, t=t, burn=burn, failures=failures, show_domains=show_domains, show_phones=show_phones,
        show_groupware=show_groupware,
        mailboxes_chart=burn_up_svg(burn), bytes_chart=burn_up_svg(burn, by_bytes=True),
        timeline=timeline(report.waves, today), colours=STATUS_COLOURS, wave_status=wave_status, pct=_pct,
        generated=_when(report.generated_at), workspace=str(workspace.resolve()), who=actor())


def render_wave(record: WaveRecord, *, workspace: Path, generated_at: str) -> str:
    return _environment().get_template("wave.html.j2").render(
        w=record, milestones=[name for name, _ in MILESTONES], generated=_when(generated_at),
        workspace=str(workspace.resolve()), who=actor())
