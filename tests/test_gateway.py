"""The gateway on our own test servers, with a real SDK client: intent on the call path (disabled,
bypassed, limits, on-demand start), metering, timeouts, the result size cap; over streamable
HTTP served from this process on 127.0.0.1, and over `tooldeck gateway --stdio`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import orjson
import pytest
import uvicorn
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from sqlalchemy import select

from app.core import jsonrpc
from app.core.profiles import Selection
from app.core.settings import Settings
from app.core.tool_names import NameTable, short_hash
from app.faces.gateway import uris
from app.faces.gateway.http_face import AsgiApp, HttpCore
from app.faces.gateway.lean_http import Admit, Refusal, lean_protocol
from app.faces.gateway.router import Router
from app.faces.gateway.service import running_router
from app.ops.bootstrap import running_core
from app.ops.facade import LocalOperations
from storage.models import ToolUsage
from tests.conftest import PYTHON, TEST_SERVERS
from tests.runtime_helpers import eventually, free_port, scripted

CLIENT = types.Implementation(name="gateway-test-client", version="1.0")
LIBRARY = {"name": "library", "command": PYTHON, "args": [str(TEST_SERVERS / "library.py")]}


class ListChanged:
    """Counts the gateway's tools/list_changed notices."""

    def __init__(self) -> None:
        self.seen = asyncio.Event()
        self.count = 0

    async def __call__(self, message: object) -> None:
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


LEAN_MAX_BYTES = 4096


def admit_with_token(
    _method: str, _path: str, _query: bytes, headers: Mapping[bytes, bytes]
) -> Refusal | bool:
    """`right` is admitted, `ask` is left to the ASGI app (which here admits anything)."""
    given = headers.get(b"authorization")
    if given == b"Bearer ask":
        return False
    if given != b"Bearer right":
        return 401, b'{"error": "Unauthorized"}', [(b"www-authenticate", b"Bearer")]
    if int(headers.get(b"content-length", b"0")) > LEAN_MAX_BYTES * 16:
        return too_large()
    return True


def too_large() -> Refusal:
    return 413, b'{"error": "PayloadTooLarge"}', []


@asynccontextmanager
async def served(
    router: Router, *, stateless: bool = False, admit: Admit | None = None
) -> AsyncIterator[str]:
    """The core as the daemon serves it: the lean protocol, with the ASGI app behind it."""
    port = free_port()
    core = HttpCore(router, stateless=stateless)
    lean = lean_protocol(
        core, admit=admit or (lambda *_: True), max_bytes=LEAN_MAX_BYTES * 16,
        too_large=too_large,
    )  # fmt: skip
    server = uvicorn.Server(
        uvicorn.Config(AsgiApp(core), host="127.0.0.1", port=port, log_level="warning", http=lean)
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: asyncio.sleep(0, server.started))
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        core.close()
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
    paged = settings.model_copy(update={"gateway_page_size": 4, "max_result_bytes": 65536})
    async with running_core(paged) as ops:
        await ops.create_server({**LIBRARY, "call_timeout_s": 1.0}, actor="test")
        await ops.create_server(scripted("big", auto_start=False), actor="test")

        async def both_listed() -> bool:
            tools = await ops.list_gateway_tools()
            return {t.server_name for t in tools if t.is_available} == {"calculator", "library"}

        await eventually(both_listed, within=30)
        yield ops


