"""The provisioning step of a wave's phones (``govmigrate voip export --wave WAVE --format F``): the files the
hosted VOIP platform loads (:mod:`migrate.voip.export`) for the extensions the approved wave lists, then each
moved to ``provisioned``.

The gate reads the PBX files again (the store keeps no secret): every extension of the wave must still be
there. The writers refuse the whole export (exit 2, nothing written) naming every extension at fault. New
secrets exist only in the files written: for Kamailio, whose tables hold only digests, also in
``<out>-new-secrets.csv``, because the phones need them in clear. Every file is 0600 from creation; nothing
secret is printed, logged or stored.

The files are written (all or none) before any state changes; a run killed between the two leaves the
extensions ``planned`` with the files on disk, and the same command writes them again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from migrate.core import lifecycle
from migrate.core.errors import UsageError
from migrate.core.progress import ProgressSink, no_progress
from migrate.core.store import ExtensionRow
from migrate.voip.export import FORMATS, ExportError, default_out, sip_domain, write_format
from migrate.voip.inventory import current_extensions, errors_text
from migrate.waves.context import WaveRun
from migrate.waves.results import Gate, Outcome, StepResult
from migrate.waves.step import Step, StepOptions


class Provision(Step[ExtensionRow]):
    """Write a wave's extensions as the platform's provisioning files; each goes to provisioned."""

    name = "provision"
    items = "extension"
    target = lifecycle.PROVISIONED

    def command(self, wave: str, options: StepOptions) -> str:
        return f"govmigrate voip export --wave {wave} --format {options.params.get('format')}"

    def key(self, item: ExtensionRow) -> str:
        return item.key

    def load(self, run: WaveRun, keys: list[str]) -> list[ExtensionRow]:
        return [e for e in (run.store.extension(k) for k in keys) if e is not None]

    def select(self, run: WaveRun, options: StepOptions) -> lifecycle.Eligibility[ExtensionRow]:
        if options.params.get("format") not in FORMATS:
            raise UsageError(f"unknown format {options.params.get('format')!r}; formats: {', '.join(FORMATS)}")
        assert run.wave.data is not None
        keys = run.wave.data.extensions
        if not keys:
            raise UsageError(f"wave {run.wave_id} lists no extensions",
                             hint="govmigrate inventory phones, then govmigrate plan generate (or list them under "
                                  "the wave's extensions:)")
        rows, unknown = [], []
        for key in keys:
            row = run.store.extension(key)
            (rows.append(row) if row is not None else unknown.append(key))
        if unknown:
            raise UsageError(f"wave {run.wave_id}: {', '.join(unknown)} not in the phone inventory",
                             hint="run govmigrate inventory phones")
        return lifecycle.Eligibility(rows, [], [])

    def gate(self, run: WaveRun, work: list[ExtensionRow], options: StepOptions,
             progress: ProgressSink = no_progress) -> Gate:
        # Refuses (ExportError, exit 2) when the PBX files no longer give an extension of the wave.
        current, errors = current_extensions(run.project, work)
        return Gate(checked=[r.key for r in work], data={"current": current, "file_errors": errors})

    def describe(self, count: int, options: StepOptions) -> str:
        return f"export of {count} extension(s) as {options.params.get('format')}"

    def summary(self, result: StepResult, outcome_text: str) -> str:
        export = result.details.get("export")
        return export.detail if export is not None else f"export {outcome_text}"

    def execute(self, run: WaveRun, result: StepResult, work: list[ExtensionRow], options: StepOptions,
                progress: ProgressSink, stop: threading.Event) -> None:
        params = options.params
        fmt, new_secrets = params["format"], bool(params.get("new_secrets"))
        out = Path(params.get("out") or default_out(run.locks_dir.parent / "exports", run.wave_id, fmt))
        assert result.gate is not None
        current, errors = result.gate.data["current"], result.gate.data["file_errors"]
        try:
            written, clear = write_format(fmt, [current[r.key] for r in work], out, domain=sip_domain(run.project),
                                          new_secrets=new_secrets, algorithm=params.get("algorithm") or "MD5")
        except ExportError as refused:
            if not errors:
                raise
            message = refused.message.removesuffix("; nothing was written")
            raise ExportError(f"{message}{errors_text(errors)}; nothing was written", hint=refused.hint) from None
        export = Export(fmt, files=written.files, skipped=dict(written.skipped), new_secrets=len(written.new_secrets),
                        new_pins=len(written.new_pins), secrets_file=clear)
        result.details["export"] = export
        where = str(written.files[0].parent if fmt != "csv" else written.files[0])
        store = run.store
        for row in work:
            if row.key in export.skipped:
                store.add_event(f"extension/{row.key}", "export-skipped", f"{fmt}: {export.skipped[row.key]}")
                continue
            # Where sip check finds the secret the platform now has: the file holding it in clear, or the PBX's.
            store.set_extension_secret_file(
                row.id, str(Path(clear or written.files[0]).resolve()) if row.key in written.new_secrets else None)
            detail = f"exported ({fmt}) to {where}" + (", new secret" if row.key in written.new_secrets else "")
            if not lifecycle.extension_reached(row, lifecycle.PROVISIONED):
                store.set_extension_state(row.id, lifecycle.PROVISIONED, detail)
                export.provisioned.append(row.key)
                run.record(result, Outcome(row.key, row.state, lifecycle.PROVISIONED, True))
            else:
                store.add_event(f"extension/{row.key}", "exported-again", f"{detail} (state stays {row.state})")
                export.again.append(row.key)
                run.record(result, Outcome(row.key, row.state, row.state, True))
        if new_secrets and export.again:
            result.warnings.append(
                f"{len(export.again)} extension(s) were provisioned before and now have new secrets: load these "
                f"files on the platform and reconfigure those phones ({', '.join(export.again[:10])}"
                + (", ..." if len(export.again) > 10 else "") + ")")
        export.detail = (f"{len(work) - len(export.skipped)} extension(s) exported as {fmt} to {where}: "
                         f"{len(export.provisioned)} provisioned, {len(export.again)} again, "
                         f"{len(export.skipped)} left out" + (f"; {export.new_secrets} new secret(s)" if new_secrets
                                                               else ""))
        run.event("voip-export", export.detail)


@dataclass
class Export:
    """What an export wrote (the step's ``details["export"]``)."""

    format: str
    #: Every file written, secrets-bearing or not (all 0600).
    files: list[Path]
    #: Key → why the format leaves it out (Kamailio: virtual extensions).
    skipped: dict[str, str]
    #: How many extensions got a new SIP password (and voicemail PIN) in this export.
    new_secrets: int
    new_pins: int
    #: The neutral CSV holding the new passwords of a Kamailio export.
    secrets_file: Path | None
    #: Keys moved to provisioned by this export, and those provisioned before, written again.
    provisioned: list[str] = field(default_factory=list)
    again: list[str] = field(default_factory=list)
    detail: str = ""

    def as_dict(self, wave: str, warnings: list[str]) -> dict:
        return {"wave": wave, "format": self.format, "files": [str(f) for f in self.files],
                "provisioned": self.provisioned, "again": self.again, "skipped": self.skipped,
                "new_secrets": self.new_secrets, "new_pins": self.new_pins,
                "secrets_file": str(self.secrets_file) if self.secrets_file else None, "warnings": warnings}
