"""Server faults the rest of the suite does not cover (crashes, hangs of the event loop, a
missing command, garbage on stdout and slow starts are in tests/test_supervisor.py): a server
stopped by SIGSTOP, and a remote server that is down or answers 500s. Real processes, real
sockets; each outcome is the one the README's fault table documents."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.core.errors import StartFailed
from app.ops.facade import LocalOperations
from app.runtime.supervisor import Supervisor
from tests.conftest import PYTHON, TEST_SERVERS
from tests.runtime_helpers import alive, eventually, free_port
from tests.test_supervisor import runtime

__all__ = ["runtime"]  # the fixture: a supervisor after which no process is left

BARE = str(TEST_SERVERS / "bare.py")


async def test_a_server_stopped_by_sigstop_is_found_out_and_replaced(
    ops: LocalOperations, runtime: Supervisor
) -> None:
    """A stopped process holds its pipes open and never answers: only the probe finds it. It is
    killed (SIGKILL reaches a stopped process) and a new one started; nothing waits on it."""
    ops.settings.health_check_timeout_s = 0.5
    await ops.create_server({"name": "statue", "command": PYTHON, "args": [BARE]}, actor="t")
    await ops.start_server("statue", actor="test")
    frozen = (await ops.runtime_info("statue")).pid
    assert frozen is not None
    os.kill(frozen, signal.SIGSTOP)
    health = await ops.check_health("statue")
    assert not health.is_responsive
    assert health.error_message == "health check timed out after 0.5 s"
    # The list stays answerable while it is stopped.
    assert [server.name for server in await ops.list_servers()] == ["statue"]

    async def replaced() -> bool:
        info = await ops.runtime_info("statue")
        return info.status == "running" and info.pid not in (None, frozen)

    await eventually(replaced, within=20)
    assert not alive(frozen)
    answer = await ops.call_tool("statue", "whoami", {}, source="cli")
    assert answer.content[0]["text"] != str(frozen)


async def test_a_remote_server_that_is_down_fails_its_start_clearly(
    ops: LocalOperations, runtime: Supervisor
) -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens there
    spec = {"name": "absent", "transport": "streamable_http", "url": url, "max_failures": 1}
    await ops.create_server(spec, actor="test")
    with pytest.raises(StartFailed) as failed:
        await ops.start_server("absent", actor="test")
    assert "connect" in str(failed.value).lower()
    server = await ops.get_server("absent")
    assert server.status == "error" and server.last_startup_error


class _Failing(BaseHTTPRequestHandler):
    def _fail(self) -> None:
        body = b"upstream exploded"
        self.send_response(500)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _fail

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def failing_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/mcp"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_remote_server_answering_500s_fails_its_start_clearly(
    ops: LocalOperations, runtime: Supervisor, failing_url: str
) -> None:
    spec = {"name": "broken", "transport": "streamable_http", "url": failing_url}
    await ops.create_server({**spec, "max_failures": 1, "startup_timeout_s": 10}, actor="test")
    async with asyncio.timeout(30):  # a clear failure, not the startup timeout
        with pytest.raises(StartFailed) as failed:
            await ops.start_server("broken", actor="test")
    # The SDK's transport does not pass the status on: the message says "an error response".
    assert "initialize failed: Server returned an error response" in str(failed.value)
    assert (await ops.get_server("broken")).status == "error"
