"""The operations of a supervising process, served to its own CLI on a unix socket.

Whichever face supervises a data dir (the daemon, the dashboard, `gateway --stdio`) runs the one
supervisor of that data dir. A CLI verb started beside it must act through that process, or a
server start would fail ("no supervisor") and a write would go unseen by its change bus. So every
supervising process serves the same API as the daemon (app.faces.http.api) on
`<data dir>/ops.sock` and names the socket in the data dir's lock file; `app.ops.attach` finds it
there and talks to it with `RemoteOperations`.

No token: the socket is the owner's alone (mode 0600, bound under a private name and only then
moved into place), which is what reading the token file would prove. A data dir whose path is
too long for a socket gets its socket in a private directory under the system's temp dir.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from app.ops.protocol import Operations
from app.runtime.lock import SupervisorLock
from app.runtime.socket_paths import socket_path

log = logging.getLogger(__name__)

OPS_SOCKET_NAME = "ops.sock"
# Requests in flight when the process stops get this long (a tool call may be among them).
DRAIN_S = 3


def ops_socket_path(data_dir: Path) -> Path:
    """Where the operations of `data_dir`'s supervisor are served."""
    return socket_path(data_dir, OPS_SOCKET_NAME)


@contextmanager
def _listening(path: Path) -> Iterator[socket.socket]:
    """A unix socket listening at `path`, private from its first moment; removed on exit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(staging))
        os.chmod(staging, 0o600)
        # The lock is ours, so a socket file left at `path` is a dead holder's: replace it.
        os.replace(staging, path)
        sock.listen(64)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        staging.unlink(missing_ok=True)
        raise
    try:
        yield sock
    finally:
        sock.close()
        path.unlink(missing_ok=True)


@asynccontextmanager
async def serve_operations(ops: Operations, lock: SupervisorLock) -> AsyncIterator[Path]:
    """Serve `ops` on the data dir's operations socket while the context is open, and name the
    socket in `lock` (the caller holds it) once it answers."""
    # Imported here: only a supervising process pays for the web server.
    import uvicorn

    from app.faces.http.api import create_app

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            # The process that supervises owns its signals (the dashboard's terminal, the
            # daemon's SIGTERM handling); this server only stops when told.
            yield

    path = ops_socket_path(lock.data_dir)
    with _listening(path) as sock:
        config = uvicorn.Config(
            create_app(ops, tokens=None, hosts=None),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=DRAIN_S,
            server_header=False,
        )
        server = Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]), name="ops-socket")
        try:
            while not server.started:
                if serving.done():
                    serving.result()  # raises what stopped it
                    raise RuntimeError("the operations socket stopped before it started")
                await asyncio.sleep(0.01)
            lock.publish(socket=str(path))
            log.debug("serving the operations on %s", path)
            yield path
        finally:
            lock.withdraw_socket()
            server.should_exit = True
            # Its own failure is logged by uvicorn; the caller's exception, if any, goes on.
            await asyncio.gather(serving, return_exceptions=True)
