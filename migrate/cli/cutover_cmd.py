"""`govmigrate cutover`: switch a wave's domains to the central host, gated on the final sync."""

from __future__ import annotations

import threading

import click

from migrate.cli.app import App, pass_app
from migrate.cli.output import emit_json, emit_table
from migrate.cli.progress import progress_for
from migrate.cli.run_cmd import as_dict, print_preflight, render, wave_run
from migrate.cli.sip_cmd import print_phone_step, print_report
from migrate.core.errors import ExitCode, Interrupted, PreflightFailed, UsageError
from migrate.voip.cutover import register_phones
from migrate.waves.runner import WaveRun, WaveRunResult


@click.command()
@click.argument("wave")
@click.option("--dry-run", is_flag=True, help="Check the gate and show what would change; change nothing.")
@click.option("--force", is_flag=True, help="Go past a gate that refuses (with --reason, which is recorded).")
@click.option("--reason", metavar="TEXT", help="Why the gate is forced (recorded in the store and the event log).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@pass_app
@click.pass_context
def command(ctx: click.Context, app: App, wave: str, dry_run: bool, force: bool, reason: str | None,
            as_json: bool) -> None:
    """Cut over WAVE's domains (its plan's cutover_domains) to the central host, then its phones.

    For each domain, in order: the gate (every mailbox of the domain final-synced, and the TTLs lowered
    by `govmigrate dns prepare` at least one old TTL ago; otherwise exit 8 listing why, unless --force
    with --reason); a baseline of the records (in the store and reports/dns-baseline-WAVE-DOMAIN.zone);
    one RFC 2136 update signed with TSIG whose prerequisites require every record to be exactly as in the
    baseline (exit 9 and no change if someone changed one); a wait until every authoritative server serves
    it (exit 10 on timeout); the domain's mailboxes to cut-over; and a last delta sync for mail that
    reached the old server meanwhile, after which each mailbox is done. Every part is an event; Ctrl-C or
    a kill stops it and the same command resumes it. `govmigrate dns rollback --wave WAVE` undoes it.

    Then the phone step, for a wave with extensions (also one without domains): the SIP checks of
    `govmigrate sip check --wave WAVE`, and each extension that registered goes to registered. Refused
    (exit 8, nothing changes) while any check fails, unless --force with --reason. `govmigrate sip
    confirm --wave WAVE` then records that the wave's DIDs route to the platform.
    """
    if reason and not force:
        raise UsageError("--reason goes with --force")
    with wave_run(app, wave, dry_run=dry_run) as wr:
        assert wr.wave.data is not None
        phones = bool(wr.store.extensions(wave=wave))
        if not wr.wave.data.cutover_domains and not phones:
            raise UsageError(f"wave {wave} cuts over no domain (its cutover_domains is empty) and has no phones: a "
                             "domain moves with the wave that holds its last mailboxes",
                             hint="govmigrate plan show lists which wave cuts over which domain")
        wr.acquire("cutover", command=f"govmigrate cutover {wave}")
        result = WaveRunResult(wave, "cutover", dry_run)
        if wr.wave.data.cutover_domains:
            result = _dns_part(app, wr, force=force, reason=reason)
        phone_step = None
        if phones and not result.interrupted and not result.failed:
            with progress_for(app, f"{wave}: phones", unit="items") as sink:
                phone_step = register_phones(wr, force=force, reason=reason, progress=sink, stop=threading.Event())
        elif phones:
            app.warn(f"wave {wave}: its phones were not checked, because the mail part of the cut-over did not "
                     "finish; run the same command again")
    if as_json:
        emit_json({**as_dict(result), "domains": [d.as_dict() for d in result.domains],
                   "forced": [{"who": w, "what": m} for w, m in result.forced], "reason": result.force_reason,
                   "phones": phone_step.as_dict() if phone_step else None})
    else:
        render_domains(app, result.domains, dry_run=dry_run)
        if result.outcomes:
            render(app, result)
        elif not result.domains and result.already:
            app.info(f"wave {wave}: every mailbox of its domains is done already")
        if phone_step is not None:
            assert phone_step.report is not None
            print_report(app, phone_step.report)
            print_phone_step(app, phone_step, target="registered")
    if result.interrupted:
        raise Interrupted(f"wave {wave}: the cut-over was stopped; run the same command again to resume")
    code = result.exit_code
    if phone_step is not None and phone_step.report is not None and phone_step.report.failed:
        code = max(code, ExitCode.PARTIAL)
    ctx.exit(int(code))


def _dns_part(app: App, wr: WaveRun, *, force: bool, reason: str | None) -> WaveRunResult:
    wave = wr.wave_id
    try:
        with progress_for(app, f"{wave}: cut-over gate", unit="items") as sink:
            result = wr.start("cutover", force=force, reason=reason, preflight_progress=sink)
    except PreflightFailed:
        if wr.preflight_result is not None:
            print_preflight(app, wr.preflight_result)
        raise
    for who, what in result.forced:  # deliberate, and recorded: said plainly, not a warning
        app.err.print(f"gate forced ({reason}): {who}: {what}", style="yellow", markup=False, highlight=False)
    with progress_for(app, f"{wave}: cut-over") as sink:
        return wr.execute(result, progress=sink, stop=threading.Event())


def render_domains(app: App, domains, *, dry_run: bool) -> None:
    rows = [{"domain": d.domain, "state": d.before if d.before == d.after else f"{d.before} → {d.after}",
             "detail": d.detail} for d in domains]
    if rows:
        emit_table(app, "cut-over" + (" — dry run: nothing was changed" if dry_run else ""),
                   [("domain", "domain"), ("state", "state"), ("detail", "detail")], rows)
    for d in domains:
        if dry_run and d.changes:
            emit_table(app, f"{d.domain}: what would change",
                       [("name", "name"), ("type", "type"), ("ttl", "TTL>"), ("before", "before"), ("after", "after")],
                       d.changes)
