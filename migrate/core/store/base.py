"""The two engines under the store: SQLite (one file per workspace) and PostgreSQL (shared by several hosts).

Every area module writes its SQL once, in the subset both engines read: ``?`` placeholders, ``INSERT ... ON
CONFLICT ... DO UPDATE`` upserts, ``RETURNING``. :class:`Postgres` turns ``?`` into psycopg's ``%s`` and
``LIKE`` into ``ILIKE`` (SQLite's LIKE ignores case). The few things the engines really do differently are
here, and only here: how a transaction starts, the schema version, the database clock, row locks.

A connection to PostgreSQL that drops (a restart, a network blip) is opened again before the next transaction
or query, for up to :data:`RECONNECT_S`; a transaction it interrupts raises :class:`StoreUnavailable`, and
callers retry their step (the sync engine's reconciliation makes that exact).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from migrate.core.errors import AuthenticationFailed, LockHeld, ServerUnreachable, StoreError
from migrate.core.secrets import redact
from migrate.core.store.schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)

#: How long a command waits for another process's write transaction before it gives up (exit 7).
BUSY_TIMEOUT_S = 30
#: How long a PostgreSQL store is tried again after its connection dropped, before the command gives up.
RECONNECT_S = 90.0
#: How long one statement may wait for PostgreSQL before its connection counts as lost (a paused server, a
#: network that swallows packets): the watchdog cuts it, and the reconnect window above bounds the rest.
STATEMENT_S = 30.0

Row = Sequence[Any]


class StoreUnavailable(ServerUnreachable):
    """The shared state store cannot be reached (exit 4): at start, or for longer than RECONNECT_S."""


class Engine:
    """What a store's engine must do; :class:`Sqlite` and :class:`Postgres` are the two."""

    name = ""
    #: For people: the file's path, or the database URL without a password.
    where = ""
    #: Appended to a SELECT that claims rows other processes may claim at the same time.
    skip_locked = ""
    #: Appended to a SELECT whose row must not change until this transaction ends (SQLite's write transaction
    #: already excludes every other writer).
    for_update = ""
    #: An SQL expression for the database's clock in epoch seconds (leases use it, so hosts' clocks never matter).
    clock = ""
    #: How long a lost connection is tried again before a call gives up (StoreUnavailable).
    reconnect_s = RECONNECT_S

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        raise NotImplementedError

    def begin(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        self.execute("ROLLBACK")

    def close(self) -> None:
        raise NotImplementedError

    def schema_version(self) -> int:
        raise NotImplementedError

    def migrate(self) -> None:
        raise NotImplementedError

    def retry(self, exc: Exception) -> bool:
        """Whether ``exc`` means the connection was lost and a new one should be tried."""
        return False

    def reconnect(self) -> None:
        raise NotImplementedError

    def error(self, exc: Exception) -> Exception:
        """The store's own error for an engine's exception."""
        return StoreError(f"cannot use the state store {self.where}: {redact(str(exc))}")


class Sqlite(Engine):
    name = "sqlite"
    clock = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        try:
            self.conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a transaction that returned is on disk, so a power cut never takes back a record of a copy.
            # (Reconciliation by fingerprint would repair it anyway, as it repairs a store restored from backup;
            # FULL only saves that work.) Measured by make bench: see docs/architecture.md.
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot use state store {path}: {exc}") from None

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return self.conn.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        self.conn.close()

    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> None:
        version = self.schema_version()
        _refuse_newer(version, self.where)
        for number in range(version + 1, SCHEMA_VERSION + 1):
            self.begin()
            try:
                for statement in MIGRATIONS[number - 1].statements(self.name):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {number}")
                self.commit()
            except BaseException:
                self.rollback()
                raise
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            if side.exists():
                try:
                    os.chmod(side, 0o600)
                except OSError:
                    pass

    def error(self, exc: Exception) -> Exception:
        """SQLite's "database is locked" after the busy timeout: another process has held the store that long."""
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
            return LockHeld(f"the state store {self.path.name} has been locked by another govmigrate process for "
                            f"{BUSY_TIMEOUT_S} s; nothing was changed here",
                            hint="wait for it to finish (govmigrate log shows what runs), then run this again")
        return StoreError(f"cannot use state store {self.path}: {exc}")


_PLACEHOLDER = re.compile(r"\?")
_LIKE = re.compile(r"\bLIKE\b")
#: PostgreSQL's lock for schema migrations, so that workers starting together migrate once.
_MIGRATION_LOCK = 0x676F766D  # "govm"


class Postgres(Engine):
    name = "postgresql"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    for_update = " FOR UPDATE"
    clock = "EXTRACT(EPOCH FROM clock_timestamp())::float8"

    def __init__(self, url: str, *, password: str | None, ca_file: str | None = None, verify: bool = True,
                 connect_timeout: float = 10.0, reconnect_s: float = RECONNECT_S,
                 statement_s: float = STATEMENT_S) -> None:
        self.url = url
        self.reconnect_s = reconnect_s
        self.statement_s = statement_s
        self._watchdog = _Watchdog(self)
        # What messages name: never the URL's query, which may carry connection parameters (or, in a file that
        # check refused, a password).
        self.where = urlunsplit(urlsplit(url)._replace(query="", fragment=""))
        self._password = password
        self._ca_file = ca_file
        self._verify = verify
        self._timeout = connect_timeout
        self._sql: dict[str, str] = {}
        self.conn = self._connect()

    def _options(self) -> dict[str, Any]:
        host = urlsplit(self.url).hostname or ""
        limit_ms = int(self.statement_s * 1000)
        options: dict[str, Any] = {
            "connect_timeout": max(1, int(min(self._timeout, self.statement_s))), "autocommit": True,
            "application_name": "govmigrate",
            # A peer that vanished (a host down, a cable out) is noticed by TCP itself; a server that is there but
            # does not answer (paused) by the watchdog. The server ends a session left idle in a transaction (a
            # paused client holding row locks) and any statement that runs too long.
            "keepalives": 1, "keepalives_idle": max(1, int(self.statement_s / 3)), "keepalives_interval": 5,
            "keepalives_count": 3, "tcp_user_timeout": limit_ms,
            "options": f"-c statement_timeout={limit_ms} -c idle_in_transaction_session_timeout={limit_ms}"}
        if self._password is not None:
            options["password"] = self._password
        # TLS is verified (the server's name and chain) against the project's CA file or, without one, the
        # system's CA store as for every other host (libpq 16+ reads "system"; its own default,
        # ~/.postgresql/root.crt, would differ from the rest of govmigrate). Only verify_certificate: false
        # turns verification off; a store on this machine (loopback, a Unix socket) with no CA file named
        # needs no TLS. An sslmode in the URL is the project's explicit choice.
        if "sslmode=" not in self.url:
            if self._ca_file and self._verify:
                options["sslmode"] = "verify-full"
            elif _local(host):
                options["sslmode"] = "prefer"
            else:
                options["sslmode"] = "verify-full" if self._verify else "require"
        mode = options.get("sslmode") or (parse_qs(urlsplit(self.url).query).get("sslmode") or [""])[0]
        if mode in ("verify-ca", "verify-full"):
            options["sslrootcert"] = self._ca_file or "system"
        return options

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.url, **self._options())
        except psycopg.OperationalError as exc:
            raise self.error(exc) from None

    def error(self, exc: Exception) -> Exception:
        text = redact(str(exc)).strip().splitlines()
        reason = text[0] if text else type(exc).__name__
        state = getattr(exc, "sqlstate", None) or ""
        conn = getattr(self, "conn", None)
        if conn is not None and (conn.closed or conn.broken):
            return StoreUnavailable(f"the state store {self.where} dropped the connection: {reason}",
                                    hint="is PostgreSQL running? the work resumes once it is back")
        if state.startswith("28") or (not state and "password authentication failed" in reason):
            return AuthenticationFailed(f"the state store {self.where} refused the login: {reason}",
                                        hint="check state.password in the project file")
        if not state and ("certificate" in reason or "SSL" in reason):
            return StoreUnavailable(f"the state store {self.where}: TLS failed: {reason}",
                                    hint="state.ca_file names the CA that signed the database server's "
                                         "certificate; verify_certificate: false turns the check off")
        if state == "3D000" or (not state and "does not exist" in reason):
            return StoreError(f"the state store {self.where} cannot be used: {reason}",
                              hint="create the database (createdb) and give the login its ownership")
        if state and not state.startswith(("08", "57P")):
            return StoreError(f"the state store {self.where} failed: {reason}")
        return StoreUnavailable(f"the state store {self.where} cannot be reached: {reason}",
                                hint="is PostgreSQL running and reachable from this host? nothing was changed")

    def _translate(self, sql: str) -> str:
        out = self._sql.get(sql)
        if out is None:
            out = self._sql[sql] = _LIKE.sub("ILIKE", _PLACEHOLDER.sub("%s", sql))
        return out

    def _live(self) -> Any:
        if self.conn is None:  # the last reconnect failed: the caller's reconnect loop tries again
            import psycopg

            raise psycopg.OperationalError("not connected (the last attempt to reconnect failed)")
        return self.conn

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        with self._watchdog.armed():
            return self._live().execute(self._translate(sql), tuple(params), prepare=False)

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if rows:
            with self._watchdog.armed(), self._live().cursor() as cur:
                cur.executemany(self._translate(sql), rows)

    def begin(self) -> None:
        with self._watchdog.armed():
            self._live().execute("BEGIN")

    def close(self) -> None:
        try:
            if self.conn is not None:
                self.conn.close()
        except Exception:
            pass

    def cut(self) -> None:
        """Shut the connection's socket down (the watchdog, for a statement past its time): the call waiting on
        it returns with the connection broken, and the store's reconnect logic takes over."""
        conn = self.conn
        if conn is None or conn.closed:
            return
        try:
            cut = socket.socket(fileno=os.dup(conn.pgconn.socket))
        except (OSError, ValueError):
            return
        try:
            cut.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            cut.close()

    def schema_version(self) -> int:
        self._live().execute("CREATE TABLE IF NOT EXISTS govmigrate_schema (version INTEGER NOT NULL)")
        row = self._live().execute("SELECT MAX(version) FROM govmigrate_schema").fetchone()
        return row[0] or 0

    def migrate(self) -> None:
        import psycopg

        try:
            with self.conn.transaction():
                # Several workers starting at once: one migrates, the others wait and find it done.
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                version = self.schema_version()
                _refuse_newer(version, self.where)
                if version < 1:
                    self.conn.execute("CREATE EXTENSION IF NOT EXISTS citext")
                for number in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[number - 1].statements(self.name):
                        self.conn.execute(statement)
                    self.conn.execute("INSERT INTO govmigrate_schema(version) VALUES (%s)", (number,))
        except psycopg.Error as exc:
            raise self.error(exc) from None

    def retry(self, exc: Exception) -> bool:
        import psycopg

        return isinstance(exc, psycopg.OperationalError) and (self.conn is None or self.conn.closed or
                                                               self.conn.broken)

    def reconnect(self) -> None:
        self.close()
        self.conn = None  # what the new connection's failure says is about it, not the old one
        self.conn = self._connect()


