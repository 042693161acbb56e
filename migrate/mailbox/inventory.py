"""Mail inventory: probe every ministry mail server, then measure every mailbox in its user list.

:func:`run_inventory` registers the user lists, probes each source (reachability, TLS, capabilities,
namespace, the login method that works), measures mailboxes in parallel within each source's connection
limit, and writes every result to the state store as it arrives. Faults are recorded with their reason
and the inventory goes on; the protocol details live in ``inventory_imap`` and ``inventory_ews``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from migrate.core.config import ImapServer, Project, Source
from migrate.core.errors import MigrateError, Problem
from migrate.core.fanout import fanout
from migrate.core.limits import ConnectionLimits
from migrate.core.progress import ProgressEvent, ProgressSink, no_progress
from migrate.core.registry import register_users
from migrate.core.retry import call_with_retry
from migrate.core.secrets import redact
from migrate.core.store import Store
from migrate.core.store.settings import KINDS
from migrate.core.userlist import UserEntry
from migrate.mailbox.measurements import MailboxMeasurement, SourceProbe, iso
from migrate.mailbox.sources import Sources

log = logging.getLogger(__name__)

#: A measurement that failed on a transient fault (connection lost, BYE, throttling) is tried this often.
MEASURE_ATTEMPTS = 3


@dataclass
class InventoryResult:
    """Everything one inventory run found, per source, plus the user-list problems."""

    probes: dict[str, SourceProbe] = field(default_factory=dict)
    mailboxes: dict[str, list[MailboxMeasurement]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def _list_and_source_failures(self) -> list[str]:
        out = [str(p) for p in self.problems if p.severity == "error"]
        return out + [f"source {sid}: {probe.error}" for sid, probe in self.probes.items() if not probe.ok]

    @property
    def failures(self) -> list[str]:
        """One line per thing that failed: a user-list row, a server, a mailbox (folders included)."""
        out = self._list_and_source_failures()
        for boxes in self.mailboxes.values():
            out += [f"{m.email}: {m.error}" for m in boxes if not m.ok]
        return out

    def failure_summary(self, *, examples: int = 3) -> list[str]:
        """Like :attr:`failures`, but mailboxes failing for one reason (a source that could not be
        reached, say) share one line, so a thousand-mailbox ministry does not print a thousand."""
        out = self._list_and_source_failures()
        by_reason: dict[str, list[str]] = {}
        for boxes in self.mailboxes.values():
            for m in boxes:
                if not m.ok:
                    by_reason.setdefault(m.error or "failed", []).append(m.email)
        for reason, emails in by_reason.items():
            if len(emails) == 1:
                out.append(f"{emails[0]}: {reason}")
            else:
                shown = ", ".join(emails[:examples]) + (", ..." if len(emails) > examples else "")
                out.append(f"{len(emails)} mailboxes ({shown}): {reason}")
        return out

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def measured(self) -> int:
        return sum(1 for boxes in self.mailboxes.values() for m in boxes if m.ok)


class SourceReader(Protocol):
    """The protocol-specific part of an inventory: one per source, shared by its worker threads."""

    def probe(self, entries: list[UserEntry]) -> SourceProbe: ...

    def measure(self, entry: UserEntry) -> MailboxMeasurement: ...

    def close(self) -> None: ...


def open_reader(source: Source, project: Project, sources: Sources) -> SourceReader:
    """The reader for a source's kind of server; EWS support is imported only when a source needs it."""
    if isinstance(source.server, ImapServer):
        from migrate.mailbox.inventory_imap import ImapReader

        return ImapReader(source, project, sources)
    from migrate.mailbox.inventory_ews import EwsReader  # exchangelib costs 0.3 s to import

    return EwsReader(source, project, sources)


def run_inventory(project: Project, store: Store, source_ids: list[str] | None = None, *,
                  progress: ProgressSink = no_progress,
                  reader_factory: Callable[[Source, Project, Sources], SourceReader] = open_reader
                  ) -> InventoryResult:
    """Probe the chosen sources (all by default) and measure their mailboxes; results go to ``store``.

    Nothing a server does stops the run: unreachable servers, refused certificates or logins, and
    failing folders are recorded with their reason. Unknown source ids raise ``UsageError``.
    """
    sources = [project.source(sid) for sid in source_ids] if source_ids else list(project.config.sources)
    registered = register_users(project, store, [s.id for s in sources])
    # The caller shows the user-list problems; logging them here too would print them twice.
    result = InventoryResult(problems=list(registered.problems))

    stop = threading.Event()
    readers: dict[str, SourceReader] = {}
    opened = Sources(project)
    try:
        _probe_all(sources, project, opened, store, registered.users, readers, result, progress, reader_factory)
        # The bar counts mailboxes that will be tried; a blocked source's were announced in one note.
        total = sum(len(registered.users.get(s.id, [])) for s in sources if not result.probes[s.id].blocked)
        progress(ProgressEvent("plan", total_messages=total))
        with ConnectionLimits(project, store) as limits:
            _measure_all(sources, store, registered.users, readers, result, progress, stop, limits)
    finally:
        for reader in readers.values():
            try:
                reader.close()
            except Exception:  # closing is best effort; the results are already stored
                log.debug("closing the reader failed", exc_info=True)
        opened.close()
    for source in sources:
        boxes = result.mailboxes.get(source.id, [])
        failed = sum(1 for m in boxes if not m.ok)
        store.add_event(f"source/{source.id}", "inventory",
                        f"{len(boxes)} mailboxes, {len(boxes) - failed} measured, {failed} failed"
                        + ("" if result.probes[source.id].ok else f"; probe: {result.probes[source.id].error}"))
    return result


