"""A real `tooldeck --headless` in a subprocess, on a free port of 127.0.0.1, for the HTTP tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from app.runtime.api_token import read_token
from app.runtime.lock import read_lock

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0


def daemon_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The test's environment minus any Tooldeck settings from the shell, plus these."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TOOLDECK_", "TOOL_SERVER_", "MCP_")) and key != "BRAVE_API_KEY"
    }
    env.update(
        TOOLDECK_HOME=str(data_dir),
        # Only the calculator: the npx-based built-ins would reach the npm registry.
        MCP_SERVERS="calculator",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def tooldeck_on(data_dir: Path, *args: str, umask: int = -1) -> subprocess.CompletedProcess[str]:
    """`tooldeck ARGS` on `data_dir` with no Tooldeck settings from the shell (`umask` -1:
    the test's own)."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        env=daemon_env(data_dir),
        cwd=REPO_ROOT,
        timeout=60,
        umask=umask,
    )


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    data_dir: Path
    url: str
    token: str | None
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, **kwargs: Any) -> httpx2.Client:
        return httpx2.Client(
            base_url=self.url, headers=self.headers(), trust_env=False, timeout=30, **kwargs
        )

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.stderr().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
        return lines

    def stop(self, signum: int = signal.SIGTERM, timeout_s: float = 15.0) -> int:
        """Signal the daemon and wait for it; kills it (and fails) if it overstays."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"the daemon took over {timeout_s}s to stop:\n{self.stderr()}"
            ) from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def launch(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start `tooldeck --headless ARGS` on `data_dir`; its stderr goes to the returned file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = data_dir.parent / f"daemon-{time.monotonic_ns()}.stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "--headless", *args],
            cwd=REPO_ROOT,
            env=env or daemon_env(data_dir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    return process, stderr_path


def start_daemon(
    data_dir: Path, *args: str, env: dict[str, str] | None = None, port: str = "0"
) -> Daemon:
    """Start a daemon and return once it answers; fails with its stderr if it does not."""
    process, stderr_path = launch(data_dir, "--port", port, *args, env=env)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"the daemon exited with {process.returncode}:\n{stderr_path.read_text()}"
            )
        info = read_lock(data_dir)
        if info is not None and info.pid == process.pid and info.url:
            try:
                answer = httpx2.get(f"{info.url}/healthz", timeout=2, trust_env=False)
            except httpx2.TransportError:
                answer = None
            if answer is not None and answer.status_code == 200:
                return Daemon(process, data_dir, info.url, read_token(data_dir), stderr_path)
        time.sleep(0.05)
    process.kill()
    raise AssertionError(
        f"the daemon did not answer in {START_TIMEOUT_S}s:\n{stderr_path.read_text()}"
    )


def wait_for(predicate: Any, timeout_s: float = 20.0, interval_s: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {predicate}")
        time.sleep(interval_s)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