async def test_gateway_over_http(core: LocalOperations) -> None:
    notices = ListChanged()
    async with (
        running_router(core) as router,
        served(router) as url,
        http_client(url, notices) as session,
    ):
        tools = {tool.name: tool for tool in await all_tools(session)}
        # Paginated (4 per page) and named by server; the same tool name on two servers. The
        # stopped `big` server's tools are unknown yet: it never ran.
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
        assert by_zero.is_error and "division by zero" in by_zero.content[0].text  # type: ignore[union-attr]
        # Bad arguments: the server's own answer, naming the field.
        bad = await session.call_tool("calculator__add", {"a": "two"})
        assert bad.is_error and "a" in bad.content[0].text  # type: ignore[union-attr]
        # The server's call timeout (1 s) applies.
        slow = await session.call_tool("library__slow", {"seconds": 5})
        assert slow.is_error and "timed out" in slow.content[0].text  # type: ignore[union-attr]
        # An unknown tool is a JSON-RPC error.
        with pytest.raises(MCPError):
            await session.call_tool("nobody__nothing", {})

        async def listed() -> set[str]:
            return {t.name for t in await all_tools(session)}

        # A person disables a tool: clients hear of it and the tool leaves the listing.
        notices.seen.clear()
        await core.set_tool_enabled("add", False, actor="test", server_ref="calculator")
        await asyncio.wait_for(notices.seen.wait(), 5)
        # (A notice of an earlier change may come first: what counts is the listing.)
        await eventually(lambda: _without(listed(), "calculator__add"))
        with pytest.raises(MCPError, match="disabled"):
            await session.call_tool("calculator__add", {"a": 1, "b": 1})

        # A server going down: its tools stay listed (a call would start it on demand)
        # unless they bypass, in which case they leave the listing.
        notices.seen.clear()
        await core.set_tool_bypass("lookup", True, actor="test", server_ref="library")
        await core.stop_server("library", actor="test")
        await asyncio.wait_for(notices.seen.wait(), 5)
        names = await eventually(lambda: _without(listed(), "library__lookup"))
        assert "library__add" in names
        # ... and a call of a stopped server's tool starts it on demand.
        again = await session.call_tool("library__add", {"a": 1, "b": 1})
        assert again.structured_content == {"result": 1002}
        assert (await core.get_server("library")).status == "running"

        # Resources and prompts of the running servers, named by server.
        resources = (await session.list_resources()).resources
        catalog = next(r for r in resources if r.name == "catalog")
        assert str(catalog.uri) == "tooldeck://library/library://catalog"
        read = await session.read_resource(str(catalog.uri))
        assert "Dune" in read.contents[0].text  # type: ignore[union-attr]
        prompts = {p.name for p in (await session.list_prompts()).prompts}
        assert "library__review" in prompts
        prompt = await session.get_prompt("library__review", {"title": "Dune"})
        assert "Dune" in prompt.messages[0].content.text  # type: ignore[union-attr]

    # Every call through the gateway was metered with the client's name.
    await core.recorder.flush()  # type: ignore[union-attr]
    async with core.db.session() as db_session:
        rows = (await db_session.execute(select(ToolUsage))).scalars().all()
    gateway_rows = [row for row in rows if row.source == "gateway"]
    assert len(gateway_rows) >= 6
    assert {row.client_name for row in gateway_rows} == {"gateway-test-client"}
    assert any(not row.success for row in gateway_rows)
    # ...and timed for the Prometheus histograms.
    timed = {(t.server_name, t.tool_name): t.count for t in core.call_latency.snapshot()}
    assert timed[("library", "add")] == 2 and timed[("calculator", "divide")] == 1


async def _without(names: Awaitable[set[str]], name: str) -> set[str] | None:
    found = await names
    return found if name not in found else None


def http_request(path: str, body: bytes, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "host: 127.0.0.1", "content-type: application/json",
             "accept: application/json, text/event-stream", f"content-length: {len(body)}",
             *headers]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    pairs = (line.split(": ", 1) for line in head[1:] if ": " in line)
    fields = {name.lower(): value for name, value in pairs}
    if status == 100:
        return await read_response(reader)
    return status, fields, await reader.readexactly(int(fields.get("content-length", "0")))


async def test_a_stopped_server_s_tools_are_listed_as_the_server_gave_them(
    core: LocalOperations,
) -> None:
    """Listed from the catalogue while stopped, a tool is what the server listed: its
    annotations as the protocol spells them, its icons and its `_meta`."""
    async with (
        running_router(core) as router,
        served(router) as url,
        http_client(url, ListChanged()) as session,
    ):
        running = {tool.name: dumped(tool) for tool in await all_tools(session)}
        lookup = running["library__lookup"]
        assert lookup["annotations"]["readOnlyHint"] is True
        assert lookup["icons"] and lookup["_meta"] == {"example.library/shelf": "fiction"}
        await core.stop_server("library", actor="test")
        await router.port.reload()
        stopped = {tool.name: dumped(tool) for tool in await all_tools(session)}
        assert stopped == running


