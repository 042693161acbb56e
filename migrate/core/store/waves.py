"""Waves as generated and approved, and the runs of their steps."""

from __future__ import annotations

import json
import os
from typing import Any

from migrate.core.secrets import redact
from migrate.core.store.base import Row, StoreBase
from migrate.core.store.rows import (
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

    def record_wave(self, wave_id: str, *, position: int, plan_file: str, doc: dict[str, Any]) -> None:
        """Record a generated wave (its canonical plan document); any earlier approval of it is void."""
        with self.tx() as c:
            c.execute(
                "INSERT INTO waves(id, position, plan_file, doc, recorded_at, state, updated_at) "
                "VALUES (?,?,?,?,?, 'planned', ?) ON CONFLICT(id) DO UPDATE SET position=excluded.position, "
                "plan_file=excluded.plan_file, doc=excluded.doc, recorded_at=excluded.recorded_at, "
                "plan_hash=NULL, approved_by=NULL, approved_at=NULL, state='planned', updated_at=excluded.updated_at",
                (wave_id, position, plan_file, json.dumps(doc, sort_keys=True, ensure_ascii=False), now(), now()))

    def approve_wave(self, wave_id: str, *, position: int, plan_file: str, plan_hash: str, doc: dict[str, Any],
                     who: str | None = None) -> None:
        """Record that ``who`` approved the wave whose plan has ``plan_hash``, with the event saying so."""
        who = who or actor()
        with self.tx() as c:
            c.execute(
                "INSERT INTO waves(id, position, plan_file, plan_hash, approved_by, approved_at, doc, recorded_at, "
                "state, updated_at) VALUES (?,?,?,?,?,?,?,?, 'approved', ?) ON CONFLICT(id) DO UPDATE SET "
                "position=excluded.position, plan_file=excluded.plan_file, plan_hash=excluded.plan_hash, "
                "approved_by=excluded.approved_by, approved_at=excluded.approved_at, doc=excluded.doc, "
                "recorded_at=excluded.recorded_at, state='approved', updated_at=excluded.updated_at",
                (wave_id, position, plan_file, plan_hash, who, now(),
                 json.dumps(doc, sort_keys=True, ensure_ascii=False), now(), now()))
            self.add_event(f"wave/{wave_id}", "approve", f"plan {plan_file} sha256 {plan_hash[:16]}", who=who)

    def set_wave_positions(self, order: list[str]) -> None:
        with self.tx() as c:
            c.executemany("UPDATE waves SET position = ? WHERE id = ?",
                          [(i, wave_id) for i, wave_id in enumerate(order)])

    def delete_wave(self, wave_id: str) -> None:
        """Forget a wave that is no longer planned; its mailboxes belong to no wave afterwards."""
        with self.tx() as c:
            c.execute("UPDATE mailboxes SET wave = NULL, updated_at = ? WHERE wave = ?", (now(), wave_id))
            c.execute("DELETE FROM waves WHERE id = ?", (wave_id,))

    def start_run(self, wave_id: str, pass_name: str) -> int:
        with self.tx() as c:
            cur = c.execute("INSERT INTO runs(wave, pass, started_at, actor, pid, host) VALUES (?,?,?,?,?,?) "
                            "RETURNING id", (wave_id, pass_name, now(), actor(), os.getpid(), host()))
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
        sql = ("SELECT id, wave, pass, started_at, finished_at, result, mailboxes, messages, bytes, seconds, actor, "
               "pid, detail, host FROM runs")
        params: tuple = ()
        if wave_id:
            sql += " WHERE wave = ?"
            params = (wave_id,)
        return [RunRow(*r) for r in self._query(sql + " ORDER BY id", params)]
