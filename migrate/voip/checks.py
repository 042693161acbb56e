"""``govmigrate sip check``: does the hosted platform work the way the wave's phones will reach it?

Per run, in order, each result stored (``sip_checks``) and an event:

1. **resolve** the SIP domain per RFC 3263 (:mod:`migrate.voip.resolve`): ``fail`` names the record that leads
   nowhere; the targets that resolve are still checked.
2. **options** to every target × transport, with the round-trip time: 200 ``pass``; 401, 403, 404, 405, 407
   ``note`` (it answers: a registrar may want credentials even for OPTIONS); any other 3xx–6xx ``warn``
   (a 503 after the bounded Retry-After wait too); no answer, a refused connection, a malformed answer
   ``fail``.
3. **tls**, per TLS target: the chain against ``sip.ca_file``, the name per RFC 5922 (SAN DNS name or
   ``sip:`` URI equal to the SIP domain), days to expiry (``warn`` within ``sip.expiry_warning_days``).
4. **register**, per extension: REGISTER with digest (MD5 or SHA-256, as challenged, ``qop=auth``) over the
   best reachable target (the extension's own transport where the PBX named one), then an un-REGISTER with
   ``Expires: 0`` so no test binding stays. The secret is the one the platform was given: the file a
   ``voip export --new-secrets`` wrote it to, else the PBX files, read again (the store never holds it). An
   extension not provisioned yet, or virtual, is ``skip``; one with no usable secret ``fail`` saying so.

Transactions run through the shared runner (:func:`migrate.core.fanout.fanout`), at most ``sip.concurrency``
at once per registrar address, so a wave of 300 phones does not flood the platform.
"""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrate.core import lifecycle
from migrate.core.config import Project, SipSection
from migrate.core.errors import ExitCode, UsageError
from migrate.core.fanout import fanout
from migrate.core.limits import ConnectionLimits
from migrate.core.progress import ProgressEvent, ProgressSink, no_progress
from migrate.core.secrets import Secret
from migrate.core.store import ExtensionRow, Store
from migrate.voip.inventory import read_all
from migrate.voip.resolve import Resolution, resolve
from migrate.voip.sip.client import SipClient, SipError, SipTlsFailed, Target, Timers, TlsInfo

#: Check results, best first. ``note`` passes (with something worth knowing); ``skip`` was not checked.
RESULTS = ("pass", "note", "warn", "fail", "skip")
#: OPTIONS answers that prove the server is there and speaks SIP, though not with a 200.
NOTED_STATUSES = (401, 403, 404, 405, 407)


@dataclass
class Check:
    subject: str
    kind: str
    result: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.result in ("pass", "note")

    def as_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "kind": self.kind, "result": self.result, "detail": self.detail,
                "data": self.data}


@dataclass
class SipCheckReport:
    domain: str
    wave: str | None
    resolution: Resolution | None = None
    checks: list[Check] = field(default_factory=list)
    #: The extension keys checked, in order.
    extensions: list[str] = field(default_factory=list)
    concurrency: int = 0
    seconds: float = 0.0
    run_id: int | None = None

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.result == "fail"]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.result == "warn"]

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.PARTIAL if self.failed else ExitCode.OK

    @property
    def platform_ok(self) -> bool:
        """The domain resolves and at least one target answers; no platform-level check failed."""
        platform = [c for c in self.checks if c.kind != "register"]
        return not any(c.result == "fail" for c in platform) and any(
            c.kind == "options" and c.passed for c in platform)

    def register_checks(self) -> dict[str, Check]:
        return {c.subject: c for c in self.checks if c.kind == "register"}

    def as_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "wave": self.wave, "method": self.resolution.method if self.resolution else None,
                "targets": [t.label() for t in self.resolution.targets] if self.resolution else [],
                "lookups": self.resolution.steps if self.resolution else [],
                "checks": [c.as_dict() for c in self.checks], "failed": len(self.failed),
                "warnings": len(self.warnings), "concurrency": self.concurrency, "seconds": round(self.seconds, 3)}


def sip_section(project: Project) -> SipSection:
    if project.config.sip is None:
        raise UsageError(f"{project.path.name} has no sip: section; the SIP checks need the hosted platform's SIP "
                         "domain (govmigrate init writes an example)",
                         hint="add sip: {domain: voice.gov.bz} to migration.yaml")
    return project.config.sip


