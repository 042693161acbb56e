"""The phone part of a wave's cut-over, and the operator's confirmation that its numbers have moved.

``govmigrate cutover WAVE`` runs :func:`register_phones` after the wave's DNS (or alone, for a wave with phones
and no domain): the SIP checks (:mod:`migrate.voip.checks`) over the wave's extensions, and each extension whose
REGISTER passed goes to ``registered``. The step is a gate: while any check fails (the platform does not
resolve or answer, an extension is not provisioned, has no usable secret, or is refused) nothing changes state
and the command exits 8 listing why, unless ``--force`` with a reason, which is recorded; then the extensions
that did register go ahead and the others stay where they are. Virtual extensions register nothing and are not
held up by it.

``govmigrate sip confirm --wave WAVE`` (:func:`confirm_wave`) is the operator saying the wave's DIDs are routed
to the hosted platform (number porting happens outside govmigrate): every registered extension goes to
``cut-over``. It is refused (exit 8) while an extension of the wave is not registered, unless forced with a
reason; the wave must be approved as it stands and its lock is taken.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from migrate.core import lifecycle
from migrate.core.errors import PreflightFailed, UsageError
from migrate.core.progress import ProgressSink, no_progress
from migrate.core.store import ExtensionRow
from migrate.voip.checks import SipCheckReport, run_checks
from migrate.waves.runner import WaveRun


@dataclass
class PhoneStepResult:
    wave: str
    #: Keys moved to registered (or, for confirm, to cut-over) by this run.
    moved: list[str] = field(default_factory=list)
    #: Keys already there or further.
    already: list[str] = field(default_factory=list)
    #: (who, why) that holds the wave up: forced past with a reason, or the reason it was refused.
    blocking: list[tuple[str, str]] = field(default_factory=list)
    force_reason: str | None = None
    dry_run: bool = False
    report: SipCheckReport | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"wave": self.wave, "moved": self.moved, "already": self.already,
                "blocking": [{"who": w, "why": y} for w, y in self.blocking], "forced": self.force_reason,
                "dry_run": self.dry_run, "checks": self.report.as_dict() if self.report else None}


def _virtual(row: ExtensionRow) -> bool:
    return (row.tech or "").lower() == "virtual"


def _refuse(run: WaveRun, what: str, blocking: list[tuple[str, str]], hint: str) -> PreflightFailed:
    listed = "; ".join(f"{who}: {why}" for who, why in blocking[:20])
    more = f" (and {len(blocking) - 20} more)" if len(blocking) > 20 else ""
    if not run.dry_run:
        run.store.add_event(f"wave/{run.wave_id}", f"{what}-refused", listed + more)
    return PreflightFailed(f"wave {run.wave_id}: {what} refused, {len(blocking)} problem(s): {listed}{more}; "
                           "nothing changed state", hint=hint)


def register_phones(run: WaveRun, *, force: bool = False, reason: str | None = None,
                    progress: ProgressSink = no_progress, stop: threading.Event | None = None) -> PhoneStepResult:
    """The cut-over's phone step (module docstring). Call with the wave checked and its lock taken."""
    if force and not reason:
        raise UsageError("--force needs --reason: it is recorded with what it overrides")
    rows = run.store.extensions(wave=run.wave_id)
    result = PhoneStepResult(run.wave_id, force_reason=reason if force else None, dry_run=run.dry_run)
    report = run_checks(run.project, run.store, rows, wave=run.wave_id, progress=progress, stop=stop)
    result.report = report
    for check in report.checks:
        if check.kind != "register" and check.result == "fail":
            result.blocking.append((check.subject, f"{check.kind}: {check.detail}"))
    registers = report.register_checks()
    for row in rows:
        check = registers.get(row.key)
        if check is None or (_virtual(row) and check.result == "skip"):
            continue
        if check.result in ("fail", "skip"):
            result.blocking.append((row.key, check.detail))
    if result.blocking and not force:
        raise _refuse(run, "phone step", result.blocking,
                      "fix them (govmigrate sip check --wave " + run.wave_id + " shows every check) and run the "
                      "cut-over again, or add --force --reason to move the extensions that did register")
    if result.blocking and not run.dry_run:
        run.store.add_event(f"wave/{run.wave_id}", "gate-forced", f"phone step: {reason}; overridden: "
                            + "; ".join(f"{w}: {y}" for w, y in result.blocking[:10]))
    for row in rows:
        check = registers.get(row.key)
        if lifecycle.extension_reached(row, lifecycle.REGISTERED):
            result.already.append(row.key)
        elif check is not None and check.result in ("pass", "warn") and check.data.get("statuses"):
            result.moved.append(row.key)
            if not run.dry_run:
                run.store.set_extension_state(row.id, lifecycle.REGISTERED,
                                              f"REGISTER over {check.data.get('target')} passed"
                                              + (f" (gate forced: {reason})" if result.blocking else ""))
    return result


def confirm_wave(run: WaveRun, *, force: bool = False, reason: str | None = None) -> PhoneStepResult:
    """The operator's confirmation that the wave's DIDs route to the hosted platform (module docstring)."""
    if force and not reason:
        raise UsageError("--force needs --reason: it is recorded with what it overrides")
    rows = run.store.extensions(wave=run.wave_id)
    if not rows:
        raise UsageError(f"wave {run.wave_id} has no extensions")
    result = PhoneStepResult(run.wave_id, force_reason=reason if force else None, dry_run=run.dry_run)
    ready = []
    for row in rows:
        if lifecycle.extension_reached(row, lifecycle.CUT_OVER):
            result.already.append(row.key)
        elif lifecycle.extension_reached(row, lifecycle.REGISTERED) or (
                _virtual(row) and lifecycle.extension_reached(row, lifecycle.PROVISIONED)):
            ready.append(row)
        else:
            result.blocking.append((row.key, f"not registered ({row.state}): govmigrate cutover {run.wave_id} "
                                             "registers the wave's phones first"))
    if result.blocking and not force:
        raise _refuse(run, "sip confirm", result.blocking,
                      f"run govmigrate cutover {run.wave_id} until every phone registers, or add --force --reason")
    if run.dry_run:
        result.moved = [r.key for r in ready]
        return result
    why = "the operator confirmed that its DIDs route to the hosted platform" + (f" (forced: {reason})" if force
                                                                                   else "")
    if result.blocking:
        run.store.add_event(f"wave/{run.wave_id}", "gate-forced", f"sip confirm: {reason}; overridden: "
                            + "; ".join(f"{w}: {y}" for w, y in result.blocking[:10]))
        ready += [r for r in rows if r.key in {w for w, _ in result.blocking}]
    for row in ready:
        run.store.set_extension_state(row.id, lifecycle.CUT_OVER, why)
        result.moved.append(row.key)
    run.store.add_event(f"wave/{run.wave_id}", "sip-confirm", f"{len(result.moved)} extension(s) cut over: {why}")
    return result