def _probe_all(sources: list[Source], project: Project, opened: Sources, store: Store,
               users: dict[str, list[UserEntry]], readers: dict[str, SourceReader], result: InventoryResult,
               progress: ProgressSink, reader_factory: Callable[[Source, Project, Sources], SourceReader]) -> None:
    """Probe every source at once: a slow or unreachable server must not hold up the others."""

    def probe(source: Source) -> SourceProbe:
        try:
            reader = reader_factory(source, project, opened)
            readers[source.id] = reader
            return reader.probe(users.get(source.id, []))
        except MigrateError as exc:  # e.g. the admin password's secret reference does not resolve
            return SourceProbe(source.id, False, exc.message, {"kind": source.server.type}, blocked=exc.message)
        except Exception as exc:  # a bug must not lose the other sources' results
            log.exception("probing source %s failed unexpectedly", source.id)
            reason = f"internal error: {type(exc).__name__}: {redact(str(exc))}"
            return SourceProbe(source.id, False, reason, {"kind": source.server.type}, blocked=reason)

    probes = dict(zip([s.id for s in sources], fanout(sources, probe, workers=len(sources), name="probe"),
                      strict=True))
    for source in sources:
        found = probes[source.id]
        result.probes[source.id] = found
        store.record_probe(source.id, found.ok, found.error, found.detail)
        if found.ok:
            log.info("source %s: probe ok", source.id)
        else:
            log.info("source %s: %s", source.id, found.error)
            count = len(users.get(source.id, []))
            skipped = (f" ({count} mailbox{'es' if count != 1 else ''} not measured)"
                       if found.blocked and count else "")
            progress(ProgressEvent("note", source.id, detail=f"source {source.id}: {found.error}{skipped}"))


def _measure_all(sources: list[Source], store: Store, users: dict[str, list[UserEntry]],
                 readers: dict[str, SourceReader], result: InventoryResult, progress: ProgressSink,
                 stop: threading.Event, limits: ConnectionLimits) -> None:
    """Every source at once, each as wide as its connection limit (no server sees more than it allows, across
    hosts too where the store is shared, and a slow server holds up only its own mailboxes)."""
    work: list[tuple[Source, list[UserEntry]]] = []
    for source in sources:
        entries = users.get(source.id, [])
        result.mailboxes[source.id] = []
        probe = result.probes[source.id]
        if probe.blocked or source.id not in readers:
            reason = f"not measured: {probe.blocked or probe.error}"
            for entry in entries:  # recorded, but without an event each: the probe's note said it once
                _finish(store, source.id, entry, MailboxMeasurement.failed(entry.email, reason), result, None)
        elif entries:
            work.append((source, entries))

    def measure_source(item: tuple[Source, list[UserEntry]]) -> None:
        source, entries = item
        reader = readers[source.id]
        slots = limits.source(source.id)

        def measure(entry: UserEntry) -> None:
            with slots:
                _measure_one(reader, source.id, entry, store, result, progress, stop)

        fanout(entries, measure, workers=source.connections, name=f"inv-{source.id}", stop=stop)

    fanout(work, measure_source, workers=len(work) or 1, name="inventory", stop=stop)
    # Keep each source's mailboxes in user-list order, whatever order the workers finished in.
    for source in sources:
        order = {e.email: i for i, e in enumerate(users.get(source.id, []))}
        result.mailboxes[source.id].sort(key=lambda m: order.get(m.email, len(order)))


def _measure_one(reader: SourceReader, source_id: str, entry: UserEntry, store: Store, result: InventoryResult,
                 progress: ProgressSink, stop: threading.Event) -> None:
    if stop.is_set():
        return
    progress(ProgressEvent("start", entry.email, total_messages=1))
    try:
        measurement = call_with_retry(f"inventory of {entry.email}", lambda: reader.measure(entry),
                                      attempts=MEASURE_ATTEMPTS)
    except MigrateError as exc:  # RemoteError after retries, or a per-user password that does not resolve
        measurement = MailboxMeasurement.failed(entry.email, exc.message)
    except Exception as exc:  # a bug: record it against this mailbox, keep measuring the others
        log.exception("measuring %s failed unexpectedly", entry.email)
        measurement = MailboxMeasurement.failed(entry.email,
                                                f"internal error: {type(exc).__name__}: {redact(str(exc))}")
    _finish(store, source_id, entry, measurement, result, progress)


def _finish(store: Store, source_id: str, entry: UserEntry, m: MailboxMeasurement, result: InventoryResult,
            progress: ProgressSink | None) -> None:
    row = store.mailbox(entry.email)
    if row is not None:
        store.record_inventory(row.id, ok=m.ok, error=m.error, messages=m.messages, bytes_=m.bytes,
                               largest=m.largest, oldest=iso(m.oldest), newest=iso(m.newest),
                               quota_used=m.quota_used, quota_limit=m.quota_limit,
                               folders=[f.as_record() for f in m.folders])
        if m.settings is not None:
            store.record_settings(row.id, "inventory", KINDS, [item.row(row.id, "inventory") for item in m.settings])
    with result._lock:
        result.mailboxes[source_id].append(m)
    if m.ok:
        log.info("%s: %d messages, %d bytes in %d folders", m.email, m.messages or 0, m.bytes or 0,
                 len(m.folders), extra={"mailbox": m.email, "source": source_id})
    if progress is None:
        return
    if m.ok:
        progress(ProgressEvent("done", m.email, messages=m.messages or 0, bytes=m.bytes or 0))
    else:
        progress(ProgressEvent("failed", m.email, detail=m.error or "failed"))
