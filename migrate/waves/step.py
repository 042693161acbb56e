"""The contract every wave step keeps, whatever its items are (mailboxes, domains, phone extensions).

A step says which of the wave's items it works on (:meth:`Step.select`: work, already past it, blocked), what
must hold before it changes anything (:meth:`Step.gate`), how it runs (:meth:`Step.execute`, recording each
item's outcome as its work ends) and the lifecycle state it moves items to (:attr:`Step.target`). The runner
(:mod:`migrate.waves.runner`) does the rest, the same for every step: the plan's approval, the wave's lock,
``--force`` and ``--reason``, the run record and its events, interruption. Every step is listed in
:mod:`migrate.waves.table`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from migrate.core.lifecycle import Eligibility
from migrate.core.progress import ProgressSink, no_progress
from migrate.waves.context import WaveRun
from migrate.waves.results import Gate, StepResult

T = TypeVar("T")

#: How the items of each kind are named in messages.
PLURAL = {"mailbox": "mailboxes", "extension": "extensions", "domain": "domains"}
#: ``Step.force``: what ``--force`` does when the gate refuses.
LEAVE_OUT = "leave-out"   # run without the failing items (each marked failed with the gate's reason)
OVERRIDE = "override"     # let every item through; needs --reason, recorded with what it overrode


@dataclass(frozen=True)
class StepOptions:
    """What the command line asked of a step."""

    #: Repeat the step on items that completed it (a delta or final pass before a late cut-over).
    again: bool = False
    force: bool = False
    reason: str | None = None
    #: What only one step takes (the provisioning step: format, out, new_secrets, algorithm).
    params: Mapping[str, Any] = field(default_factory=dict)


class Step(Generic[T]):
    """One thing a wave does to its items. Subclasses say which items, what must hold, and how they act."""

    #: How the step is named in the run records and events.
    name: str = ""
    #: The lifecycle state an item reaches when the step completes for it ("" for a step that moves none).
    target: str = ""
    #: What :meth:`select` returns: "mailbox", "extension" or "domain" items.
    items: str = "mailbox"
    #: What ``--force`` does when the gate refuses: LEAVE_OUT, OVERRIDE, or None (the gate cannot be forced).
    force: str | None = None
    #: The wave must be approved as its file stands (exit 6).
    needs_approval: bool = True
    #: The step holds the wave's lock while it runs (exit 7 for a second run of the wave meanwhile).
    takes_lock: bool = True
    #: The word a refused gate's lines start with on the terminal.
    gate_label: str = "gate"

    def command(self, wave: str, options: StepOptions) -> str:
        """The command line that runs it: what another run is told holds the wave's lock."""
        raise NotImplementedError

    def key(self, item: T) -> str:
        """How an item is named in outcomes, findings and events."""
        return item.email  # type: ignore[attr-defined]

    def select(self, run: WaveRun, options: StepOptions) -> Eligibility[T]:
        """The wave's items this step works on, those already past it, and those that cannot take it."""
        raise NotImplementedError

    def load(self, run: WaveRun, keys: list[str]) -> list[T]:
        """The items named ``keys``, read afresh (the gate may have changed them)."""
        return [m for m in (run.store.mailbox(k) for k in keys) if m is not None]  # type: ignore[misc]

    def mark_blocked(self, run: WaveRun, blocked: list[tuple[T, str]]) -> None:
        """Record what :meth:`select` found blocked, where the step's items keep such a state."""

    def gate(self, run: WaveRun, work: list[T], options: StepOptions, progress: ProgressSink = no_progress) -> Gate:
        """What must hold before the step changes anything; errors refuse it (see :attr:`force`)."""
        return Gate(checked=[self.key(i) for i in work])

    def leave_out(self, run: WaveRun, item: T, reason: str) -> None:
        """An item a forced gate leaves out (LEAVE_OUT): record why, where the step's items keep a state."""

    def refusal(self, run: WaveRun, gate: Gate) -> tuple[str, str | None]:
        """The message and hint of a refused gate (the findings themselves are listed beside it)."""
        hint = None
        if not gate.fatal and self.force == LEAVE_OUT:
            hint = f"fix them and run again, or add --force to run without the failing {PLURAL[self.items]}"
        elif not gate.fatal and self.force == OVERRIDE:
            hint = "fix them and run again, or add --force --reason to go past the gate (the reason is recorded)"
        return (f"{self.gate_label} of wave {run.wave_id} ({self.name}) found {len(gate.errors)} problem(s); "
                "nothing was copied or changed"), hint

    def execute(self, run: WaveRun, result: StepResult, work: list[T], options: StepOptions, progress: ProgressSink,
                stop: threading.Event) -> None:
        """Do the step, recording each item's outcome in ``result`` as it ends (:meth:`WaveRun.record`)."""
        raise NotImplementedError

    def describe(self, count: int, options: StepOptions) -> str:
        """The run's start, for the event log."""
        return f"{self.name} of {count} {self.items}(s)" + (" (again)" if options.again else "")

    def summary(self, result: StepResult, outcome_text: str) -> str:
        """The run's end, for the run record and the event log."""
        return f"{self.name} {outcome_text}: {len(result.done)} {self.items}(s) done, {len(result.failed)} failed"
