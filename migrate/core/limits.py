"""Connection limits per server, the one service every code path that opens connections goes through.

A source's ``connections`` and the central host's are the most sessions govmigrate may hold to that server at
once: the ministries' servers are production systems. With the workspace's own SQLite store every process is on
this host and a limit is this process's semaphore. With a state store several hosts share (PostgreSQL), or in a
worker of a queued pass, a limit counts every host's sessions: slot leases in the store
(:class:`migrate.core.leases.Slots`), renewed by a heartbeat, so that a host that dies gives its slots back
within ``sync.lease_seconds``. The sync engine, verify, the pre-flight, the inventory and the SIP checks hold a
slot for as long as they hold a connection.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any

from migrate.core.config import Project
from migrate.core.leases import Heartbeat, Slots
from migrate.core.store import Store


class ConnectionLimits:
    """Slots per server: ``with limits.source(id):`` around a session to a source's server, ``with
    limits.central():`` around one to the central host, ``with limits.server(scope, n):`` for any other."""

    def __init__(self, project: Project, store: Store, *, heartbeat: Heartbeat | None = None) -> None:
        """``heartbeat``: this process's (a worker's); without one, a shared store gets its own, started on the
        first slot taken and stopped by :meth:`close`."""
        self.project = project
        self.store = store
        #: Across hosts: a shared store, or a worker (whose heartbeat renews its claims too).
        self.shared = heartbeat is not None or store.engine.name != "sqlite"
        self._own_heartbeat = self.shared and heartbeat is None
        self.heartbeat = heartbeat
        if self._own_heartbeat:
            self.heartbeat = Heartbeat(store, project.config.sync.lease_seconds)
        self._limits: dict[str, Any] = {}
        self._lock = threading.Lock()

    def source(self, source_id: str) -> AbstractContextManager:
        return self.server(f"source/{source_id}", self.project.source(source_id).connections)

    def central(self) -> AbstractContextManager:
        return self.server("central", self.project.config.central.connections)

    def server(self, scope: str, limit: int) -> AbstractContextManager:
        """The limit of ``scope`` (the same object for every caller of this process)."""
        with self._lock:
            slots = self._limits.get(scope)
            if slots is None:
                if self.shared:
                    assert self.heartbeat is not None
                    self.heartbeat.start()
                    slots = Slots(self.store, scope, limit, self.heartbeat)
                else:
                    slots = threading.BoundedSemaphore(limit)
                self._limits[scope] = slots
            return slots

    def close(self) -> None:
        if self._own_heartbeat and self.heartbeat is not None:
            self.heartbeat.stop()

    def __enter__(self) -> ConnectionLimits:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
