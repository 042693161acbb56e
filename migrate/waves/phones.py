"""The phone steps of a wave after provisioning: the SIP checks, the cut-over's registration, the operator's
confirmation that the numbers moved.

* ``sip check --wave WAVE`` (:class:`SipCheck`): the checks of :mod:`migrate.voip.checks` over the wave's
  extensions, each result stored; no state changes.
* ``cutover WAVE``, after the wave's DNS (or alone, for a wave with phones and no domain)
  (:class:`PhoneRegistration`): the same checks are the gate, and no extension may be held by an error in the
  PBX files; while anything fails (the platform does not resolve or answer, an extension is held, not
  provisioned, has no usable secret, or is refused) nothing changes state, unless ``--force --reason``: then the
  extensions that did register go ahead and the others stay where they are. Lines that are not SIP phones
  (virtual extensions, lines moved by hand) register nothing and are not held up by it. Each that registered
  goes to ``registered``.
* ``sip confirm --wave WAVE`` (:class:`PhoneConfirm`): the operator says the wave's DIDs route to the hosted
  platform (number porting happens outside govmigrate, as does moving the lines that are not SIP phones);
  refused while a SIP phone is not registered, unless forced with a reason. Each goes to ``cut-over``.
"""

from __future__ import annotations

import threading

from migrate.core import lifecycle
from migrate.core.errors import UsageError
from migrate.core.progress import ProgressSink, no_progress
from migrate.core.store import ExtensionRow
from migrate.voip.checks import SipCheckReport, run_checks, select_extensions, sip_section
from migrate.voip.inventory import held_now
from migrate.voip.model import PHONE, line_kind, line_text
from migrate.waves.context import WaveRun
from migrate.waves.results import Finding, Gate, Outcome, StepResult
from migrate.waves.step import OVERRIDE, Step, StepOptions


def _no_phone(row: ExtensionRow) -> bool:
    """A line that registers nothing: a virtual extension, or one moved by hand (a fax's custom dial string)."""
    return line_kind(row.tech) != PHONE


class _PhoneStep(Step[ExtensionRow]):
    items = "extension"

    def key(self, item: ExtensionRow) -> str:
        return item.key

    def load(self, run: WaveRun, keys: list[str]) -> list[ExtensionRow]:
        return [e for e in (run.store.extension(k) for k in keys) if e is not None]

    def select(self, run: WaveRun, options: StepOptions) -> lifecycle.Eligibility[ExtensionRow]:
        rows = run.extensions()
        if not rows:
            raise UsageError(f"wave {run.wave_id} has no extensions",
                             hint="govmigrate inventory phones, then govmigrate plan generate")
        return lifecycle.Eligibility(rows, [], [])


class SipCheck(_PhoneStep):
    """Does the hosted platform work the way the wave's phones will reach it? Changes no state."""

    name = "sip-check"
    needs_approval = False
    takes_lock = False

    def command(self, wave: str, options: StepOptions) -> str:
        return f"govmigrate sip check --wave {wave}"

    def select(self, run: WaveRun, options: StepOptions) -> lifecycle.Eligibility[ExtensionRow]:
        rows = select_extensions(run.store, wave=run.wave_id, numbers=options.params.get("numbers", ()))
        return lifecycle.Eligibility(rows, [], [])

    def gate(self, run: WaveRun, work: list[ExtensionRow], options: StepOptions,
             progress: ProgressSink = no_progress) -> Gate:
        sip_section(run.project)  # a project file without a sip: section is a usage error before anything runs
        return Gate(checked=[r.key for r in work])

    def describe(self, count: int, options: StepOptions) -> str:
        return f"SIP checks of {count} extension(s)"

    def summary(self, result: StepResult, outcome_text: str) -> str:
        report: SipCheckReport = result.details["report"]
        return (f"{len(report.extensions)} extension(s) checked, {len(result.failed)} failed, "
                f"{len(result.blocked)} skipped; {len(report.failed)} check(s) failed, {len(report.warnings)} "
                "warning(s)")

    def execute(self, run: WaveRun, result: StepResult, work: list[ExtensionRow], options: StepOptions,
                progress: ProgressSink, stop: threading.Event) -> None:
        report = run_checks(run.project, run.store, work, wave=run.wave_id, run_id=result.run_id, progress=progress,
                            stop=stop)
        result.details["report"] = report
        registers = report.register_checks()
        for row in work:
            check = registers.get(row.key)
            if check is not None and check.result == "skip":  # not checked: exit 1, as the README's table says
                result.blocked.append((row.key, check.detail))
                continue
            ok = check is None or check.result != "fail"
            run.record(result, Outcome(row.key, row.state, row.state, ok, error=None if ok else check.detail))
        platform = [c for c in report.failed if c.kind != "register"]
        if platform:
            result.incomplete.append(f"{len(platform)} platform check(s) failed")
        if report.warnings:
            result.incomplete.append(f"{len(report.warnings)} check(s) warned")


