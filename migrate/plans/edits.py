"""What people do to a plan after it is generated: approve a wave, move a mailbox, see what changed.

* ``approve`` records the wave's hash, who approved it and when (an event in the log, and an approval of the
  wave's history with what changed since the one before), and makes the store's membership follow the file.
  A run refuses a wave whose file no longer has that hash.
* ``move`` takes a mailbox out of its wave's file and into another's, rewrites every wave whose
  ``cutover_domains`` change with it, and leaves those waves needing approval again (their approvals lapse,
  with what changed).
* ``diff`` compares the files with what the store recorded when the waves were generated or approved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from migrate.core import lifecycle
from migrate.core.config import Project
from migrate.core.errors import UsageError
from migrate.core.store import Store, WaveRow
from migrate.plans.catalog import Catalog
from migrate.plans.estimate import Rates
from migrate.plans.model import IndexFile, WaveFile, describe_change, field_changes, full_doc
from migrate.plans.planfiles import Plan, write_index, write_wave
from migrate.plans.planner import cutover_domains


def approval_status(plan_hash: str | tuple[str, ...] | None, row: WaveRow | None) -> str:
    """approved | changed (the file differs from what was approved) | not approved. ``plan_hash`` may be
    several hashes of the same data (``WavePlan.hashes``: the current form and the legacy one)."""
    if row is None or not row.plan_hash:
        return "not approved"
    if plan_hash is None:
        return "invalid"
    hashes = (plan_hash,) if isinstance(plan_hash, str) else plan_hash
    return "approved" if row.plan_hash in hashes else "changed"


def approve_wave(plan: Plan, wave_id: str, store: Store, catalog: Catalog, *, who: str | None = None) -> WaveFile:
    """Approve one wave as its file stands now; raises ValidationFailed if the file or the index has errors."""
    wp = plan.wave(wave_id)
    plan.require_valid(wave_id)
    data = wp.data
    assert data is not None
    earlier = store.approvals(wave_id)
    changes = describe_change(earlier[-1].doc, data.canonical()) if earlier and earlier[-1].doc else None
    with store.tx():
        store.approve_wave(wave_id, position=plan.position(wave_id), plan_file=plan.relative(wp.path),
                           plan_hash=data.hash, doc=data.canonical(), who=who, changes=changes)
        store.set_wave_positions(plan.order)
        listed = {e.lower() for e in data.mailboxes}
        for email in data.mailboxes:
            info = catalog.get(email)
            if info is None:
                continue
            if info.row.wave != wave_id:
                store.set_mailbox_wave(info.row.id, wave_id)
            if info.row.state == lifecycle.NEW:
                store.set_mailbox_state(info.row.id, lifecycle.PLANNED, f"in wave {wave_id}")
        for row in store.mailboxes(wave=wave_id):
            if row.email.lower() not in listed:
                store.set_mailbox_wave(row.id, None)
                if row.state == lifecycle.PLANNED:
                    store.set_mailbox_state(row.id, lifecycle.NEW, f"taken out of wave {wave_id}")
    return data


@dataclass
class Moved:
    email: str
    from_wave: str | None
    to_wave: str
    #: Waves whose files were rewritten (they need approval again).
    changed: list[str] = field(default_factory=list)
    state: str = ""


def move_mailbox(plan: Plan, email: str, to_wave: str, project: Project, store: Store, catalog: Catalog) -> Moved:
    """Move ``email`` into ``to_wave``'s file (out of its current wave, or out of the excluded list)."""
    target = plan.wave(to_wave)
    plan.require_valid()
    info = catalog.get(email)
    if info is None:
        raise UsageError(f"{email} is not in any user list")
    email = info.email
    from_wave = plan.wave_of(email)
    moved = Moved(email, from_wave, to_wave, state=info.row.state)
    if from_wave == to_wave:
        return moved
    data: dict[str, WaveFile] = {w: plan.waves[w].data for w in plan.waves}  # type: ignore[misc]
    updated: dict[str, WaveFile] = {}
    if from_wave is not None:
        old = data[from_wave]
        updated[from_wave] = old.model_copy(update={"mailboxes": [m for m in old.mailboxes
                                                                   if m.lower() != email.lower()]})
    updated[to_wave] = target.data.model_copy(update={"mailboxes": [*target.data.mailboxes, email]})  # type: ignore[union-attr]
    data.update(updated)
    cut = cutover_domains([(w, data[w].mailboxes) for w in plan.order])
    for wave_id in plan.order:
        if sorted(data[wave_id].cutover_domains) != cut[wave_id]:
            data[wave_id] = data[wave_id].model_copy(update={"cutover_domains": cut[wave_id]})
            updated[wave_id] = data[wave_id]
    rates = Rates(project, store)
    facts = dict(plan.facts)
    for wave_id, wave in updated.items():
        facts[wave_id] = write_wave(plan.waves[wave_id].path, wave, catalog, rates, project)
    moved.changed = [w for w in plan.order if w in updated]
    index = plan.index
    assert index is not None
    if any(e.email.lower() == email.lower() for e in index.excluded):
        index = IndexFile.model_validate({**index.model_dump(), "excluded": [
            e.model_dump() for e in index.excluded if e.email.lower() != email.lower()]})
        write_index(plan.index_path, index, data, facts, [])
    store.add_event(f"mailbox/{email}", "move",
                    f"{from_wave or 'no wave'} -> {to_wave} in the plan files; approve again: {', '.join(moved.changed)}")
    for wave_id in moved.changed:
        recorded = store.wave(wave_id)
        store.lapse_approval(wave_id, f"{email} was moved ({from_wave or 'no wave'} → {to_wave}); its plan file "
                             f"changed: {describe_change(recorded.doc if recorded else None, data[wave_id].canonical())}")
    return moved


