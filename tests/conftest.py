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

SERVER_EVERYTHING = "@modelcontextprotocol/server-everything"
SERVER_EVERYTHING_VERSION = "2026.8.31"
# Under the project's virtualenv: `make clean` removes it, and every session reuses it.
NPM_PREFIX = REPO_ROOT / ".venv" / "test-npm" / f"server-everything-{SERVER_EVERYTHING_VERSION}"


def install_server_everything() -> Path:
    """The installed server's entry script, installing the pinned version on first use."""
    import shutil
    import subprocess

    entry = NPM_PREFIX / "node_modules" / SERVER_EVERYTHING / "dist" / "index.js"
    if entry.is_file():
        return entry
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.fail(
            "the gateway tests need Node.js and npm (for "
            f"{SERVER_EVERYTHING}@{SERVER_EVERYTHING_VERSION}): install them, e.g. "
            "`apt-get install nodejs npm`"
        )
    NPM_PREFIX.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--prefix", str(NPM_PREFIX), "--no-audit", "--no-fund",
         f"{SERVER_EVERYTHING}@{SERVER_EVERYTHING_VERSION}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0 or not entry.is_file():
        pytest.fail(f"npm install of {SERVER_EVERYTHING} failed:\n{done.stderr[-2000:]}")
    return entry


@pytest.fixture(scope="session")
def server_everything() -> Path:
    return install_server_everything()
