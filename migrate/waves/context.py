"""One run of one wave: what every step works in (the project, the store, the wave's approved plan, its lock).

A :class:`WaveRun` is what a step (:mod:`migrate.waves.step`) receives. It checks the wave's plan file (valid,
and approved as it stands), takes the wave's lock, and hands out the wave's items: its mailboxes, its phone
extensions, the domains whose cut-over follows it. Use it as a context manager: the lock is released on exit.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from migrate.core.config import Project
from migrate.core.errors import NotApproved, UsageError
from migrate.core.leases import wave_lock
from migrate.core.store import ExtensionRow, MailboxRow, Store
from migrate.plans.edits import approval_status
from migrate.plans.planfiles import Plan, WavePlan
from migrate.waves.results import Gate, Outcome, StepResult


class WaveRun:
    """One run of one wave of the plan."""

    def __init__(self, project: Project, store: Store, plan: Plan, wave_id: str, *, locks_dir: Path,
                 dry_run: bool = False) -> None:
        self.project = project
        self.store = store
        self.plan = plan
        self.wave: WavePlan = plan.wave(wave_id)
        self.wave_id = wave_id
        self.locks_dir = locks_dir
        self.dry_run = dry_run
        self.lock: Any = None
        self.warnings: list[str] = []
        #: Earlier runs of this wave found unfinished (killed) when the lock was taken.
        self.killed_runs: list[int] = []
        #: The last gate a step of this run checked (a command shows its findings when it refused).
        self.gate: Gate | None = None
        self._checked = False
        self._lock = threading.Lock()

    def __enter__(self) -> WaveRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # -- the checks before anything happens --------------------------------------------------------------

    def check_plan(self, *, approval: bool = True) -> None:
        """The wave's file and the index must be valid (exit 2), and (``approval``) the wave approved as it stands
        (exit 6; a dry run only warns)."""
        if self._checked:
            return
        self.plan.require_valid(self.wave_id)
        if not approval:
            return
        row = self.store.wave(self.wave_id)
        status = approval_status(self.wave.hashes, row)
        if status == "approved":
            self._checked = True
            return
        rel = self.plan.relative(self.wave.path)
        if status == "not approved":
            message = f"wave {self.wave_id} is not approved"
            hint = f"review it (govmigrate plan show {self.wave_id}), then: govmigrate plan approve {self.wave_id}"
        else:
            assert row is not None
            message = (f"{rel} changed since {row.approved_by} approved wave {self.wave_id} at {row.approved_at}; "
                       "a changed wave must be approved again")
            hint = (f"see what changed with: govmigrate plan diff {self.wave_id}; then: "
                    f"govmigrate plan approve {self.wave_id}")
        if self.dry_run:
            self.warnings.append(f"{message} (a dry run goes ahead; a real run would be refused)")
            self._checked = True
            return
        raise NotApproved(message, hint=hint)

    def acquire(self, command: str) -> None:
        """Take the wave's lock; ``command`` is what a refused second run is told holds it (exit 7). Runs of the
        wave that a kill left unfinished are marked killed."""
        if self.dry_run or self.lock is not None:
            return
        self.lock = wave_lock(self.store, self.locks_dir, self.wave_id, command,
                              ttl=self.project.config.sync.lease_seconds).acquire()
        self.killed_runs = self.store.abandon_runs(self.wave_id)
        for run_id in self.killed_runs:
            self.event("run-killed", f"run {run_id} ended without finishing (killed or crashed); this run resumes it")

    # -- the wave's items ------------------------------------------------------------------------------------

    def mailboxes(self) -> list[MailboxRow]:
        assert self.wave.data is not None
        rows = []
        for email in self.wave.data.mailboxes:
            row = self.store.mailbox(email)
            if row is None:  # validation reports unknown addresses; a row is missing only if the store was reset
                raise UsageError(f"{email} of wave {self.wave_id} is not in the state store; run govmigrate check")
            rows.append(row)
        return rows

    def extensions(self) -> list[ExtensionRow]:
        """The store's rows of the extensions the wave holds."""
        return self.store.extensions(wave=self.wave_id)

    def domains(self) -> list[str]:
        """The domains whose cut-over follows this wave (its plan file's ``cutover_domains``)."""
        assert self.wave.data is not None
        return list(self.wave.data.cutover_domains)

    # -- recording ----------------------------------------------------------------------------------------------

    def event(self, action: str, detail: str) -> None:
        """An event of the wave (``wave/<id>``); a dry run records nothing."""
        if not self.dry_run:
            self.store.add_event(f"wave/{self.wave_id}", action, detail)

    def record(self, result: StepResult, outcome: Outcome) -> None:
        """An item's outcome, as its work ends (steps call this from their worker threads)."""
        with self._lock:
            result.outcomes.append(outcome)

    @property
    def reports_dir(self) -> Path:
        return self.locks_dir.parent / "reports"
