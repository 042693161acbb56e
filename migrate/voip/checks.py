"""``govmigrate sip check``: does the hosted platform work the way the wave's phones will reach it?

Per run, in order, each result stored (``sip_checks``) and an event:

1. **resolve** the SIP domain per RFC 3263 (:mod:`migrate.voip.resolve`): ``fail`` names the record that leads
   nowhere; the targets that resolve are still checked.
2. **options** to every target × transport, with the round-trip time: 200 ``pass``; 401 and 407 ``note``
   ("answers, requires authentication": a registrar may want credentials even for OPTIONS); 403, 404, 405
   ``note`` (it is there and speaks SIP); a 3xx ``warn`` naming where it points; any other 4xx–6xx ``warn`` (a
   503 after the bounded Retry-After wait too); no answer, a refused connection, a malformed answer ``fail``;
   a TLS connection that was refused ``fail`` "OPTIONS not sent: TLS ...".
3. **tls**, per TLS target: the chain against ``sip.ca_file``, the name per RFC 5922 (SAN DNS name or
   ``sip:`` URI equal to the SIP domain), days to expiry (``warn`` within ``sip.expiry_warning_days``).
4. **register**, per extension: REGISTER with digest (MD5 or SHA-256, as challenged, ``qop=auth``) over the
   best reachable target (the extension's own transport where the PBX named one), then an un-REGISTER with
   ``Expires: 0`` so no test binding stays. The secret is the one the platform was given: the one govmigrate
   keeps for it (:mod:`migrate.voip.kept`), else the PBX files', read again. A 423 is answered with the
   registrar's Min-Expires (``note``, said); a 3xx is followed when it points within the platform's SIP domain,
   and reported with where it points otherwise (``fail``). A refusal says what it means: 404 (or 604) an
   extension the platform does not have; 403, or a second challenge after credentials, a wrong password *or*
   an unknown extension, unless the registrar tells them apart (a made-up extension is registered once per
   registrar to learn that: 404 for it means the refused one exists and its password is wrong). An extension
   not provisioned yet is ``skip``; a line that is not a SIP phone (virtual, or moved by hand) ``n/a``; one
   with no usable secret ``fail`` saying so.

The report exits 1 when any check failed, warned or was skipped (the README's exit-code table).

Transactions run through the shared runner (:func:`migrate.core.fanout.fanout`), at most ``sip.concurrency``
at once per registrar address, so a wave of 300 phones does not flood the platform.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import sipmessage

from migrate.core import lifecycle
from migrate.core.config import Project, SipSection
from migrate.core.errors import ExitCode, UsageError
from migrate.core.fanout import fanout
from migrate.core.limits import ConnectionLimits
from migrate.core.progress import ProgressEvent, ProgressSink, no_progress
from migrate.core.secrets import Secret
from migrate.core.store import ExtensionRow, Store
from migrate.voip.inventory import read_all
from migrate.voip.kept import KeptSecrets
from migrate.voip.model import PHONE, line_kind, line_text
from migrate.voip.resolve import Resolution, redirect_targets, resolve
from migrate.voip.sip.client import (
    RegisterResult,
    SipClient,
    SipError,
    SipTlsFailed,
    Target,
    Timers,
    TlsInfo,
)
from migrate.voip.sip.message import printable

#: Check results, best first. ``note`` passes (with something worth knowing); ``skip`` was not checked (and
#: should have been); ``n/a``: nothing to check (a line that is not a SIP phone).
RESULTS = ("pass", "note", "warn", "fail", "skip", "n/a")
#: OPTIONS answers that prove the server is there and speaks SIP, though not with a 200.
NOTED_STATUSES = (401, 403, 404, 405, 407)
#: OPTIONS answers that say the server wants credentials first.
AUTH_STATUSES = (401, 407)


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
    def skipped(self) -> list[Check]:
        return [c for c in self.checks if c.result == "skip"]

    @property
    def exit_code(self) -> ExitCode:
        """1 when a check failed, warned or was skipped (README: exit codes); else 0."""
        return ExitCode.PARTIAL if self.failed or self.warnings or self.skipped else ExitCode.OK

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
                "warnings": len(self.warnings), "skipped": len(self.skipped), "concurrency": self.concurrency,
                "seconds": round(self.seconds, 3)}


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
        usable = [t for t, why in zip(targets, reachable, strict=True) if why is None]
        unusable = [f"{target_subject(t)}: {why}" for t, why in zip(targets, reachable, strict=True) if why]
        secrets_of = _Secrets(project, store)
        secrets_of.kept.load([r.key for r in rows])
        context = _Registering(project, sip, usable, unusable, secrets_of, budget)
        workers = min(64, sip.concurrency * max(1, len({(t.address, t.port) for t in usable})))

        def register(row: ExtensionRow) -> None:
            progress(ProgressEvent("start", row.key))
            check = context.register(row)
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

def _probe(project: Project, sip: SipSection, target: Target, recorder: _Recorder, budget: _Budget) -> str | None:
    """OPTIONS to one target (and its TLS check); None when it can take registrations, else why not."""
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
        text = f"OPTIONS not sent: {failure}" if isinstance(failure, SipTlsFailed) else str(failure)
        recorder.add(Check(subject, "options", "fail", text))
        return text
    response = exchange.response
    data = {"status": response.status, "rtt_ms": round(exchange.rtt * 1000, 1),
            "retransmissions": exchange.retransmissions, "server": response.header("Server")}
    said = f"{response.status} {response.reason}".strip()
    rtt = f"{exchange.rtt * 1000:.1f} ms"
    if response.status == 200:
        recorder.add(Check(subject, "options", "pass", f"200 OK in {rtt}", data))
        return None
    if response.status in AUTH_STATUSES:
        recorder.add(Check(subject, "options", "note", f"answers, requires authentication ({said}) in {rtt}", data))
        return None
    if response.status in NOTED_STATUSES:
        recorder.add(Check(subject, "options", "note", f"answers {said} in {rtt}: it is there and speaks SIP", data))
        return None
    if response.status >= 500:
        text = (f"answers {said} in {rtt}" + _retry_after_text(response.header("Retry-After"), sip.retry_after_limit)
                + ": the platform is there but not serving")
    elif 300 <= response.status < 400:
        contacts = [printable(c) for c in response.headers("Contact")]
        data["contacts"] = contacts
        text = f"answers {said} in {rtt}, pointing to " + (", ".join(contacts) or "nowhere (no Contact)")
    else:
        text = f"answers {said} in {rtt}"
    recorder.add(Check(subject, "options", "warn", text, data))
    return text


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

class _Registering:
    """The REGISTER check of each extension over the targets that answered, with what every registration of the
    run shares: the secrets, the connection budget, and what each registrar says for an unknown extension."""

    def __init__(self, project: Project, sip: SipSection, usable: list[Target], unusable: list[str],
                 secrets: _Secrets, budget: _Budget) -> None:
        self.project, self.sip, self.usable, self.unusable = project, sip, usable, unusable
        self.secrets, self.budget = secrets, budget
        self.domain = sip.domain.lower()
        self._unknown: dict[tuple[str, str, int], int | None] = {}
        self._lock = threading.Lock()

    def register(self, row: ExtensionRow) -> Check:
        if line_kind(row.tech) != PHONE:
            return Check(row.key, "register", "n/a", line_text(row.tech))
        if not lifecycle.extension_reached(row, lifecycle.PROVISIONED):
            return Check(row.key, "register", "skip", f"not provisioned yet ({row.state}): govmigrate voip export "
                                                      f"--wave {row.wave or 'WAVE'} first")
        secret, why = self.secrets.get(row)
        if secret is None:
            return Check(row.key, "register", "fail", f"no usable secret: {why}")
        if not self.usable:
            return Check(row.key, "register", "fail", "no target of the platform can take a registration: "
                                                      + ("; ".join(self.unusable) or "none was found"))
        target = _target_for(row, self.usable)
        attempt = self._attempt(row, secret, target)
        if isinstance(attempt, Check):
            return attempt
        result, data = attempt
        if result.redirect:
            followed = self._follow(row, secret, target, result)
            if isinstance(followed, Check):
                return followed
            result, data, target = followed
        if result.status != 200:
            return Check(row.key, "register", "fail", self._refused(row, result, data["target"], target), data)
        text = (f"registered over {data['target']} ({result.algorithm or 'no'} digest, "
                f"{' → '.join(str(s) for s in data['statuses'])}) in {result.rtt * 1000:.1f} ms")
        if "redirected_by" in data:
            text = f"redirected by {data['redirected_by']} within {self.domain}; " + text
        notes = []
        if result.min_expires:
            notes.append(f"the registrar asked for at least {result.min_expires} s (423 Interval Too Brief): sent "
                         f"again with Expires {result.min_expires}, as RFC 3261 §10.2.8 says; phones must allow it")
        if not data["unregistered"]:
            return Check(row.key, "register", "warn", "; ".join([text, *notes]) + "; the un-REGISTER was not "
                         f"accepted: the test binding stays until it expires ({result.expires or '?'} s)", data)
        return Check(row.key, "register", "note" if notes else "pass",
                     "; ".join([text, *notes, "binding removed again"]), data)

    def _attempt(self, row: ExtensionRow, secret: Secret, target: Target) -> tuple[RegisterResult, dict] | Check:
        """REGISTER (and, when it got 200, the un-REGISTER) over one target."""
        subject = target_subject(target)
        with self.budget.slot(target), client_for(self.sip, self.project, target) as client:
            # register() and unregister() report what went wrong in their result; they do not raise for it.
            try:
                result = client.register(row.number, secret, expires=self.sip.register_expires)
            except ValueError as exc:  # a number that cannot be a SIP user name: refused before anything is sent
                return Check(row.key, "register", "fail", f"not sent: {exc}", {"target": subject})
            data: dict[str, Any] = {
                "target": subject, "statuses": [r.status for r in result.replies], "algorithm": result.algorithm,
                "rtt_ms": round(result.rtt * 1000, 1), "contacts": result.contacts, "expires": result.expires}
            if result.min_expires:
                data["min_expires"] = result.min_expires
            if result.redirect:
                data["redirect"] = [printable(c) for c in result.redirect]
            data["unregistered"] = client.unregister(result) if result.status == 200 else False
            if result.unregister_error:
                data["unregister_error"] = result.unregister_error
        return result, data

    def _follow(self, row: ExtensionRow, secret: Secret, target: Target,
                result: RegisterResult) -> tuple[RegisterResult, dict, Target] | Check:
        """A 3xx: follow the first Contact within the platform's SIP domain (once), else say where it points."""
        subject = target_subject(target)
        said = f"{result.status} {result.replies[-1].reason}".strip() if result.replies else str(result.status)
        where = ", ".join(printable(c) for c in result.redirect)
        data = {"target": subject, "statuses": [r.status for r in result.replies],
                "redirect": [printable(c) for c in result.redirect]}
        inside = [u for u in (_sip_uri(c) for c in result.redirect) if u is not None and self._within(u.host)]
        if not inside:
            return Check(row.key, "register", "fail",
                         f"redirected by {subject} ({said}) to {where}: outside the platform's domain {self.domain}, "
                         "not followed (a phone would register with another platform)", data)
        uri = inside[0]
        transport = (uri.parameters.get("transport") or target.transport).lower()
        if transport not in ("udp", "tcp", "tls"):
            transport = target.transport
        targets, problem = redirect_targets(self.project, uri.host, uri.port, transport)
        if not targets:
            return Check(row.key, "register", "fail", f"redirected by {subject} ({said}) to {printable(str(uri))} "
                                                      f"within {self.domain}, which does not resolve: {problem}", data)
        attempt = self._attempt(row, secret, targets[0])
        if isinstance(attempt, Check):
            return attempt
        followed, data = attempt
        data["redirected_by"] = f"{subject} ({said})"
        data["statuses"] = [r.status for r in result.replies] + data["statuses"]
        if followed.redirect:
            return Check(row.key, "register", "fail", f"redirected by {subject} ({said}) to {data['target']}, which "
                                                      f"redirects again to {', '.join(data['redirect'])}: not followed "
                                                      "twice", data)
        return followed, data, targets[0]

    def _within(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host == self.domain or host.endswith("." + self.domain)

    def _refused(self, row: ExtensionRow, result: RegisterResult, subject: str, target: Target) -> str:
        said = " → ".join(f"{r.status} {r.reason}".strip() for r in result.replies) or "no reply"
        status = result.status
        challenged = any(r.status in (401, 407) for r in result.replies[:-1])
        if status in (404, 604):
            return (f"refused over {subject} ({said}): the platform does not have extension {row.number}; load the "
                    "wave's export on the platform")
        if (status == 403 or status in (401, 407)) and challenged:
            unknown = self._unknown_status(target, status)
            if unknown in (404, 604):
                return (f"refused over {subject} ({said}): a wrong password. The platform has extension "
                        f"{row.number} (this registrar answers {unknown} for an extension it does not have), but "
                        "not with this password: load the wave's export again")
            return (f"refused over {subject} ({said}): a wrong password, or an extension the platform does not "
                    "have; this registrar answers both alike" + (f" (a made-up extension got {unknown} too)"
                                                                 if unknown else "")
                    + ": load the wave's export on the platform, then check the password")
        if status in (401, 407):
            return f"refused over {subject} ({said}): the credentials were not accepted"
        return f"not registered over {subject} ({said})" + (f": {result.error}" if result.error else "")

    def _unknown_status(self, target: Target, refused: int) -> int | None:
        """What the registrar answers for an extension it does not have: a made-up one is registered (with a
        made-up password) once per registrar address and transport. None when it could not be learned."""
        where = (target.transport, target.address, target.port)
        with self._lock:
            if where in self._unknown:
                return self._unknown[where]
        user = f"govmigrate-probe-{secrets.token_hex(4)}"
        with self.budget.slot(target), client_for(self.sip, self.project, target) as client:
            result = client.register(user, Secret(secrets.token_urlsafe(18), "probe", remember=False), expires=60)
            if result.status == 200:  # a registrar that takes anyone: remove the binding again
                client.unregister(result)
        with self._lock:
            self._unknown[where] = result.status
        return result.status


def _sip_uri(text: str) -> sipmessage.URI | None:
    try:
        return sipmessage.URI.parse(text)
    except ValueError:
        return None


def _target_for(row: ExtensionRow, usable: list[Target]) -> Target:
    """The extension's own transport where the PBX named one and the platform offers it, else the best."""
    wanted = (row.transport or "").lower()
    return next((t for t in usable if t.transport == wanted), usable[0])


class _Secrets:
    """The secret the platform was given for each extension: the one govmigrate keeps for it, else the PBX's."""

    def __init__(self, project: Project, store: Store) -> None:
        self.project, self.store = project, store
        self.kept = KeptSecrets(project, store)
        self.lock = threading.Lock()
        self._pbx: dict[str, dict[str, Secret | None]] = {}

    def get(self, row: ExtensionRow) -> tuple[Secret | None, str]:
        with self.lock:
            secret, why = self.kept.current(row.key, row.id)
            if secret is not None or why:
                return secret, why
            return self._from_pbx(row)

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
