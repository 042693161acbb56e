"""Pre-flight checks of a wave run: everything a copy needs, checked before any copying starts.

* The central host is reachable and its migration credentials resolve; if not, nothing can run.
* Each source of the wave is reachable and its admin credentials resolve; if not, its mailboxes fail.
* Per mailbox: the login at the source works (the way the sync will log in), and the destination mailbox
  exists, which on the central host means the master-user (or SASL PLAIN) login for that address works: the
  central mail team provisions accounts, the migration only fills them.
* Quota: GETQUOTAROOT on the central host's INBOX gives the STORAGE use and limit; the mail still to
  copy (the mailbox's size at the source as last measured, by the inventory or the last sync, minus what
  govmigrate already copied) must fit in what is free. A server without QUOTA, or a mailbox without a
  storage limit, passes; a mailbox of unknown size passes with a warning.

A mailbox whose last sync ended ok (or partial) within :data:`LOGIN_PROVEN_S` has shown both logins work
since: the pre-flight logs in at neither server for it (a delta or final pass logged into every mailbox
twice), and checks the quota as that sync left it on the central host, where it logged in there in that time
(nothing else writes into a mailbox before its cut-over; else it logs in to read it). A login refused since
fails that mailbox in the pass, with the server's reason, as in any pass.

Checks run in parallel within the connection limits of each source and of the central host.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import nullcontext

from migrate.core.config import ImapServer, Project, Source
from migrate.core.errors import LoginFailed, MigrateError, RemoteError
from migrate.core.fanout import fanout
from migrate.core.limits import ConnectionLimits
from migrate.core.progress import ProgressEvent, ProgressSink, no_progress
from migrate.core.retry import call_with_retry
from migrate.core.store import MailboxRow
from migrate.core.store.rows import age_s
from migrate.core.units import human_bytes
from migrate.mailbox.central import CentralServer
from migrate.mailbox.imap import connect
from migrate.mailbox.sources import Sources
from migrate.plans.catalog import Catalog
from migrate.waves.results import Finding, Gate

log = logging.getLogger(__name__)

#: A mailbox whose last sync logged in at its source (it ended ok or partial) less long ago than this is not
#: logged into again by the pre-flight.
LOGIN_PROVEN_S = 24 * 3600.0


def login_proven(mailbox: MailboxRow, now: float) -> bool:
    """Whether ``mailbox``'s last sync logged in at the source within :data:`LOGIN_PROVEN_S` of ``now`` (seconds
    since the epoch); a stamp in the future proves nothing."""
    age = age_s(mailbox.last_sync_at, now)
    return (age is not None and age < LOGIN_PROVEN_S
            and (mailbox.last_sync_result or "").startswith(("ok", "partial")))


class _SourceAccess:
    """How to log into mailboxes of one source, or why that cannot work at all."""

    def __init__(self, source: Source, sources: Sources, limits: ConnectionLimits) -> None:
        self.source = source
        self.sources = sources
        self.error: str | None = None
        self.slots = limits.source(source.id)
        try:
            if isinstance(source.server, ImapServer):
                sources.credentials(source)
                endpoint = sources.endpoint(source)
                with self.slots:
                    client = call_with_retry(f"connect to source {source.id}", lambda: connect(endpoint),
                                             attempts=2)
                    try:
                        client.shutdown()
                    except Exception:
                        pass
            else:
                sources.ews(source)
        except MigrateError as exc:
            self.error = exc.message

    def check_login(self, mailbox: MailboxRow) -> None:
        box = call_with_retry(f"source login of {mailbox.email}",
                              lambda: self.sources.open(self.source, mailbox.email, mailbox.login), attempts=2)
        close = getattr(box, "close", None)
        if close is not None:
            close()


def preflight(project: Project, catalog: Catalog, mailboxes: list[MailboxRow], limits: ConnectionLimits, *,
              progress: ProgressSink = no_progress) -> Gate:
    """Every check of the module docstring, each session to a server within its connection limit (``limits``:
    across hosts when the store is shared)."""
    result = Gate(checked=[m.email for m in mailboxes])
    if not mailboxes:
        return result
    cfg = project.config
    central = CentralServer(project)
    # Unreachable (exit 4) or refusing the migration account (exit 5): nothing else is worth checking.
    with limits.central():
        central.check_access([m.email for m in mailboxes])
    sources = Sources(project)
    access = {s: _SourceAccess(project.source(s), sources, limits)
              for s in dict.fromkeys(m.source_id for m in mailboxes)}
    central_slots = limits.central()
    lock = threading.Lock()
    now = time.time()
    progress(ProgressEvent("plan", total_messages=len(mailboxes)))

    def add(finding: Finding) -> None:
        with lock:
            result.findings.append(finding)

    def check(mailbox: MailboxRow) -> None:
        progress(ProgressEvent("start", mailbox.email, total_messages=1))
        src = access[mailbox.source_id]
        failed = False
        if src.error:
            add(Finding(mailbox.email, "source", src.error))
            failed = True
        elif not login_proven(mailbox, now):
            with src.slots:
                try:
                    src.check_login(mailbox)
                except MigrateError as exc:
                    add(Finding(mailbox.email, "login", f"login at the source failed: {exc.message}"))
                    failed = True
        recorded = recorded_quota(mailbox, now)
        # A connection slot at the central host only where the check logs in there.
        with central_slots if recorded is None else nullcontext():
            failed = not _check_central(mailbox, catalog, central, result, add, recorded) or failed
        progress(ProgressEvent("failed" if failed else "done", mailbox.email,
                               detail="pre-flight found a problem" if failed else ""))

    try:
        fanout(mailboxes, check, workers=min(cfg.central.connections, sum(s.connections for s in cfg.sources)),
               name="preflight")
    finally:
        sources.close()
    order = {m.email: i for i, m in enumerate(mailboxes)}
    result.findings.sort(key=lambda f: (order.get(f.item or "", -1), f.check))
    return result


def recorded_quota(mailbox: MailboxRow, now: float) -> tuple[int | None, int | None] | None:
    """The central quota as ``mailbox``'s last sync left it, where that sync logged in at both servers within
    :data:`LOGIN_PROVEN_S` and read it there in that time; None: the pre-flight must log in to know."""
    age = age_s(mailbox.central_quota_at, now)
    if not login_proven(mailbox, now) or age is None or age >= LOGIN_PROVEN_S:
        return None
    return mailbox.central_quota_used, mailbox.central_quota_limit


def _check_central(mailbox: MailboxRow, catalog: Catalog, central: CentralServer, result: Gate, add,
                   recorded: tuple[int | None, int | None] | None) -> bool:
    """``recorded``: the quota the mailbox's last sync read (:func:`recorded_quota`); None: log in to read it."""
    quota: tuple[int, int] | None
    if recorded is not None:
        used, limit = recorded
        quota = None if limit is None else (used or 0, limit)
    else:
        try:
            quota = call_with_retry(f"central login of {mailbox.email}", lambda: central.quota(mailbox.email),
                                    attempts=2)
        except LoginFailed as exc:
            add(Finding(mailbox.email, "destination",
                        f"no usable mailbox on the central host: the migration login for {mailbox.email} was refused "
                        f"({exc.message}); the central mail team must create it"))
            return False
        except RemoteError as exc:
            add(Finding(mailbox.email, "destination", f"central host: {exc.message}"))
            return False
    info = catalog.get(mailbox.email)
    if info is None or info.size is None:
        add(Finding(mailbox.email, "quota", "size unknown (not inventoried): the central quota was not checked",
                    "warning"))
        return True
    if quota is None:
        return True
    used, limit = quota
    result.quota[mailbox.email] = quota
    needed = info.remaining_bytes
    if used + needed > limit:
        add(Finding(mailbox.email, "quota",
                    f"central quota too small: {human_bytes(needed)} still to copy, {human_bytes(max(0, limit - used))} "
                    f"free of {human_bytes(limit)}; ask the central mail team to raise it"))
        return False
    return True


