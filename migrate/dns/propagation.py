"""Waiting for a change to reach every authoritative server: each serves the new data of every RRset in the
change set, and all of them have the same SOA serial; or the timeout passes and :class:`DnsNotPropagated`
(exit 10) names the servers that are behind and what they serve.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from migrate.core.errors import DnsNotPropagated, Interrupted, MigrateError
from migrate.core.fanout import fanout
from migrate.dns.changes import ChangeSet
from migrate.dns.client import DnsClient, label
from migrate.dns.records import RRset, describe, relative


@dataclass
class ServerView:
    """What one authoritative server serves of a change set."""

    server: str
    serial: int | None = None
    #: RRsets (relative name and type) whose data is not yet the new data, with what the server serves.
    behind: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def current(self) -> bool:
        return self.error is None and not self.behind


@dataclass
class Propagation:
    """One look at every authoritative server."""

    zone: str
    views: list[ServerView]

    @property
    def serials(self) -> dict[str, int | None]:
        return {v.server: v.serial for v in self.views}

    @property
    def done(self) -> bool:
        return self.served and len({v.serial for v in self.views}) == 1

    @property
    def served(self) -> bool:
        """Every server serves the change's data (whatever its serial)."""
        return all(v.current for v in self.views)

    def lagging(self) -> list[str]:
        """Each server that is not there yet, and why, for people."""
        top = max((v.serial for v in self.views if v.serial is not None), default=None)
        out = []
        for v in self.views:
            if v.error:
                out.append(f"{v.server}: {v.error}")
            elif v.behind:
                out.append(f"{v.server} (serial {v.serial}): still serves " + "; ".join(v.behind))
            elif top is not None and v.serial != top:
                out.append(f"{v.server}: serial {v.serial}, the newest is {top}")
        return out


def serves(now: RRset | None, wanted: RRset | None) -> bool:
    """Whether a server's RRset is the wanted one: the same data and TTL (authoritative answers carry the
    zone's TTL as it is), or both absent."""
    if wanted is None:
        return now is None
    return now is not None and wanted.same_data(now) and now.ttl == wanted.ttl


def look(client: DnsClient, changeset: ChangeSet) -> Propagation:
    """Ask every authoritative server, in parallel, what it serves of ``changeset``'s new data."""

    def view(server) -> ServerView:
        seen = ServerView(label(server))
        try:
            seen.serial = client.serial(server, changeset.zone)
            for change in changeset:
                now = client.rrset(server, change.name, change.rdtype)
                if not serves(now, change.after):
                    seen.behind.append(f"{relative(change.name, changeset.zone)} {change.rdtype}: {describe(now)}")
        except MigrateError as exc:
            seen.error = exc.message
        return seen

    return Propagation(changeset.zone, fanout(client.servers, view, workers=8, name="dns-look"))


def wait_propagated(client: DnsClient, changeset: ChangeSet, *, timeout: float | None = None, interval: float = 1.0,
                    on_look: Callable[[Propagation], None] | None = None, stop: threading.Event | None = None,
                    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                    same_serial: bool = True) -> Propagation:
    """Look again every ``interval`` seconds until every authoritative server serves ``changeset``'s new data
    with one SOA serial (``same_serial=False``: the data is enough, for a rollback whose change a secondary that
    does not transfer never saw); ``timeout`` defaults to the project file's ``propagation_timeout``. ``on_look``
    sees each look (progress); setting ``stop`` ends the wait with :class:`Interrupted`."""
    timeout = client.section.propagation_timeout if timeout is None else timeout
    deadline = clock() + timeout
    while True:
        seen = look(client, changeset)
        if on_look is not None:
            on_look(seen)
        if seen.done or (not same_serial and seen.served):
            return seen
        if clock() >= deadline:
            lagging = seen.lagging()
            raise DnsNotPropagated(
                f"{changeset.zone}: the change was made on the primary, but not every authoritative server served "
                f"it within {timeout:g} s: " + "; ".join(lagging),
                behind=lagging,
                hint="see why those servers do not transfer the zone (NOTIFY, AXFR allowed, reachable); running "
                     "the same command again waits again")
        if stop is not None and stop.is_set():
            raise Interrupted("interrupted while waiting for the DNS change to reach every server; run the same "
                              "command again to resume")
        sleep(min(interval, max(0.0, deadline - clock())))


def wait_serials(client: DnsClient, zone: str, *, timeout: float, interval: float = 1.0,
                 on_look: Callable[[list[str]], None] | None = None, stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Look every ``interval`` seconds until every authoritative server answers for ``zone`` with the primary's
    serial, for at most ``timeout`` seconds; returns the servers still behind (or not answering), each with what
    it serves, or [] once they agree. Changes nothing: what a gate asks before a switch is made."""
    deadline = clock() + timeout

    def serial(server) -> tuple[str, int | None, str | None]:
        try:
            return label(server), client.serial(server, zone), None
        except MigrateError as exc:
            return label(server), None, exc.message

    while True:
        found = fanout(client.servers, serial, workers=8, name="dns-serials")
        top = found[0][1] if found else None  # the primary's: the serial a change is made on
        lagging = [f"{who}: {error}" if error else f"{who} serves serial {value} (the primary: {top})"
                   for who, value, error in found if error or value != top]
        if top is None:
            lagging = [f"{who}: {error}" for who, _value, error in found if error] or lagging
        if not lagging:
            return []
        if on_look is not None:
            on_look(lagging)
        if clock() >= deadline or (stop is not None and stop.is_set()):
            return lagging
        sleep(min(interval, max(0.0, deadline - clock())))