def dumped(tool: types.Tool) -> dict[str, Any]:
    return tool.model_dump(mode="json", by_alias=True, exclude_none=True)


async def test_the_lean_http_path_checks_like_the_api_and_hands_on_what_it_does_not_take(
    core: LocalOperations,
) -> None:
    initialize = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "1"}},
    }  # fmt: skip
    body = orjson.dumps(initialize)
    token = "authorization: Bearer right"
    async with running_router(core) as router, served(router, admit=admit_with_token) as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            # The admission check runs before the body is read, and ends the connection.
            writer.write(http_request("/mcp", body))
            status, fields, answer = await read_response(reader)
            assert (status, fields["www-authenticate"]) == (401, "Bearer")
            assert orjson.loads(answer) == {"error": "Unauthorized"}
            assert await reader.read() == b""
        finally:
            writer.close()

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            # Two requests in one write: the second waits for the first answer (through the
            # ASGI app, which handles pipelining), and both are answered in order.
            second = orjson.dumps({**initialize, "id": 2})
            writer.write(http_request("/mcp", body, token) + http_request("/mcp", second, token))
            for expected_id in (1, 2):
                status, fields, answer = await read_response(reader)
                assert status == 200 and fields["content-type"] == "application/json"
                assert orjson.loads(answer)["id"] == expected_id
                assert fields["mcp-session-id"]
            # Expect: 100-continue is left to the ASGI app too; the answer is the same.
            writer.write(http_request("/mcp", body, token, "expect: 100-continue"))
            status, _, answer = await read_response(reader)
            assert status == 200 and orjson.loads(answer)["result"]["serverInfo"]
            # So is a request the admission check cannot decide alone.
            writer.write(http_request("/mcp", body, "authorization: Bearer ask"))
            status, _, answer = await read_response(reader)
            assert status == 200 and orjson.loads(answer)["result"]["serverInfo"]
            # Over the body limit: 413, whether the length is announced or not.
            writer.write(http_request("/mcp", b" " * LEAN_MAX_BYTES * 17, token))
            status, _, answer = await read_response(reader)
            assert status == 413 and orjson.loads(answer) == {"error": "PayloadTooLarge"}
        finally:
            writer.close()


async def test_limits_and_the_result_cap_hold_on_the_call_path(core: LocalOperations) -> None:
    await core.set_server_limits("library", {"max_concurrent_calls": 1}, actor="test")
    library = (await core.get_server("library")).id
    async with (
        running_router(core) as router,
        served(router) as url,
        http_client(url, ListChanged()) as session,
    ):
        # One call at a time, none queued: the second is refused at once, with the reason.
        first = asyncio.ensure_future(session.call_tool("library__slow", {"seconds": 0.5}))
        await eventually(lambda: asyncio.sleep(0, router.port.gates.in_use(library) == (1, 0)))
        busy = await session.call_tool("library__add", {"a": 1, "b": 1})
        assert busy.is_error and "busy" in busy.content[0].text  # type: ignore[union-attr]
        assert (await first).content[0].text == "done"  # type: ignore[union-attr]
        # Recorded as refused, apart from the tool's errors.
        await core.recorder.flush()  # type: ignore[union-attr]
        async with core.db.session() as db_session:
            outcomes = (
                await db_session.execute(
                    select(ToolUsage.tool_name, ToolUsage.outcome).where(
                        ToolUsage.source == "gateway"
                    )
                )
            ).all()
        assert sorted(outcomes) == [("add", "refused"), ("slow", "ok")]

        # A result over TOOLDECK_MAX_RESULT_BYTES (64 KiB here) is a clear tool error, and the
        # server goes on answering.
        await core.start_server("big", actor="test")
        await session.list_tools()
        huge = await session.call_tool("big__big", {"size": 300_000})
        assert huge.is_error
        assert "over the limit of 64 KiB" in huge.content[0].text  # type: ignore[union-attr]
        small = await session.call_tool("big__big", {"size": 10})
        assert small.content[0].text == "x" * 10  # type: ignore[union-attr]


