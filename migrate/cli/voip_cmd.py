"""`govmigrate voip`: provisioning files for the hosted VOIP platform, per wave."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import click

from migrate.cli.app import App, pass_app
from migrate.cli.output import emit_json, emit_table, output_options
from migrate.cli.run_cmd import run_with_progress, wave_run
from migrate.voip.export import FORMATS
from migrate.waves.provision import Export
from migrate.waves.results import StepResult
from migrate.waves.step import StepOptions
from migrate.waves.table import step


@click.group()
def command() -> None:
    """Provision a wave's phones on the hosted VOIP platform."""


@command.command("export")
@click.option("--wave", "wave_id", required=True, metavar="WAVE", help="The approved wave whose extensions to export.")
@click.option("--format", "fmt_name", required=True, type=click.Choice(FORMATS),
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
@output_options(csv=False)
@pass_app
def export(app: App, wave_id: str, fmt_name: str, out: Path | None, new_secrets: bool, algorithm: str,
           fmt: str) -> StepResult:
    """Write WAVE's extensions as the hosted platform's provisioning files, and mark them provisioned.

    The wave must be approved as it stands (exit 6). Secrets are read again from the PBX files (the
    state store never holds them), or made new with --new-secrets; a Kamailio export with new secrets
    also writes OUT-new-secrets.csv, the clear passwords the phones are configured with. Every file is
    created mode 0600: keep them as secret as the passwords. An extension the files no longer have, or
    one that would register without a secret, refuses the whole export with each named (exit 2):
    nothing is written and nothing changes state. Exporting again rewrites the files; extensions already
    provisioned keep their state.
    """
    options = StepOptions(params={"format": fmt_name, "out": out, "new_secrets": new_secrets, "algorithm": algorithm})
    with wave_run(app, wave_id, dry_run=False) as wr:
        result = run_with_progress(app, wr, step("provision"), options, label="export")
    export_done: Export = result.details["export"]
    if fmt == "json":
        emit_json(export_done.as_dict(wave_id, result.warnings))
    else:
        rows = [{"file": str(f), "mode": _mode(f), "size": f.stat().st_size} for f in export_done.files]
        emit_table(app, f"wave {wave_id}: {fmt_name} export", [("file", "file"), ("mode", "mode"),
                                                                ("size", "bytes>")], rows, no_wrap=("file",))
        app.info(f"{len(export_done.provisioned)} extension(s) provisioned"
                 + (f", {len(export_done.again)} already provisioned exported again" if export_done.again else ""))
        for key, why in export_done.skipped.items():
            app.info(f"{key} left out: {why}")
        if new_secrets:
            where = export_done.secrets_file or export_done.files[0]
            app.info(f"new SIP passwords for {export_done.new_secrets} extension(s)"
                     + (f" and new voicemail PINs for {export_done.new_pins}" if export_done.new_pins else "")
                     + f" are in {where} and nowhere else: configure the phones from it, then keep it safe")
    return result


def _mode(path: Path) -> str:
    return oct(stat.S_IMODE(os.stat(path).st_mode))[2:].rjust(4, "0")
