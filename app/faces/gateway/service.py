"""The gateway's router on a running core: what the daemon and `gateway --stdio` open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from app.faces.gateway.router import Router
from app.ops.gateway_port import GatewayPort
from app.runtime.socket_paths import socket_path as socket_path_of

SOCKET_NAME = "gateway.sock"


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
    try:
        yield router
    finally:
        router.close()
        port.close()