async def test_a_profile_client_sees_only_the_profiles_tools(core: LocalOperations) -> None:
    await core.create_profile(
        {"name": "math", "servers": ["calc*", "library"], "tools": ["add", "sub*", "!library/*"]},
        actor="test",
    )
    notices = ListChanged()
    async with (
        running_router(core) as router,
        served(router) as url,
        http_client(url + "/profiles/math", notices) as session,
    ):
        names = {tool.name for tool in await all_tools(session)}
        assert names == {"calculator__add", "calculator__subtract"}
        added = await session.call_tool("calculator__add", {"a": 2, "b": 2})
        assert added.structured_content == {"result": 4}
        for outside in ("library__add", "calculator__multiply"):
            with pytest.raises(MCPError, match="Unknown tool"):
                await session.call_tool(outside, {"a": 1, "b": 1})
        # Editing the profile changes what its clients see, and tells them.
        notices.seen.clear()
        await core.update_profile("math", {"tools": ["mul*"]}, actor="test")
        await asyncio.wait_for(notices.seen.wait(), 5)

        async def multiply_only() -> bool:
            return {tool.name for tool in await all_tools(session)} == {"calculator__multiply"}

        await eventually(multiply_only)
        # A deleted profile's endpoint refuses new clients, saying why.
        await core.delete_profile("math", actor="test")
        await router.port.reload()
        initialize = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {}},
        }
        async with httpx2.AsyncClient() as http:
            refused = await http.post(
                url + "/profiles/math",
                json=initialize,
                headers={"accept": "application/json, text/event-stream"},
            )
        assert refused.json()["error"]["message"] == "no profile 'math'"


async def test_the_stateless_mode_answers_each_post_on_its_own(core: LocalOperations) -> None:
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "calculator__add", "arguments": {"a": 20, "b": 22}},
    }
    headers = {"accept": "application/json, text/event-stream"}
    async with (
        running_router(core) as router,
        served(router, stateless=True) as url,
        httpx2.AsyncClient() as http,
    ):
        await http.post(url, json={**call, "id": 1, "method": "tools/list", "params": {}})
        answer = await http.post(url, json=call, headers=headers)
        assert "mcp-session-id" not in answer.headers
        assert answer.json()["result"]["structuredContent"] == {"result": 42}
        stream = await http.get(url, headers={"accept": "text/event-stream"})
        assert stream.status_code == 405
        assert router.sessions == set()  # each POST's session ended with its answer


def tooldeck(home: Path, *args: str) -> None:
    env = {"TOOLDECK_HOME": str(home), "PATH": "/usr/bin:/bin"}
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

    # A profile's stdio endpoint: only its tools.
    tooldeck(home, "profile", "add", "lib", "--server", "library", "--tool", "look*")
    profile_params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "app", "gateway", "--stdio", "--profile", "lib"],
        env={"TOOLDECK_HOME": str(home), "MCP_SERVERS": "calculator"},
    )
    with (tmp_path / "profile.err").open("w") as errlog:
        async with (
            stdio_client(profile_params, errlog=errlog) as (read, write),
            ClientSession(read, write, client_info=CLIENT) as session,
        ):
            await session.initialize()
            assert {tool.name for tool in await all_tools(session)} == {"library__lookup"}

    # The gateway flushed its usage on exit: the calls are there, with the client's name.
    def gateway_calls() -> int:
        with sqlite3.connect(home / "tooldeck.db") as conn:
            query = "select count(*) from tool_usage where source = 'gateway' and client_name = ?"
            return int(conn.execute(query, (CLIENT.name,)).fetchone()[0])

    assert await asyncio.to_thread(gateway_calls) == 2  # the profile's session made no call


# ---- the pieces -----------------------------------------------------------------------------


