"""`govmigrate voip`: provisioning files for the hosted VOIP platform, per wave."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import click

from migrate.cli.app import App, pass_app
from migrate.cli.output import emit_json, emit_table, output_options
from migrate.cli.run_cmd import run_with_progress, wave_run
from migrate.voip.export import FORMATS

if TYPE_CHECKING:
    from migrate.waves.provision import Export
    from migrate.waves.results import StepResult



@click.group()
def command() -> None:
    """Provision a wave's phones on the hosted VOIP platform."""


@command.command("export")
@click.option("--wave", "wave_id", required=True, metavar="WAVE", help="The approved wave whose extensions to export.")
@click.option("--format", "fmt_name", required=True, type=click.Choice(FORMATS),
              help="freepbx: Bulk Handler extensions.csv and dids.csv; kamailio: db_text subscriber, dbaliases "
                   "and version tables; csv: the neutral CSV (README: Phones).")
@click.option("--out", type=click.Path(path_type=Path), metavar="PATH",
              help="Where to write: a file for csv, a directory for freepbx and kamailio (everything goes inside "
                   "it; default: exports/WAVE/phones.csv or exports/WAVE/FORMAT/ in the workspace).")
@click.option("--new-secrets", is_flag=True,
              help="Give every SIP phone that has no password from govmigrate yet a new strong one (and PIN-less "
                   "voicemail boxes a PIN), made once and kept sealed in the state store: every later export and "
                   "sip check uses the same ones.")
@click.option("--rotate-secrets", is_flag=True,
              help="Make new passwords for every SIP phone of the wave on purpose, replacing the kept ones.")
@click.option("--algorithm", type=click.Choice(["MD5", "SHA-256"]), default="MD5", show_default=True,
              help="Kamailio: the digest algorithm of the ha1/ha1b columns (the registrar's auth setting).")
@click.option("--force", is_flag=True, help="Export extensions held by errors in the PBX files as the files read "
                                            "now (with --reason, which is recorded).")
@click.option("--reason", metavar="TEXT", help="Why held extensions are exported anyway (recorded).")
@output_options(csv=False)
@pass_app
def export(app: App, wave_id: str, fmt_name: str, out: Path | None, new_secrets: bool, rotate_secrets: bool,
           algorithm: str, force: bool, reason: str | None, fmt: str) -> StepResult:
    """Write WAVE's extensions as the hosted platform's provisioning files, and mark them provisioned.

    The wave must be approved as it stands (exit 6). Each SIP phone gets the password govmigrate keeps
    for it (made once by --new-secrets, sealed in the state store with the key phones.secrets_key
    names; --rotate-secrets makes new ones), else its PBX's own, read again from the PBX files. A
    Kamailio export writes OUT/db_text/ (the tables) and, when it carries kept passwords,
    OUT/phones-passwords.csv (the clear passwords the phones are configured with). Every file is
    created mode 0600: keep them as secret as the passwords. Lines that are not SIP phones (a fax's
    custom dial string) get no account and are listed as moved by hand. An extension the files no
    longer have, or one that would register without a secret, refuses the whole export with each named
    (exit 2); one held by an error in the PBX files refuses it too (exit 8) unless --force --reason.
    Nothing is written and nothing changes state when it is refused. Exporting again rewrites the files
    with the same passwords; extensions already provisioned keep their state.
    """
    from migrate.waves.step import StepOptions
    from migrate.waves.table import step

    options = StepOptions(force=force, reason=reason,
                          params={"format": fmt_name, "out": out, "new_secrets": new_secrets,
                                  "rotate_secrets": rotate_secrets, "algorithm": algorithm})
    with wave_run(app, wave_id, dry_run=False) as wr:
        result = run_with_progress(app, wr, step("provision"), options, label="export")
    export_done: Export | None = result.details.get("export")
    if export_done is None:  # nothing to export
        return result
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
        for key, why in export_done.by_hand.items():
            app.info(f"{key} moved by hand: {why}")
        if export_done.kept:
            where = export_done.secrets_file or export_done.files[0]
            app.info(f"{export_done.kept} SIP phone(s) have passwords govmigrate keeps ({export_done.made} made by this "
                     f"export" + (f", {export_done.made_pins} voicemail PIN(s) too" if export_done.made_pins else "")
                     + f"): they are in {where}; configure the phones from it, then keep it safe")
    return result


def _mode(path: Path) -> str:
    return oct(stat.S_IMODE(os.stat(path).st_mode))[2:].rjust(4, "0")
