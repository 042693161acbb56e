"""PostgreSQL for the lab: the shared state store several migration hosts use when they work one plan.

One :class:`PostgresServer` is one ``postgres`` from Debian's PostgreSQL binaries (the newest version under
``/usr/lib/postgresql``, 15 on Debian 12) in the foreground as our child. No system service and no cluster of
``pg_createcluster``'s: ``initdb`` makes a data directory in a temporary directory of the lab's, and the server
listens on 127.0.0.1 and a free port only, with no Unix socket at all.

* **Accounts.** initdb creates a superuser (:attr:`PostgresServer.superuser`, ``govlab``, random password) that
  the lab uses for its own administration; the application role :attr:`PostgresServer.user` (``govmigrate``,
  random password, LOGIN, not a superuser, cannot create databases or roles) owns the database
  :attr:`PostgresServer.database` and every database :meth:`PostgresServer.create_database` makes (one per
  test, for isolation). Its URLs carry no password: it is in :attr:`PostgresServer.password`.
* **Authentication** is scram-sha-256 over TCP from 127.0.0.1, and ``pg_hba.conf`` has nothing else.
* **citext** is a trusted extension (PostgreSQL 13+), shipped in Debian's postgresql-15 package (contrib is
  part of it): a database's owner creates it without the superuser's help, so the application role can.
* **Root.** initdb and postgres refuse to run as root. When the tests run as root (CI), both run as the
  ``postgres`` system user the Debian package creates, and the data directory (mode 0700) is that user's,
  inside the lab's temporary directory (0755, which it can traverse). Otherwise they run as the current user.
* **Stopping.** :meth:`PostgresServer.stop` asks for a fast shutdown (SIGINT: open sessions are disconnected,
  unlike SIGTERM's smart shutdown, which waits for them), then an immediate one, then kills the process group.
  Every server still running at exit is stopped and its directory removed.

A server that does not start raises :class:`LabError` with the end of its log, so a test fails saying why.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from secrets import token_urlsafe
from typing import Any

from tests.lab.base import LOOPBACK, LabError, free_port, lab_tempdir, log_excerpt

PG_ROOT = Path("/usr/lib/postgresql")
SYSTEM_USER = "postgres"
SUPERUSER = "govlab"
APP_ROLE = "govmigrate"
APP_DATABASE = "govmigrate"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_live: list[PostgresServer] = []


def pg_bindir() -> Path:
    """The bin directory of the newest PostgreSQL under /usr/lib/postgresql (Debian's layout)."""
    versions = []
    if PG_ROOT.is_dir():
        for entry in PG_ROOT.iterdir():
            if entry.name.isdigit() and (entry / "bin" / "postgres").exists() and (entry / "bin" / "initdb").exists():
                versions.append((int(entry.name), entry / "bin"))
    if not versions:
        raise LabError(f"no PostgreSQL server binaries under {PG_ROOT}; install the Debian package postgresql "
                       "(make setup does)")
    return max(versions)[1]


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{name!r}: the lab's database names are lower-case identifiers (a-z, 0-9, _)")
    return name


class PostgresServer:
    """One running PostgreSQL; start it with :meth:`start` (or ``with``), stop with :meth:`cleanup`."""

    host = LOOPBACK

    def __init__(self, *, port: int | None = None) -> None:
        self.port = port or 0
        self.user = APP_ROLE
        self.password = f"lab-pg-{token_urlsafe(12)}"
        self.database = APP_DATABASE
        self.superuser = SUPERUSER
        self.superuser_password = f"lab-pgsu-{token_urlsafe(12)}"
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._log_handle: Any = None
        self._initialised = False
        self.startup_seconds: float | None = None

    # -- where ----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The application database's URL, without the password (it is in :attr:`password`)."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    @property
    def ca_file(self) -> Path:
        """The lab CA that signed the server's TLS certificate (names localhost and 127.0.0.1)."""
        from tests.lab.certs import lab_ca

        return lab_ca().ca_file

    @property
    def data_dir(self) -> Path:
        assert self.dir is not None, "the server was not started"
        return self.dir / "data"

    @property
    def log_file(self) -> Path:
        """Everything the server writes (its stderr, from the first line of every start)."""
        assert self.dir is not None, "the server was not started"
        return self.dir / "postgres.log"

    # -- running as whom --------------------------------------------------------------------------------

    def _as_server_user(self) -> dict[str, Any]:
        """Popen arguments that run a PostgreSQL program as the right user: ``postgres`` when we are root."""
        if os.geteuid() != 0:
            return {}
        try:
            account = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise LabError(f"running as root, and there is no {SYSTEM_USER!r} system user to run PostgreSQL as; "
                           "install the Debian package postgresql (it creates the user)")
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def _env(self) -> dict[str, str]:
        # Nothing of ours (PGPORT, PGDATA, PGHOST …) may steer the server; the locale is initdb's.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LC_"))}
        env["LANG"] = "C.UTF-8"
        return env

    # -- life cycle -----------------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        """initdb (first start only), start the server and return once it accepts a real login."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        began = time.monotonic()
        if self not in _live:
            _live.append(self)
        try:
            if not self._initialised:
                self._initdb()
            self._launch()
            self._wait_for_login(self.superuser, self.superuser_password, "postgres")
            if not self._initialised:
                self._create_app_role()
                self._initialised = True
            self._wait_for_login(self.user, self.password, self.database)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _initdb(self) -> None:
        bindir = pg_bindir()
        as_user = self._as_server_user()
        if self.dir is not None:  # an earlier start that failed half-way: begin again from nothing
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = lab_tempdir("postgres")
        data = self.dir / "data"
        data.mkdir(mode=0o700)
        pwfile = self.dir / "superuser.pw"
        pwfile.write_text(self.superuser_password + "\n")
        pwfile.chmod(0o600)
        if as_user:
            os.chown(data, as_user["user"], as_user["group"])
            os.chown(pwfile, as_user["user"], as_user["group"])
        init_log = self.dir / "initdb.log"
        try:
            with open(init_log, "wb") as out:
                result = subprocess.run(
                    [str(bindir / "initdb"), "-D", str(data), "--username", self.superuser, "--pwfile", str(pwfile),
                     "--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C.UTF-8", "--no-sync",
                     "--no-instructions"],
                    stdout=out, stderr=subprocess.STDOUT, env=self._env(), cwd=self.dir, timeout=60, **as_user)
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise LabError(f"initdb exited with status {result.returncode}\n{log_excerpt(init_log)}")
        # The only way in: scram-sha-256 over TCP from loopback (no Unix socket is created at all).
        (data / "pg_hba.conf").write_text(
            "# govmigrate test lab: scram-sha-256 from 127.0.0.1 only, nothing else\n"
            "host all all 127.0.0.1/32 scram-sha-256\n")
        with open(data / "postgresql.conf", "a") as conf:
            conf.write("\n# --- govmigrate test lab ---\n"
                       f"listen_addresses = '{LOOPBACK}'\n"
                       "unix_socket_directories = ''\n"
                       "password_encryption = 'scram-sha-256'\n"
                       # Lab only: a throw-away cluster need not survive a power cut, so skip the disk
                       # flushes that make start-up and CREATE DATABASE slow. Never do this in production.
                       "fsync = off\n"
                       "synchronous_commit = off\n"
                       "full_page_writes = off\n"
                       "shared_buffers = 32MB\n"
                       "max_connections = 100\n"
                       "logging_collector = off\n"
                       "log_destination = 'stderr'\n"
                       "log_connections = on\n"
                       "log_disconnections = on\n"
                       "log_line_prefix = '%m [%p] %q%u@%d '\n"
                       # TLS with a certificate from the lab CA (clients choose: the store verifies it when
                       # the project file names the CA, as with a database on another host).
                       "ssl = on\n"
                       "ssl_cert_file = 'server.crt'\n"
                       "ssl_key_file = 'server.key'\n")
        from tests.lab.certs import lab_ca

        issued = lab_ca().issue("postgres", directory=self.dir / "tls")
        for source, target in ((issued.cert, data / "server.crt"), (issued.key, data / "server.key")):
            shutil.copyfile(source, target)
            target.chmod(0o600)   # PostgreSQL refuses a key others can read
            if as_user:
                os.chown(target, as_user["user"], as_user["group"])

    def _launch(self) -> None:
        if not self.port:
            self.port = free_port()
        self._log_handle = open(self.log_file, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [str(pg_bindir() / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)],
            stdout=self._log_handle, stderr=subprocess.STDOUT, env=self._env(), cwd=self.dir,
            start_new_session=True, **self._as_server_user())

    def _wait_for_login(self, user: str, password: str, dbname: str) -> None:
        """Until ``user`` logs in and runs a query: the port alone could be some other program's."""
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                status = None if self.proc is None else self.proc.returncode
                raise LabError(f"postgres exited with status {status} during start-up\n{log_excerpt(self.log_file)}")
            if not self._postmaster_ready():
                time.sleep(0.02)
                continue
            try:
                with psycopg.connect(host=self.host, port=self.port, user=user, password=password, dbname=dbname,
                                     connect_timeout=2, sslmode="disable") as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last = exc
            time.sleep(0.05)
        raise LabError(f"postgres did not accept a login of {user} on {self.host}:{self.port} within "
                       f"{START_TIMEOUT:.0f}s (last error: {last})\n{log_excerpt(self.log_file)}")

    def _postmaster_ready(self) -> bool:
        """Our postmaster says it is ready (line 8 of postmaster.pid, as ``pg_ctl -w`` reads it), so that no
        login is tried at the port before that: it could be another program's, which would not answer."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return (self.proc is not None and len(lines) >= 8 and lines[0].strip() == str(self.proc.pid)
                and lines[7].strip() == "ready")

    def _create_app_role(self) -> None:
        from psycopg import sql

        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                sql.Identifier(self.user), sql.Literal(self.password)))
        self.create_database(self.database)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions are disconnected), then immediate (SIGQUIT), then SIGKILL."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGINT, STOP_TIMEOUT), (signal.SIGQUIT, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def restart(self) -> PostgresServer:
        """Stop fast and start again on the same port and data directory (data survives; sessions do not)."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        self.stop()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        self._initialised = False
        if self in _live:
            _live.remove(self)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- using it -------------------------------------------------------------------------------------

    def admin(self, database: str = "postgres"):
        """A psycopg connection as the lab's superuser, autocommit (for the lab's own administration)."""
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=self.superuser,
                               password=self.superuser_password, dbname=database, autocommit=True,
                               connect_timeout=5, sslmode="disable")

    def connect(self, database: str | None = None, **kwargs: Any):
        """A psycopg connection as the application role (for tests' own checks)."""
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               dbname=database or self.database, connect_timeout=5, **kwargs)

    def create_database(self, name: str) -> str:
        """A fresh, empty database owned by the application role; its URL (without the password)."""
        from psycopg import sql

        _check_name(name)
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
                sql.Identifier(name), sql.Identifier(self.user)))
            # PostgreSQL 15 gives new databases' public schema to pg_database_owner already; CONNECT and
            # TEMPORARY stay PUBLIC's, as in any default database.
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still in it (PostgreSQL 13+ ``WITH (FORCE)``)."""
        from psycopg import sql

        _check_name(name)
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def session_count(self, database: str | None = None) -> int:
        """Client sessions open now (in ``database``, or in all), not counting the one that asks."""
        with self.admin() as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "AND pid <> pg_backend_pid() AND (%(db)s::text IS NULL OR datname = %(db)s::text)",
                {"db": database}).fetchone()
        return int(row[0]) if row else 0


def start_postgres(*, port: int | None = None) -> PostgresServer:
    return PostgresServer(port=port).start()


@atexit.register
def _cleanup_all() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.cleanup()
