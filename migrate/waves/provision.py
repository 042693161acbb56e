"""The provisioning step of a wave's phones (``govmigrate voip export --wave WAVE --format F``): the files the
hosted VOIP platform loads (:mod:`migrate.voip.export`) for the extensions the approved wave lists, then each
moved to ``provisioned``.

The gate reads the PBX files again (the store keeps no secret in clear): every extension of the wave must still
be there (else the export is refused, exit 2), and none may be *held* by an error in the files (exit 8, unless
``--force --reason``, recorded). The writers refuse the whole export (exit 2, nothing written) naming every
extension at fault. SIP phones get the password govmigrate keeps for them (:mod:`migrate.voip.kept`: made once by
``--new-secrets``, again on purpose by ``--rotate-secrets``), else the PBX's own; lines that are not SIP phones
(a fax's custom dial string) get no account and are reported as moved by hand. Every file is 0600 from creation,
inside ``--out``; nothing secret is printed, logged or stored in clear.

All or nothing: the files are checked and rendered first, so a refusal writes and keeps nothing; new passwords
are then kept (pending), the files written together, and only then do the passwords become the platform's
(current) and the extensions ``provisioned``. A run killed in between leaves the new passwords pending and the
states as they were; the same command writes the same passwords again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from migrate.core import lifecycle
from migrate.core.errors import UsageError
from migrate.core.progress import ProgressSink, no_progress
from migrate.core.store import ExtensionRow
from migrate.voip.export import (
    FORMATS,
    PASSWORDS_FILE,
    ExportError,
    default_out,
    render_format,
    sip_domain,
    write_rendered,
)
from migrate.voip.inventory import current_extensions, errors_text
from migrate.voip.kept import KeptSecrets
from migrate.waves.context import WaveRun
from migrate.waves.results import Finding, Gate, Outcome, StepResult
from migrate.waves.step import OVERRIDE, Step, StepOptions


class Provision(Step[ExtensionRow]):
    """Write a wave's extensions as the platform's provisioning files; each goes to provisioned."""

    name = "provision"
    items = "extension"
    target = lifecycle.PROVISIONED
    force = OVERRIDE

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
        gate = Gate(checked=[r.key for r in work], data={"current": current, "file_errors": errors})
        for row in work:
            for reason in current[row.key].held:
                gate.findings.append(Finding(row.key, "pbx", f"held by an error in the PBX files: {reason}"))
        return gate

    def refusal(self, run: WaveRun, gate: Gate) -> tuple[str, str | None]:
        held = sorted({f.item for f in gate.errors if f.item})
        return (f"wave {run.wave_id}: {len(held)} extension(s) are held by errors in the PBX files "
                f"({', '.join(held[:10])}{', ...' if len(held) > 10 else ''}); nothing was written",
                "fix the files and run govmigrate inventory phones, take the extensions out of the wave, or export "
                "them as the files read now with --force --reason TEXT (recorded)")

    def describe(self, count: int, options: StepOptions) -> str:
        return f"export of {count} extension(s) as {options.params.get('format')}"

    def summary(self, result: StepResult, outcome_text: str) -> str:
        export = result.details.get("export")
        return export.detail if export is not None else f"export {outcome_text}"

    def execute(self, run: WaveRun, result: StepResult, work: list[ExtensionRow], options: StepOptions,
                progress: ProgressSink, stop: threading.Event) -> None:
        params = options.params
        fmt = params["format"]
        new_secrets, rotate = bool(params.get("new_secrets")), bool(params.get("rotate_secrets"))
        out = Path(params.get("out") or default_out(run.locks_dir.parent / "exports", run.wave_id, fmt))
        assert result.gate is not None
        current, errors = result.gate.data["current"], result.gate.data["file_errors"]
        extensions = [current[r.key] for r in work]
        chosen = KeptSecrets(run.project, run.store).for_export(extensions, new=new_secrets or rotate, rotate=rotate,
                                                                 pins=fmt != "kamailio")
        try:
            rendered = render_format(fmt, extensions, out, domain=sip_domain(run.project), secrets=chosen.secrets,
                                     pins=chosen.pins, algorithm=params.get("algorithm") or "MD5")
        except ExportError as refused:  # before anything is kept or written: say so, with the files' errors
            message = refused.message.removesuffix("; nothing was written")
            raise ExportError(f"{message}{errors_text(errors)}; nothing was written", hint=refused.hint) from None
        store = run.store
        if chosen.pending:  # before the files: a crash after them finds the passwords they hold
            store.keep_pending_secrets(chosen.pending)
        written = write_rendered(rendered)
        store.promote_secrets(sorted(set(chosen.secrets) | set(chosen.pins)))
        passwords = out / PASSWORDS_FILE if fmt == "kamailio" and any(p.name == PASSWORDS_FILE for p in written.files) \
            else None
        export = Export(fmt, files=written.files, skipped=dict(written.skipped), by_hand=dict(written.by_hand),
                        kept=len([k for k in chosen.secrets if k not in written.skipped]),
                        made=len(chosen.made), made_pins=len(chosen.made_pins), imported=len(chosen.imported),
                        secrets_file=passwords)
        result.details["export"] = export
        where = str(out)
        previously = [r.key for r in work if lifecycle.extension_reached(r, lifecycle.PROVISIONED)]
        for row in work:
            if row.key in export.by_hand or row.key in export.skipped:
                why = export.by_hand.get(row.key) or export.skipped[row.key]
                store.add_event(f"extension/{row.key}", "export-skipped", f"{fmt}: {why}")
                continue
            detail = f"exported ({fmt}) to {where}" + (", a new password" if row.key in chosen.made else "")
            if not lifecycle.extension_reached(row, lifecycle.PROVISIONED):
                store.set_extension_state(row.id, lifecycle.PROVISIONED, detail)
                export.provisioned.append(row.key)
                run.record(result, Outcome(row.key, row.state, lifecycle.PROVISIONED, True))
            else:
                store.add_event(f"extension/{row.key}", "exported-again", f"{detail} (state stays {row.state})")
                export.again.append(row.key)
                run.record(result, Outcome(row.key, row.state, row.state, True))
        changed = [k for k in dict.fromkeys([*chosen.changed, *(k for k in chosen.made if k in previously)])]
        if changed:
            result.warnings.append(
                f"{len(changed)} extension(s) were provisioned before with another password: load these files on the "
                f"platform and configure those phones with the new one ({', '.join(changed[:10])}"
                + (", ..." if len(changed) > 10 else "") + ")")
        export.detail = (f"{len(work) - len(export.skipped) - len(export.by_hand)} extension(s) exported as {fmt} to "
                         f"{where}: {len(export.provisioned)} provisioned, {len(export.again)} again, "
                         f"{len(export.skipped)} left out, {len(export.by_hand)} moved by hand; "
                         f"{export.kept} kept password(s), {export.made} made by this export")
        run.event("voip-export", export.detail)


@dataclass
class Export:
    """What an export wrote (the step's ``details["export"]``)."""

    format: str
    #: Every file written, secrets-bearing or not (all 0600).
    files: list[Path]
    #: Key → why the format leaves it out (Kamailio: virtual extensions).
    skipped: dict[str, str]
    #: Key → why it gets no account: a line that is not a SIP phone, moved by hand.
    by_hand: dict[str, str]
    #: Passwords govmigrate keeps that the files carry, and how many of them (and of PINs) this export made.
    kept: int
    made: int
    made_pins: int
    #: Passwords taken over from the file an export made before passwords were kept.
    imported: int
    #: A Kamailio export's clear passwords file (inside the output directory), when it carries kept passwords.
    secrets_file: Path | None
    #: Keys moved to provisioned by this export, and those provisioned before, written again.
    provisioned: list[str] = field(default_factory=list)
    again: list[str] = field(default_factory=list)
    detail: str = ""

    def as_dict(self, wave: str, warnings: list[str]) -> dict:
        return {"wave": wave, "format": self.format, "files": [str(f) for f in self.files],
                "provisioned": self.provisioned, "again": self.again, "skipped": self.skipped,
                "moved_by_hand": self.by_hand, "kept_secrets": self.kept, "new_secrets": self.made,
                "new_pins": self.made_pins, "imported_secrets": self.imported,
                "secrets_file": str(self.secrets_file) if self.secrets_file else None, "warnings": warnings}
