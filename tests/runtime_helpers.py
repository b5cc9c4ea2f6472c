"""Helpers for tests that run real servers under the supervisor: polling, pids, ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import psutil

from app.ops.facade import LocalOperations
from app.runtime.supervisor import Supervisor
from storage.models import ServerEvent
from tests.conftest import PYTHON, TEST_SERVERS
from tests.pg_server import server_pids

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], *, within: float = 15.0, every: float = 0.05
) -> T:
    """Poll until `probe` returns something truthy; its last value, or AssertionError."""
    deadline = time.monotonic() + within
    value = await probe()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {within} s")
        await asyncio.sleep(every)
        value = await probe()
    return value


async def status_is(ops: LocalOperations, name: str, *statuses: str) -> bool:
    return (await ops.get_server(name)).status in statuses


async def event_kinds(ops: LocalOperations, name: str) -> list[str]:
    """The server's event kinds, oldest first."""
    return [event.kind for event in reversed(await ops.list_events(name, limit=1000))]


async def events_of(ops: LocalOperations, name: str, kind: str) -> list[ServerEvent]:
    return list(reversed(await ops.list_events(name, kind=kind, limit=1000)))  # type: ignore[arg-type]


def alive(pid: int) -> bool:
    """Running and not a zombie waiting to be reaped."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def gone(*pids: int, within: float = 10.0) -> bool:
    async def check() -> bool:
        return not any(alive(pid) for pid in pids)

    return await eventually(check, within=within)


def read_pids(path: Path) -> list[int]:
    return [int(part) for part in path.read_text().split()]


async def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fast_supervisor(ops: LocalOperations, **overrides: float) -> Supervisor:
    """A supervisor with test-sized backoff and stability windows, wired into `ops`."""
    options = {
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        "stable_after_s": 0.5,
        "stop_timeout_s": 8.0,
        **overrides,
    }
    supervisor = Supervisor(ops.db, ops.settings, changes=ops.changes, **options)
    ops.runtime = supervisor
    return supervisor


def scripted(name: str, *flags: str, **fields: object) -> dict[str, object]:
    return {
        "name": name,
        "command": PYTHON,
        "args": [str(TEST_SERVERS / "scripted.py"), *flags],
        **fields,
    }


def descendants() -> list[int]:
    """This process's descendants, except the test session's PostgreSQL server and its own
    processes, which outlive every test on purpose."""
    children = psutil.Process(os.getpid()).children(recursive=True)
    session_servers = set(server_pids())
    for child in children:
        if child.pid in session_servers:
            with contextlib.suppress(psutil.NoSuchProcess):
                session_servers.update(grandchild.pid for grandchild in child.children(True))
    return [child.pid for child in children if child.pid not in session_servers]
