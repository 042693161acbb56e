"""The PostgreSQL lab itself, against real PostgreSQL: the application role logs in with its password over
scram-sha-256 and not with a wrong one, the server listens on 127.0.0.1 only, every test gets a database of its
own where citext works, a restart keeps the data, and a server that cannot start fails with its log."""

from __future__ import annotations

import os
import socket

import psycopg
import pytest

from tests.lab import postgres
from tests.lab.base import LOOPBACK, LabError
from tests.lab.postgres import PostgresServer

pytestmark = pytest.mark.lab


def test_app_role_logs_in_with_its_password_only(postgres_server: PostgresServer) -> None:
    pg = postgres_server
    assert pg.url == f"postgresql://govmigrate@127.0.0.1:{pg.port}/govmigrate"
    assert pg.password not in pg.url
    with psycopg.connect(pg.url, password=pg.password) as conn:
        user, superuser, db = conn.execute(
            "SELECT current_user, rolsuper, current_database() FROM pg_roles WHERE rolname = current_user").fetchone()
    assert (user, superuser, db) == ("govmigrate", False, "govmigrate")

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg.url, password=pg.password + "x", connect_timeout=5)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg.url, password="", connect_timeout=5)
    # The superuser is not reachable with the application role's password either.
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host=pg.host, port=pg.port, user=pg.superuser, password=pg.password, dbname="postgres",
                        connect_timeout=5)
    assert 'identity="govmigrate" method=scram-sha-256' in pg.log_file.read_text()


def test_listens_on_loopback_only_with_scram_only(postgres_server: PostgresServer) -> None:
    pg = postgres_server
    with pg.admin() as conn:
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
        assert conn.execute("SHOW unix_socket_directories").fetchone()[0] == ""
        rules = conn.execute("SELECT type, database, user_name, address, netmask, auth_method, error "
                             "FROM pg_hba_file_rules").fetchall()
    assert rules == [("host", ["all"], ["all"], "127.0.0.1", "255.255.255.255", "scram-sha-256", None)]
    # Another loopback address of the same host: nothing listens there (not bound to 0.0.0.0).
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.settimeout(2)
        sock.connect(("127.0.0.2", pg.port))
    with socket.create_connection((LOOPBACK, pg.port), timeout=2):
        pass


def test_each_test_gets_its_own_database_where_citext_works(postgres_server: PostgresServer,
                                                            postgres_url: str) -> None:
    pg = postgres_server
    name = postgres_url.rsplit("/", 1)[1]
    assert postgres_url == f"postgresql://govmigrate@127.0.0.1:{pg.port}/{name}"
    with psycopg.connect(postgres_url, password=pg.password) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0
        assert conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
                            ).fetchone()[0] == "govmigrate"
        conn.execute("CREATE EXTENSION citext")
        conn.execute("CREATE TABLE mailbox (address citext PRIMARY KEY)")
        conn.execute("INSERT INTO mailbox VALUES ('Jane.Doe@Health.Gov.BZ'), ('Ñandú@finance.gov.bz')")
        conn.commit()
        assert conn.execute("SELECT count(*) FROM mailbox WHERE address IN ('jane.doe@health.gov.bz', "
                            "'ñANDÚ@FINANCE.GOV.BZ')").fetchone()[0] == 2
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO mailbox VALUES ('JANE.DOE@health.gov.bz')")
        conn.rollback()
        assert pg.session_count(name) == 1

    other = pg.create_database(f"{name}_other")
    try:
        with psycopg.connect(other, password=pg.password) as conn:
            assert conn.execute("SELECT to_regclass('mailbox')").fetchone()[0] is None
    finally:
        pg.drop_database(f"{name}_other")
    assert pg.session_count(name) == 0


def test_restart_keeps_data_and_new_connections_work() -> None:
    with PostgresServer() as pg:
        port, url = pg.port, pg.create_database("wave")
        with psycopg.connect(url, password=pg.password, autocommit=True) as conn:
            conn.execute("CREATE TABLE claims (id int PRIMARY KEY)")
            conn.execute("INSERT INTO claims VALUES (1), (2)")
        stale = psycopg.connect(url, password=pg.password, autocommit=True)
        try:
            pg.restart()
            assert pg.port == port
            with pytest.raises(psycopg.OperationalError):
                stale.execute("SELECT 1")
        finally:
            stale.close()
        with psycopg.connect(url, password=pg.password) as conn:
            assert conn.execute("SELECT id FROM claims ORDER BY id").fetchall() == [(1,), (2,)]
        log = pg.log_file.read_text()
        assert "received fast shutdown request" in log
        assert log.count("database system is ready to accept connections") == 2
        directory = pg.dir
    assert directory is not None and not directory.exists()
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect((LOOPBACK, port))


def test_a_server_that_cannot_start_fails_with_its_log() -> None:
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, 0))
        squatter.listen()
        pg = PostgresServer(port=squatter.getsockname()[1])
        try:
            with pytest.raises(LabError) as failure:
                pg.start()
            assert pg.proc is None
        finally:
            pg.cleanup()
    message = str(failure.value)
    assert "postgres exited with status" in message
    assert "--- server log (last lines) ---" in message
    assert "Address already in use" in message


def test_missing_binaries_name_the_debian_package(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(postgres, "PG_ROOT", tmp_path)
    with pytest.raises(LabError, match="Debian package postgresql"):
        PostgresServer().start()


def test_the_server_runs_as_postgres_when_root_else_as_us(postgres_server: PostgresServer) -> None:
    import pwd

    owner = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
    data = postgres_server.data_dir
    assert data.stat().st_uid == owner
    assert data.stat().st_mode & 0o777 == 0o700
    assert postgres_server.proc is not None
    assert os.stat(f"/proc/{postgres_server.proc.pid}").st_uid == owner
