"""Shared fixtures: the real-server test lab and a CLI runner that checks exit codes."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from migrate.cli.main import cli
from tests.lab import scenario
from tests.lab.scenario import Lab


@pytest.fixture(scope="session")
def lab_sources():
    """Both Dovecot ministry sources with their corpora; read-only for tests (session-wide)."""
    sources = scenario.start_sources(scenario.make_corpora())
    yield sources
    for source in sources.values():
        source.server.cleanup()


@pytest.fixture
def central_server():
    """A fresh, empty central host for each test."""
    server = scenario.start_central()
    yield server
    server.cleanup()


@pytest.fixture
def lab(lab_sources, central_server) -> Lab:
    return Lab(dict(lab_sources), central_server)


@pytest.fixture
def workspace(tmp_path: Path, lab: Lab) -> Path:
    """A workspace whose project file points at the lab's sources and central host."""
    ws = tmp_path / "ws"
    scenario.write_workspace(ws, lab)
    return ws


class Runner:
    """Runs govmigrate in-process. ``expect`` is the exit code the test expects (default 0): a command that
    exits otherwise fails the test with its output, as httpie's test helper does."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, expect: int | None = 0, env: dict[str, str] | None = None,
                 input: str | None = None) -> Result:
        result = self.runner.invoke(cli, [str(a) for a in args], env=env, input=input, catch_exceptions=False)
        if expect is not None and result.exit_code != expect:
            raise AssertionError(
                f"govmigrate {' '.join(map(str, args))} exited {result.exit_code}, expected {expect}\n"
                f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}")
        return result


@pytest.fixture
def govmigrate() -> Runner:
    return Runner()


@pytest.fixture
def example_workspace(tmp_path: Path, govmigrate: Runner) -> Path:
    ws = tmp_path / "example"
    govmigrate("init", ws)
    return ws


@pytest.fixture
def example_secrets(monkeypatch) -> None:
    """The example project file's secret variables set, so that `check` has nothing to warn about."""
    for name in ("CENTRAL", "HEALTH", "FINANCE"):
        monkeypatch.setenv(f"GOVMIGRATE_{name}_PASSWORD", f"example-{name.lower()}-password")


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)


@pytest.fixture
def exchangelib_sleeps(monkeypatch) -> list[float]:
    """The pauses exchangelib asks for while it waits out a server's back-off (it still really sleeps): tests
    assert the wait the client chose, never how long a test took. ``exchangelib.util.time`` is the ``time``
    module itself, so only a call from exchangelib's own code is counted: other threads of the process (a state
    store's watchdog left by an earlier test in this worker, say) sleep too."""
    import sys
    import time

    import exchangelib.util

    asked: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        if sys._getframe(1).f_globals.get("__name__", "").startswith("exchangelib"):
            asked.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(exchangelib.util.time, "sleep", sleep)
    return asked


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL (tests.lab.postgres) for the whole session, on 127.0.0.1 and a free port; stopped
    and its directory removed afterwards. Log in as ``postgres_server.user`` with ``postgres_server.password``
    (the password is in no URL); ``postgres_server.url`` is its own ``govmigrate`` database's URL."""
    from tests.lab.postgres import PostgresServer

    server = PostgresServer().start()
    yield server
    server.cleanup()


_postgres_databases = [0]  # how many postgres_url databases this session has made (part of their names)


@pytest.fixture
def postgres_url(postgres_server):
    """The URL (``postgresql://govmigrate@127.0.0.1:PORT/NAME``, no password) of a fresh, empty database of the
    session's PostgreSQL for this test only, owned by the application role and dropped afterwards. The
    password is in ``postgres_server.password``."""
    import uuid

    _postgres_databases[0] += 1
    name = f"test_{_postgres_databases[0]}_{uuid.uuid4().hex[:8]}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@contextlib.contextmanager
def shared_state_if(request):
    """For a fixture parametrized over ``["sqlite", "postgresql"]``: with "postgresql", a fresh database of the
    session's PostgreSQL (yields its URL, the password in the environment variable the lab's project files
    name) for as long as the fixture lives; with "sqlite", None (the workspace's own state.db)."""
    if request.param != "postgresql":
        yield None
        return
    import uuid

    server = request.getfixturevalue("postgres_server")
    _postgres_databases[0] += 1
    name = f"test_{_postgres_databases[0]}_{uuid.uuid4().hex[:8]}"
    url = server.create_database(name)
    with pytest.MonkeyPatch.context() as env:
        env.setenv(scenario.STATE_PASSWORD_ENV, server.password)
        try:
            yield url
        finally:
            server.drop_database(name)
