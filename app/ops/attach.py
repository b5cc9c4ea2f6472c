"""Which facade a CLI verb or the dashboard gets: the supervising process's, or one in this one.

When the data dir's lock names a live supervisor (the daemon, a dashboard, `gateway --stdio`),
the operations go to it: over the unix socket every supervisor serves them on, or over the
daemon's HTTP API when the socket is not ours to use. So servers are never run twice, a runtime
verb works whichever face supervises, and a write is seen at once by the supervisor's change
bus. Otherwise they run in-process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx2

from app.core.errors import Unauthorized, Unavailable
from app.core.settings import Settings
from app.ops.bootstrap import open_operations, relayed_changes, running_core
from app.ops.facade import LocalOperations
from app.ops.protocol import Operations
from app.ops.remote import RemoteOperations
from app.runtime.api_token import read_token, token_path
from app.runtime.lock import (
    HOLDER_NAMES,
    AlreadyRunning,
    HolderKind,
    LockInfo,
    SupervisorLock,
    read_lock,
)

logger = logging.getLogger(__name__)
# A daemon publishes its address a moment after it takes the lock (once its port is bound and
# its servers are starting); a verb issued in that moment waits instead of failing.
ADDRESS_WAIT_S = 10.0
# The holders that serve their operations once they run (a one-shot CLI serves none).
SERVING_HOLDERS = ("daemon", "dashboard", "gateway")
# How a supervising face serves its operations while its core runs (app.faces.http.ops_socket).
OperationsServer = Callable[[LocalOperations, SupervisorLock], AbstractAsyncContextManager[Path]]


async def running_daemon(settings: Settings) -> LockInfo | None:
    """The live daemon of this data dir with its address, or None when there is none."""
    info = read_lock(settings.data_dir)
    deadline = time.monotonic() + ADDRESS_WAIT_S
    while info is not None and info.kind == "daemon" and info.url is None:
        if time.monotonic() > deadline:
            raise Unavailable(f"the daemon (pid {info.pid}) is starting but has no address yet")
        await asyncio.sleep(0.1)
        info = read_lock(settings.data_dir)
    if info is None or info.kind != "daemon":
        return None
    return info


async def running_supervisor(settings: Settings) -> LockInfo | None:
    """The live supervisor of this data dir that serves its operations, or None.

    One that took the lock a moment ago is given that moment to publish where; one that has run
    for longer without a socket (an older version, a test's dashboard) never will.
    """
    info = read_lock(settings.data_dir)
    while info is not None and info.kind in SERVING_HOLDERS and not (info.socket or info.url):
        if info.uptime_s > ADDRESS_WAIT_S:
            return None
        await asyncio.sleep(0.05)
        info = read_lock(settings.data_dir)
    if info is None or not (info.socket or info.url):
        return None
    return info


def _usable_socket(info: LockInfo) -> str | None:
    # Another user's supervisor (a systemd daemon) has a socket we may not connect to: its
    # HTTP API, with its token, is the way in then.
    if info.socket and os.access(info.socket, os.R_OK | os.W_OK):
        return info.socket
    return None


def remote_operations(settings: Settings, info: LockInfo) -> RemoteOperations:
    socket = _usable_socket(info)
    if socket is not None:
        transport = httpx2.AsyncHTTPTransport(uds=socket)
        # "localhost": the API's Host check takes a loopback name; the socket is the address.
        return RemoteOperations("http://localhost", None, settings=settings, transport=transport)
    if info.url is None:
        raise Unavailable(
            f"cannot use {info.socket}, where {HOLDER_NAMES.get(info.kind, 'a Tooldeck process')}"
            f" (pid {info.pid}) serves its operations: run this as its user"
        )
    try:
        token = read_token(settings.data_dir)
    except PermissionError:
        # The daemon runs as another user (systemd): its token is not ours to read.
        raise Unauthorized(
            f"cannot read {token_path(settings.data_dir)}: run this as the daemon's user"
        ) from None
    return RemoteOperations(info.url, token, settings=settings)


async def check_daemon(info: LockInfo) -> None:
    """Raise Unavailable unless the daemon `info` names answers its liveness check."""
    async with RemoteOperations(info.url or "", None) as remote:
        await remote.request("GET", "/healthz")


@asynccontextmanager
async def open_facade(
    settings: Settings,
    *,
    with_runtime: bool = False,
    holder: HolderKind = "dashboard",
    serve: OperationsServer | None = None,
) -> AsyncIterator[Operations]:
    """The supervising process's operations when one runs, else this process's own.

    `with_runtime` asks for a supervisor in this process when there is none (the dashboard
    wants one; most CLI verbs do not, and answer NotRunning for runtime operations instead).
    A `cli` holder is a one-shot: it starts no server up front, only what its verb touches.
    `serve` serves this process's operations to other CLIs while it supervises.
    """
    info = await running_supervisor(settings)
    if info is not None:
        async with remote_operations(settings, info) as remote:
            yield remote
        return
    if with_runtime:
        async with supervising(settings, holder, serve=serve) as ops:
            yield ops
        return
    async with stored_facade(settings) as ops:
        yield ops


@asynccontextmanager
async def supervising(
    settings: Settings,
    holder: HolderKind,
    *,
    serve: OperationsServer | None = None,
    autostart: bool | None = None,
) -> AsyncIterator[LocalOperations]:
    """This process becomes the data dir's supervisor: it holds the lock (so that a daemon or
    another dashboard started now refuses instead of running every server twice), runs the core
    and, with `serve`, serves its operations to other CLIs until the context closes.

    The auto-start servers start unless `autostart` is False; by default a one-shot CLI run
    starts only what its verb touches."""
    lock = SupervisorLock(settings.data_dir, holder)
    lock.acquire()
    try:
        async with (
            running_core(
                settings, autostart=holder != "cli" if autostart is None else autostart
            ) as ops,
            AsyncExitStack() as stack,
        ):
            if serve is not None:
                await stack.enter_async_context(serve(ops, lock))
            yield ops
    finally:
        lock.release()


@asynccontextmanager
async def dashboard_facade(
    settings: Settings, *, read_only: bool = False, serve: OperationsServer | None = None
) -> AsyncIterator[Operations]:
    """The supervising process's facade if there is one, else a supervisor in this process.

    `make run` therefore opens with the built-in servers running. When another process took
    the lock a moment ago and serves nothing yet, this one still opens, without a runtime.
    A read-only dashboard never supervises: it watches the supervising process, or the stored
    state, and starts nothing.
    """
    if read_only:
        async with open_facade(settings, with_runtime=False) as ops:
            yield ops
        return
    async with AsyncExitStack() as stack:
        try:
            ops = await stack.enter_async_context(
                open_facade(settings, with_runtime=True, serve=serve)
            )
        except AlreadyRunning as exc:
            logger.warning("%s: opening without a supervisor", exc)
            ops = await stack.enter_async_context(open_facade(settings, with_runtime=False))
        yield ops


@asynccontextmanager
async def stored_facade(settings: Settings) -> AsyncIterator[LocalOperations]:
    """This process's facade without a supervisor, never a daemon's: everything but the
    runtime operations (start, stop, health, calls) works."""
    ops = await open_operations(settings)
    try:
        async with relayed_changes(ops):
            yield ops
    finally:
        await ops.db.dispose()
