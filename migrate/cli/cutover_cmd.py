"""`govmigrate cutover`: switch a wave's domains to the central host, gated on the final sync, then register its
phones: two wave steps (the DNS switch, the phone registration) run one after the other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from migrate.cli.app import App, pass_app
from migrate.cli.output import emit_json, emit_table, output_options
from migrate.cli.run_cmd import as_dict, render, run_with_progress, wave_run
from migrate.cli.sip_cmd import phone_doc, print_phone_step, print_report
from migrate.core.errors import ExitCode, Interrupted, UsageError

if TYPE_CHECKING:
    from migrate.waves.results import StepResult


@dataclass(frozen=True)
class CutoverResult:
    """The DNS switch's result and the phone step's (None where the wave has no phones or it did not run)."""

    dns: StepResult
    phones: StepResult | None

    @property
    def exit_code(self) -> ExitCode:
        codes = [self.dns.exit_code] + ([self.phones.exit_code] if self.phones else [])
        return max(codes, key=lambda c: (c == ExitCode.INTERRUPTED, c == ExitCode.LOCKED, int(c)))


@click.command()
@click.argument("wave")
@click.option("--dry-run", is_flag=True, help="Check the gate and show what would change; change nothing.")
@click.option("--force", is_flag=True, help="Go past a gate that refuses (with --reason, which is recorded).")
@click.option("--reason", metavar="TEXT", help="Why the gate is forced (recorded in the store and the event log).")
@output_options(csv=False)
@pass_app
def command(app: App, wave: str, dry_run: bool, force: bool, reason: str | None, fmt: str) -> CutoverResult:
    """Cut over WAVE's domains (its plan's cutover_domains) to the central host, then its phones.

    For each domain, in order: the gate (every mailbox of the domain final-synced, the TTLs lowered by
    `govmigrate dns prepare` at least one old TTL ago, and no failure of `govmigrate dns check` for the
    domain; otherwise exit 8 listing why, unless --force with --reason; force still refuses when a server
    would never serve the change: one that stays behind the primary's serial for propagation_timeout); a
    baseline of the records (in the store and reports/dns-baseline-WAVE-DOMAIN.zone, 0600);
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
    from migrate.waves.results import StepResult
    from migrate.waves.step import StepOptions
    from migrate.waves.table import step

    options = StepOptions(force=force, reason=reason)
    with wave_run(app, wave, dry_run=dry_run) as wr:
        wr.check_plan()
        phones = bool(wr.extensions())
        if not wr.domains() and not phones:
            raise UsageError(f"wave {wave} cuts over no domain (its cutover_domains is empty) and has no phones: a "
                             "domain moves with the wave that holds its last mailboxes",
                             hint="govmigrate plan show lists which wave cuts over which domain")
        dns = StepResult(wave, "cutover", dry_run)
        if wr.domains():
            dns = run_with_progress(app, wr, step("cutover"), options, label="cut-over")
        phone_step = None
        if phones and not dns.interrupted and not dns.failed:
            phone_step = run_with_progress(app, wr, step("phones"), options, label="phones")
        elif phones:
            app.warn(f"wave {wave}: its phones were not checked, because the mail part of the cut-over did not "
                     "finish; run the same command again")
    if fmt == "json":
        emit_json({**as_dict(dns), "domains": [d.as_dict() for d in dns.domains],
                   "phones": phone_doc(phone_step) if phone_step else None})
    else:
        render_domains(app, dns.domains, dry_run=dry_run)
        if dns.outcomes:
            render(app, dns)
        elif not dns.domains and dns.already:
            app.info(f"wave {wave}: every mailbox of its domains is done already")
        if phone_step is not None:
            print_report(app, phone_step.details["report"])
            print_phone_step(app, phone_step)
    if dns.interrupted:
        raise Interrupted(f"wave {wave}: the cut-over was stopped; run the same command again to resume")
    return CutoverResult(dns, phone_step)


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
