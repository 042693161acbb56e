"""`govmigrate voip`: provisioning files for the hosted VOIP platform, per wave."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import click

from migrate.cli.app import App, pass_app
from migrate.cli.output import emit_json, emit_table
from migrate.core.registry import register_users
from migrate.plans.planfiles import load_plan
from migrate.voip.provision import FORMATS, export_wave


@click.group()
def command() -> None:
    """Provision a wave's phones on the hosted VOIP platform."""


@command.command("export")
@click.option("--wave", "wave_id", required=True, metavar="WAVE", help="The approved wave whose extensions to export.")
@click.option("--format", "fmt", required=True, type=click.Choice(FORMATS),
              help="freepbx: Bulk Handler extensions.csv and dids.csv; kamailio: db_text subscriber, dbaliases "
                   "and version tables; csv: the neutral CSV (README: Phones).")
@click.option("--out", type=click.Path(path_type=Path), metavar="PATH",
              help="Where to write: a file for csv, a directory for freepbx and kamailio "
                   "(default: exports/WAVE/phones.csv or exports/WAVE/FORMAT/ in the workspace).")
@click.option("--new-secrets", is_flag=True,
              help="Give every extension a new strong SIP password (and PIN-less voicemail boxes a new PIN) "
                   "instead of the PBX's own.")
@click.option("--algorithm", type=click.Choice(["MD5", "SHA-256"]), default="MD5", show_default=True,
              help="Kamailio: the digest algorithm of the ha1/ha1b columns (the registrar's auth setting).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@pass_app
def export(app: App, wave_id: str, fmt: str, out: Path | None, new_secrets: bool, algorithm: str,
           as_json: bool) -> None:
    """Write WAVE's extensions as the hosted platform's provisioning files, and mark them provisioned.

    The wave must be approved as it stands (exit 6). Secrets are read again from the PBX files (the
    state store never holds them), or made new with --new-secrets; a Kamailio export with new secrets
    also writes OUT-new-secrets.csv, the clear passwords the phones are configured with. Every file is
    created mode 0600: keep them as secret as the passwords. An extension the files no longer have, or
    one that would register without a secret, refuses the whole export with each named (exit 2):
    nothing is written and nothing changes state. Exporting again rewrites the files; extensions already
    provisioned keep their state.
    """
    project, store = app.project, app.store
    for problem in register_users(project, store).problems:
        app.warn(str(problem))
    plan = load_plan(app.workspace.plans_dir, project, store)
    result = export_wave(project, store, plan, wave_id, fmt=fmt, out=out, exports_dir=app.workspace.root / "exports",
                         locks_dir=app.workspace.locks_dir, new_secrets=new_secrets, algorithm=algorithm)
    if as_json:
        emit_json(result.as_dict())
    else:
        rows = [{"file": str(f), "mode": _mode(f), "size": f.stat().st_size} for f in result.files]
        emit_table(app, f"wave {wave_id}: {fmt} export", [("file", "file"), ("mode", "mode"), ("size", "bytes>")],
                   rows, no_wrap=("file",))
        app.info(f"{len(result.provisioned)} extension(s) provisioned"
                 + (f", {len(result.again)} already provisioned exported again" if result.again else ""))
        for key, why in result.skipped.items():
            app.info(f"{key} left out: {why}")
        if new_secrets:
            where = result.secrets_file or result.files[0]
            app.info(f"new SIP passwords for {result.new_secrets} extension(s)"
                     + (f" and new voicemail PINs for {result.new_pins}" if result.new_pins else "")
                     + f" are in {where} and nowhere else: configure the phones from it, then keep it safe")
    for warning in result.warnings:
        app.warn(warning)


def _mode(path: Path) -> str:
    return oct(stat.S_IMODE(os.stat(path).st_mode))[2:].rjust(4, "0")
