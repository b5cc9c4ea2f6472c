"""Shared fixtures: a temporary data dir with a real SQLite file, and the facade on it.

Modules marked `both_backends` run each test twice: on SQLite and on a fresh database of a real
PostgreSQL server that the session starts itself (tests/pg_server.py). Never skipped: if the
server cannot start, those tests error with the reason.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from app.core.settings import Settings, load_settings
from app.ops.facade import LocalOperations
from storage.db import Database
from tests.pg_server import PgServer, postgres_server

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_SERVERS = Path(__file__).resolve().parent / "servers"
PYTHON = sys.executable


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test reads the developer's real data dir, config or settings from the shell."""
    for key in list(os.environ):
        if key.startswith(("TOOLDECK_", "TOOL_SERVER_", "MCP_")) or key == "BRAVE_API_KEY":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TOOLDECK_HOME", str(tmp_path / "home"))
    # Only the calculator by default: the npx-based built-ins would reach the npm registry.
    monkeypatch.setenv("MCP_SERVERS", "calculator")
    yield


BACKENDS = ("sqlite", "postgresql")
# TOOLDECK_TEST_BACKEND=postgresql runs the unmarked tests on PostgreSQL instead of SQLite.
DEFAULT_BACKEND = os.environ.get("TOOLDECK_TEST_BACKEND", "sqlite")
# Which PostgreSQL the session starts (see tests/pg_server.py), read before each test's
# environment is cleared of TOOLDECK_ variables.
PG_OPTIONS = {key: value for key, value in os.environ.items() if key.startswith("TOOLDECK_PG_")}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_backends: run the module's tests on SQLite and on PostgreSQL"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_backends"
    ):
        metafunc.parametrize("backend", BACKENDS, indirect=True, scope="session")


# What the session's PostgreSQL was, for the run's summary: proof that it really ran.
STARTED_SERVERS: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in STARTED_SERVERS:
        terminalreporter.write_line(f"PostgreSQL for the tests: {line}")


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend of this test: both when its module is marked both_backends, else
    SQLite (or TOOLDECK_TEST_BACKEND)."""
    return getattr(request, "param", DEFAULT_BACKEND)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    # Sync and session-scoped: one server per run, started from the main thread, to which the
    # server's life is tied (PR_SET_PDEATHSIG). No skip: PostgresUnavailable says why it failed.
    with postgres_server(
        "tooldeck_template",
        bindir=PG_OPTIONS.get("TOOLDECK_PG_BINDIR"),
        prefer=PG_OPTIONS.get("TOOLDECK_PG_PREFER"),
        os_user=PG_OPTIONS.get("TOOLDECK_PG_USER"),
    ) as server:
        STARTED_SERVERS.append(
            f"{server.version} from {server.source}, up in {server.timings['total']:.1f} s"
        )
        yield server


@pytest.fixture(scope="session")
def new_pg_database(pg: PgServer) -> Callable[..., str]:
    """Makes a fresh database on the session's server and returns its URL: a copy of a
    database migrated once per session (creating one costs ~20 ms, migrating it ~0.5 s), or an
    empty one with `migrated=False`."""
    counter = itertools.count(1)
    template: list[str] = []

    def make(*, migrated: bool = True) -> str:
        if migrated and not template:
            url = pg.create_database("migrated")
            # On a thread of its own: this may be reached from inside a running event loop.
            with ThreadPoolExecutor(1) as thread:
                thread.submit(asyncio.run, _migrate(url)).result()
            template.append("migrated")
        return pg.create_database(f"t{next(counter)}", "migrated" if migrated else "template1")

    return make


async def _migrate(url: str) -> None:
    database = Database(url)
    try:
        await database.upgrade()
    finally:
        await database.dispose()


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for SQLite (the data dir's file); the URL of a fresh PostgreSQL database."""
    if backend == "sqlite":
        yield None
        return
    pg_server: PgServer = request.getfixturevalue("pg")
    url = request.getfixturevalue("new_pg_database")()
    yield url
    pg_server.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def settings(data_dir: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch) -> Settings:
    if database_url is not None:
        # Through the environment, so that daemons and CLI runs of the test use it too.
        monkeypatch.setenv("TOOLDECK_DATABASE_URL", database_url)
    return load_settings(data_dir)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.effective_database_url)
    await database.upgrade()
    yield database
    await database.dispose()


@pytest.fixture
async def ops(db: Database, settings: Settings) -> LocalOperations:
    """The facade on a fresh, migrated database, without built-ins and without a runtime."""
    return LocalOperations(db, settings)


def stdio_server_spec(name: str, script: str, *args: str, **fields: object) -> dict[str, object]:
    """A server definition that runs `tests/servers/<script>.py` with this interpreter."""
    return {
        "name": name,
        "command": PYTHON,
        "args": [str(TEST_SERVERS / f"{script}.py"), *args],
        **fields,
    }


# ---- @modelcontextprotocol/server-everything, the broadest real upstream -----------------------


@pytest.fixture(scope="session")
def server_everything() -> Path:
    from tests.npm_peers import NpmMissing, install_server_everything

    try:
        return install_server_everything()
    except NpmMissing as exc:
        pytest.fail(str(exc))
