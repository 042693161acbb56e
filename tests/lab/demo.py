"""``make demo``: start the local test lab, create a workspace pointed at it, and run the whole job end to end.

Every step runs the real ``govmigrate`` command as a sysadmin would type it, and shows its output: create
the workspace, check it, inventory the ministry servers, generate and approve the wave plan, run the pilot
and the first ministry wave through their prestage, delta and final passes (with a simulated crash and
its resumption), check, plan, prepare and cut over the wave's DNS on the lab's BIND9 (the TTL wait
shortened by a lab-only setting, said so where it happens), verify the moved ministry, then the phones: every ministry PBX's files
inventoried and tied to their users, the plan regenerated so that each phone joins its user's wave, the
pilot's phones exported as Kamailio tables that the lab's Kamailio loads, the hosted platform checked the
way the phones reach it (the lab's BIND9 publishes its NAPTR, SRV and A records; OPTIONS over UDP, TCP and
TLS; every pilot phone REGISTERs with digest authentication), the pilot's phones cut over and confirmed
(sipsak, an independent client, registers the helpdesk user's phone too), then the helpdesk's status view
(mail and phone in one), several migration hosts (a second workspace whose state is in the lab's
PostgreSQL: two `govmigrate worker` processes copy a wave that `run --workers` queues), and the project
manager's report (terminal, CSV, and a self-contained HTML file
with charts, plus the pilot's record for the change board, with times in the government's zone). The demo ends
with a summary and exits non-zero if a step did not end as expected. The workspace is left in
``demo-workspace/`` for a look around afterwards (the lab servers are stopped).
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab import scenario
from tests.lab.bind import MAX_TTL_WAIT, DnsLab, start_dns_lab
from tests.lab.kamailio import DOMAIN as SIP_DOMAIN
from tests.lab.kamailio import KamailioServer, sipsak, start_kamailio
from tests.lab.pbx import PbxFiles, add_pbx, write_pbx
from tests.lab.postgres import PostgresServer, start_postgres
from tests.lab.scenario import Lab

ROOT = Path(__file__).resolve().parents[2]
#: Where the demo leaves its workspaces (GOVMIGRATE_DEMO_DIR: elsewhere, as the report's print test runs it).
PLACE = Path(os.environ.get("GOVMIGRATE_DEMO_DIR") or ROOT)
WORKSPACE = PLACE / "demo-workspace"
#: The second workspace: the Ministry of Education's mail moved by two worker hosts sharing a PostgreSQL store.
SHARED_WORKSPACE = PLACE / "demo-workspace-shared"
#: The government's time zone, as the demo's project file names it.
TIMEZONE = "America/Belize"


@dataclass
class Step:
    title: str
    args: list[str]
    expect: int = 0
    #: Extra environment for this step only.
    env: dict[str, str] = field(default_factory=dict)
    #: Runs before the command (e.g. to point the new workspace at the lab); returns a line to show.
    before: Callable[[], str] | None = None
    #: Runs after the command; returns a line to show.
    after: Callable[[], str] | None = None
    #: The workspace the command works on (default: the demo's).
    workspace: Path | None = None


def steps(lab: Lab | None = None, dns: DnsLab | None = None, registrar: KamailioServer | None = None,
          postgres: PostgresServer | None = None) -> list[Step]:
    first_window = (dt.date.today() + dt.timedelta(days=7)).isoformat()
    later_window = (dt.date.today() + dt.timedelta(days=21)).isoformat()  # waves not yet started, re-dated
    health = lab.sources["health"].mailboxes if lab else []
    helpdesk_user = next((b.email for b in health if "pilot" in b.user_flags), "maria")
    vip = next((b.display_name for b in health if "vip" in b.user_flags), "")
    domain = scenario.MODERN_DOMAIN

    def point_at_lab() -> str:
        assert lab is not None and dns is not None
        scenario.write_workspace(WORKSPACE, lab)
        scenario.add_dns(WORKSPACE, dns)
        project = WORKSPACE / "migration.yaml"
        project.write_text(project.read_text() + f"timezone: {TIMEZONE}\n")
        return (f"(the demo points {WORKSPACE.name}/migration.yaml at the lab servers, writes their user lists, "
                f"adds the dns: section for the lab's BIND9, and names the government's time zone, {TIMEZONE})")

    def wait_for_the_old_ttl() -> str:
        # Openly shortened: the lab's project file sets dns.max_ttl_wait (labs only), so the gate waits for
        # at most that long instead of the whole old TTL (an hour in the lab's zones).
        assert dns is not None
        time.sleep(MAX_TTL_WAIT + 0.5)
        return (f"(the demo waited {MAX_TTL_WAIT} s: its project file sets dns.max_ttl_wait: {MAX_TTL_WAIT}, a lab-only "
                "setting, so the gate waits that long instead of the old TTL of 3600 s)")

    pbx: dict[str, PbxFiles] = {}

    def add_phones() -> str:
        # Health runs FreePBX (its Bulk Handler exports, pjsip.conf, a voicemail.conf in Windows-1252);
        # Education an older Asterisk with chan_sip.
        assert lab is not None
        # Both number from the government's one dial plan (Health 2xxx, Education 3xxx), as the hosted
        # platform does: a number used by two ministries would be named by file and line.
        formats = {scenario.MODERN: ("freepbx-extensions", "freepbx-dids", "pjsip", "voicemail"),
                   scenario.LEGACY: ("sip", "voicemail")}
        first = {scenario.MODERN: 2001, scenario.LEGACY: 3001}
        for sid, source in lab.sources.items():
            pbx[sid] = write_pbx(WORKSPACE / "pbx" / sid, source.mailboxes, seed="demo", source_id=sid,
                                 domain=source.domain, formats=formats[sid], first=first[sid], dial_plan="gov",
                                 latin1=("voicemail",) if sid == scenario.MODERN else ())
            add_pbx(WORKSPACE, sid, pbx[sid])
        scenario.set_phones(WORKSPACE, sip_domain=SIP_DOMAIN)
        return (f"(the demo writes each ministry's PBX files into {WORKSPACE.name}/pbx/, as their PBXs export them, "
                f"lists them under each source's pbx: in migration.yaml, and sets phones.sip_domain: {SIP_DOMAIN})")

    def load_platform() -> str:
        assert registrar is not None
        export = WORKSPACE / "exports" / "pilot" / "kamailio" / "db_text"
        if not (export / "subscriber").exists():
            return f"(no Kamailio export in {export.relative_to(PLACE)} to load: the export step above failed)"
        registrar.load(export)
        scenario.set_sip(WORKSPACE, domain=SIP_DOMAIN, ca_file=scenario._copy_ca(WORKSPACE, registrar.ca_file))
        return (f"(the lab's Kamailio, the hosted platform for {SIP_DOMAIN}, loads {export.relative_to(PLACE)}; the "
                f"demo adds sip: domain: {SIP_DOMAIN} and the platform's CA to migration.yaml; the lab's BIND9 "
                "publishes the domain's NAPTR, SRV and A records)")

    def register_with_sipsak() -> str:
        assert registrar is not None
        number = next((n for n, e in pbx[scenario.MODERN].expected.items() if e.user == helpdesk_user), None)
        if number is None:
            return f"({helpdesk_user} has no desk phone in the lab's PBX files)"
        run = sipsak(registrar, number, pbx[scenario.MODERN].expected[number].secret or "", expires=0)
        verdict = "200 OK" if run.registered else f"not registered ({run.statuses})"
        return (f"an independent client agrees: sipsak REGISTERs extension {number} at the lab's Kamailio with the "
                f"password from the ministry's PBX files (and removes it again): {verdict}")

    def on_both_servers() -> str:
        assert dns is not None
        lines = [f"  {server.name:<9} {server.address}: MX {', '.join(dns.query(server, domain, 'MX'))}; "
                 f"serial {dns.serial(server, domain)}" for server in (dns.primary, dns.secondary)]
        return "the lab's own view of both authoritative servers of " + domain + ":\n" + "\n".join(lines)

    workers: list[subprocess.Popen] = []
    education = lab.sources[scenario.LEGACY].mailboxes if lab else []
    education_user = next((b.email for b in education if not b.user_flags), "")

    def share_state() -> str:
        assert lab is not None and postgres is not None
        scenario.write_workspace(SHARED_WORKSPACE, lab, sources=[scenario.LEGACY])
        project = SHARED_WORKSPACE / "migration.yaml"
        address = postgres.url.split("@", 1)[1]
        project.write_text(project.read_text() + f"state:\n  url: postgresql://{address}\n  user: {postgres.user}\n"
                           "  password: env:GOVLAB_STATE_PASSWORD\n")
        return (f"(the demo points {SHARED_WORKSPACE.name}/migration.yaml at the Ministry of Education's server and "
                f"adds state: {{url: postgresql://{address}, user: {postgres.user}, password: "
                "env:GOVLAB_STATE_PASSWORD}: every host with this project file shares that store)")

    def start_workers() -> str:
        env = dict(os.environ, PYTHONPATH=str(ROOT), GOVLAB_STATE_PASSWORD=postgres.password if postgres else "")
        env.pop("GOVMIGRATE_WORKSPACE", None)
        for name in ("mig-01", "mig-02"):
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "migrate", "-w", str(SHARED_WORKSPACE), "-q", "worker", "--max-mailboxes", "2"],
                env={**env, "GOVMIGRATE_HOST": name}, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return ("two workers started, standing in for migration hosts mig-01 and mig-02:\n"
                "  mig-01$ govmigrate worker --max-mailboxes 2\n  mig-02$ govmigrate worker --max-mailboxes 2")

    def stop_workers() -> str:
        codes = []
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
            codes.append(worker.wait(timeout=120))
        return f"(both workers stopped with SIGTERM, as a service manager stops them: exit {codes[0]}, {codes[1]})"

    shared = [
        Step("Several hosts: a workspace for the Ministry of Education whose state is in PostgreSQL",
             ["init", str(SHARED_WORKSPACE)], workspace=SHARED_WORKSPACE),
        Step("Several hosts: check it (the store is the shared database now)", ["check"],
             workspace=SHARED_WORKSPACE, before=share_state if postgres else None),
        Step("Several hosts: inventory into the shared store", ["inventory", "mail"], workspace=SHARED_WORKSPACE),
        Step("Several hosts: generate the plan", ["plan", "generate"], workspace=SHARED_WORKSPACE),
        Step("Several hosts: approve its first wave", ["plan", "approve", "wave-01"], workspace=SHARED_WORKSPACE),
        Step("Several hosts: queue wave-01's prestage for the workers and follow them (the 'copied by' column)",
             ["run", "wave-01", "--workers"], workspace=SHARED_WORKSPACE,
             before=start_workers if postgres else None, after=stop_workers if postgres else None),
        Step("Several hosts: verify what the two hosts copied", ["verify", "--source", scenario.LEGACY],
             workspace=SHARED_WORKSPACE),
        Step("Several hosts: the helpdesk sees which host copied a mailbox", ["status", education_user or "x"],
             workspace=SHARED_WORKSPACE),
    ]

    return [
        Step("Create a migration workspace", ["init", str(WORKSPACE)]),
        Step("Validate the project file and user lists (offline)", ["check"], before=point_at_lab if lab else None),
        Step("Inventory every ministry mail server", ["inventory", "mail"]),
        Step("Generate the wave plan (a window every week from next week)",
             ["plan", "generate", "--first-date", first_window]),
        Step("Check the plan files", ["plan", "validate"]),
        Step("A wave that is not approved does not run", ["run", "pilot"], expect=6),
        Step("Approve the pilot", ["plan", "approve", "pilot"]),
        Step("Pilot: dry run (pre-flight, and what would be copied)", ["run", "pilot", "--dry-run"]),
        Step("Pilot: prestage pass", ["run", "pilot", "--pass", "prestage"]),
        Step("Pilot: delta pass", ["run", "pilot", "--pass", "delta"]),
        Step("Pilot: final pass", ["run", "pilot", "--pass", "final"]),
        Step("Approve the first ministry wave", ["plan", "approve", "wave-01"]),
        Step("wave-01: prestage pass, killed with SIGKILL mid-copy (a simulated crash)",
             ["run", "wave-01", "--pass", "prestage"], expect=-signal.SIGKILL,
             env={"GOVMIGRATE_CRASH_AT": "after-append:6"}),
        Step("wave-01: the same command again resumes", ["run", "wave-01", "--pass", "prestage"]),
        Step("wave-01: delta pass", ["run", "wave-01", "--pass", "delta"]),
        Step("wave-01: final pass", ["run", "wave-01", "--pass", "final"]),
        Step(f"DNS: check {domain} before its cut-over (what the switch creates is 'not yet')",
             ["dns", "check", "--domain", domain]),
        Step("DNS: the exact change set of wave-01's domains, each RRset before and after with its TTL",
             ["dns", "plan", "--wave", "wave-01"]),
        Step("DNS: lower the TTLs of what will change, ahead of the switch", ["dns", "prepare", "--wave", "wave-01"]),
        Step("Cut over wave-01: gate, baseline, TSIG-signed update, wait for every server, advance, final delta",
             ["cutover", "wave-01"], before=wait_for_the_old_ttl),
        Step(f"DNS: {domain} after the switch, checked on every authoritative server", ["dns", "check", "--domain", domain],
             before=on_both_servers),
        Step("Verify the Ministry of Health message by message after its cut-over's last copy: no duplicate, nothing "
             "missing (the report shows it as the wave's data consistency)", ["verify", "--source", "health"]),
        Step("Phones: read every ministry PBX and tie each extension to its user (a name-only match is flagged)",
             ["inventory", "phones"], before=add_phones if lab else None),
        Step("Phones: regenerate the plan; each phone joins its user's wave (started waves must be approved again)",
             ["plan", "generate", "--replace", "--first-date", later_window], expect=1),
        Step("Approve the pilot again, now with its users' phones", ["plan", "approve", "pilot"]),
        Step("Phones: provision the pilot's phones as Kamailio tables (ha1 digests only; files 0600)",
             ["voip", "export", "--wave", "pilot", "--format", "kamailio"]),
        Step("Phones: the same phones as a FreePBX Bulk Handler import", ["voip", "export", "--wave", "pilot",
                                                                          "--format", "freepbx"]),
        Step("SIP: check the hosted platform for the pilot's phones (RFC 3263 NAPTR/SRV/A, OPTIONS over UDP, TCP "
             "and TLS, the certificate, a REGISTER with digest per phone)", ["sip", "check", "--wave", "pilot"],
             before=load_platform if registrar else None),
        Step("Cut over the pilot's phones: the checks again, and each phone that registers is registered",
             ["cutover", "pilot"]),
        Step("The pilot's DIDs now route to the platform (ported outside govmigrate): confirm",
             ["sip", "confirm", "--wave", "pilot"], before=register_with_sipsak if registrar else None),
        *shared,
        Step("The plan as it stands", ["plan", "show"]),
        Step("Helpdesk: where is this user? (mail and phone in one view)", ["status", helpdesk_user]),
        Step("Helpdesk: a VIP, found by name", ["status", vip.split()[-1] if vip else "minister"]),
        Step("Programme report for the project manager", ["report"]),
        Step("The same report for a spreadsheet", ["report", "--csv"]),
        Step("The same report as one HTML file to open, forward or print (no network needed; its path is printed)",
             ["report", "--html"]),
        Step("The pilot's record for the change board: approval, each pass per mailbox, SIP results, events",
             ["report", "--wave", "pilot", "--html"]),
        Step("The event log of the pilot wave", ["log", "--object", "wave/pilot"]),
    ]


def run_step(step: Step, env: dict[str, str]) -> tuple[int, float]:
    argv = [sys.executable, "-m", "migrate", "-w", str(step.workspace or WORKSPACE), *step.args]
    print(f"\n\033[1m== {step.title}\033[0m", flush=True)
    if step.before is not None:
        print(step.before(), flush=True)
    print(f"$ govmigrate {shlex.join(step.args)}", flush=True)
    started = time.monotonic()
    result = subprocess.run(argv, env={**env, **step.env}, cwd=ROOT)
    seconds = time.monotonic() - started
    if step.after is not None:
        print(step.after(), flush=True)
    return result.returncode, seconds


def main() -> int:
    print("starting the test lab: two ministry Dovecot servers (modern and legacy layout) and the central host")
    started = time.monotonic()
    lab = scenario.start_lab(users=4, messages=60)
    dns: DnsLab | None = None
    registrar: KamailioServer | None = None
    postgres: PostgresServer | None = None
    try:
        registrar = start_kamailio()
        postgres = start_postgres()
        dns = start_dns_lab([source.domain for source in lab.sources.values()],
                            records={"gov.bz": registrar.dns_records()})
        for old_workspace in (WORKSPACE, SHARED_WORKSPACE):
            if old_workspace.exists():
                shutil.rmtree(old_workspace)
        for source in lab.sources.values():
            print(f"  {source.ministry:<24} {source.server.config.name:<10} imaps://127.0.0.1:{source.server.tls_port}  "
                  f"{len(source.mailboxes)} mailboxes, {sum(b.messages for b in source.mailboxes)} messages")
        print(f"  {'central host':<24} {'central':<10} imaps://127.0.0.1:{lab.central.tls_port}")
        print(f"  {'DNS':<24} {'BIND9':<10} parent {dns.parent.address}, primary {dns.primary.address}, "
              f"secondary {dns.secondary.address}, resolver {dns.resolver.address} (port 53, TSIG-signed updates)")
        print(f"  {'hosted VOIP platform':<24} {'Kamailio':<10} {SIP_DOMAIN}: sip:{registrar.address}:5060 (UDP, TCP), "
              f"sips:{registrar.address}:5061 (TLS)")
        print(f"  {'shared state store':<24} {'PostgreSQL':<10} {postgres.url} (scram-sha-256; for several hosts)")
        print("  every server over TLS with a certificate from the lab CA (the workspace's lab-ca.crt)")
        print(f"workspace: {WORKSPACE}")
        env = dict(os.environ, PYTHONPATH=str(ROOT), GOVLAB_STATE_PASSWORD=postgres.password)
        env.pop("GOVMIGRATE_WORKSPACE", None)
        results = []
        for step in steps(lab, dns, registrar, postgres):
            code, seconds = run_step(step, env)
            results.append((step, code, seconds))
        print("\n\033[1m== Summary\033[0m")
        failed = 0
        for step, code, seconds in results:
            ok = code == step.expect
            failed += not ok
            note = f"  (exit {code} as expected)" if ok and code else ""
            print(f"  {'ok  ' if ok else 'FAIL'} {seconds:6.1f}s  govmigrate {shlex.join(step.args)}"
                  + (note if ok else f"  (exit {code}, expected {step.expect})"))
        print(f"{len(results) - failed} of {len(results)} steps as expected in {time.monotonic() - started:.0f}s; "
              f"workspace left in {WORKSPACE}")
        return 1 if failed else 0
    finally:
        if postgres is not None:
            postgres.cleanup()
        if dns is not None:
            dns.cleanup()
        if registrar is not None:
            registrar.cleanup()
        lab.stop()


if __name__ == "__main__":
    sys.exit(main())
