"""What the fault tests share: real Tooldeck processes in every face, and what they left."""

from __future__ import annotations

import json
import os
import pty
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import psutil

from app.runtime.process_registry import INSTANCE_ENV
from tests.daemon_helpers import REPO_ROOT, daemon_env, wait_for


def statuses(data_dir: Path) -> dict[str, str]:
    """Each server's status as stored, read straight from the database file."""
    with sqlite3.connect(data_dir / "tooldeck.db", timeout=30) as db:
        return dict(db.execute("SELECT name, status FROM tool_servers").fetchall())


# The instance markers seen in each data dir's registry: servers and what they start carry their
# marker, not the data dir, in their environment; `ours` finds them by it, also once forgotten.
_markers_seen: dict[Path, set[str]] = {}


def recorded_groups(data_dir: Path) -> dict[int, str]:
    """The process groups Tooldeck recorded as running: pgid -> server name."""
    folder = data_dir / "processes"
    if not folder.is_dir():
        return {}
    groups = {}
    for path in folder.glob("*.json"):
        entry = json.loads(path.read_text())
        groups[int(path.stem)] = entry["server"]
        _markers_seen.setdefault(data_dir, set()).add(entry["marker"])
    return groups


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != "zombie":
                members.append(process.pid)
        except (OSError, psutil.Error):
            continue
    return members


def ours(data_dir: Path) -> list[psutil.Process]:
    """Every live process whose environment names this data dir (Tooldeck itself), or carries
    the instance marker of a server `recorded_groups` saw there (the server and its children)."""
    markers = _markers_seen.get(data_dir, set())
    found = []
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] == "zombie" or process.pid == os.getpid():
                continue
            environ = process.environ()
            if (
                environ.get("TOOLDECK_HOME") == str(data_dir)
                or environ.get(INSTANCE_ENV) in markers
            ):
                found.append(process)
        except psutil.Error:
            continue
    return found


def spawn(data_dir: Path, *args: str, **extra: str) -> subprocess.Popen[bytes]:
    """`tooldeck ARGS` on `data_dir`, with pipes for stdin and stdout (an MCP client's view)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        cwd=REPO_ROOT,
        env=daemon_env(data_dir, **extra),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


class Dashboard:
    """`tooldeck` (the dashboard) in a pseudo-terminal of 100x30, its output drained."""

    def __init__(self, data_dir: Path, **extra: str) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        env = daemon_env(data_dir, TERM="xterm-256color", COLUMNS="100", LINES="30", **extra)
        pid, self.fd = pty.fork()
        if pid == 0:  # the child: becomes the dashboard
            os.chdir(REPO_ROOT)
            os.execve(sys.executable, [sys.executable, "-m", "app"], env)
        self.pid = pid
        self.status: int | None = None
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                if not os.read(self.fd, 65536):
                    return
            except OSError:
                return

    def hang_up(self) -> None:
        """The terminal goes away, as when an SSH session drops: the kernel sends SIGHUP."""
        os.close(self.fd)

    def exited(self) -> bool:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status is not None

    def wait(self, timeout_s: float = 30.0) -> int:
        wait_for(self.exited, timeout_s)
        assert self.status is not None
        return self.status

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def kill(self) -> None:
        if not self.exited():
            os.kill(self.pid, 9)
            self.wait()
