"""Connections and server logs: start errors a person can act on, SSE, rotation, tails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.core.schemas import ToolServerCreate
from app.runtime.connections import ConnectionSpec, StartError, open_connection
from app.runtime.probe import probe
from app.runtime.serverlog import LogWriter, ServerLog, read_log_tail
from tests.conftest import PYTHON, TEST_SERVERS
from tests.runtime_helpers import descendants, eventually, free_port, listening


async def start_error(spec: ConnectionSpec, within_s: float = 5) -> str:
    with pytest.raises(StartError) as caught:
        async with open_connection(spec, startup_timeout=within_s):
            pass
    return caught.value.message


async def test_start_errors_name_the_cause(tmp_path: Path) -> None:
    not_executable = tmp_path / "server.sh"
    not_executable.write_text("#!/bin/sh\n")
    not_executable.chmod(0o644)
    assert await start_error(ConnectionSpec("x", command="npx-not-here")) == (
        "command not found: npx-not-here"
    )
    assert await start_error(ConnectionSpec("x", command=PYTHON, cwd="/no/such/dir")) == (
        "working directory not found: /no/such/dir"
    )
    assert await start_error(ConnectionSpec("x", command=str(not_executable))) == (
        f"permission denied running {not_executable}"
    )
    port = free_port()  # nothing listens there
    message = await start_error(
        ConnectionSpec("x", transport="streamable_http", url=f"http://127.0.0.1:{port}/mcp")
    )
    assert message.startswith(f"cannot connect to http://127.0.0.1:{port}/mcp")


@pytest.fixture
async def sse_server() -> AsyncIterator[str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        PYTHON,
        str(TEST_SERVERS / "scripted.py"),
        "--sse",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )

    try:
        await eventually(lambda: listening(port), within=15)
        yield f"http://127.0.0.1:{port}/sse"
    finally:
        process.kill()
        await process.wait()


async def test_probe_over_sse(sse_server: str) -> None:
    report = await probe(
        ToolServerCreate(name="legacy", transport="sse", url=sse_server),
        startup_timeout=10,
        call_timeout=5,
    )
    assert report.ok, report.error
    assert report.server_name == "scripted"
    assert "echo" in [tool.name for tool in report.tools]


def test_server_log_keeps_lines_and_cuts_runaway_ones() -> None:
    log = ServerLog(lines=3)
    log.feed(b"one\ntw")
    log.feed(b"o\r\nthree\n")
    assert log.tail(10) == ["one", "two", "three"]
    log.feed(b"x" * 5000)
    assert log.tail(1)[0].endswith(" [cut]") and len(log.tail(1)[0]) < 2100
    log.feed(b"partial")
    log.finish()
    assert log.tail(1) == ["partial"]
    log.note("started")
    assert log.recent(5) == "x" * 2000 + " [cut] | partial"  # three lines kept, note too


def test_log_files_rotate_at_their_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "busy.log"
    writer = LogWriter(max_bytes=4096, backups=2)
    line = "y" * 99 + "\n"
    for _ in range(130):  # 13,000 bytes: three rotations
        writer.write(path, line)
    writer.close()
    sizes = {p.name: p.stat().st_size for p in path.parent.iterdir()}
    assert set(sizes) == {"busy.log", "busy.log.1", "busy.log.2"}
    assert all(size <= 4096 for size in sizes.values())
    assert read_log_tail(path, 2) == ["y" * 99, "y" * 99]
    assert read_log_tail(tmp_path / "absent.log", 5) == []
    assert descendants() == []