class PhoneRegistration(_PhoneStep):
    """The cut-over's phone step: the SIP checks as its gate, then each extension that registered → registered."""

    name = "phones"
    target = lifecycle.REGISTERED
    force = OVERRIDE

    def command(self, wave: str, options: StepOptions) -> str:
        return f"govmigrate cutover {wave}"

    def gate(self, run: WaveRun, work: list[ExtensionRow], options: StepOptions,
             progress: ProgressSink = no_progress) -> Gate:
        report = run_checks(run.project, run.store, work, wave=run.wave_id, progress=progress)
        gate = Gate(checked=[r.key for r in work], data={"report": report})
        for check in report.checks:
            if check.kind != "register" and check.result == "fail":
                gate.findings.append(Finding(check.subject, "sip", f"{check.kind}: {check.detail}"))
        held = held_now(run.project, work)
        registers = report.register_checks()
        for row in work:
            for reason in held.get(row.key, []):
                gate.findings.append(Finding(row.key, "pbx", f"held by an error in the PBX files: {reason}"))
            check = registers.get(row.key)
            if check is None or _no_phone(row):
                continue
            if check.result in ("fail", "skip"):
                gate.findings.append(Finding(row.key, "register", check.detail))
        return gate

    def refusal(self, run: WaveRun, gate: Gate) -> tuple[str, str | None]:
        return (f"wave {run.wave_id}: the phone step found {len(gate.errors)} problem(s); nothing changed state",
                f"fix them (govmigrate sip check --wave {run.wave_id} shows every check) and run the cut-over again, "
                "or add --force --reason to move the extensions that did register")

    def describe(self, count: int, options: StepOptions) -> str:
        return f"registration of {count} extension(s)"

    def execute(self, run: WaveRun, result: StepResult, work: list[ExtensionRow], options: StepOptions,
                progress: ProgressSink, stop: threading.Event) -> None:
        assert result.gate is not None
        report: SipCheckReport = result.gate.data["report"]
        result.details["report"] = report
        registers = report.register_checks()
        forced = f" (gate forced: {options.reason})" if result.forced else ""
        for row in work:
            check = registers.get(row.key)
            if lifecycle.extension_reached(row, lifecycle.REGISTERED):
                result.already.append((row.key, f"{row.state} already"))
            elif check is not None and check.result in ("pass", "note", "warn") and check.data.get("statuses"):
                if not run.dry_run:
                    run.store.set_extension_state(row.id, lifecycle.REGISTERED,
                                                  f"REGISTER over {check.data.get('target')} passed{forced}")
                run.record(result, Outcome(row.key, row.state, lifecycle.REGISTERED, True))
            elif check is not None and not _no_phone(row):
                run.record(result, Outcome(row.key, row.state, row.state, False, error=check.detail))
        if report.failed:
            result.incomplete.append(f"{len(report.failed)} SIP check(s) failed")


class PhoneConfirm(_PhoneStep):
    """The operator's word that the wave's DIDs route to the hosted platform: every extension → cut-over."""

    name = "sip-confirm"
    target = lifecycle.CUT_OVER
    force = OVERRIDE

    def command(self, wave: str, options: StepOptions) -> str:
        return f"govmigrate sip confirm --wave {wave}"

    def select(self, run: WaveRun, options: StepOptions) -> lifecycle.Eligibility[ExtensionRow]:
        rows = super().select(run, options).work
        done = [(r, f"{r.state} already") for r in rows if lifecycle.extension_reached(r, lifecycle.CUT_OVER)]
        return lifecycle.Eligibility([r for r in rows if not lifecycle.extension_reached(r, lifecycle.CUT_OVER)],
                                     done, [])

    def gate(self, run: WaveRun, work: list[ExtensionRow], options: StepOptions,
             progress: ProgressSink = no_progress) -> Gate:
        gate = Gate(checked=[r.key for r in work])
        for row in work:
            ready = lifecycle.extension_reached(row, lifecycle.REGISTERED) or _no_phone(row)
            if not ready:
                gate.findings.append(Finding(row.key, "registered", f"not registered ({row.state}): govmigrate "
                                                                    f"cutover {run.wave_id} registers the wave's "
                                                                    "phones first"))
        return gate

    def refusal(self, run: WaveRun, gate: Gate) -> tuple[str, str | None]:
        return (f"wave {run.wave_id}: sip confirm refused, {len(gate.errors)} extension(s) not registered; nothing "
                "changed state",
                f"run govmigrate cutover {run.wave_id} until every phone registers, or add --force --reason")

    def describe(self, count: int, options: StepOptions) -> str:
        return f"confirmation of {count} extension(s)"

    def execute(self, run: WaveRun, result: StepResult, work: list[ExtensionRow], options: StepOptions,
                progress: ProgressSink, stop: threading.Event) -> None:
        why = "the operator confirmed that its DIDs route to the hosted platform" + (
            f" (forced: {options.reason})" if options.force else "")
        for row in work:
            if not run.dry_run:
                run.store.set_extension_state(row.id, lifecycle.CUT_OVER, why + (
                    f"; {line_text(row.tech)}" if _no_phone(row) else ""))
            run.record(result, Outcome(row.key, row.state, lifecycle.CUT_OVER, True))
        run.event("sip-confirm", f"{len(work)} extension(s) cut over: {why}")
