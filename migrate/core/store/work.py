"""Leases and the work queue: how several migration hosts share one plan.

A **lease** is a named row that one process holds until it lapses (``expires``, on the database's clock, so
hosts' clocks never matter): the wave lock (``wave/<id>``), a mailbox being copied (``mailbox/<id>``), and
connection slots (``slot/<server>/<n>``: at most *n* sessions to a server across every host). A holder renews
its leases by heartbeat; a host that dies stops renewing, and its leases lapse within their time to live.

The **work queue** holds a pass's mailboxes (``run WAVE --workers`` queues them); workers claim one at a time
with ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL (on SQLite the write transaction already excludes
every other writer). A claim is a lease too: a claim whose worker stopped renewing is claimed again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from migrate.core.secrets import redact
from migrate.core.store.base import StoreBase
from migrate.core.store.rows import now


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    purpose: str
    since: str
    #: Seconds until it lapses unless renewed (negative: it has lapsed).
    remaining: float


@dataclass(frozen=True)
class Claim:
    """A mailbox of a queued pass, claimed by one worker."""

    id: int
    run_id: int
    wave: str
    pass_name: str
    mailbox_id: int
    source_id: str
    attempts: int
    #: The worker that held it before and stopped renewing it (None: a first claim).
    lapsed_from: str | None


@dataclass(frozen=True)
class WorkItem:
    """A queued mailbox as the queue knows it, for progress and reports."""

    id: int
    run_id: int
    wave: str
    pass_name: str
    mailbox_id: int
    email: str
    source_id: str
    state: str
    worker: str | None
    attempts: int
    outcome: dict[str, Any]
    finished_at: str | None
    #: Copied so far by the worker that holds the claim (its live progress).
    messages: int = 0
    bytes: int = 0


class WorkStore(StoreBase):
    # -- leases -------------------------------------------------------------------------------------------

    def take_lease(self, name: str, *, holder: str, purpose: str, ttl: float, steal_from: str | None = None) -> bool:
        """Take lease ``name`` for ``holder`` unless it is held and has not lapsed (by anyone: two threads of one
        process are one holder, and must not share a slot); ``steal_from``: take it from that holder even so
        (it is known to be dead). True if ``holder`` now holds it; renew it with :meth:`renew`."""
        clock = self.engine.clock
        with self.tx() as c:
            cur = c.execute(
                f"INSERT INTO leases(name, holder, purpose, since, expires) VALUES (?,?,?,?, {clock} + ?) "
                "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, purpose = excluded.purpose, "
                "since = excluded.since, expires = excluded.expires "
                f"WHERE leases.expires < {clock} OR leases.holder = ?",
                (name, holder, purpose, now(), ttl, steal_from or ""))
            return cur.rowcount == 1

    def lease(self, name: str) -> Lease | None:
        rows = self._query(f"SELECT name, holder, purpose, since, expires - {self.engine.clock} FROM leases "
                           "WHERE name = ?", (name,))
        return Lease(*rows[0]) if rows else None

    def leases(self, prefix: str = "") -> list[Lease]:
        return [Lease(*r) for r in self._query(
            f"SELECT name, holder, purpose, since, expires - {self.engine.clock} FROM leases WHERE name LIKE ? "
            "ORDER BY name", (prefix.replace("%", "") + "%",))]

    def release_lease(self, name: str, holder: str) -> None:
        with self.tx() as c:
            c.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

    def renew(self, holder: str, ttl: float) -> set[str]:
        """Heartbeat: every lease and claim ``holder`` has lasts at least ``ttl`` seconds more (a lease a batch
        extended further keeps its margin). Returns the names of the leases it holds: one it thought it held
        and is not there was taken over."""
        clock = self.engine.clock
        later = f"CASE WHEN expires > {clock} + ? THEN expires ELSE {clock} + ? END"
        with self.tx() as c:
            c.execute(f"UPDATE leases SET expires = {later} WHERE holder = ?", (ttl, ttl, holder))
            c.execute(f"UPDATE work SET expires = {later} WHERE worker = ? AND state = 'claimed'", (ttl, ttl, holder))
            return {r[0] for r in c.execute("SELECT name FROM leases WHERE holder = ?", (holder,)).fetchall()}

    def lapse(self, holder: str) -> None:
        """Every lease and claim of ``holder`` lapses now (a holder known to have stopped for good)."""
        clock = self.engine.clock
        with self.tx() as c:
            c.execute(f"UPDATE leases SET expires = {clock} - 1 WHERE holder = ?", (holder,))
            c.execute(f"UPDATE work SET expires = {clock} - 1 WHERE worker = ? AND state = 'claimed'", (holder,))

    # -- the work queue -----------------------------------------------------------------------------------

    def enqueue(self, run_id: int, wave: str, pass_name: str, mailboxes: Iterable[tuple[int, str]]) -> int:
        """Queue (mailbox id, source id) pairs for ``run_id``; what earlier runs of the wave left queued is
        withdrawn (their process is gone: the caller holds the wave's lock)."""
        rows = [(run_id, wave, pass_name, mailbox_id, source_id, now()) for mailbox_id, source_id in mailboxes]
        with self.tx() as c:
            c.execute("UPDATE work SET state = 'withdrawn', finished_at = ? WHERE wave = ? AND state = 'queued' "
                      "AND run_id <> ?", (now(), wave, run_id))
            c.executemany("INSERT INTO work(run_id, wave, pass, mailbox_id, source_id, queued_at) "
                          "VALUES (?,?,?,?,?,?)", rows)
        return len(rows)

    def claim(self, worker: str, *, ttl: float, sources: Iterable[str] = (), take_over: bool = True) -> Claim | None:
        """The oldest queued mailbox (or, with ``take_over``, one whose worker stopped renewing its claim), now
        ``worker``'s."""
        clock = self.engine.clock
        sources = list(sources)
        where = ("(w.state = 'queued' OR (w.state = 'claimed' AND w.expires < " + clock + "))" if take_over
                 else "w.state = 'queued'")
        params: list[Any] = []
        if sources:
            where += f" AND w.source_id IN ({', '.join('?' for _ in sources)})"
            params += sources
        with self.tx() as c:
            row = c.execute(f"SELECT w.id, w.state, w.worker FROM work w WHERE {where} ORDER BY w.id LIMIT 1"
                            + self.engine.skip_locked, params).fetchone()
            if row is None:
                return None
            lapsed_from = row[2] if row[1] == "claimed" else None
            got = c.execute(
                f"UPDATE work SET state = 'claimed', worker = ?, expires = {clock} + ?, attempts = attempts + 1, "
                "claimed_at = ?, messages = 0, bytes = 0 WHERE id = ? "
                "RETURNING id, run_id, wave, pass, mailbox_id, source_id, attempts",
                (worker, ttl, now(), row[0])).fetchone()
        return Claim(*got, lapsed_from=lapsed_from)

    def finish_claim(self, claim_id: int, worker: str, state: str, outcome: dict[str, Any]) -> bool:
        """Record what the pass did (``state`` done, failed or stopped); False if the claim is no longer
        ``worker``'s (it lapsed and another worker took it over)."""
        if outcome.get("error"):
            outcome = {**outcome, "error": redact(str(outcome["error"]))}
        with self.tx() as c:
            cur = c.execute("UPDATE work SET state = ?, outcome = ?, finished_at = ?, expires = NULL "
                            "WHERE id = ? AND worker = ? AND state = 'claimed'",
                            (state, json.dumps(outcome, sort_keys=True), now(), claim_id, worker))
            return cur.rowcount == 1

    def return_claim(self, claim_id: int, worker: str) -> None:
        """Give a claim back to the queue untouched (the worker is stopping, or the mailbox is busy elsewhere)."""
        with self.tx() as c:
            c.execute("UPDATE work SET state = 'queued', worker = NULL, expires = NULL, attempts = attempts - 1, "
                      "messages = 0, bytes = 0 WHERE id = ? AND worker = ? AND state = 'claimed'", (claim_id, worker))

    def withdraw_work(self, run_id: int) -> int:
        """Take what is still queued for ``run_id`` off the queue (the run was stopped); claimed work finishes."""
        with self.tx() as c:
            return c.execute("UPDATE work SET state = 'withdrawn', finished_at = ? WHERE run_id = ? "
                             "AND state = 'queued'", (now(), run_id)).rowcount

    def work_items(self, *, run_id: int | None = None, wave: str | None = None) -> list[WorkItem]:
        sql = ("SELECT w.id, w.run_id, w.wave, w.pass, w.mailbox_id, m.email, w.source_id, w.state, w.worker, "
               "w.attempts, w.outcome, w.finished_at, w.messages, w.bytes FROM work w "
               "JOIN mailboxes m ON m.id = w.mailbox_id WHERE 1=1")
        params: list[Any] = []
        for column, value in (("w.run_id", run_id), ("w.wave", wave)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        return [WorkItem(*r[:10], json.loads(r[10]) if r[10] else {}, *r[11:])
                for r in self._query(sql + " ORDER BY w.id", params)]

    def claim_progress(self, claim_id: int, worker: str, messages: int, bytes_: int) -> None:
        """What the claim's worker has copied so far, for `run --workers` to show live."""
        with self.tx() as c:
            c.execute("UPDATE work SET messages = ?, bytes = ? WHERE id = ? AND worker = ? AND state = 'claimed'",
                      (messages, bytes_, claim_id, worker))

    def work_counts(self, run_id: int) -> dict[str, int]:
        """State → number of the run's queued mailboxes in it (queued, claimed, done, failed, stopped ...)."""
        return {r[0]: r[1] for r in self._query("SELECT state, COUNT(*) FROM work WHERE run_id = ? GROUP BY state",
                                                (run_id,))}

    def work_left(self, sources: Iterable[str] = ()) -> int:
        """How many mailboxes are queued or being copied (of ``sources``, default all), in any run."""
        sources = list(sources)
        sql = "SELECT COUNT(*) FROM work WHERE state IN ('queued', 'claimed')"
        if sources:
            sql += f" AND source_id IN ({', '.join('?' for _ in sources)})"
        return self._query(sql, sources)[0][0]
