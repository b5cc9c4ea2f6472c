"""The MCP gateway with a real SDK client: over streamable HTTP (served from this process on
127.0.0.1) and over stdio (`tooldeck gateway --stdio` as a subprocess)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
import uvicorn
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from sqlalchemy import select

from app.core.settings import Settings
from app.faces.gateway.server import Gateway, public_name, resource_uri, split_resource_uri
from app.ops.bootstrap import running_core
from app.ops.facade import LocalOperations
from storage.models import ToolUsage
from tests.conftest import PYTHON, TEST_SERVERS
from tests.runtime_helpers import eventually, free_port

CLIENT = types.Implementation(name="gateway-test-client", version="1.0")
LIBRARY = {"name": "library", "command": PYTHON, "args": [str(TEST_SERVERS / "library.py")]}


class ListChanged:
    """Counts the gateway's tools/list_changed notices."""

    def __init__(self) -> None:
        self.seen = asyncio.Event()
        self.count = 0

    async def __call__(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.count += 1
            self.seen.set()


async def all_tools(session: ClientSession) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor: str | None = None
    while True:
        page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor))
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return tools


@asynccontextmanager
async def served(gateway: Gateway) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(gateway.http_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: asyncio.sleep(0, server.started))
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def http_client(url: str, notices: ListChanged) -> AsyncIterator[ClientSession]:
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx2.AsyncClient())
        read, write = await stack.enter_async_context(streamable_http_client(url, http_client=http))
        session = await stack.enter_async_context(
            ClientSession(read, write, message_handler=notices, client_info=CLIENT)
        )
        await session.initialize()
        yield session


@pytest.fixture
async def core(settings: Settings) -> AsyncIterator[LocalOperations]:
    async with running_core(settings) as ops:
        await ops.create_server({**LIBRARY, "call_timeout_s": 1.0}, actor="test")

        async def both_listed() -> bool:
            tools = await ops.list_gateway_tools()
            return {t.server_name for t in tools if t.is_available} == {"calculator", "library"}

        await eventually(both_listed, within=30)
        yield ops


async def test_gateway_over_http(core: LocalOperations) -> None:
    gateway = Gateway(core, page_size=4)
    notices = ListChanged()
    try:
        async with served(gateway) as url, http_client(url, notices) as session:
            tools = {tool.name: tool for tool in await all_tools(session)}
            # Paginated (4 per page) and namespaced; the same tool name on two servers.
            assert {"calculator__add", "library__add", "library__lookup"} <= set(tools)
            assert len(tools) == 10
            lookup = tools["library__lookup"]
            assert lookup.output_schema and "title" in lookup.output_schema["properties"]
            assert lookup.annotations and lookup.annotations.read_only_hint is True

            added = await session.call_tool("calculator__add", {"a": 2, "b": 3})
            assert (added.is_error, added.structured_content) == (False, {"result": 5})
            other = await session.call_tool("library__add", {"a": 2, "b": 3})
            assert other.structured_content == {"result": 1005}

            # A tool's error result passes through as an error result.
            by_zero = await session.call_tool("calculator__divide", {"a": 1, "b": 0})
            assert by_zero.is_error and "division by zero" in by_zero.content[0].text
            # Bad arguments are refused before they reach the server, naming the field.
            bad = await session.call_tool("calculator__add", {"a": "two"})
            assert bad.is_error and "a" in bad.content[0].text
            # The server's call timeout (1 s) applies.
            slow = await session.call_tool("library__slow", {"seconds": 5})
            assert slow.is_error and "timed out" in slow.content[0].text
            # An unknown tool is a JSON-RPC error.
            with pytest.raises(MCPError):
                await session.call_tool("nobody__nothing", {})

            # A person disables a tool: clients hear of it and the tool leaves the listing.
            await core.set_tool_enabled("add", False, actor="test", server_ref="calculator")
            await asyncio.wait_for(notices.seen.wait(), 5)
            assert "calculator__add" not in {t.name for t in await all_tools(session)}
            with pytest.raises(MCPError):
                await session.call_tool("calculator__add", {"a": 1, "b": 1})

            # A server going down: its tools stay listed (a call would start it on demand)
            # unless they bypass, in which case they leave the listing.
            notices.seen.clear()
            await core.set_tool_bypass("lookup", True, actor="test", server_ref="library")
            await core.stop_server("library", actor="test")
            await asyncio.wait_for(notices.seen.wait(), 5)
            names = {t.name for t in await all_tools(session)}
            assert "library__lookup" not in names and "library__add" in names

            # Resources and prompts of the running servers, namespaced.
            await core.start_server("library", actor="test")
            resources = (await session.list_resources()).resources
            catalog = next(r for r in resources if r.name == "library__catalog")
            assert str(catalog.uri) == resource_uri("library", "library://catalog")
            read = await session.read_resource(str(catalog.uri))
            assert "Dune" in read.contents[0].text
            prompts = {p.name for p in (await session.list_prompts()).prompts}
            assert "library__review" in prompts
            prompt = await session.get_prompt("library__review", {"title": "Dune"})
            assert "Dune" in prompt.messages[0].content.text
    finally:
        gateway.close()

    # Every call through the gateway was metered with the client's name.
    await core.recorder.flush()  # type: ignore[union-attr]
    async with core.db.session() as db_session:
        rows = (await db_session.execute(select(ToolUsage))).scalars().all()
    gateway_rows = [row for row in rows if row.source == "gateway"]
    assert len(gateway_rows) >= 5
    assert {row.client_name for row in gateway_rows} == {"gateway-test-client"}
    assert any(not row.success for row in gateway_rows)
    # ...and timed for the Prometheus histograms.
    timed = {(t.server_name, t.tool_name): t.count for t in core.call_latency.snapshot()}
    assert timed[("library", "add")] == 1 and timed[("calculator", "divide")] == 1