def select_extensions(store: Store, *, wave: str | None, numbers: Iterable[str] = ()) -> list[ExtensionRow]:
    """The wave's extensions, or those named (``dial_plan:number``, or a number unique across dial plans)."""
    numbers = list(numbers)
    if wave is None and not numbers:
        raise UsageError("say which phones to check: --wave WAVE or --extension N")
    rows: list[ExtensionRow] = []
    if wave is not None:
        rows = store.extensions(wave=wave)
        if not rows:
            raise UsageError(f"wave {wave} has no extensions", hint="govmigrate inventory phones, then govmigrate "
                                                                     "plan generate")
    everything = store.extensions() if numbers else []
    for number in numbers:
        found = [r for r in everything if r.key == number or r.number == number]
        if not found:
            raise UsageError(f"extension {number} is not in the phone inventory", hint="govmigrate inventory phones")
        if len(found) > 1:
            raise UsageError(f"extension {number} is in several dial plans: name it as "
                             + " or ".join(r.key for r in found))
        if found[0].key not in {r.key for r in rows}:
            rows.append(found[0])
    return rows


def run_checks(project: Project, store: Store, rows: list[ExtensionRow], *, wave: str | None,
               run_id: int | None = None, progress: ProgressSink = no_progress,
               stop: threading.Event | None = None) -> SipCheckReport:
    """Every check of the module docstring for these extensions; each result stored (with the wave's run
    ``run_id`` where a wave step made them) and an event."""
    sip = sip_section(project)
    started = time.monotonic()
    report = SipCheckReport(sip.domain.lower(), wave, concurrency=sip.concurrency)
    report.extensions = [r.key for r in rows]
    report.run_id = run_id
    recorder = _Recorder(store, report, wave)
    progress(ProgressEvent("plan", total_messages=len(rows) or None))

    resolution = resolve(project)
    report.resolution = resolution
    recorder.resolution(resolution)
    targets = _unique(resolution.targets)
    limits = ConnectionLimits(project, store)
    budget = _Budget(limits, sip.concurrency)
    try:
        reachable = fanout(targets, lambda t: _probe(project, sip, t, recorder, budget),
                           workers=min(64, max(1, len(targets))), name="sip-options", stop=stop)
        usable = [t for t, ok in zip(targets, reachable, strict=True) if ok]
        secrets = _Secrets(project, store)
        workers = min(64, sip.concurrency * max(1, len({(t.address, t.port) for t in usable})))

        def register(row: ExtensionRow) -> None:
            progress(ProgressEvent("start", row.key))
            check = _register(project, sip, row, usable, secrets, budget)
            recorder.add(check, event_obj=f"extension/{row.key}")
            progress(ProgressEvent("done" if check.result != "fail" else "failed", row.key, messages=1,
                                   detail=check.detail))

        fanout(rows, register, workers=max(1, workers), name="sip-register", stop=stop)
    finally:
        limits.close()
    report.seconds = time.monotonic() - started
    # Checks end in any order on the runner's threads; people read them in resolution and wave order.
    place = {target_subject(t): i for i, t in enumerate(targets)} | {key: i for i, key in enumerate(report.extensions)}
    group = {"resolve": 0, "tls": 1, "options": 1, "register": 2}
    report.checks.sort(key=lambda c: (group[c.kind], place.get(c.subject, -1), c.kind != "tls"))
    return report


# -- recording -------------------------------------------------------------------------------------------------

class _Recorder:
    """Adds each check to the report and the store (thread-safe: checks end on the runner's threads)."""

    def __init__(self, store: Store, report: SipCheckReport, wave: str | None) -> None:
        self.store, self.report, self.wave = store, report, wave
        self.lock = threading.Lock()

    def add(self, check: Check, *, event_obj: str | None = None) -> None:
        with self.lock:
            self.report.checks.append(check)
            self.store.record_sip_check(run_id=self.report.run_id, wave=self.wave, subject=check.subject,
                                        kind=check.kind, result=check.result, detail=check.detail, data=check.data,
                                        event_obj=event_obj)

    def resolution(self, found: Resolution) -> None:
        data = {"method": found.method, "targets": [t.label() for t in found.targets], "lookups": found.steps,
                "findings": [f.as_dict() for f in found.findings]}
        problems = [f for f in found.findings if f.result in ("fail", "warn")]
        result = "fail" if any(f.result == "fail" for f in problems) else ("warn" if problems else "pass")
        how = {"naptr": "NAPTR → SRV → A/AAAA", "srv": "SRV → A/AAAA (no NAPTR)",
               "a": "A/AAAA on the standard ports (no NAPTR, no SRV)", "registrar": "the configured registrar"}
        text = f"{len(found.targets)} target(s) via {how.get(found.method, found.method or 'nothing')}"
        if problems:
            text += "; " + "; ".join(f"{f.name}: {f.detail}" for f in problems)
        self.add(Check(found.domain, "resolve", result, text, data))


def _unique(targets: list[Target]) -> list[Target]:
    seen: dict[tuple[str, str, int], Target] = {}
    for t in targets:
        seen.setdefault((t.transport, t.address, t.port), t)
    return list(seen.values())


def target_subject(target: Target) -> str:
    """How a target is named in checks and events: ``tls:sip.voice.gov.bz:5061@127.56.7.1``."""
    return f"{target.transport}:{target.host}:{target.port}@{target.address}"


