"""Servers nobody here wrote, from npm: installed once per machine, pinned, under the project's
virtualenv (`make clean` removes them). The tests and the benchmarks share one install."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_EVERYTHING = "@modelcontextprotocol/server-everything"
SERVER_EVERYTHING_VERSION = "2026.8.31"
NPM_PREFIX = REPO_ROOT / ".venv" / "test-npm" / f"server-everything-{SERVER_EVERYTHING_VERSION}"


class NpmMissing(RuntimeError):
    """Node.js or npm is not installed, or the install failed; the message says which."""


def install_server_everything() -> Path:
    """The installed server's entry script, installing the pinned version on first use."""
    entry = NPM_PREFIX / "node_modules" / SERVER_EVERYTHING / "dist" / "index.js"
    if entry.is_file():
        return entry
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        raise NpmMissing(
            f"the gateway tests need Node.js and npm (for {SERVER_EVERYTHING}@"
            f"{SERVER_EVERYTHING_VERSION}): install them, e.g. `apt-get install nodejs npm`"
        )
    NPM_PREFIX.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--prefix", str(NPM_PREFIX), "--no-audit", "--no-fund",
         f"{SERVER_EVERYTHING}@{SERVER_EVERYTHING_VERSION}"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0 or not entry.is_file():
        raise NpmMissing(f"npm install of {SERVER_EVERYTHING} failed:\n{done.stderr[-2000:]}")
    return entry
