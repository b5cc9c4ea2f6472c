"""Which facade a CLI verb or the dashboard gets: the running daemon's, or one in this process.

When the data dir's lock names a live daemon, the operations go to it over HTTP, so servers are
never run twice and what one face changes the others see. Otherwise they run in-process, as
before there was a daemon.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from app.core.errors import Unauthorized, Unavailable
from app.core.settings import Settings
from app.ops.bootstrap import open_operations, running_core
from app.ops.facade import LocalOperations
from app.ops.protocol import Operations
from app.ops.remote import RemoteOperations
from app.runtime.api_token import read_token, token_path
from app.runtime.lock import AlreadyRunning, HolderKind, LockInfo, SupervisorLock, read_lock

logger = logging.getLogger(__name__)
# A daemon publishes its address a moment after it takes the lock (once its port is bound and
# its servers are starting); a verb issued in that moment waits instead of failing.
ADDRESS_WAIT_S = 10.0


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


def remote_operations(settings: Settings, info: LockInfo) -> RemoteOperations:
    assert info.url is not None
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
    settings: Settings, *, with_runtime: bool = False, holder: HolderKind = "dashboard"
) -> AsyncIterator[Operations]:
    """The daemon's operations when one runs, else this process's own.

    `with_runtime` asks for a supervisor in this process when there is no daemon (the dashboard
    wants one; most CLI verbs do not, and answer NotRunning for runtime operations instead).
    A `cli` holder is a one-shot: it starts no server up front, only what its verb touches.
    """
    info = await running_daemon(settings)
    if info is not None:
        async with remote_operations(settings, info) as remote:
            yield remote
        return
    if with_runtime:
        # This process becomes the data dir's supervisor: hold the lock so that a daemon (or
        # another dashboard) started now refuses instead of running every server twice.
        lock = SupervisorLock(settings.data_dir, holder)
        lock.acquire()
        try:
            async with running_core(settings, autostart=holder != "cli") as ops:
                yield ops
        finally:
            lock.release()
        return
    async with stored_facade(settings) as ops:
        yield ops


@asynccontextmanager
async def dashboard_facade(
    settings: Settings, *, read_only: bool = False
) -> AsyncIterator[Operations]:
    """The running daemon's facade if there is one, else a supervisor in this process.

    `make run` therefore opens with the built-in servers running. When another dashboard
    already supervises this data dir, this one still opens, without a runtime of its own.
    A read-only dashboard never supervises: it watches the daemon, or the stored state, and
    starts nothing.
    """
    if read_only:
        async with open_facade(settings, with_runtime=False) as ops:
            yield ops
        return
    async with AsyncExitStack() as stack:
        try:
            ops = await stack.enter_async_context(open_facade(settings, with_runtime=True))
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
        yield ops
    finally:
        await ops.db.dispose()