class _Budget:
    """At most ``sip.concurrency`` transactions in flight per registrar address and port (the one connection-limit
    service: across hosts too where the store is shared)."""

    def __init__(self, limits: ConnectionLimits, limit: int) -> None:
        self.limits = limits
        self.limit = limit

    def slot(self, target: Target) -> AbstractContextManager:
        return self.limits.server(f"sip/{target.address}:{target.port}", self.limit)


def client_for(sip: SipSection, project: Project, target: Target) -> SipClient:
    ca = str(project.resolve_path(sip.ca_file)) if sip.ca_file else None
    return SipClient(target, domain=sip.domain.lower(), ca_file=ca, verify=sip.verify_certificate,
                     timers=Timers(t1=sip.timer_t1, timer_f=sip.timeout),
                     retry_after_limit=sip.retry_after_limit)


# -- OPTIONS and TLS -------------------------------------------------------------------------------------------

def _probe(project: Project, sip: SipSection, target: Target, recorder: _Recorder, budget: _Budget) -> bool:
    """OPTIONS to one target (and its TLS check); True when it can take registrations."""
    subject = target_subject(target)
    failure: SipError | None = None
    with budget.slot(target), client_for(sip, project, target) as client:
        try:
            exchange = client.options()
        except SipError as exc:
            failure = exc
        info = failure.info if isinstance(failure, SipTlsFailed) else client.tls_info
    if target.transport == "tls" and info is not None:
        recorder.add(_tls_check(sip, subject, info, verified=sip.verify_certificate))
    if failure is not None:
        not_sent = "not sent: " if isinstance(failure, SipTlsFailed) else ""
        recorder.add(Check(subject, "options", "fail", f"{not_sent}{failure}"))
        return False
    response = exchange.response
    data = {"status": response.status, "rtt_ms": round(exchange.rtt * 1000, 1),
            "retransmissions": exchange.retransmissions, "server": response.header("Server")}
    said = f"{response.status} {response.reason}".strip()
    rtt = f"{exchange.rtt * 1000:.1f} ms"
    if response.status == 200:
        recorder.add(Check(subject, "options", "pass", f"200 OK in {rtt}", data))
        return True
    if response.status in NOTED_STATUSES:
        recorder.add(Check(subject, "options", "note", f"answers {said} in {rtt}: it is there and speaks SIP", data))
        return True
    if response.status >= 500:
        recorder.add(Check(subject, "options", "warn", f"answers {said} in {rtt}"
                           + _retry_after_text(response.header("Retry-After"), sip.retry_after_limit)
                           + ": the platform is there but not serving", data))
        return False
    recorder.add(Check(subject, "options", "warn", f"answers {said} in {rtt}", data))
    return False


def _retry_after_text(value: str | None, limit: float) -> str:
    if not value:
        return ""
    seconds = value.split(";")[0].strip()
    if seconds.isdigit() and int(seconds) > limit:
        return (f" (Retry-After {seconds} s is over the limit of {limit:g} s, sip.retry_after_limit: not waited "
                "for)")
    return f" (Retry-After {seconds} s: waited once, still busy)"


def _tls_check(sip: SipSection, subject: str, info: TlsInfo, *, verified: bool) -> Check:
    data = {"chain_ok": info.chain_ok, "name_ok": info.name_ok, "names": info.names, "version": info.version,
            "days_left": info.days_left, "not_after": info.not_after.isoformat() if info.not_after else None}
    expiry = f"expires in {info.days_left} day(s)" if info.days_left is not None else "expiry unknown"
    if not verified:
        return Check(subject, "tls", "warn", f"certificate not verified (sip.verify_certificate is false); {expiry}",
                     data)
    if not info.verified:
        return Check(subject, "tls", "fail", f"{info.error or 'not verified'}; certificate names: "
                     + (", ".join(info.names) or "none") + f"; {expiry}", data)
    if info.days_left is not None and info.days_left < sip.expiry_warning_days:
        return Check(subject, "tls", "warn", f"verified for {sip.domain}, but {expiry} "
                                             f"(sip.expiry_warning_days: {sip.expiry_warning_days})", data)
    return Check(subject, "tls", "pass", f"verified for {sip.domain} ({info.version or 'TLS'}); {expiry}", data)


# -- REGISTER --------------------------------------------------------------------------------------------------