class _Watchdog:
    """One thread per PostgreSQL connection: a statement that waits longer than ``statement_s`` for the server
    has its connection cut (:meth:`Postgres.cut`). The store serialises statements on its one connection, so one
    deadline at a time."""

    def __init__(self, engine: Postgres) -> None:
        self.engine = engine
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    @contextmanager
    def armed(self) -> Iterator[None]:
        with self._guard:
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="store-watchdog", daemon=True)
                self._thread.start()
        self._deadline = time.monotonic() + self.engine.statement_s
        try:
            yield
        finally:
            self._deadline = None

    def _watch(self) -> None:
        while True:
            time.sleep(0.25)
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline:
                self._deadline = None
                log.warning("the state store %s did not answer within %.0f s: cutting the connection",
                            self.engine.where, self.engine.statement_s)
                self.engine.cut()


def _local(host: str) -> bool:
    if not host or host.startswith("/") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse_newer(version: int, where: str) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(f"{where} has schema version {version}, newer than this govmigrate understands "
                         f"({SCHEMA_VERSION}); upgrade govmigrate")


class StoreBase:
    """The plumbing every area of the store shares. Thread-safe: one connection, serialised by a lock."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.RLock()
        self._depth = 0
        #: When the connection was found lost (None: it works).
        self._lost_since: float | None = None
        #: When the connection last came up (time.monotonic()): at the start, and after each reconnect.
        self._connected_at = time.monotonic()

    @property
    def where(self) -> str:
        return self.engine.where

    def connected_for(self) -> float:
        """Seconds since this process's connection to the store last came up. A worker takes over another's
        lapsed claim only after it has itself been connected for a lease's length: after an outage of the
        database (for everyone), every holder gets that long to renew what it holds before anybody may call it
        dead."""
        return time.monotonic() - self._connected_at

    @property
    def path(self) -> Path | None:
        return getattr(self.engine, "path", None)

    def close(self) -> None:
        with self._lock:
            self.engine.close()

    def __enter__(self) -> StoreBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def tx(self) -> Iterator[Engine]:
        """One transaction; nested calls join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.engine
                finally:
                    self._depth -= 1
                return
            self._call(self.engine.begin)
            self._depth = 1
            try:
                yield self.engine
            except BaseException as exc:
                try:
                    self.engine.rollback()
                except Exception:
                    pass
                if isinstance(exc, Exception) and self.engine.retry(exc):
                    raise self.engine.error(exc) from None  # StoreUnavailable: the step is tried again
                raise
            else:
                try:
                    self.engine.commit()
                except Exception as exc:
                    raise self.engine.error(exc) from None
            finally:
                self._depth = 0

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        with self._lock:
            if self._depth:
                return self.engine.execute(sql, params).fetchall()
            return self._call(lambda: self.engine.execute(sql, params).fetchall())

    def _call(self, fn: Any) -> Any:
        """``fn`` outside a transaction; a lost connection is opened again, until the engine's reconnect window
        has passed since it was lost (one window for every caller: threads waiting behind the one that found
        the store gone do not each wait a window of their own)."""
        delay = 0.2
        while True:
            try:
                result = fn()
                self._lost_since = None
                return result
            except sqlite3.Error as exc:
                raise self.engine.error(exc) from None
            except Exception as exc:
                if not self.engine.retry(exc):
                    if type(exc).__module__.startswith("psycopg"):
                        raise self.engine.error(exc) from None
                    raise
                if self._lost_since is None:
                    self._lost_since = time.monotonic()
                if time.monotonic() > self._lost_since + self.engine.reconnect_s:
                    raise self.engine.error(exc) from None
                log.warning("the state store %s dropped the connection (%s); connecting again",
                            self.engine.where, redact(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                try:
                    self.engine.reconnect()
                    self._connected_at = time.monotonic()
                except StoreUnavailable:
                    pass

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._call(self.engine.schema_version)
