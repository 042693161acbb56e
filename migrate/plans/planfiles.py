"""Reading, checking and writing the plan directory: ``plans/index.yaml`` and one ``plans/<wave>.yaml`` per wave.

:func:`load_plan` reads every file and reports every problem at once as ``file:line: field: message``,
the way the project file is checked: schema errors (unknown keys, bad dates, bad addresses), a wave file
whose ``wave`` is not its file name, waves missing from the index or files missing for it, mailboxes no
user list names, listed twice, or in two waves, and ``cutover_domains`` that do not match the waves'
order. Warnings point at what is legal but probably unwanted: a wave over the limits or longer than its
window, a mailbox flagged skip or not inventoried, mailboxes in no wave, windows out of order.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from migrate.core.config import Project
from migrate.core.errors import Problem, UsageError, ValidationFailed
from migrate.core.store import Store
from migrate.core.units import human_bytes
from migrate.core.yamlsrc import Located, load_yaml, load_yaml_file, pydantic_problems
from migrate.plans.catalog import Catalog
from migrate.plans.estimate import Estimate, Rates, estimate, format_hours
from migrate.plans.model import INDEX_FILE, IndexFile, WaveFile
from migrate.plans.planner import cutover_domains
from migrate.plans.render import render_index, render_wave


@dataclass
class WaveFacts:
    """What a wave amounts to, from the store: sizes, estimate, and advice for people."""

    mailboxes: int
    messages: int
    bytes: int
    unknown_size: int
    by_source: dict[str, tuple[int, int]]
    estimate: Estimate
    warnings: list[str] = field(default_factory=list)


def wave_facts(wave: WaveFile, catalog: Catalog, rates: Rates, project: Project) -> WaveFacts:
    policy = project.config.waves
    by_source: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    messages = nbytes = unknown = 0
    for email in wave.mailboxes:
        info = catalog.get(email)
        if info is None:
            continue
        if info.size is None:
            unknown += 1
        by_source[info.source_id][0] += 1
        by_source[info.source_id][1] += info.size or 0
        messages += info.messages or 0
        nbytes += info.size or 0
    sizes = {s: (v[0], v[1]) for s, v in by_source.items() if s in {x.id for x in project.config.sources}}
    est = estimate(rates, sizes)
    warnings = []
    if len(wave.mailboxes) > policy.max_mailboxes:
        warnings.append(f"{len(wave.mailboxes)} mailboxes: more than the {policy.max_mailboxes} per wave of the "
                        "wave policy")
    if nbytes > policy.max_gb * 1e9:
        warnings.append(f"{nbytes / 1e9:.1f} GB: more than the {policy.max_gb:g} GB per wave of the wave policy")
    if not est.fits(wave.window.hours):
        warnings.append(f"the estimated copy time ({format_hours(est.hours)}) does not fit the "
                        f"{wave.window.hours:g} h window")
    if unknown:
        warnings.append(f"{unknown} mailbox(es) of unknown size (not inventoried): the estimate leaves them out")
    if wave.kind == "ministry" and len(by_source) > 1:
        warnings.append(f"a ministry wave with mailboxes of {len(by_source)} sources ({', '.join(sorted(by_source))})")
    return WaveFacts(len(wave.mailboxes), messages, nbytes, unknown, {s: (v[0], v[1]) for s, v in by_source.items()},
                     est, warnings)


def wave_header(wave: WaveFile, facts: WaveFacts, catalog: Catalog) -> list[str]:
    sources = ", ".join(sorted(facts.by_source)) or "no source"
    w = wave.window
    when = (f"{w.date.isoformat()} from {w.start} for {w.hours:g} h" if w.date
            else f"not scheduled yet ({w.hours:g} h from {w.start})")
    lines = [f"Wave {wave.wave}: {wave.title}" + (" (white-glove)" if wave.white_glove else ""),
             f"  {facts.mailboxes} mailboxes from {sources}, {facts.messages} messages, {human_bytes(facts.bytes)}"
             + (f"; {len(wave.extensions)} phone extension(s)" if wave.extensions else ""),
             f"  estimated copy time: {facts.estimate.description}",
             f"  window: {when}"]
    if wave.cutover_domains:
        lines.append(f"  cut-over after this wave: {', '.join(wave.cutover_domains)}")
    lines += [f"  WARNING: {w_}" for w_ in facts.warnings]
    return lines


def extension_notes(wave: WaveFile, catalog: Catalog) -> dict[str, str]:
    notes = {}
    for key in wave.extensions:
        ext = catalog.extensions.get(key)
        if ext is None:
            notes[key] = "not in the phone inventory"
            continue
        user = catalog.extension_user(key)
        parts = [ext.name] if ext.name else []
        if user:
            parts.append(f"user {user}" + (" (linked by name only: confirm)" if ext.link == "name" else ""))
        else:
            parts.append("no user")
        if ext.dids:
            parts.append("DIDs " + " ".join(ext.dids))
        if ext.state not in ("new", "planned"):
            parts.append(ext.state)
        if ext.held:
            parts.append("HELD by an error in the PBX files (govmigrate inventory phones says which)")
        notes[key] = ", ".join(parts)
    return notes


def mailbox_notes(wave: WaveFile, catalog: Catalog) -> dict[str, str]:
    notes = {}
    for email in wave.mailboxes:
        info = catalog.get(email)
        if info is None:
            notes[email.lower()] = "not in any user list"
            continue
        parts = [info.row.display_name] if info.row.display_name else []
        parts.append(f"{info.messages} messages, {human_bytes(info.size)}" if info.size is not None
                     else "size unknown")
        parts += sorted(f for f in info.flags if f in ("vip", "pilot", "skip"))
        if info.row.state not in ("new", "planned"):
            parts.append(info.row.state)
        to_move, cannot = info.settings.get("to-move", 0), info.settings.get("cannot-move", 0)
        if to_move or cannot:
            parts.append(f"rules/out-of-office/sharing: {to_move} to move"
                         + (f", {cannot} cannot be moved, tell the user" if cannot else ""))
        notes[email.lower()] = ", ".join(parts)
    return notes


@dataclass
class WavePlan:
    id: str
    path: Path
    data: WaveFile | None
    located: Located | None

    @property
    def hash(self) -> str:
        assert self.data is not None
        return self.data.hash

    @property
    def hashes(self) -> tuple[str, ...]:
        """Every hash an approval of this wave as it stands may have been recorded with (current, legacy)."""
        assert self.data is not None
        return self.data.hash, self.data.legacy_hash

    def line_of(self, *path: str | int) -> int | None:
        return self.located.line_of(tuple(path)) if self.located else None


@dataclass
class Plan:
    directory: Path
    index_path: Path
    index: IndexFile | None
    index_located: Located | None
    waves: dict[str, WavePlan]
    #: Wave ids in the order they run (those of the index that have a file).
    order: list[str]
    problems: list[Problem]
    facts: dict[str, WaveFacts] = field(default_factory=dict)

    def wave(self, wave_id: str) -> WavePlan:
        if wave_id not in self.waves:
            known = ", ".join(self.order or sorted(self.waves)) or "none"
            raise UsageError(f"no wave {wave_id!r} in {self.directory} (waves: {known})")
        return self.waves[wave_id]

    def wave_of(self, email: str) -> str | None:
        for wave_id, wp in self.waves.items():
            if wp.data is not None and email.lower() in (m.lower() for m in wp.data.mailboxes):
                return wave_id
        return None

    def errors(self, wave_id: str | None = None) -> list[Problem]:
        """Errors in the whole plan, or those that concern one wave: its file's and the index's."""
        errs = [p for p in self.problems if p.severity == "error"]
        if wave_id is None:
            return errs
        files = {str(self.index_path), str(self.wave(wave_id).path)}
        return [p for p in errs if p.file in files]

    def require_valid(self, wave_id: str | None = None) -> None:
        if self.errors(wave_id):
            what = f"wave plan {self.wave(wave_id).path}" if wave_id else f"wave plan in {self.directory}"
            relevant = [p for p in self.problems if wave_id is None
                        or p.file in {str(self.index_path), str(self.wave(wave_id).path)}]
            raise ValidationFailed(what, relevant)

    def position(self, wave_id: str) -> int:
        return self.order.index(wave_id) if wave_id in self.order else len(self.order)

    def relative(self, path: Path) -> str:
        try:
            return os.path.relpath(path, self.directory.parent)
        except ValueError:
            return str(path)


def plan_exists(directory: Path) -> bool:
    return (directory / INDEX_FILE).exists() or any(directory.glob("*.yaml"))


def load_plan(directory: Path, project: Project, store: Store, catalog: Catalog | None = None) -> Plan:
    """Read and check every plan file; problems are collected, never raised (see :meth:`Plan.require_valid`)."""
    if not directory.is_dir() or not plan_exists(directory):
        raise UsageError(f"no wave plan in {directory}", hint="generate one with: govmigrate plan generate")
    catalog = catalog or Catalog(project, store)
    problems: list[Problem] = []
    index_path = directory / INDEX_FILE
    index, index_located = _load_model(index_path, IndexFile, problems)
    listed = list(index.waves) if index else []
    files = {p.stem: p for p in sorted(directory.glob("*.yaml")) if p.name != INDEX_FILE and not p.name.startswith(".")}
    waves: dict[str, WavePlan] = {}
    for i, wave_id in enumerate(listed):
        if listed.index(wave_id) != i:
            problems.append(Problem(str(index_path), _line(index_located, "waves", i), f"waves[{i}]",
                                    f"{wave_id} is listed twice"))
        elif wave_id not in files:
            problems.append(Problem(str(index_path), _line(index_located, "waves", i), f"waves[{i}]",
                                    f"no plan file {directory / (wave_id + '.yaml')} for this wave"))
    for stem, path in files.items():
        data, located = _load_model(path, WaveFile, problems)
        waves[stem] = WavePlan(stem, path, data, located)
        if data is not None and data.wave != stem:
            problems.append(Problem(str(path), _line(located, "wave"), "wave",
                                    f"the wave in {path.name} must be called {stem!r} (file name and wave id agree)"))
        if index is not None and stem not in listed:
            problems.append(Problem(str(path), 1, "", f"wave {stem} is not listed in {index_path}; add it to "
                                    "waves: there (where it should run) or delete this file"))
    order = [w for w in dict.fromkeys(listed) if w in files]
    plan = Plan(directory, index_path, index, index_located, waves, order, problems)
    _check_members(plan, catalog, problems)
    _check_extensions(plan, catalog, problems)
    _check_cutover(plan, project, problems)
    rates = Rates(project, store)
    for wave_id, wp in waves.items():
        if wp.data is None:
            continue
        facts = wave_facts(wp.data, catalog, rates, project)
        plan.facts[wave_id] = facts
        for text in facts.warnings:
            problems.append(Problem(str(wp.path), _line(wp.located, "mailboxes"), "mailboxes", text, "warning"))
    _check_windows(plan, problems)
    _check_unplanned(plan, catalog, project, problems)
    problems.sort(key=lambda p: (p.file, p.line or 0, p.field))
    return plan


def _line(located: Located | None, *path: str | int) -> int | None:
    return located.line_of(tuple(path)) if located else None


def _load_model(path: Path, model: type, problems: list[Problem]):
    try:
        located = load_yaml_file(path)
    except ValueError:  # a scalar YAML reads as a timestamp but is no real date (2027-02-31)
        located = load_yaml(_quote_bad_timestamps(path.read_text(encoding="utf-8")), str(path))
    problems.extend(located.problems)
    if located.data is None and located.problems:
        return None, located
    if not isinstance(located.data, dict):
        problems.append(Problem(str(path), 1, "", "a plan file must be a YAML mapping"))
        return None, located
    try:
        return model.model_validate(located.data), located
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, located, str(path)))
        return None, located


def _quote_bad_timestamps(text: str) -> str:
    """Quote the scalars that YAML reads as timestamps but that are no real date (2027-02-31), so that
    they load as text and the schema reports them at their line like any other bad value."""
    loader = yaml.SafeLoader("")
    spans = []
    try:
        stack = [yaml.compose(text, Loader=yaml.SafeLoader)]
        while stack:
            node = stack.pop()
            if isinstance(node, yaml.MappingNode):
                stack += [v for pair in node.value for v in pair]
            elif isinstance(node, yaml.SequenceNode):
                stack += node.value
            elif node is not None and node.tag == "tag:yaml.org,2002:timestamp":
                try:
                    loader.construct_object(node, deep=True)
                except ValueError:
                    spans.append((node.start_mark.index, node.end_mark.index, node.value))
    finally:
        loader.dispose()
    for begin, end, value in sorted(spans, reverse=True):
        text = text[:begin] + json.dumps(value) + text[end:]
    return text


def _check_members(plan: Plan, catalog: Catalog, problems: list[Problem]) -> None:
    seen: dict[str, tuple[str, int | None]] = {}
    excluded = {e.email.lower() for e in plan.index.excluded} if plan.index else set()
    for wave_id in [*plan.order, *sorted(set(plan.waves) - set(plan.order))]:
        wp = plan.waves[wave_id]
        if wp.data is None:
            continue
        here: set[str] = set()
        for i, email in enumerate(wp.data.mailboxes):
            key = email.lower()
            line = wp.line_of("mailboxes", i)
            where = f"mailboxes[{i}]"
            if key in here:
                problems.append(Problem(str(wp.path), line, where, f"{email} is listed twice in this wave"))
                continue
            here.add(key)
            if key in seen:
                other, other_line = seen[key]
                at = f"{plan.waves[other].path}" + (f":{other_line}" if other_line else "")
                problems.append(Problem(str(wp.path), line, where, f"{email} is also in wave {other} ({at}); a "
                                        "mailbox belongs to one wave"))
                continue
            seen[key] = (wave_id, line)
            info = catalog.get(email)
            if info is None:
                problems.append(Problem(str(wp.path), line, where, f"{email} is not in any user list"))
                continue
            if "skip" in info.flags:
                problems.append(Problem(str(wp.path), line, where, f"{email} is flagged skip in the user list: "
                                        "a run leaves it out", "warning"))
            elif info.measured is not True:
                why = info.inventory_error or "not measured yet"
                problems.append(Problem(str(wp.path), line, where, f"{email}: inventory {why}", "warning"))
            if key in excluded:
                problems.append(Problem(str(wp.path), line, where, f"{email} is also under excluded in the index",
                                        "warning"))


def _check_extensions(plan: Plan, catalog: Catalog, problems: list[Problem]) -> None:
    """Each extension in one wave at most, known to the phone inventory, and (a warning) with its user."""
    seen: dict[str, str] = {}
    wave_of_mailbox = {e.lower(): w for w in plan.order if plan.waves[w].data
                       for e in plan.waves[w].data.mailboxes}  # type: ignore[union-attr]
    for wave_id in plan.order:
        wp = plan.waves[wave_id]
        if wp.data is None:
            continue
        for i, key in enumerate(wp.data.extensions):
            line, where = wp.line_of("extensions", i), f"extensions[{i}]"
            if key in seen:
                problems.append(Problem(str(wp.path), line, where, f"{key} is also in wave {seen[key]}: an extension "
                                        "moves in one wave"))
                continue
            seen[key] = wave_id
            if key not in catalog.extensions:
                problems.append(Problem(str(wp.path), line, where, f"{key} is not in the phone inventory "
                                        "(govmigrate inventory phones reads the PBX files)"))
                continue
            user = catalog.extension_user(key)
            if user and wave_of_mailbox.get(user) not in (None, wave_id):
                problems.append(Problem(str(wp.path), line, where, f"{key} belongs to {user}, whose mailbox moves in "
                                        f"{wave_of_mailbox[user]}: phone and mail would move apart", "warning"))


def _check_cutover(plan: Plan, project: Project, problems: list[Problem]) -> None:
    known = {d.lower() for s in project.config.sources for d in s.domains}
    unknown: set[tuple[str, str]] = set()
    for wave_id, wp in plan.waves.items():
        for i, d in enumerate(wp.data.cutover_domains if wp.data else []):
            if d not in known:
                unknown.add((wave_id, d))
                problems.append(Problem(str(wp.path), wp.line_of("cutover_domains", i) or wp.line_of("cutover_domains"),
                                        f"cutover_domains[{i}]", f"{d} is not a domain of any source in "
                                        f"{project.path.name}: a cut-over can only switch a ministry's domain"))
    if unknown or any(plan.waves[w].data is None for w in plan.order):
        return  # the order of mailboxes is not known while a wave file is broken
    expected = cutover_domains([(w, plan.waves[w].data.mailboxes) for w in plan.order])  # type: ignore[union-attr]
    last_of = {d: w for w, domains in expected.items() for d in domains}
    for wave_id in plan.order:
        wp = plan.waves[wave_id]
        listed = set(wp.data.cutover_domains)  # type: ignore[union-attr]
        want = set(expected[wave_id])
        if listed == want:
            continue
        reasons = []
        for d in sorted(want - listed):
            reasons.append(f"{d} is missing (its last mailboxes move in this wave)")
        for d in sorted(listed - want):
            reasons.append(f"{d} does not belong here ("
                           + (f"its last mailboxes move in {last_of[d]}" if d in last_of else "no wave moves it")
                           + ")")
        problems.append(Problem(str(wp.path), wp.line_of("cutover_domains"), "cutover_domains",
                                f"should be [{', '.join(sorted(want))}]: " + "; ".join(reasons)))


def _check_windows(plan: Plan, problems: list[Problem]) -> None:
    previous: tuple[str, dt.date] | None = None
    for wave_id in plan.order:
        data = plan.waves[wave_id].data
        if data is None or data.window.date is None:
            continue
        if previous and data.window.date < previous[1]:
            problems.append(Problem(str(plan.waves[wave_id].path), plan.waves[wave_id].line_of("window", "date"),
                                    "window.date", f"{data.window.date} is before the window of {previous[0]} "
                                    f"({previous[1]}), which runs earlier", "warning"))
        previous = (wave_id, data.window.date)


def _check_unplanned(plan: Plan, catalog: Catalog, project: Project, problems: list[Problem]) -> None:
    if plan.index is None:
        return
    planned = {m.lower() for wp in plan.waves.values() if wp.data for m in wp.data.mailboxes}
    excluded = {e.email.lower() for e in plan.index.excluded}
    loose = [m for m in catalog.in_sources() if m.email.lower() not in planned | excluded and "skip" not in m.flags]
    if loose:
        shown = ", ".join(m.email for m in loose[:5]) + (", ..." if len(loose) > 5 else "")
        problems.append(Problem(str(plan.index_path), _line(plan.index_located, "waves"), "waves",
                                f"{len(loose)} mailbox(es) in the user lists are in no wave and not excluded: {shown} "
                                "(govmigrate plan move USER --to WAVE, or plan generate --replace)", "warning"))
    by_domain: dict[str, list[str]] = defaultdict(list)
    for m in catalog.in_sources():
        if m.email.lower() not in planned and "skip" not in m.flags:
            by_domain[m.domain].append(m.email)
    cut = {d: w for w in plan.order if plan.waves[w].data for d in plan.waves[w].data.cutover_domains}
    for domain, emails in sorted(by_domain.items()):
        if domain in cut:
            problems.append(Problem(str(plan.index_path), _line(plan.index_located, "excluded"), "excluded",
                                    f"{domain} is cut over after {cut[domain]}, but {len(emails)} of its mailboxes are "
                                    f"in no wave ({', '.join(emails[:3])}{', ...' if len(emails) > 3 else ''}): "
                                    "their old mail would stay behind", "warning"))


# -- writing ------------------------------------------------------------------------------------------


def write_wave(path: Path, wave: WaveFile, catalog: Catalog, rates: Rates, project: Project) -> WaveFacts:
    facts = wave_facts(wave, catalog, rates, project)
    text = render_wave(wave, header=wave_header(wave, facts, catalog), mailbox_notes=mailbox_notes(wave, catalog),
                       extension_notes=extension_notes(wave, catalog))
    _atomic_write(path, _reads_back(text, wave, path))
    return facts


def write_index(path: Path, index: IndexFile, waves: dict[str, WaveFile], facts: dict[str, WaveFacts],
                warnings: list[str]) -> None:
    total = sum(f.bytes for f in facts.values())
    count = sum(f.mailboxes for f in facts.values())
    header = [f"Wave plan of {index.programme}" if index.programme else "Wave plan",
              f"  {len(index.waves)} waves, {count} mailboxes, {human_bytes(total)}; "
              f"{len(index.excluded)} mailbox(es) excluded"]
    header += [f"  note: {w}" for w in warnings]
    notes = {}
    for wave_id in index.waves:
        f = facts.get(wave_id)
        w = waves[wave_id].window if wave_id in waves else None
        if f is not None and w is not None:
            when = f"{w.date.isoformat()} {w.start}" if w.date else "not scheduled"
            notes[wave_id] = (f"{f.mailboxes} mailboxes, {human_bytes(f.bytes)}, {format_hours(f.estimate.hours)}, "
                              f"{when}")
    _atomic_write(path, _reads_back(render_index(index, header=header, wave_notes=notes), index, path))


def _reads_back(text: str, model: WaveFile | IndexFile, path: Path) -> str:
    """``text``, after proving it reads back as exactly ``model``'s data: a plan file govmigrate writes never
    breaks, and nothing in its comments becomes data."""
    try:
        again = type(model).model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as exc:
        raise AssertionError(f"{path.name} as rendered does not read back: {exc}") from None
    if again != model:
        raise AssertionError(f"{path.name} as rendered reads back as other data than it was written from")
    return text


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
