"""``plan generate``: turn the inventory into plan files and record the plan in the state store.

A first plan is written from scratch. When a plan exists, ``replace`` regenerates it but keeps every wave
that has started (a run was recorded, or a mailbox in it got past ``planned``) exactly as it is, first in
the order; the other mailboxes are planned again after them, numbered on from the highest kept wave.
Windows get dates only when a first date is given (then one wave every ``days_between`` days); otherwise
people set each wave's ``window.date`` in its file.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from migrate.core import lifecycle
from migrate.core.config import Project
from migrate.core.errors import ExitCode, MigrateError, Problem, UsageError
from migrate.core.registry import register_users
from migrate.core.store import Store, actor, now
from migrate.plans.catalog import Catalog
from migrate.plans.estimate import Rates
from migrate.plans.model import (
    INDEX_FILE,
    PLAN_VERSION,
    Excluded,
    IndexFile,
    PlanWindow,
    WaveFile,
    describe_change,
)
from migrate.plans.planfiles import WaveFacts, load_plan, plan_exists, wave_facts, write_index, write_wave
from migrate.plans.planner import PlannedWave, cutover_domains, propose


class NothingToPlan(MigrateError):
    """Every mailbox was left out (the inventory reached none, or all are flagged skip): there is no wave to
    plan. Exit 1, as for any command that finished with every item failed."""

    exit_code = ExitCode.PARTIAL


@dataclass
class Generated:
    waves: list[WaveFile]
    facts: dict[str, WaveFacts]
    excluded: list[tuple[str, str]]
    warnings: list[str]
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    user_list_problems: list[Problem] = field(default_factory=list)


def _started(store: Store, wave_id: str) -> bool:
    if store.runs(wave_id):
        return True
    if any(e.state not in (lifecycle.NEW, lifecycle.PLANNED) for e in store.extensions(wave=wave_id)):
        return True
    return any(lifecycle.rank(lifecycle.level(m)) > lifecycle.rank(lifecycle.PLANNED)
               for m in store.mailboxes(wave=wave_id))


def generate_plan(project: Project, store: Store, directory: Path, *, replace: bool = False,
                  first_date: dt.date | None = None, days_between: int = 7) -> Generated:
    registered = register_users(project, store)
    catalog = Catalog(project, store)
    if not any(m.measured is not None for m in catalog):
        raise UsageError("no inventory recorded yet: the planner needs every mailbox's size",
                         hint="run govmigrate inventory mail first")
    existing = plan_exists(directory)
    if existing and not replace:
        raise UsageError(f"a wave plan already exists in {directory}",
                         hint="edit it (govmigrate plan move USER --to WAVE), or regenerate the waves that have not "
                              "started with: govmigrate plan generate --replace")
    kept_files: dict[str, WaveFile] = {}
    old_ids: set[str] = {w.id for w in store.waves()}
    if existing:
        old = load_plan(directory, project, store, catalog)
        old_ids |= set(old.waves)
        for wave_id in old.order + sorted(set(old.waves) - set(old.order)):
            wp = old.waves[wave_id]
            if _started(store, wave_id):
                recorded = store.wave(wave_id)
                data = wp.data or (WaveFile.model_validate(recorded.doc) if recorded and recorded.doc else None)
                if data is not None:
                    kept_files[wave_id] = data
    kept = [PlannedWave(w.wave, w.title, w.kind, w.white_glove,
                        [m for m in (catalog.get(e) for e in w.mailboxes) if m is not None], kept=True)
            for w in kept_files.values()]
    proposal = propose(project, catalog.in_sources(), kept=kept)
    if not proposal.waves:
        reasons = dict.fromkeys(reason for _email, reason in proposal.excluded)
        raise NothingToPlan(f"no mailbox can be planned: all {len(proposal.excluded)} were left out ("
                            + "; ".join(list(reasons)[:3]) + ("; ..." if len(reasons) > 3 else "")
                            + "); no plan was written",
                            hint="see govmigrate inventory show; mend what the inventory could not reach, run "
                                 "govmigrate inventory mail again, then plan generate")
    policy = project.config.waves
    cut = cutover_domains([(w.id, [m.email for m in w.mailboxes]) for w in proposal.waves])
    waves: list[WaveFile] = []
    n_new = 0
    for planned in proposal.waves:
        if planned.kept:
            data = kept_files[planned.id]
            if sorted(data.cutover_domains) != cut[planned.id]:
                proposal.warnings.append(f"{planned.id} has started; its cutover_domains change to "
                                         f"[{', '.join(cut[planned.id])}]: approve it again")
                data = data.model_copy(update={"cutover_domains": cut[planned.id]})
                kept_files[planned.id] = data
            waves.append(data)
            continue
        date = first_date + dt.timedelta(days=days_between * n_new) if first_date else None
        n_new += 1
        waves.append(WaveFile(version=PLAN_VERSION, wave=planned.id, title=planned.title, kind=planned.kind,
                              white_glove=planned.white_glove,
                              window=PlanWindow(date=date, start=policy.window.start, hours=policy.window.hours),
                              cutover_domains=cut[planned.id], notes="",
                              mailboxes=[m.email for m in planned.mailboxes]))
    waves = _place_extensions(project, catalog, waves, kept_files, proposal.warnings)
    result = Generated(waves, {}, proposal.excluded, proposal.warnings, kept=list(kept_files),
                       user_list_problems=registered.problems)
    rates = Rates(project, store)
    new_ids = {w.wave for w in waves}
    directory.mkdir(parents=True, exist_ok=True)
    for wave_id in sorted(old_ids - new_ids):
        (directory / f"{wave_id}.yaml").unlink(missing_ok=True)
        store.delete_wave(wave_id)
        result.removed.append(wave_id)
    unchanged_kept = {w for w in kept_files if store.wave(w) and (directory / f"{w}.yaml").exists()}
    for i, wave in enumerate(waves):
        path = directory / f"{wave.wave}.yaml"
        if wave.wave in kept_files and wave.wave in unchanged_kept and wave == _file_data(path):
            result.facts[wave.wave] = wave_facts(wave, catalog, rates, project)
            continue
        result.facts[wave.wave] = write_wave(path, wave, catalog, rates, project)
        recorded = store.wave(wave.wave)
        store.record_wave(wave.wave, position=i, plan_file=f"{directory.name}/{path.name}", doc=wave.canonical(),
                          changes=describe_change(recorded.doc, wave.canonical()) if recorded and recorded.doc else "")
    index = IndexFile(version=PLAN_VERSION, programme=project.config.name, generated_at=now(),
                      generated_by=actor(), waves=[w.wave for w in waves],
                      excluded=[Excluded(email=e, reason=r) for e, r in proposal.excluded])
    write_index(directory / INDEX_FILE, index, {w.wave: w for w in waves}, result.facts, proposal.warnings)
    store.set_wave_positions([w.wave for w in waves])
    _record_membership(store, catalog, waves, kept_files, proposal.excluded)
    store.add_event("plan", "generate",
                    f"{len(waves)} waves ({', '.join(w.wave for w in waves)}), "
                    f"{sum(len(w.mailboxes) for w in waves)} mailboxes, {len(proposal.excluded)} excluded"
                    + (f"; kept as they were: {', '.join(kept_files)}" if kept_files else ""))
    return result


def _place_extensions(project: Project, catalog: Catalog, waves: list[WaveFile], kept: dict[str, WaveFile],
                      warnings: list[str]) -> list[WaveFile]:
    """Each phone extension into its user's wave; a ministry's extensions without a user (reception, rooms,
    fax) into its last wave, or into a phones-only wave after it (``phones.unlinked``). Waves that have
    started keep the extensions they have, and gain the phones of their users that no wave has yet (phones
    inventoried after the mail moved), with a warning to approve them again."""
    if not catalog.extensions:
        return waves
    taken = {k for w in kept.values() for k in w.extensions}
    wave_of = {e.lower(): w.wave for w in waves for e in w.mailboxes}
    last_of: dict[str, str] = {}
    for w in waves:
        for email in w.mailboxes:
            info = catalog.get(email)
            if info is not None:
                last_of[info.source_id] = w.wave
    placed: dict[str, list[str]] = {}
    phones_only: dict[str, list[str]] = {}
    for key, ext in sorted(catalog.extensions.items()):
        if key in taken:
            continue
        user = catalog.extension_user(key)
        target = wave_of.get(user) if user else None
        if target is None and project.config.phones.unlinked == "last-wave":
            target = last_of.get(ext.source_id)
        if target is None:
            phones_only.setdefault(ext.source_id, []).append(key)
        else:
            placed.setdefault(target, []).append(key)
    out: list[WaveFile] = []
    for w in waves:
        if w.wave in kept:
            out.append(_gain(w, placed.get(w.wave, []), warnings))
        else:
            out.append(w.model_copy(update={"extensions": placed.get(w.wave, [])}))
    policy = project.config.waves
    for source_id, keys in phones_only.items():
        wave_id = f"phones-{source_id}"[:40]
        if wave_id in kept:  # the ministry's phones-only wave has started: it takes the newcomers
            out = [_gain(w, keys, warnings) if w.wave == wave_id else w for w in out]
            continue
        ministry = next((s.ministry for s in project.config.sources if s.id == source_id), source_id)
        phones_wave = WaveFile(version=PLAN_VERSION, wave=wave_id, title=f"Phones of the {ministry}", kind="phones",
                               window=PlanWindow(start=policy.window.start, hours=policy.window.hours),
                               extensions=keys)
        after = max((i for i, w in enumerate(out) if w.wave == last_of.get(source_id)), default=len(out) - 1)
        out.insert(after + 1, phones_wave)
        warnings.append(f"{wave_id}: {len(keys)} extension(s) of {ministry} with no user move in a phones-only wave"
                        if project.config.phones.unlinked == "phones-only" else
                        f"{wave_id}: {len(keys)} extension(s) of {ministry} have no wave of their ministry to join")
    return out


def _gain(wave: WaveFile, keys: list[str], warnings: list[str]) -> WaveFile:
    """A started wave with phones added to it (which voids its approval, as any change does)."""
    if not keys:
        return wave
    warnings.append(f"{wave.wave} has started; it gains {len(keys)} phone extension(s) ({', '.join(keys[:5])}"
                    f"{', ...' if len(keys) > 5 else ''}): approve it again")
    return wave.model_copy(update={"extensions": [*wave.extensions, *keys]})


def _file_data(path: Path) -> WaveFile | None:
    from migrate.core.yamlsrc import load_yaml_file

    located = load_yaml_file(path)
    try:
        return WaveFile.model_validate(located.data)
    except Exception:
        return None


def _record_membership(store: Store, catalog: Catalog, waves: list[WaveFile], kept: dict[str, WaveFile],
                       excluded: list[tuple[str, str]]) -> None:
    in_plan = {k: w.wave for w in waves for k in w.extensions}
    with store.tx():
        for key, ext in catalog.extensions.items():
            if ext.wave in kept:
                continue
            wave_id = in_plan.get(key)
            store.set_extension_wave(ext.id, wave_id)
            if wave_id and ext.state == lifecycle.NEW:
                store.set_extension_state(ext.id, lifecycle.PLANNED, f"in wave {wave_id}")
            elif not wave_id and ext.state == lifecycle.PLANNED:
                store.set_extension_state(ext.id, lifecycle.NEW, "in no wave")
        for wave in waves:
            if wave.wave in kept:
                continue
            for email in wave.mailboxes:
                info = catalog.get(email)
                if info is None:
                    continue
                store.set_mailbox_wave(info.row.id, wave.wave)
                if info.row.state in (lifecycle.NEW, lifecycle.SKIPPED):
                    store.set_mailbox_state(info.row.id, lifecycle.PLANNED, f"in wave {wave.wave}")
        for email, reason in excluded:
            info = catalog.get(email)
            if info is None or info.row.state not in (lifecycle.NEW, lifecycle.PLANNED, lifecycle.SKIPPED):
                continue
            store.set_mailbox_wave(info.row.id, None)
            if "skip" in info.flags:
                store.set_mailbox_state(info.row.id, lifecycle.SKIPPED, reason)
            else:
                store.set_mailbox_state(info.row.id, lifecycle.NEW, f"in no wave: {reason}")
