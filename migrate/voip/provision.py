"""``voip export``: the provisioning step of a wave's phones. Writes the files the hosted VOIP platform loads
(:mod:`migrate.voip.export`) for the extensions the approved wave lists, then moves each to ``provisioned``.

It is a wave step like a sync pass or the DNS cut-over (:mod:`migrate.waves.runner` does the shared part): the
wave must be approved as it stands (exit 6), its lock is taken (exit 7 while another run of the wave holds
it), and the export is a run of the wave with an event per extension. What differs is the items: extensions,
not mailboxes, and no pre-flight beyond the writers' own checks, which refuse the whole export (exit 2,
nothing written) naming every extension at fault.

**Secrets.** The store has none, so the PBX files are read again here, with the same readers as
``inventory phones``: each extension carries the secret its PBX gave it, or, with ``new_secrets``, a new one.
New secrets exist only in the files written: for Kamailio, whose tables hold only digests, they are also
written to ``<out>-new-secrets.csv`` (the neutral CSV), because the phones need them in clear. Every file is
0600 from creation. Nothing secret is printed, logged or stored.

**Order, and a crash.** The files are written (all or none) before any state changes; a run killed between
the two leaves the extensions ``planned`` with the files on disk, and the same command writes them again.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from migrate.core import lifecycle
from migrate.core.config import Project
from migrate.core.errors import UsageError
from migrate.core.secrets import Secret
from migrate.core.store import ExtensionRow, Store
from migrate.plans.planfiles import Plan
from migrate.voip.export import (
    ALGORITHMS,
    ExportError,
    ExportResult,
    write_csv,
    write_freepbx,
    write_kamailio,
)
from migrate.voip.inventory import read_all
from migrate.voip.model import Extension
from migrate.waves.runner import WaveRun

FORMATS = ("freepbx", "kamailio", "csv")
STEP = "provision"


@dataclass
class ProvisionResult:
    wave: str
    format: str
    #: Every file written, secrets-bearing or not (all 0600).
    files: list[Path] = field(default_factory=list)
    #: Keys moved to provisioned by this export.
    provisioned: list[str] = field(default_factory=list)
    #: Keys provisioned (or further) before, written again.
    again: list[str] = field(default_factory=list)
    #: Key → why the format leaves it out (Kamailio: virtual extensions).
    skipped: dict[str, str] = field(default_factory=dict)
    #: How many extensions got a new SIP password (and voicemail PIN) in this export.
    new_secrets: int = 0
    new_pins: int = 0
    #: The neutral CSV holding the new passwords of a Kamailio export.
    secrets_file: Path | None = None
    warnings: list[str] = field(default_factory=list)
    run_id: int | None = None

    def as_dict(self) -> dict:
        return {"wave": self.wave, "format": self.format, "files": [str(f) for f in self.files],
                "provisioned": self.provisioned, "again": self.again, "skipped": self.skipped,
                "new_secrets": self.new_secrets, "new_pins": self.new_pins,
                "secrets_file": str(self.secrets_file) if self.secrets_file else None, "warnings": self.warnings}


def default_out(exports_dir: Path, wave_id: str, fmt: str) -> Path:
    """``exports/<wave>/phones.csv`` for the neutral CSV, ``exports/<wave>/<format>/`` for the others."""
    base = exports_dir / wave_id
    return base / "phones.csv" if fmt == "csv" else base / fmt


def secrets_file_for(out: Path) -> Path:
    return out.with_name(out.name + "-new-secrets.csv")


def wave_extensions(run: WaveRun) -> list[ExtensionRow]:
    """The store's rows for the extensions the wave's plan file lists, in its order."""
    assert run.wave.data is not None
    keys = run.wave.data.extensions
    if not keys:
        raise UsageError(f"wave {run.wave_id} lists no extensions",
                         hint="govmigrate inventory phones, then govmigrate plan generate (or list them under the "
                              "wave's extensions:)")
    rows, unknown = [], []
    for key in keys:
        row = run.store.extension(key)
        (rows.append(row) if row is not None else unknown.append(key))
    if unknown:
        raise UsageError(f"wave {run.wave_id}: {', '.join(unknown)} not in the phone inventory",
                         hint="run govmigrate inventory phones")
    return rows


def current_extensions(project: Project, rows: list[ExtensionRow]) -> tuple[dict[str, Extension], list[str]]:
    """The wave's extensions as the PBX files have them now (with their secrets), and the files' errors (as
    ``file:line: message``). Refuses, naming each, those the files no longer give: a file with an error, or
    an extension removed since the inventory."""
    source_ids = sorted({r.source_id for r in rows})
    inventories, problems = read_all(project, [project.source(s) for s in source_ids])
    current = {e.key: e for inv in inventories.values() for e in inv.extensions}
    errors = [str(p) for p in problems if p.severity == "error"]
    missing = [r.key for r in rows if r.key not in current]
    if missing:
        raise ExportError(f"{len(missing)} extension(s) of the wave are not in the PBX files as they are now: "
                          f"{', '.join(missing)}{_errors_text(errors)}; nothing was written",
                          hint="fix the files (govmigrate inventory phones lists every problem) or take the "
                               "extensions out of the wave")
    return {r.key: current[r.key] for r in rows}, errors


def _errors_text(errors: list[str]) -> str:
    if not errors:
        return ""
    more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
    return f" (the PBX files have errors, and a file with an error gives nothing: {'; '.join(errors[:5])}{more})"


def write_format(fmt: str, extensions: list[Extension], out: Path, *, domain: str | None, new_secrets: bool,
                 algorithm: str = "MD5") -> tuple[ExportResult, Path | None]:
    """Write one format; for Kamailio with new secrets also the neutral CSV holding them (same passwords)."""
    if fmt == "freepbx":
        return write_freepbx(extensions, out, new_secrets=new_secrets), None
    if fmt == "csv":
        return write_csv(extensions, out, new_secrets=new_secrets), None
    if fmt != "kamailio":
        raise UsageError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    if not domain:
        raise UsageError("the Kamailio export needs the SIP domain its digests are computed for",
                         hint="set phones: sip_domain: (or sip: domain:) in migration.yaml, e.g. voice.gov.bz")
    if algorithm not in ALGORITHMS:
        raise UsageError(f"digest algorithm {algorithm!r}: use one of {', '.join(ALGORITHMS)}")
    if not new_secrets:
        return write_kamailio(extensions, out, domain=domain, algorithm=algorithm), None
    # The clear passwords the phones are configured from, made first, then their digests: the same secrets.
    clear = secrets_file_for(out)
    registering = [e for e in extensions if (e.tech or "").lower() != "virtual"]
    made: Mapping[str, Secret] = write_csv(registering, clear, new_secrets=True).new_secrets
    result = write_kamailio(extensions, out, domain=domain, secrets=made, algorithm=algorithm)
    result.new_secrets = dict(made)
    result.files.append(clear)
    return result, clear


def export_wave(project: Project, store: Store, plan: Plan, wave_id: str, *, fmt: str, locks_dir: Path,
                out: Path | None = None, exports_dir: Path | None = None, new_secrets: bool = False,
                algorithm: str = "MD5") -> ProvisionResult:
    """The provisioning step of ``wave_id``'s phones (module docstring)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    with WaveRun(project, store, plan, wave_id, locks_dir=locks_dir) as run:
        run.check_plan()
        rows = wave_extensions(run)
        run.acquire(STEP, command=f"govmigrate voip export --wave {wave_id} --format {fmt}")
        if out is None:
            if exports_dir is None:
                raise UsageError("give the file or directory to write (--out)")
            out = default_out(exports_dir, wave_id, fmt)
        started = time.monotonic()
        current, errors = current_extensions(project, rows)
        try:
            written, clear = write_format(fmt, list(current.values()), Path(out),
                                          domain=sip_domain(project), new_secrets=new_secrets,
                                          algorithm=algorithm)
        except ExportError as refused:
            if not errors:
                raise
            message = refused.message.removesuffix("; nothing was written")
            raise ExportError(f"{message}{_errors_text(errors)}; nothing was written", hint=refused.hint) from None

        result = ProvisionResult(wave_id, fmt, files=written.files, skipped=dict(written.skipped),
                                 new_secrets=len(written.new_secrets), new_pins=len(written.new_pins),
                                 secrets_file=clear)
        result.run_id = store.start_run(wave_id, STEP)
        where = str(written.files[0].parent if fmt != "csv" else written.files[0])
        for row in rows:
            if row.key in result.skipped:
                store.add_event(f"extension/{row.key}", "export-skipped", f"{fmt}: {result.skipped[row.key]}")
                continue
            # Where sip check finds the secret the platform now has: the file holding it in clear, or the PBX's.
            store.set_extension_secret_file(
                row.id, str(Path(clear or written.files[0]).resolve()) if row.key in written.new_secrets else None)
            detail = f"exported ({fmt}) to {where}" + (", new secret" if row.key in written.new_secrets else "")
            if not lifecycle.extension_reached(row, lifecycle.PROVISIONED):
                store.set_extension_state(row.id, lifecycle.PROVISIONED, detail)
                result.provisioned.append(row.key)
            else:
                store.add_event(f"extension/{row.key}", "exported-again", f"{detail} (state stays {row.state})")
                result.again.append(row.key)
        if new_secrets and result.again:
            result.warnings.append(
                f"{len(result.again)} extension(s) were provisioned before and now have new secrets: load these "
                f"files on the platform and reconfigure those phones ({', '.join(result.again[:10])}"
                + (", ..." if len(result.again) > 10 else "") + ")")
        detail = (f"{len(rows) - len(result.skipped)} extension(s) exported as {fmt} to {where}: "
                  f"{len(result.provisioned)} provisioned, {len(result.again)} again, {len(result.skipped)} left out"
                  + (f"; {result.new_secrets} new secret(s)" if new_secrets else ""))
        store.finish_run(result.run_id, result="ok", mailboxes=len(rows) - len(result.skipped), messages=0, bytes_=0,
                         seconds=time.monotonic() - started, detail=detail)
        store.add_event(f"wave/{wave_id}", "voip-export", detail)
        return result


def sip_domain(project: Project) -> str | None:
    """The hosted platform's SIP domain: ``phones.sip_domain``, else ``sip.domain``."""
    config = project.config
    return config.phones.sip_domain or (config.sip.domain if config.sip is not None else None)
