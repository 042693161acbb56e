"""What a wave step found and did: its gate's findings, each item's outcome, and the step's result.

The same records serve every step, whatever its items are (mailboxes, domains, phone extensions): the runner
records them as a run of the wave, the command line renders them, and :attr:`StepResult.exit_code` is how the
step ended in the README's exit-code table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from migrate.core.errors import ExitCode


@dataclass(frozen=True)
class Finding:
    """One problem (or warning) a step's gate found before anything changed."""

    #: The item it concerns (a mailbox's address, an extension's key); None: the whole step (every item).
    item: str | None
    #: What was checked: central | source | login | destination | quota | final-sync | dns-ttl | sip | ...
    check: str
    message: str
    severity: str = "error"
    #: ``--force --reason`` can go past it. False: nothing can (a change that could not reach every server).
    overridable: bool = True

    def as_dict(self) -> dict[str, Any]:
        # "email": the key the run's JSON has always carried for a mailbox's finding.
        return {"email": self.item, "check": self.check, "message": self.message, "severity": self.severity,
                "overridable": self.overridable}


@dataclass
class Gate:
    """What must hold before a step changes anything, as checked: for a sync pass its pre-flight, for the
    cut-over every mailbox final-synced and the TTLs lowered, for the phone step the SIP checks."""

    checked: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    #: email → (bytes used, bytes limit) on the central host, where a sync pass's pre-flight read a quota.
    quota: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: What the gate read that the step's run uses (the SIP checks' report, the PBX files as they are now).
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def blocking(self) -> list[Finding]:
        """Problems even ``--force --reason`` does not go past."""
        return [f for f in self.errors if not f.overridable]

    @property
    def fatal(self) -> list[Finding]:
        """Problems no item can run past (``--force`` does not help)."""
        return [f for f in self.errors if f.item is None]

    def failing(self) -> dict[str, str]:
        """item → the first reason it cannot run."""
        out: dict[str, str] = {}
        for f in self.errors:
            if f.item is not None:
                out.setdefault(f.item, f.message)
        return out

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class Outcome:
    """What one step did to one item."""

    #: The item: a mailbox's address, a domain, an extension's ``dial_plan:number``.
    item: str
    before: str
    after: str
    ok: bool
    error: str | None = None
    stopped: bool = False
    #: Another process holds this item (a sync of the mailbox): left as it is, for that process to finish.
    locked: bool = False
    #: This host lost the item to another (its lease lapsed: a pause, a lost database) and gave it up; the new
    #: holder's outcome is the item's.
    given_up: bool = False
    copied: int = 0
    copied_bytes: int = 0
    would_copy: int = 0
    would_copy_bytes: int = 0
    src_messages: int = 0
    src_bytes: int = 0
    seconds: float = 0.0
    #: The migration host that copied it (a pass queued for workers on several hosts).
    host: str | None = None
    #: Messages not copied (refused by the central host, or that the source cannot export) that nobody accepted
    #: leaving behind, after this pass; and whether that is more than the project file's sync.bad_item_limit
    #: (the pass then ends in part: exit 1; a final pass leaves the mailbox failed unless forced with a reason).
    not_copied: int = 0
    over_limit: bool = False
    #: Messages not copied that this pass's ``--force --reason`` accepted leaving behind.
    accepted: int = 0

    @property
    def email(self) -> str:
        return self.item

    def as_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        # "email": the key every run's JSON (and a worker's record in the queue) has carried.
        return {"email": doc.pop("item"), **doc}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Outcome:
        """An outcome a worker recorded in the queue (:meth:`as_dict`)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in doc.items() if k in names}
        values.setdefault("item", doc.get("email", ""))
        return cls(**values)


@dataclass
class StepResult:
    """One run of one step of one wave."""

    wave: str
    #: The step's name (a sync pass's name for run, delta and final), or None when there was nothing to run.
    step: str | None
    dry_run: bool
    again: bool = False
    #: What the step works on: "mailbox", "extension" or "domain" items.
    items: str = "mailbox"
    #: The items the step works on (after its gate).
    work: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    #: (item, why) past this step already: not a problem.
    already: list[tuple[str, str]] = field(default_factory=list)
    #: (item, why) that cannot take this step: counted as skipped.
    blocked: list[tuple[str, str]] = field(default_factory=list)
    #: (item, reason) left out after a failed gate with ``force`` (a sync pass's pre-flight).
    forced_out: list[tuple[str, str]] = field(default_factory=list)
    gate: Gate | None = None
    interrupted: bool = False
    seconds: float = 0.0
    run_id: int | None = None
    warnings: list[str] = field(default_factory=list)
    #: ``--force --reason``: why a gate was passed by force (recorded with what it overrode).
    force_reason: str | None = None
    #: (who, what) a forced gate let through.
    forced: list[tuple[str, str]] = field(default_factory=list)
    #: Why the step finished only in part although no item failed (a platform check that failed, say).
    incomplete: list[str] = field(default_factory=list)
    #: Per domain, what a DNS step did (migrate.waves.dns_switch.DomainOutcome).
    domains: list[Any] = field(default_factory=list)
    #: What else a step has to say, for its own rendering (the SIP checks' report, the files an export wrote).
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def copied(self) -> int:
        return sum(o.copied for o in self.outcomes)

    @property
    def copied_bytes(self) -> int:
        return sum(o.copied_bytes for o in self.outcomes)

    @property
    def done(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.ok]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok and not o.stopped and not o.locked and not o.given_up]

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return ExitCode.INTERRUPTED
        if any(o.locked for o in self.outcomes):
            return ExitCode.LOCKED
        if self.failed or self.blocked or self.forced_out or self.incomplete or any(o.over_limit
                                                                                   for o in self.outcomes):
            return ExitCode.PARTIAL
        return ExitCode.OK
