"""The gateway's router on a running core: what the daemon and `gateway --stdio` open."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from app.faces.gateway.router import Router
from app.ops.gateway_port import GatewayPort

SOCKET_NAME = "gateway.sock"
# sun_path holds 108 bytes on Linux (104 on macOS), the terminating NUL included.
MAX_SOCKET_PATH = 100
GIL_SWITCH_INTERVAL_S = 0.0005


def socket_path(data_dir: Path) -> Path:
    """Where the daemon serves bridges: in the data dir, or, when that path is too long for a
    socket, in a private directory under the system's temp dir (the lock file names it)."""
    preferred = data_dir / SOCKET_NAME
    if len(os.fsencode(preferred)) <= MAX_SOCKET_PATH:
        return preferred
    directory = Path(tempfile.gettempdir()) / f"tooldeck-{os.getuid()}"
    with suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        # Someone else's, or open to others: a socket there could be swapped for theirs.
        raise PermissionError(f"{directory} is not a private directory of this user")
    digest = hashlib.sha256(os.fsencode(data_dir.resolve())).hexdigest()[:16]
    return directory / f"{digest}-{SOCKET_NAME}"


@asynccontextmanager
async def running_router(ops: Any) -> AsyncIterator[Router]:
    """A router over `ops` (a LocalOperations with a supervisor), attached to its connections."""
    port = GatewayPort(ops)
    await port.start()
    router = Router(port)
    router.attach()
    # The usage writer's thread runs Python (batched SQL and rollups). With the default 5 ms
    # switch interval, each time the event loop waits (epoll, a send) that thread can keep the
    # GIL for up to 5 ms before the loop gets it back, a delay that falls on calls in flight.
    # A short interval lets the loop back in within half a millisecond.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(min(switch_interval, GIL_SWITCH_INTERVAL_S))
    try:
        yield router
    finally:
        sys.setswitchinterval(switch_interval)
        router.close()
        port.close()