def tooldeck(home: Path, *args: str) -> None:
    env = {**os.environ, "TOOLDECK_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "app", *args], env=env, check=True, capture_output=True)


async def test_gateway_over_stdio(tmp_path: Path) -> None:
    home = tmp_path / "stdio-home"
    tooldeck(home, "server", "add", "library", "--command", PYTHON, "--arg", LIBRARY["args"][0])
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "app", "gateway", "--stdio"],
        env={"TOOLDECK_HOME": str(home), "MCP_SERVERS": "calculator"},
    )
    with (tmp_path / "gateway.err").open("w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, client_info=CLIENT) as session,
        ):
            await session.initialize()
            names = {tool.name for tool in await all_tools(session)}
            assert {"calculator__add", "library__add"} <= names
            result = await session.call_tool("calculator__add", {"a": 2, "b": 3})
            assert result.structured_content == {"result": 5}
            error = await session.call_tool("calculator__sqrt", {"x": -1})
            assert error.is_error

    # The gateway flushed its usage on exit: the calls are there, with the client's name.
    def gateway_calls() -> int:
        with sqlite3.connect(home / "tooldeck.db") as conn:
            query = "select count(*) from tool_usage where source = 'gateway' and client_name = ?"
            return int(conn.execute(query, (CLIENT.name,)).fetchone()[0])

    assert await asyncio.to_thread(gateway_calls) == 2


@pytest.mark.parametrize(
    ("server", "tool", "expected"),
    [
        ("calc", "add", "calc__add"),
        ("calc", "a/b c", "calc__a_b_c"),
        ("s", "x" * 200, None),
    ],
)
def test_public_names_stay_within_the_protocol(
    server: str, tool: str, expected: str | None
) -> None:
    name = public_name(server, tool, "__", set())
    assert len(name) <= 128
    if expected:
        assert name == expected
    # Taken names get a distinct suffix.
    assert public_name(server, tool, "__", {name}) != name


def test_resource_uris_round_trip() -> None:
    uri = resource_uri("files", "file:///tmp/a b.txt")
    assert split_resource_uri(uri) == ("files", "file:///tmp/a b.txt")
    assert split_resource_uri("file:///x") is None
