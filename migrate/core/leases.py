"""Locks and connection limits that hold across migration hosts, kept as leases in the shared store.

The lock lives where the state lives. With the workspace's own SQLite store, every process is on this host and
a wave or mailbox lock is a ``flock`` in ``.locks/`` (:mod:`migrate.core.locks`; the kernel drops it when the
holder dies). With a PostgreSQL store shared by several hosts it is a lease row naming its holder
(``host:pid``), renewed by a :class:`Heartbeat`: a holder that dies stops renewing and its lease lapses within
its time to live; a holder on this host whose process is gone is taken over at once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from migrate.core.errors import LockHeld, MigrateError
from migrate.core.locks import Lock
from migrate.core.store import Store, host, worker_id

log = logging.getLogger(__name__)

#: How long a lease lasts without renewal (a dead host's locks and claims lapse within it); see sync.lease_seconds.
DEFAULT_TTL = 30.0


class Heartbeat:
    """Renews every lease and claim of this process, every third of their time to live, in a thread; and learns
    at once when one it was told to watch is no longer this process's (another host took it over after it
    lapsed: a pause, a lost database), so that the work it guards stops."""

    def __init__(self, store: Store, ttl: float, *, holder: str | None = None) -> None:
        self.store = store
        self.ttl = ttl
        self.holder = holder or worker_id()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.users = 0
        self._watched: dict[str, Callable[[], None]] = {}
        self._lock = threading.Lock()

    def watch(self, lease: str, on_lost: Callable[[], None]) -> None:
        """Call ``on_lost`` (once) when the lease ``lease`` is found not to be this process's any more."""
        with self._lock:
            self._watched[lease] = on_lost

    def unwatch(self, lease: str) -> None:
        with self._lock:
            self._watched.pop(lease, None)

    def beat(self) -> None:
        """One renewal, and the losses it shows (the thread calls it every third of the time to live)."""
        leases = self.store.renew(self.holder, self.ttl)
        with self._lock:
            lost = [self._watched.pop(n) for n in list(self._watched) if n not in leases]
        for on_lost in lost:
            on_lost()

    def start(self) -> Heartbeat:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.beat()
            except MigrateError as exc:  # the store is away: the next beat tries again
                log.warning("could not renew leases in the state store: %s", exc.message)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class StoreLock:
    """A named lock in the shared store (``wave/<id>``, ``mailbox/<email>``), held while a heartbeat renews it."""

    def __init__(self, store: Store, name: str, purpose: str, *, ttl: float = DEFAULT_TTL,
                 heartbeat: Heartbeat | None = None) -> None:
        self.store = store
        self.name = name
        self.purpose = purpose
        self.ttl = ttl
        self._heartbeat = heartbeat
        self._own_heartbeat = heartbeat is None
        self.holder = heartbeat.holder if heartbeat else worker_id()
        self.held = False
        #: Set when the heartbeat finds the lease taken over by another holder (it lapsed meanwhile).
        self.lost = threading.Event()

    def acquire(self) -> StoreLock:
        if not self.store.take_lease(self.name, holder=self.holder, purpose=self.purpose, ttl=self.ttl):
            lease = self.store.lease(self.name)
            if lease is None or not _dead_here(lease.holder) or not self.store.take_lease(
                    self.name, holder=self.holder, purpose=self.purpose, ttl=self.ttl, steal_from=lease.holder):
                raise LockHeld(_held_message(self.name, lease),
                               hint="wait for that run to finish, or stop it; if its host died, the lock lapses "
                                    f"within {self.ttl:.0f} s")
            log.info("%s: took over the lock of %s, whose process is gone", self.name, lease.holder)
        self.held = True
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(self.store, self.ttl, holder=self.holder).start()
        self.lost.clear()
        self._heartbeat.watch(self.name, self.lost.set)
        return self

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self._heartbeat is not None:
            self._heartbeat.unwatch(self.name)
        if self._own_heartbeat and self._heartbeat is not None:
            self._heartbeat.stop()
        try:
            self.store.release_lease(self.name, self.holder)
        except MigrateError as exc:  # it lapses by itself
            log.warning("could not release %s: %s", self.name, exc.message)

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def wave_lock(store: Store, locks_dir: Path, wave_id: str, purpose: str, *, ttl: float = DEFAULT_TTL) -> Any:
    """The wave's lock where the state lives: a ``flock`` beside a SQLite store, a lease in a shared one."""
    if store.engine.name == "sqlite":
        return Lock(locks_dir, f"wave {wave_id}", purpose)
    return StoreLock(store, f"wave/{wave_id}", purpose, ttl=ttl)


def mailbox_lock(store: Store, locks_dir: Path, email: str, purpose: str, *, ttl: float = DEFAULT_TTL,
                 heartbeat: Heartbeat | None = None) -> Any:
    """A mailbox's lock (one sync of it at a time, on whichever host)."""
    if store.engine.name == "sqlite":
        return Lock(locks_dir, f"mailbox {email}", purpose)
    return StoreLock(store, f"mailbox/{email.lower()}", purpose, ttl=ttl, heartbeat=heartbeat)


class Slots:
    """At most ``limit`` connections to one server across every host: slot leases ``slot/<scope>/<n>``.

    Entering waits (polling) for a free slot; leaving gives it back. Used as the sync engine's per-server
    semaphore when workers on several hosts share the work."""

    def __init__(self, store: Store, scope: str, limit: int, heartbeat: Heartbeat, *, poll: float = 0.2) -> None:
        self.store = store
        self.scope = scope
        self.limit = limit
        self.heartbeat = heartbeat
        self.poll = poll
        self._held = threading.local()

    def __enter__(self) -> Slots:
        while True:
            for n in range(self.limit):
                name = f"slot/{self.scope}/{n}"
                if self.store.take_lease(name, holder=self.heartbeat.holder, purpose=f"connection to {self.scope}",
                                         ttl=self.heartbeat.ttl):
                    stack = getattr(self._held, "names", None) or []
                    stack.append(name)
                    self._held.names = stack
                    return self
            time.sleep(self.poll)

    def __exit__(self, *exc: object) -> None:
        name = self._held.names.pop()
        self.store.release_lease(name, self.heartbeat.holder)


def _dead_here(holder: str) -> bool:
    """A holder ``host:pid`` on this host whose process no longer exists."""
    name, _, pid = holder.rpartition(":")
    if name != host() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _held_message(name: str, lease: Any) -> str:
    if lease is None:
        return f"{name} is locked by another govmigrate process"
    return (f"{name} is locked by {lease.purpose or 'another govmigrate run'} ({lease.holder}, since {lease.since}; "
            f"its lease runs {max(0.0, lease.remaining):.0f} s more unless renewed)")
