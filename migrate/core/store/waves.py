"""Waves as generated and approved, every approval of each (with when and why it lapsed), and the runs of their
steps (each with the approval it ran under)."""

from __future__ import annotations

import json
import os
from typing import Any

from migrate.core.secrets import redact
from migrate.core.store.base import Row, StoreBase
from migrate.core.store.rows import (
    ApprovalRow,
    RunRow,
    WaveRow,
    actor,
    host,
    now,
)


class WaveStore(StoreBase):
    _WAVE_COLS = "id, position, plan_file, plan_hash, approved_by, approved_at, state, doc, recorded_at"

    @staticmethod
    def _wave(row: Row) -> WaveRow:
        values = list(row)
        values[7] = json.loads(values[7]) if values[7] else None
        return WaveRow(*values)

    def waves(self) -> list[WaveRow]:
        return [self._wave(r) for r in self._query(f"SELECT {self._WAVE_COLS} FROM waves ORDER BY position, id")]

    def wave(self, wave_id: str) -> WaveRow | None:
        rows = self._query(f"SELECT {self._WAVE_COLS} FROM waves WHERE id = ?", (wave_id,))
        return self._wave(rows[0]) if rows else None

    def record_wave(self, wave_id: str, *, position: int, plan_file: str, doc: dict[str, Any],
                    changes: str = "") -> None:
        """Record a generated wave (its canonical plan document); any earlier approval of it is void, and lapses
        with ``changes`` (what the new document changed) as its reason."""
        with self.tx() as c:
            c.execute(
                "INSERT INTO waves(id, position, plan_file, doc, recorded_at, state, updated_at) "
                "VALUES (?,?,?,?,?, 'planned', ?) ON CONFLICT(id) DO UPDATE SET position=excluded.position, "
                "plan_file=excluded.plan_file, doc=excluded.doc, recorded_at=excluded.recorded_at, "
                "plan_hash=NULL, approved_by=NULL, approved_at=NULL, state='planned', updated_at=excluded.updated_at",
                (wave_id, position, plan_file, json.dumps(doc, sort_keys=True, ensure_ascii=False), now(), now()))
            self.lapse_approval(wave_id, "the plan was generated again" + (f": {changes}" if changes else ""))

    def lapse_approval(self, wave_id: str, reason: str) -> bool:
        """The wave's approval in force (if any) stops covering it, for ``reason`` (an event says so too).
        Returns whether there was one."""
        with self.tx() as c:
            row = c.execute("SELECT id FROM approvals WHERE wave = ? AND lapsed_at IS NULL ORDER BY id DESC LIMIT 1",
                            (wave_id,)).fetchone()
            if row is None:
                return False
            c.execute("UPDATE approvals SET lapsed_at = ?, lapse_reason = ? WHERE id = ?", (now(), reason, row[0]))
            self.add_event(f"wave/{wave_id}", "approval-lapsed", reason)
        return True

    def approve_wave(self, wave_id: str, *, position: int, plan_file: str, plan_hash: str, doc: dict[str, Any],
                     who: str | None = None, changes: str | None = None) -> None:
        """Record that ``who`` approved the wave whose plan has ``plan_hash``, with the event saying so; an approval
        of another hash still in force is replaced. ``changes``: what changed since the approval before."""
        who = who or actor()
        text = json.dumps(doc, sort_keys=True, ensure_ascii=False)
        with self.tx() as c:
            c.execute(
                "INSERT INTO waves(id, position, plan_file, plan_hash, approved_by, approved_at, doc, recorded_at, "
                "state, updated_at) VALUES (?,?,?,?,?,?,?,?, 'approved', ?) ON CONFLICT(id) DO UPDATE SET "
                "position=excluded.position, plan_file=excluded.plan_file, plan_hash=excluded.plan_hash, "
                "approved_by=excluded.approved_by, approved_at=excluded.approved_at, doc=excluded.doc, "
                "recorded_at=excluded.recorded_at, state='approved', updated_at=excluded.updated_at",
                (wave_id, position, plan_file, plan_hash, who, now(), text, now(), now()))
            c.execute("INSERT INTO approvals(wave, plan_hash, plan_file, approved_by, approved_at, doc, changes) "
                      "VALUES (?,?,?,?,?,?,?)", (wave_id, plan_hash, plan_file, who, now(), text, changes))
            self.add_event(f"wave/{wave_id}", "approve", f"plan {plan_file} sha256 {plan_hash[:16]}", who=who)

    def approvals(self, wave_id: str | None = None) -> list[ApprovalRow]:
        """Every approval (of one wave), oldest first."""
        rows = []
        for r in self._of_wave("SELECT id, wave, plan_hash, plan_file, approved_by, approved_at, doc, lapsed_at, "
                               "lapse_reason, changes FROM approvals", wave_id):
            values = list(r)
            values[6] = json.loads(values[6]) if values[6] else None
            rows.append(ApprovalRow(*values))
        return rows

    def set_wave_positions(self, order: list[str]) -> None:
        with self.tx() as c:
            c.executemany("UPDATE waves SET position = ? WHERE id = ?",
                          [(i, wave_id) for i, wave_id in enumerate(order)])

    def delete_wave(self, wave_id: str) -> None:
        """Forget a wave that is no longer planned; its mailboxes belong to no wave afterwards."""
        with self.tx() as c:
            c.execute("UPDATE mailboxes SET wave = NULL, updated_at = ? WHERE wave = ?", (now(), wave_id))
            c.execute("DELETE FROM waves WHERE id = ?", (wave_id,))
            self.lapse_approval(wave_id, "the wave was taken out of the plan")

    def start_run(self, wave_id: str, pass_name: str) -> int:
        """A run of the wave's step begins, under the wave's approval in force (if any)."""
        with self.tx() as c:
            approval = c.execute("SELECT id FROM approvals WHERE wave = ? AND lapsed_at IS NULL ORDER BY id DESC "
                                 "LIMIT 1", (wave_id,)).fetchone()
            cur = c.execute("INSERT INTO runs(wave, pass, started_at, actor, pid, host, approval_id) "
                            "VALUES (?,?,?,?,?,?,?) RETURNING id",
                            (wave_id, pass_name, now(), actor(), os.getpid(), host(), approval[0] if approval else None))
            return int(cur.fetchone()[0])

    def finish_run(self, run_id: int, *, result: str, mailboxes: int, messages: int, bytes_: int, seconds: float,
                   detail: str = "") -> None:
        with self.tx() as c:
            c.execute("UPDATE runs SET finished_at=?, result=?, mailboxes=?, messages=?, bytes=?, seconds=?, "
                      "detail=? WHERE id=?",
                      (now(), result, mailboxes, messages, bytes_, seconds, redact(detail), run_id))

    def abandon_runs(self, wave_id: str) -> list[int]:
        """Mark the wave's runs that never finished (their process was killed) as such; returns their ids.
        Call only while holding the wave's lock, so that no live run is among them."""
        with self.tx() as c:
            ids = [r[0] for r in c.execute("SELECT id FROM runs WHERE wave = ? AND finished_at IS NULL",
                                           (wave_id,)).fetchall()]
            c.executemany("UPDATE runs SET finished_at = ?, result = 'killed', "
                          "detail = 'the process ended without finishing (killed or crashed)' WHERE id = ?",
                          [(now(), i) for i in ids])
        return ids

    def runs(self, wave_id: str | None = None) -> list[RunRow]:
        return [RunRow(*r) for r in self._of_wave(
            "SELECT id, wave, pass, started_at, finished_at, result, mailboxes, messages, bytes, seconds, actor, pid, "
            "detail, host, approval_id FROM runs", wave_id)]

    def _of_wave(self, select: str, wave_id: str | None) -> list[Row]:
        """The rows of ``select`` (of one wave, if given), oldest first."""
        if wave_id:
            return self._query(select + " WHERE wave = ? ORDER BY id", (wave_id,))
        return self._query(select + " ORDER BY id")
