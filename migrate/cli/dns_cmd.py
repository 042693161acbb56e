"""`govmigrate dns`: check ministry DNS records, show a wave's change set, and lower TTLs ahead of the switch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from migrate.cli.app import App, pass_app
from migrate.cli.output import emit_json, emit_table, output_options, plain
from migrate.cli.run_cmd import run_with_progress, wave_run
from migrate.core.errors import Finished, MigrateError, UsageError

if TYPE_CHECKING:
    from migrate.dns.changes import ChangeSet
    from migrate.dns.checks import DomainReport
    from migrate.dns.prepare import Prepared
    from migrate.waves.results import StepResult


#: By a check's status (migrate.dns.checks' PASS, WARN, FAIL; spelled out so that --help needs no dnspython).
STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red"}


@click.group()
def command() -> None:
    """Check ministry DNS records and prepare their cut-over to the central host.

    Reads the dns: section of migration.yaml: the authoritative servers of the ministry zones (updates go
    to the primary, signed with the TSIG key), the resolvers to look through (or the parent zone's servers,
    parent_servers), and what every domain publishes after its cut-over. `check` and `plan` change nothing;
    `prepare` lowers TTLs; `rollback` undoes a cut-over, mail included; `settle` raises the TTLs again.
    """


def all_domains(app: App) -> list[str]:
    """Every domain of every source, in project-file order."""
    return list(dict.fromkeys(d.lower() for s in app.project.config.sources for d in s.domains))


def wave_domains(app: App, wave: str) -> list[str]:
    """The domains whose cut-over follows ``wave`` (its plan file's ``cutover_domains``)."""
    from migrate.core.registry import register_users
    from migrate.plans.planfiles import load_plan

    project, store = app.project, app.store
    for problem in register_users(project, store).problems:
        app.warn(str(problem))
    plan = load_plan(app.workspace.plans_dir, project, store)
    wave_plan = plan.wave(wave)
    plan.require_valid(wave)
    assert wave_plan.data is not None
    return list(wave_plan.data.cutover_domains)


def selected_domains(app: App, domains: tuple[str, ...], wave: str | None) -> list[str]:
    if domains and wave:
        raise UsageError("give --domain or --wave, not both")
    if wave:
        return wave_domains(app, wave)
    known = all_domains(app)
    if not domains:
        return known
    chosen = []
    for domain in domains:
        domain = domain.strip().rstrip(".").lower()
        if domain not in known:
            raise UsageError(f"{domain} is not a domain of any source in {app.project.path.name} "
                             f"(domains: {', '.join(known)})")
        chosen.append(domain)
    return list(dict.fromkeys(chosen))


def _no_domains(app: App, wave: str, chosen: list[str], as_json: bool, doc: dict[str, Any]) -> bool:
    if chosen:
        return False
    app.info(f"wave {wave} completes no domain's cut-over (its cutover_domains is empty)")
    if as_json:
        emit_json(doc)
    return True


# -- check --------------------------------------------------------------------------------------------


@command.command("check")
@click.option("--domain", "domains", multiple=True, metavar="DOMAIN", help="Check this domain (repeatable).")
@click.option("--wave", metavar="WAVE", help="Check the domains whose cut-over follows this wave.")
@output_options(csv=False)
@pass_app
def check(app: App, domains: tuple[str, ...], wave: str | None, fmt: str) -> Finished:
    """Check the DNS records of ministry domains: pass, warn or fail, with the reason.

    By default every domain of every source. Per domain: resolvers (they recurse), delegation (the
    parent's NS set is the zone's), glue (the parent's addresses for the zone's name servers are the
    zone's), ns-authority (every name server the parent lists answers with authority), nameservers (every
    configured authoritative server answers, with one SOA serial), MX (targets have A/AAAA and are no
    alias, whether or not the alias resolves; whether they are the central host's yet), SPF (syntax, at most 10 DNS lookups with nested
    includes counted and 2 void lookups, the central host authorised), DMARC (valid, its policy), DKIM
    (the central selector's key present and usable), autodiscover and the client SRV records
    (_imaps._tcp, _submission._tcp, _submissions._tcp), and MTA-STS and TLS-RPT where configured.
    Records the cut-over creates are "not yet" (warn) before the MX points at the central host and
    missing (fail) after. Changes nothing. Exits 1 if any check failed.
    """
    from migrate.dns.checks import FAIL, PASS, WARN, check_domains
    from migrate.dns.client import DnsClient, dns_section

    section = dns_section(app.project)
    chosen = selected_domains(app, domains, wave)
    client = DnsClient(section, app.project.base_dir)
    reports = check_domains(client, section, chosen)
    counts = {s: sum(r.status == s for r in reports) for s in (PASS, WARN, FAIL)}
    if fmt == "json":
        emit_json({"domains": [r.to_dict() for r in reports], "summary": counts})
    else:
        for report in reports:
            _print_report(app, report)
    app.info(f"{len(reports)} domain{'s' if len(reports) != 1 else ''} checked: {counts[PASS]} pass, "
             f"{counts[WARN]} with warnings, {counts[FAIL]} failing")
    return Finished(partial=bool(counts[FAIL]))


def _print_report(app: App, report: DomainReport) -> None:
    from rich.table import Table

    title = plain(f"{report.domain}" + (f" (zone {report.zone})" if report.zone and report.zone.rstrip('.') != report.domain
                                         else ""))
    table = Table(title=title, title_justify="left")
    table.add_column(plain("check"), no_wrap=True)
    table.add_column(plain("status"), no_wrap=True)
    table.add_column(plain("reason"), overflow="fold")
    for c in report.checks:
        table.add_row(plain(c.check), plain(c.status, STATUS_STYLE.get(c.status, "")), plain(c.reason))
    app.out.print(table)


# -- plan ---------------------------------------------------------------------------------------------


@command.command("plan")
@click.option("--wave", required=True, metavar="WAVE", help="The wave whose cutover_domains to show.")
@output_options(csv=False)
@pass_app
def plan(app: App, wave: str, fmt: str) -> None:
    """Show the exact change set of each domain the wave cuts over: every RRset before and after.

    Records are read from the primary as they are now; each RRset that will change is shown with its
    current data and TTL and what it will hold (new and replaced RRsets get cutover_ttl). RRsets already
    as wanted are left out. Apart from SPF, whose v=spf1 string alone is replaced, each RRset is replaced
    whole. Changes nothing.
    """
    from migrate.dns.changes import plan_domain
    from migrate.dns.client import DnsClient, dns_section

    section = dns_section(app.project)
    chosen = wave_domains(app, wave)
    doc: dict[str, Any] = {"wave": wave, "cutover_ttl": section.cutover_ttl, "domains": []}
    if _no_domains(app, wave, chosen, fmt == "json", doc):
        return
    client = DnsClient(section, app.project.base_dir)
    changesets = [plan_domain(client, section, domain) for domain in chosen]
    doc["domains"] = [{**cs.to_dict(), "old_ttl": cs.old_ttl} for cs in changesets]
    if fmt == "json":
        emit_json(doc)
        return
    for cs in changesets:
        _print_changeset(app, cs)


def _print_changeset(app: App, cs: ChangeSet) -> None:
    from rich.table import Table

    domain = cs.domain.rstrip(".")
    if not cs:
        app.out.print(plain(f"{domain}: nothing to change (it already publishes the central host's records)"))
        return
    table = Table(title=plain(f"{domain}: {len(cs)} RRset{'s' if len(cs) != 1 else ''} will change "
                              f"(zone {cs.zone})"), title_justify="left")
    for heading, right in (("record", False), ("name", False), ("type", False), ("TTL", True),
                           ("before", False), ("after", False), ("new TTL", True)):
        data = heading in ("before", "after")  # shown whole: a long DKIM key folds, never ends in "…"
        table.add_column(plain(heading), justify="right" if right else "left", no_wrap=not data,
                         overflow="fold" if data else "ellipsis")
    for row in cs.rows():
        table.add_row(*(plain(row[k]) for k in ("what", "name", "type", "ttl", "before", "after", "new_ttl")))
    app.out.print(table)


# -- prepare ------------------------------------------------------------------------------------------


@command.command("prepare")
@click.option("--wave", required=True, metavar="WAVE", help="The wave whose cutover_domains to prepare.")
@output_options(csv=False)
@pass_app
def prepare(app: App, wave: str, fmt: str) -> None:
    """Lower the TTL of every RRset that will change to cutover_ttl, ahead of the switch.

    Each domain of the wave's cutover_domains in turn: an RFC 2136 update over TCP to the primary,
    signed with the TSIG key, with prerequisites (each RRset still exactly as read); then a wait until
    every authoritative server serves the lowered TTLs. The earliest safe switch time (now + the old
    TTL) is recorded per domain and printed. Re-running changes nothing that is done. A refused update
    or a record changed meanwhile changes nothing and exits 9; a change not served by every server
    within propagation_timeout exits 10; an unreachable primary exits 4.
    """
    from migrate.dns.client import DnsClient, dns_section
    from migrate.dns.prepare import prepare_domain

    section = dns_section(app.project)
    chosen = wave_domains(app, wave)
    doc: dict[str, Any] = {"wave": wave, "cutover_ttl": section.cutover_ttl, "domains": []}
    if _no_domains(app, wave, chosen, fmt == "json", doc):
        return
    client = DnsClient(section, app.project.base_dir)
    client.tsig()  # a missing or unusable secret stops the command before any server is asked
    done: list[Prepared] = []
    for domain in chosen:
        app.info(f"{domain}: reading its records from the primary and lowering TTLs")
        try:
            done.append(prepare_domain(client, section, app.store, domain, wave=wave))
        except MigrateError as exc:
            if done:
                exc.message = f"{domain}: {exc.message} (prepared before it: {', '.join(p.domain for p in done)})"
            else:
                exc.message = f"{domain}: {exc.message}"
            exc.args = (exc.message,)
            raise
    safe = max((p.safe_after for p in done if p.safe_after), default=None)
    doc["domains"] = [p.to_dict() for p in done]
    doc["safe_after"] = safe
    if fmt == "json":
        emit_json(doc)
        return
    for p in done:
        _print_prepared(app, p)
    if safe:
        app.out.print(plain(f"wave {wave}: earliest safe switch time {safe} (UTC)"))


def _print_prepared(app: App, p: Prepared) -> None:
    from rich.table import Table

    if p.lowered:
        table = Table(title=plain(f"{p.domain}: TTL lowered on {len(p.lowered)} RRset"
                                  f"{'s' if len(p.lowered) != 1 else ''}"), title_justify="left")
        for heading in ("name", "type", "TTL before", "TTL now"):
            table.add_column(plain(heading), justify="right" if heading.startswith("TTL") else "left")
        for row in p.lowered.rows():
            table.add_row(plain(row["name"]), plain(row["type"]), plain(row["ttl"]), plain(row["new_ttl"]))
        app.out.print(table)
    status = {"prepared": f"prepared; safe to switch after {p.safe_after}"}.get(p.state, p.state)
    line = f"{p.domain}: {status}" + "".join(f"; {note}" for note in p.notes)
    app.out.print(plain(line))


# -- rollback -----------------------------------------------------------------------------------------


@command.command("rollback")
@click.option("--wave", required=True, metavar="WAVE", help="The wave whose cut-over to undo.")
@output_options(csv=False)
@pass_app
def rollback(app: App, wave: str, fmt: str) -> StepResult:
    """Undo the cut-over of the wave's domains: the baseline back, and the mail that arrived since copied back.

    Per domain: the baseline put back with one RFC 2136 update signed with TSIG whose prerequisites require
    every record to be exactly as the cut-over left it; when the primary refuses it whole, one RRset at a
    time, so every RRset it allows is restored and each it refuses (its integrity checks, a policy, someone's
    change since, never overwritten) is listed with why and written as an nsupdate script and zone-file lines
    beside the baseline (reports/dns-rollback-WAVE-DOMAIN.nsupdate and .zone). Then a wait until every
    authoritative server serves it, and until caches of the switched MX have expired; then the mail that
    reached the central host since the switch, and flags users changed there, are copied back to the ministry
    server (nothing twice), and each mailbox goes back to final-synced. Run it again to finish what is left:
    it sends only what is missing and copies back only what is new. Takes the wave's lock (exit 7 while a
    cut-over of it runs). Exits 1 when records or mailboxes are left, each listed.
    """
    from migrate.waves.results import StepResult
    from migrate.waves.step import StepOptions
    from migrate.waves.table import step

    with wave_run(app, wave, dry_run=False) as wr:
        if not wr.domains():
            wr.check_plan(approval=False)
            result = StepResult(wave, "rollback", False, items="domain")
            _no_domains(app, wave, [], fmt == "json", {"wave": wave, "domains": []})
            return result
        result = run_with_progress(app, wr, step("rollback"), StepOptions(), label="rollback")
    if fmt == "json":
        emit_json({"wave": wave, "exit_code": int(result.exit_code),
                   "domains": [o.as_dict() for o in result.domains]})
        return result
    for o in result.domains:
        app.out.print(plain(f"{o.domain}: {o.before} → {o.after}: {o.detail}" if o.before != o.after
                            else f"{o.domain}: {o.detail}"))
        if o.unrestored:
            emit_table(app, f"{o.domain}: not put back", [("name", "name"), ("type", "type"), ("baseline", "baseline"),
                                                          ("now", "now"), ("why", "why")], o.unrestored)
        for path in o.files:
            app.out.print(plain(f"  {path}"))
        failed = [m for m in o.mailboxes if not m["ok"]]
        if failed:
            emit_table(app, f"{o.domain}: not copied back", [("email", "mailbox"), ("error", "why")], failed)
    return result


# -- settle -------------------------------------------------------------------------------------------


@command.command("settle")
@click.option("--wave", required=True, metavar="WAVE", help="The wave whose cut-over domains to settle.")
@click.option("--force", is_flag=True, help="Settle before dns.settle_after has passed (with --reason).")
@click.option("--reason", metavar="TEXT", help="Why it is settled early (recorded).")
@output_options(csv=False)
@pass_app
def settle(app: App, wave: str, force: bool, reason: str | None, fmt: str) -> StepResult:
    """Raise the TTLs of a done cut-over again, once it has held for dns.settle_after.

    Each RRset the switch wrote gets the TTL it had before `dns prepare` lowered it (an RRset the switch
    created: the highest of those), with one RFC 2136 update signed with TSIG whose prerequisites require
    the records to be as the switch left them (exit 9 and no change if someone changed one); then a wait
    until every authoritative server serves it. Before dns.settle_after (3 days by default) the gate refuses
    (exit 8) unless --force with --reason. Domains whose cut-over is not done are listed and left (exit 1).
    """
    from migrate.waves.step import StepOptions
    from migrate.waves.table import step

    with wave_run(app, wave, dry_run=False) as wr:
        result = run_with_progress(app, wr, step("settle"), StepOptions(force=force, reason=reason), label="settle")
    if fmt == "json":
        emit_json({"wave": wave, "exit_code": int(result.exit_code), "domains": [o.as_dict() for o in result.domains],
                   "blocked": [{"domain": d, "why": why} for d, why in result.blocked],
                   "already": [{"domain": d, "why": why} for d, why in result.already]})
        return result
    for o in result.domains:
        app.out.print(plain(f"{o.domain}: {o.before} → {o.after}: {o.detail}"))
    for domain, why in result.blocked + result.already:
        app.out.print(plain(f"{domain}: {why}"))
    return result
