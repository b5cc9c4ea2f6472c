"""The gateway's router on a running core: what the daemon and `gateway --stdio` open."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from app.faces.gateway.router import Router
from app.ops.gateway_port import GatewayPort
from app.runtime.socket_paths import socket_path as socket_path_of

SOCKET_NAME = "gateway.sock"
GIL_SWITCH_INTERVAL_S = 0.0005


def socket_path(data_dir: Path) -> Path:
    """Where the daemon serves bridges (the lock file names it)."""
    return socket_path_of(data_dir, SOCKET_NAME)


@asynccontextmanager
async def running_router(ops: Any) -> AsyncIterator[Router]:
    """A router over `ops` (a LocalOperations with a supervisor), attached to its connections."""
    port = GatewayPort(ops)
    await port.start()
    router = Router(port)
    router.attach()
    # The clients screen's view of this gateway (a facade made for tests may have none).
    sessions = getattr(ops, "gateway_sessions", None)
    unregister = sessions.register(router.describe_sessions) if sessions is not None else None
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
        if unregister is not None:
            unregister()
        router.close()
        port.close()