def _register(project: Project, sip: SipSection, row: ExtensionRow, usable: list[Target], secrets: _Secrets,
              budget: _Budget) -> Check:
    if not lifecycle.extension_reached(row, lifecycle.PROVISIONED):
        return Check(row.key, "register", "skip", f"not provisioned yet ({row.state}): govmigrate voip export "
                                                  f"--wave {row.wave or 'WAVE'} first")
    if (row.tech or "").lower() == "virtual":
        return Check(row.key, "register", "skip", "virtual extension: it has no phone to register")
    secret, why = secrets.get(row)
    if secret is None:
        return Check(row.key, "register", "fail", f"no usable secret: {why}")
    if not usable:
        return Check(row.key, "register", "fail", "no target of the platform answered OPTIONS: nothing to register "
                                                  "with")
    target = _target_for(row, usable)
    subject = target_subject(target)
    with budget.slot(target), client_for(sip, project, target) as client:
        # register() and unregister() report what went wrong in their result; they do not raise for it.
        try:
            result = client.register(row.number, secret, expires=sip.register_expires)
        except ValueError as exc:  # a number that cannot be a SIP user name: refused before anything is sent
            return Check(row.key, "register", "fail", f"not sent: {exc}", {"target": subject})
        data = {"target": subject, "statuses": [r.status for r in result.replies], "algorithm": result.algorithm,
                "rtt_ms": round(result.rtt * 1000, 1), "contacts": result.contacts, "expires": result.expires}
        if result.status != 200:
            return Check(row.key, "register", "fail", _refused(result.status, result.replies, result.error, subject),
                         data)
        removed = client.unregister(result)
        if result.unregister_error:
            data["unregister_error"] = result.unregister_error
    data["unregistered"] = removed
    text = (f"registered over {subject} ({result.algorithm or 'no'} digest, "
            f"{' → '.join(str(s) for s in data['statuses'])}) in {result.rtt * 1000:.1f} ms")
    if not removed:
        return Check(row.key, "register", "warn", text + f"; the un-REGISTER was not accepted: the test binding "
                                                         f"stays until it expires ({result.expires or '?'} s)", data)
    return Check(row.key, "register", "pass", text + "; binding removed again", data)


def _refused(status: int | None, replies: list, error: str | None, subject: str) -> str:
    said = " → ".join(f"{r.status} {r.reason}".strip() for r in replies) or "no reply"
    if status == 403:
        return (f"refused over {subject} ({said}): a wrong password, or an extension the platform does not have "
                "(load the wave's export on the platform)")
    if status in (401, 407):
        return f"refused over {subject} ({said}): the credentials were not accepted"
    return f"not registered over {subject} ({said})" + (f": {error}" if error else "")


def _target_for(row: ExtensionRow, usable: list[Target]) -> Target:
    """The extension's own transport where the PBX named one and the platform offers it, else the best."""
    wanted = (row.transport or "").lower()
    return next((t for t in usable if t.transport == wanted), usable[0])


class _Secrets:
    """The secret the platform was given for each extension: the new one an export wrote, else the PBX's."""

    def __init__(self, project: Project, store: Store) -> None:
        self.project, self.store = project, store
        self.lock = threading.Lock()
        self._pbx: dict[str, dict[str, Secret | None]] = {}
        self._files: dict[str, dict[str, str]] = {}

    def get(self, row: ExtensionRow) -> tuple[Secret | None, str]:
        with self.lock:
            path = self.store.extension_secret_file(row.id)
            if path:
                return self._from_file(row, Path(path))
            return self._from_pbx(row)

    def _from_file(self, row: ExtensionRow, path: Path) -> tuple[Secret | None, str]:
        if str(path) not in self._files:
            try:
                self._files[str(path)] = _read_secrets_csv(path)
            except OSError as exc:
                return None, (f"its new secret was written to {path}, which cannot be read ({exc.strerror}); export "
                              "again with --new-secrets and load the files on the platform")
        table = self._files[str(path)]
        value = table.get(row.key) or table.get(row.number)
        if not value:
            return None, f"{path} has no password for it any more; export the wave again"
        return Secret(value, f"{path.name}:{row.key}"), ""

    def _from_pbx(self, row: ExtensionRow) -> tuple[Secret | None, str]:
        if row.source_id not in self._pbx:
            inventories, _problems = read_all(self.project, [self.project.source(row.source_id)])
            inventory = inventories.get(row.source_id)
            self._pbx[row.source_id] = {e.key: e.secret for e in inventory.extensions} if inventory else {}
        table = self._pbx[row.source_id]
        if row.key not in table:
            return None, ("the PBX files no longer give this extension (or have an error): govmigrate inventory "
                          "phones lists why")
        if table[row.key] is None:
            return None, "the PBX gives it no password; export the wave with --new-secrets"
        return table[row.key], ""


def _read_secrets_csv(path: Path) -> dict[str, str]:
    """key and number → secret, from a neutral CSV or FreePBX extensions.csv that ``voip export`` wrote."""
    table: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            secret = row.get("secret") or ""
            if not secret:
                continue
            if row.get("key"):
                table[row["key"]] = secret
            if row.get("extension"):
                table.setdefault(row["extension"], secret)
    return table