def test_exposed_names_are_unique_and_stay_within_the_cap() -> None:
    table = NameTable("__", 128)
    assert table.expose("calc", "add") == "calc__add"
    assert table.resolve("calc__add") == ("calc", "add")
    # Sanitised alike: the second is told apart by a hash, and both route by table.
    assert table.expose("calc", "a/b c") == "calc__a_b_c"
    other = table.expose("calc", "a b/c")
    assert other != "calc__a_b_c" and table.resolve(other) == ("calc", "a b/c")
    # A server named with the separator routes by table, never by splitting.
    assert table.resolve(table.expose("e__v", "echo")) == ("e__v", "echo")
    capped = NameTable("__", 64)
    long_name = capped.expose("s", "x" * 200)
    assert len(long_name) == 64 and long_name.endswith("_" + short_hash("s", "x" * 200))
    # Stable: the same name in another process (a new table) for the same tool.
    assert NameTable("__", 64).expose("s", "x" * 200) == long_name


def test_resource_uris_round_trip_and_results_name_their_server() -> None:
    uri = uris.encode("files", "file:///tmp/a b.txt")
    assert uris.decode(uri) == ("files", "file:///tmp/a b.txt")
    assert uris.decode("file:///x") is None
    result = {
        "content": [
            {"type": "resource_link", "uri": "demo://1", "_meta": {"k": 1}},
            {"type": "resource", "resource": {"uri": "demo://2", "text": "t"}},
            {"type": "text", "text": "demo://3"},
        ],
        "structuredContent": {"uri": "demo://4"},
    }
    uris.tool_result(result, "s")
    assert result["content"] == [
        {"type": "resource_link", "uri": "tooldeck://s/demo://1", "_meta": {"k": 1}},
        {"type": "resource", "resource": {"uri": "tooldeck://s/demo://2", "text": "t"}},
        {"type": "text", "text": "demo://3"},
    ]
    assert result["structuredContent"] == {"uri": "demo://4"}


def test_an_oversized_message_is_never_held_whole() -> None:
    lines: list[bytes] = []
    dropped: list[tuple[int | None, int]] = []
    splitter = jsonrpc.LineSplitter(
        lines.append,
        1000,
        lambda head, tail, size: dropped.append((jsonrpc.oversized_id(head, tail), size)),
    )
    big_node = b'{"result":{"text":"' + b"x" * 5000 + b'"},"jsonrpc":"2.0","id":7}'
    big_python = b'{"jsonrpc":"2.0","id":8,"result":{"text":"' + b"y" * 5000 + b'"}}'
    splitter.feed(b'{"jsonrpc":"2.0","id":1,"result":{}}\n' + big_node[:700])
    for start in range(700, len(big_node), 900):
        splitter.feed(big_node[start : start + 900])
    splitter.feed(b"\n" + big_python + b'\n{"jsonrpc":"2.0","id":9,"result":{}}\n')
    assert dropped == [(7, len(big_node)), (8, len(big_python))]
    assert [jsonrpc.parse(line)["id"] for line in lines] == [1, 9]  # type: ignore[index]


def test_profile_selection_by_name_and_glob() -> None:
    selection = Selection(["github", "fs-*"], ["read_*", "github/create_issue", "!*/read_secret"])
    assert selection.has_server("fs-home") and not selection.has_server("slack")
    assert selection.has_tool("fs-home", "read_file")
    assert selection.has_tool("github", "create_issue")
    assert not selection.has_tool("fs-home", "create_issue")
    assert not selection.has_tool("fs-home", "read_secret")
    assert not selection.has_tool("slack", "read_file")
    everything = Selection(["*"], [])
    assert everything.has_tool("any", "tool")
    # Patterns that choose nothing among what exists: typos, most likely.
    known = [("github", "create_issue"), ("github", "read_secret")]
    assert selection.unmatched(["github"], known) == ["fs-*"]
    assert selection.unmatched(["github"], known[:1]) == ["fs-*", "read_*", "!*/read_secret"]


def test_a_data_dir_too_deep_for_a_socket_gets_a_private_short_one(tmp_path: Path) -> None:
    from app.faces.gateway.service import socket_path

    assert socket_path(tmp_path) == tmp_path / "gateway.sock"
    deep = socket_path(tmp_path / ("d" * 120))
    assert len(str(deep)) <= 100 and deep.parent.stat().st_mode & 0o077 == 0
    assert deep == socket_path(tmp_path / ("d" * 120))  # the same every time: the lock names it
