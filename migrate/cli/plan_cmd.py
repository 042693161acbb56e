"""`govmigrate plan`: generate, review, edit and approve the wave plan (plans/*.yaml)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from migrate.cli.app import App, pass_app
from migrate.cli.output import emit_json, emit_table, human_bytes, output_options
from migrate.core.errors import Finished, UsageError, ValidationFailed

if TYPE_CHECKING:
    from migrate.core.store import Store
    from migrate.plans.catalog import Catalog
    from migrate.plans.planfiles import Plan



@click.group()
def command() -> None:
    """Generate, review, edit and approve the wave plan.

    The plan lives in the workspace's plans/ directory: index.yaml (the order of the waves and who is
    left out) and one file per wave (pilot.yaml, wave-01.yaml, ...), meant to be read, diffed and
    edited. A wave runs only once approved, and only as it was approved.
    """


def _context(app: App) -> tuple[Any, Store, Catalog]:
    from migrate.core.registry import register_users
    from migrate.plans.catalog import Catalog

    project, store = app.project, app.store
    for problem in register_users(project, store).problems:
        app.warn(str(problem))
    return project, store, Catalog(project, store)


def _plan(app: App) -> tuple[Any, Store, Catalog, Plan]:
    from migrate.plans.planfiles import load_plan

    project, store, catalog = _context(app)
    return project, store, catalog, load_plan(app.workspace.plans_dir, project, store, catalog)


def _window(data) -> str:
    w = data.window
    return f"{w.date.isoformat()} {w.start} ({w.hours:g} h)" if w.date else f"not scheduled ({w.hours:g} h)"


def wave_rows(plan: Plan, store: Store) -> list[dict[str, Any]]:
    from migrate.plans.edits import approval_status

    rows = []
    for wave_id in [*plan.order, *sorted(set(plan.waves) - set(plan.order))]:
        wp = plan.waves[wave_id]
        row = store.wave(wave_id)
        if wp.data is None:
            rows.append({"wave": wave_id, "file": plan.relative(wp.path), "approval": "invalid",
                         "title": "(file has errors: govmigrate plan validate)"})
            continue
        facts = plan.facts[wave_id]
        rows.append({
            "wave": wave_id, "file": plan.relative(wp.path), "title": wp.data.title, "kind": wp.data.kind,
            "white_glove": wp.data.white_glove, "mailboxes": facts.mailboxes, "messages": facts.messages,
            "bytes": facts.bytes, "estimated_hours": round(facts.estimate.hours, 3),
            "estimate": facts.estimate.description, "rate_basis": facts.estimate.basis,
            "window": wp.data.window.model_dump(mode="json"),
            "fits_window": facts.estimate.fits(wp.data.window.hours),
            "cutover_domains": wp.data.cutover_domains,
            "approval": approval_status(wp.hashes, row),
            "approved_by": row.approved_by if row and row.plan_hash else None,
            "approved_at": row.approved_at if row and row.plan_hash else None,
            "sha256": wp.hash, "warnings": facts.warnings,
            "_window": _window(wp.data),
        })
    return rows


def _print_waves(app: App, rows: list[dict[str, Any]], title: str) -> None:
    from migrate.plans.estimate import format_hours

    table = []
    for r in rows:
        table.append({**r, "size": human_bytes(r.get("bytes")),
                      "est": format_hours(r["estimated_hours"]) + ("" if r.get("fits_window", True) else " (!)")
                      if "estimated_hours" in r else "",
                      "vip": "white-glove" if r.get("white_glove") else "",
                      "cutover": ", ".join(r.get("cutover_domains") or [])})
    emit_table(app, title, [("wave", "wave"), ("title", "title"), ("mailboxes", "mailboxes>"), ("size", "size>"),
                            ("est", "est. copy>"), ("_window", "window"), ("vip", "handling"),
                            ("cutover", "cut-over after"), ("approval", "approval")], table)


@command.command("generate")
@click.option("--replace", is_flag=True,
              help="Regenerate an existing plan; waves that have started are kept exactly as they are.")
@click.option("--first-date", type=click.DateTime(formats=["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="Date of the first wave's window; the others follow every --days-between days. "
                   "Default: no dates (set window.date in each wave file).")
@click.option("--days-between", type=click.IntRange(1, 365), default=7, show_default=True,
              help="Days from one wave's window to the next (with --first-date).")
@output_options(csv=False)
@pass_app
def generate(app: App, replace: bool, first_date, days_between: int, fmt: str) -> Finished:
    """Cut the inventoried mailboxes into waves and write them to plans/.

    A pilot first (users flagged pilot, or the configured number of small mailboxes), then waves by
    ministry within the wave policy's limits, domains kept whole where they fit, each ministry's VIPs
    together in its last wave (white-glove). Each wave gets an estimated copy time from measured
    throughput and a warning when it will not fit its window. Mailboxes flagged skip, or that the
    inventory could not measure, are left out with the reason (exit 1 if any could not be measured).
    """
    from migrate.plans.generate import generate_plan
    from migrate.plans.planfiles import load_plan

    project, store = app.project, app.store
    result = generate_plan(project, store, app.workspace.plans_dir, replace=replace,
                           first_date=first_date.date() if first_date else None, days_between=days_between)
    for problem in result.user_list_problems:
        app.warn(str(problem))
    plan = load_plan(app.workspace.plans_dir, project, store)
    rows = wave_rows(plan, store)
    if fmt == "json":
        emit_json({"waves": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
                   "excluded": [{"email": e, "reason": r} for e, r in result.excluded],
                   "warnings": result.warnings, "kept": result.kept, "removed": result.removed})
    else:
        _print_waves(app, rows, f"wave plan written to {app.workspace.plans_dir}")
        for email, reason in result.excluded:
            app.out.print(f"  left out: {email}: {reason}", markup=False, highlight=False)
    for warning in result.warnings:
        app.warn(warning)
    for r in rows:
        for w in r.get("warnings", []):
            app.warn(f"{r['wave']}: {w}")
    if result.kept:
        app.info(f"kept as they were (started): {', '.join(result.kept)}")
    first = plan.order[0] if plan.order else "WAVE"
    undated = any(wp.data is not None and wp.data.window.date is None for wp in plan.waves.values())
    app.info("next: review plans/*.yaml" + (" (set each wave's window.date)" if undated else "")
             + f", then: govmigrate plan approve {first}")
    unmeasured = [e for e, r in result.excluded if not r.startswith("flagged skip")]
    return Finished(partial=bool(unmeasured))


@command.command("show")
@click.argument("wave", required=False)
@output_options(csv=False)
@pass_app
def show(app: App, wave: str | None, fmt: str) -> None:
    """Show the waves (or one WAVE with its mailboxes): sizes, estimate, window, approval."""
    _project, store, catalog, plan = _plan(app)
    rows = wave_rows(plan, store)
    if wave is None:
        excluded = [{"email": e.email, "reason": e.reason} for e in (plan.index.excluded if plan.index else [])]
        if fmt == "json":
            emit_json({"waves": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
                       "excluded": excluded, "errors": [str(p) for p in plan.errors()]})
            return
        _print_waves(app, rows, "wave plan")
        for e in excluded:
            app.out.print(f"  left out: {e['email']}: {e['reason']}", markup=False, highlight=False)
        _problem_summary(app, plan)
        return
    wp = plan.wave(wave)
    row = next(r for r in rows if r["wave"] == wave)
    if wp.data is None:
        plan.require_valid(wave)
    members = []
    for email in wp.data.mailboxes:
        info = catalog.get(email)
        members.append({"email": email, "name": info.row.display_name if info else "",
                        "source": info.source_id if info else "", "messages": info.messages if info else None,
                        "bytes": info.size if info else None, "flags": sorted(info.flags) if info else [],
                        "state": info.row.state if info else "unknown",
                        "reason": info.row.state_reason if info else "not in any user list"})
    if fmt == "json":
        emit_json({**{k: v for k, v in row.items() if not k.startswith("_")}, "notes": wp.data.notes,
                   "mailboxes": members})
        return
    out = app.out
    out.print(f"{wave}: {wp.data.title}" + (" (white-glove)" if wp.data.white_glove else ""), style="bold",
              markup=False, highlight=False)
    approval = row["approval"] + (f" by {row['approved_by']} at {row['approved_at']}" if row["approved_by"] else "")
    for label, value in (("file", row["file"]), ("approval", approval), ("window", row["_window"]),
                         ("estimate", row["estimate"]),
                         ("cut-over after", ", ".join(row["cutover_domains"]) or "none"),
                         ("notes", wp.data.notes or "")):
        if value:
            out.print(f"  {label}: {value}", markup=False, highlight=False)
    for w in row["warnings"]:  # facts of the plan shown, not a fault of this command: data, on stdout
        out.print(f"  warning: {w}", markup=False, highlight=False)
    emit_table(app, None, [("email", "mailbox"), ("name", "name"), ("source", "source"), ("messages", "messages>"),
                           ("size", "size>"), ("flags", "flags"), ("state", "state")],
               [{**m, "size": human_bytes(m["bytes"])} for m in members])


def _problem_summary(app: App, plan: Plan) -> None:
    errors = plan.errors()
    warnings = [p for p in plan.problems if p.severity == "warning"]
    if errors:
        app.warn(f"the plan has {len(errors)} error(s): govmigrate plan validate lists them")
    elif warnings:
        app.info(f"{len(warnings)} warning(s): govmigrate plan validate lists them")


@command.command("validate")
@click.argument("wave", required=False)
@pass_app
def validate(app: App, wave: str | None) -> None:
    """Check the plan files: every problem as FILE:LINE: FIELD: MESSAGE; exit 2 if any is an error.

    Errors: unknown keys, bad dates or addresses, a wave file not named after its wave or missing
    from the index, mailboxes no user list names or in two waves, cutover_domains that do not match
    the order of the waves. Warnings: waves over the limits or longer than their window, mailboxes
    flagged skip or not inventoried, mailboxes in no wave, windows out of order.
    """
    _project, _store, _catalog, plan = _plan(app)
    if wave is not None:
        plan.wave(wave)
    relevant = [p for p in plan.problems if wave is None or p.file in {str(plan.index_path), str(plan.wave(wave).path)}]
    errors = [p for p in relevant if p.severity == "error"]
    if errors:
        raise ValidationFailed(f"wave plan in {plan.directory}" if wave is None else str(plan.wave(wave).path),
                               relevant)
    for p in relevant:
        app.warn(str(p))
    waves = [wave] if wave else plan.order
    count = sum(len(plan.waves[w].data.mailboxes) for w in waves if plan.waves[w].data)
    app.out.print(f"{plan.directory}: ok — {len(waves)} wave(s), {count} mailboxes"
                  + (f", {len(relevant)} warning(s)" if relevant else ""), markup=False, highlight=False)


@command.command("diff")
@click.argument("wave", required=False)
@output_options(csv=False)
@pass_app
def diff(app: App, wave: str | None, fmt: str) -> None:
    """Show how the plan files differ from what the state store recorded (at generate or approve).

    Mailboxes added and removed (and the wave they moved from or to), changed windows, titles,
    handling, notes and cut-over domains, and whether each wave's approval still holds.
    """
    from migrate.plans.edits import diff_plan

    _project, store, _catalog, plan = _plan(app)
    diffs = [d for d in diff_plan(plan, store) if wave is None or d.wave == wave]
    if wave is not None and not diffs:
        plan.wave(wave)
    if fmt == "json":
        emit_json([d.as_dict() for d in diffs])
        return
    out = app.out
    for d in diffs:
        approval = d.approval + (f" (by {d.approved_by} at {d.approved_at})" if d.approved_by else "")
        out.print(f"{d.wave}: {d.status}; approval: {approval}", markup=False, highlight=False,
                  style="bold" if d.status != "same" else None)
        for email, came in d.added:
            out.print(f"  + {email}" + (f"  (from {came})" if came else ""), markup=False, highlight=False)
        for email, went in d.removed:
            out.print(f"  - {email}" + (f"  (now in {went})" if went else ""), markup=False, highlight=False)
        for field, old, new in d.changes:
            out.print(f"  ~ {field}: {old!r} -> {new!r}", markup=False, highlight=False)
    if all(d.status == "same" for d in diffs):
        app.info("the plan files are as the state store recorded them")


@command.command("approve")
@click.argument("waves", nargs=-1, required=True, metavar="WAVE...")
@pass_app
def approve(app: App, waves: tuple[str, ...]) -> None:
    """Approve WAVE as its plan file stands now; you are recorded as the approver.

    The file's hash, who approved (GOVMIGRATE_ACTOR or your login name) and when go into the state
    store and the event log. A run refuses a wave that is not approved, or whose file changed since.
    """
    from migrate.plans.edits import approval_status, approve_wave

    _project, store, catalog, plan = _plan(app)
    for wave_id in waves:
        plan.wave(wave_id)
    for wave_id in waves:
        wp = plan.wave(wave_id)
        row = store.wave(wave_id)
        if wp.data is not None and approval_status(wp.hashes, row) == "approved":
            app.out.print(f"{wave_id}: already approved as it stands (by {row.approved_by} at {row.approved_at})",
                          markup=False, highlight=False)
            continue
        data = approve_wave(plan, wave_id, store, catalog)
        row = store.wave(wave_id)
        facts = plan.facts[wave_id]
        app.out.print(f"{wave_id}: approved by {row.approved_by} — {len(data.mailboxes)} mailboxes, "
                      f"{human_bytes(facts.bytes)}, window {_window(data)}, sha256 {wp.hash[:12]}",
                      markup=False, highlight=False)
        for w in facts.warnings:  # what the approver approved with: part of the record, on stdout
            app.out.print(f"  warning: {w}", markup=False, highlight=False)


@command.command("move")
@click.argument("user")
@click.option("--to", "to_wave", required=True, metavar="WAVE", help="The wave to move the mailbox into.")
@pass_app
def move(app: App, user: str, to_wave: str) -> None:
    """Move USER's mailbox (email, login or part of a name) into another wave's plan file.

    The mailbox leaves its current wave (or the excluded list); every wave whose cut-over domains
    change with it is rewritten too. The changed waves must be approved again before they run.
    """
    from migrate.mailbox.sync import selected_mailboxes
    from migrate.plans.edits import move_mailbox

    project, store, catalog, plan = _plan(app)
    found, unknown = selected_mailboxes(store, users=[user])
    if unknown or len(found) != 1:
        matches = store.find_mailboxes(user)
        if len(matches) > 1:
            raise UsageError(f"{user!r} matches {len(matches)} mailboxes: "
                             + ", ".join(m.email for m in matches[:8]), hint="give the full email address")
        raise UsageError(f"no mailbox matches {user!r}")
    moved = move_mailbox(plan, found[0].email, to_wave, project, store, catalog)
    if moved.from_wave == to_wave:
        app.out.print(f"{moved.email} is already in {to_wave}; nothing changed", markup=False, highlight=False)
        return
    app.out.print(f"moved {moved.email} from {moved.from_wave or 'no wave'} to {to_wave}; rewritten: "
                  f"{', '.join(moved.changed)}", markup=False, highlight=False)
    if moved.state not in ("new", "planned"):
        app.info(f"{moved.email} is {moved.state}: its progress goes with it to {to_wave}")
    app.info(f"approve the changed waves again: govmigrate plan approve {' '.join(moved.changed)}")