@dataclass
class WaveDiff:
    wave: str
    #: same | changed | new (file not recorded in the store) | removed (recorded, file gone)
    status: str
    approval: str
    approved_by: str | None = None
    approved_at: str | None = None
    added: list[tuple[str, str | None]] = field(default_factory=list)     # (email, recorded wave it came from)
    removed: list[tuple[str, str | None]] = field(default_factory=list)   # (email, wave whose file has it now)
    changes: list[tuple[str, Any, Any]] = field(default_factory=list)     # (field, recorded, file)

    def as_dict(self) -> dict[str, Any]:
        return {"wave": self.wave, "status": self.status, "approval": self.approval,
                "approved_by": self.approved_by, "approved_at": self.approved_at,
                "added": [{"email": e, "from": w} for e, w in self.added],
                "removed": [{"email": e, "to": w} for e, w in self.removed],
                "changes": [{"field": f, "recorded": a, "file": b} for f, a, b in self.changes]}


def diff_plan(plan: Plan, store: Store) -> list[WaveDiff]:
    rows = {r.id: r for r in store.waves()}
    recorded_of: dict[str, str] = {}
    for r in rows.values():
        for email in (r.doc or {}).get("mailboxes", []):
            recorded_of[email.lower()] = r.id
    current_of: dict[str, str] = {}
    for wave_id, wp in plan.waves.items():
        for email in (wp.data.mailboxes if wp.data else []):
            current_of[email.lower()] = wave_id
    out = []
    for wave_id in [*plan.order, *sorted(set(plan.waves) - set(plan.order)), *sorted(set(rows) - set(plan.waves))]:
        row = rows.get(wave_id)
        wp = plan.waves.get(wave_id)
        if wp is None:
            out.append(WaveDiff(wave_id, "removed", approval_status(None, row) if row and row.plan_hash else "not approved",
                                row.approved_by if row else None, row.approved_at if row else None,
                                removed=[(e, current_of.get(e.lower())) for e in (row.doc or {}).get("mailboxes", [])]
                                if row else []))
            continue
        if wp.data is None:
            out.append(WaveDiff(wave_id, "changed", "invalid", row.approved_by if row else None,
                                row.approved_at if row else None))
            continue
        doc = wp.data.full()
        approval = approval_status(wp.hashes, row)
        d = WaveDiff(wave_id, "new" if row is None or row.doc is None else "same", approval,
                     row.approved_by if row else None, row.approved_at if row else None)
        if row is not None and row.doc is not None:
            before = full_doc(row.doc)
            was = {e.lower() for e in before.get("mailboxes", [])}
            now_ = {e.lower() for e in doc["mailboxes"]}
            d.added = [(e, recorded_of.get(e)) for e in sorted(now_ - was)]
            d.removed = [(e, current_of.get(e)) for e in sorted(was - now_)]
            d.changes = field_changes(before, doc)
            if d.added or d.removed or d.changes:
                d.status = "changed"
        out.append(d)
    return out
