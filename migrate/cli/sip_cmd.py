"""`govmigrate sip`: prove the hosted SIP platform works for a wave's phones, and confirm their numbers moved."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import click

from migrate.cli.app import App, pass_app
from migrate.cli.output import emit_json, emit_table, output_options
from migrate.cli.progress import progress_for
from migrate.cli.run_cmd import run_with_progress, wave_run

if TYPE_CHECKING:
    from migrate.voip.checks import SipCheckReport
    from migrate.waves.results import StepResult


#: How each result reads in the tables (plain words: colour is not the only signal).
MARK = {"pass": "pass", "note": "pass (note)", "warn": "WARN", "fail": "FAIL", "skip": "skipped",
        "n/a": "not a phone"}


@click.group()
def command() -> None:
    """Check the hosted SIP platform for a wave's phones (RFC 3263, OPTIONS, TLS, REGISTER)."""


@command.command("check")
@click.option("--wave", metavar="WAVE", help="Check the platform for this wave's extensions.")
@click.option("--extension", "numbers", multiple=True, metavar="N",
              help="Check this extension (a number, or DIALPLAN:NUMBER; repeatable).")
@output_options(csv=False)
@pass_app
def check(app: App, wave: str | None, numbers: tuple[str, ...], fmt: str) -> StepResult | SipCheckReport:
    """Check that the phones of WAVE (or the extensions named) work on the hosted platform.

    1. resolve: the SIP domain's NAPTR, SRV and A/AAAA records (RFC 3263), through the resolvers of
    the project file; 2. options: OPTIONS to every target over UDP, TCP and TLS, with the round-trip
    time; 3. tls: the certificate's chain, its name (RFC 5922) and days to expiry; 4. register: each
    provisioned extension registers with digest authentication, then removes its binding again
    (Expires: 0), a 423 answered with the Min-Expires asked for, a redirect within the platform's
    domain followed. Results are pass, pass (note), WARN, FAIL, skipped (not provisioned yet) or "not
    a phone" (virtual, or moved by hand); each is stored and is an event. Changes no extension's state
    (govmigrate cutover does). Exits 1 if any check failed, warned or was skipped.
    """
    from migrate.voip.checks import run_checks, select_extensions
    from migrate.waves.step import StepOptions
    from migrate.waves.table import step

    result: StepResult | SipCheckReport
    if wave is not None:
        with wave_run(app, wave, dry_run=False) as wr:
            result = run_with_progress(app, wr, step("sip-check"), StepOptions(params={"numbers": numbers}),
                                       label="SIP checks")
        report: SipCheckReport = result.details["report"]
    else:
        rows = select_extensions(app.store, wave=None, numbers=numbers)
        with progress_for(app, "SIP checks", unit="items") as sink:
            result = report = run_checks(app.project, app.store, rows, wave=None, progress=sink,
                                         stop=threading.Event())
    if fmt == "json":
        emit_json(report.as_dict())
    else:
        print_report(app, report)
    return result


def print_report(app: App, report: SipCheckReport) -> None:
    platform = [c for c in report.checks if c.kind != "register"]
    emit_table(app, f"SIP platform {report.domain}",
               [("kind", "check"), ("subject", "what"), ("result", "result"), ("detail", "detail")],
               [{**c.as_dict(), "result": MARK[c.result]} for c in platform], no_wrap=("result",))
    registers = [c for c in report.checks if c.kind == "register"]
    if registers:
        emit_table(app, "extensions",
                   [("subject", "extension"), ("result", "result"), ("detail", "detail")],
                   [{**c.as_dict(), "result": MARK[c.result]} for c in registers], no_wrap=("subject", "result"))
    counts = {r: sum(c.result == r for c in registers) for r in MARK}
    app.info(f"{len(registers)} extension(s): {counts['pass'] + counts['note']} registered, {counts['warn']} with "
             f"warnings, {counts['fail']} failing, {counts['skip']} skipped, {counts['n/a']} not a phone; "
             f"{len(report.failed)} check(s) failed in {report.seconds:.1f} s (at most {report.concurrency} "
             "transactions at once per registrar)")


def print_phone_step(app: App, result: StepResult) -> None:
    """Which extensions a phone step moved (or would move), which were there already, and what was forced."""
    moved = [o.item for o in result.outcomes if o.ok and o.before != o.after]
    target = "registered" if result.step == "phones" else "cut-over"
    if moved:
        verb = "would go" if result.dry_run else "went"
        app.info(f"{len(moved)} extension(s) {verb} to {target}: {', '.join(moved[:20])}"
                 + (" ..." if len(moved) > 20 else ""))
    if result.already:
        app.info(f"{len(result.already)} extension(s) were {target} (or further) already")


@command.command("confirm")
@click.option("--wave", "wave_id", required=True, metavar="WAVE", help="The wave whose DIDs now route to the platform.")
@click.option("--force", is_flag=True, help="Confirm although some extensions are not registered (with --reason).")
@click.option("--reason", metavar="TEXT", help="Why it is forced (recorded in the store and the event log).")
@output_options(csv=False)
@pass_app
def confirm(app: App, wave_id: str, force: bool, reason: str | None, fmt: str) -> StepResult:
    """Confirm that WAVE's DIDs are routed to the hosted platform: its registered extensions go to cut-over.

    Number porting happens outside govmigrate; this records that it is done. Refused (exit 8) while an
    extension of the wave is not registered (govmigrate cutover WAVE registers them), unless --force
    with --reason. The wave must be approved as it stands (exit 6); its lock is taken (exit 7).
    """
    from migrate.waves.step import StepOptions
    from migrate.waves.table import step

    with wave_run(app, wave_id, dry_run=False) as wr:
        result = run_with_progress(app, wr, step("sip-confirm"), StepOptions(force=force, reason=reason),
                                   label="confirm")
    if fmt == "json":
        emit_json(phone_doc(result))
    else:
        print_phone_step(app, result)
    return result


def phone_doc(result: StepResult) -> dict:
    """The phone step's result as JSON: which extensions moved, which were there already, what was forced."""
    report = result.details.get("report")
    return {"wave": result.wave, "moved": [o.item for o in result.outcomes if o.ok and o.before != o.after],
            "already": [k for k, _ in result.already],
            "blocking": [{"who": w, "why": y} for w, y in result.forced] + [
                {"who": o.item, "why": o.error} for o in result.failed if o.item not in dict(result.forced)],
            "forced": result.force_reason, "dry_run": result.dry_run,
            "checks": report.as_dict() if report else None}
