"""Shared fixtures: a temporary data dir with a real SQLite file, and the facade on it."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.core.settings import Settings, load_settings
from app.ops.facade import LocalOperations
from storage.db import Database

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


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def settings(data_dir: Path) -> Settings:
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
