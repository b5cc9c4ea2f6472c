"""The gateway's end-to-end tests: a real SDK client that declares sampling, elicitation and
roots and answers them, the ways to reach the gateway (HTTP, stdio in-process, stdio bridged
to a daemon), and the scenario every one of them must pass."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.conftest import REPO_ROOT, TEST_SERVERS
from tests.daemon_helpers import daemon_env, wait_for
from tests.runtime_helpers import eventually, free_port


def initialize_request(
    client: str, protocol: str = "2025-06-18", capabilities: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A client's first message, raw, for tests that speak HTTP to the gateway without a client."""
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": protocol,
            "capabilities": capabilities or {},
            "clientInfo": {"name": client, "version": "1"},
        },
    }


# A bare `initialize`, for tests about who may reach an endpoint rather than MCP.
INITIALIZE = initialize_request("access-test")
MCP_ACCEPT = {"Accept": "application/json, text/event-stream"}
ROOT = types.Root(uri="file:///tmp/tooldeck-test-root", name="test root")
SAMPLED = "sampled by the test client"


@dataclass
class RecordingClient:
    """The callbacks of a client that declares every client capability, and what it saw."""

    name: str = "gateway-test-client"
    sampling: list[Any] = field(default_factory=list)
    elicitation: list[Any] = field(default_factory=list)
    roots_asked: int = 0
    logs: list[Any] = field(default_factory=list)
    notices: list[Any] = field(default_factory=list)

    async def on_sampling(self, ctx: Any, params: Any) -> types.CreateMessageResult:
        self.sampling.append(params)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=SAMPLED),
            model="test-model",
            stop_reason="endTurn",
        )

    async def on_elicitation(self, ctx: Any, params: Any) -> types.ElicitResult:
        self.elicitation.append(params)
        return types.ElicitResult(action="decline")

    async def on_roots(self, ctx: Any) -> types.ListRootsResult:
        self.roots_asked += 1
        return types.ListRootsResult(roots=[ROOT])

    async def on_log(self, params: Any) -> None:
        self.logs.append(params)

    async def on_message(self, message: Any) -> None:
        self.notices.append(message)

    def methods(self) -> list[str]:
        return [getattr(notice, "method", "") for notice in self.notices]

    def session(self, read: Any, write: Any) -> ClientSession:
        return ClientSession(
            read,
            write,
            sampling_callback=self.on_sampling,
            elicitation_callback=self.on_elicitation,
            list_roots_callback=self.on_roots,
            logging_callback=self.on_log,
            message_handler=self.on_message,
            client_info=types.Implementation(name=self.name, version="1.0"),
        )


@asynccontextmanager
async def over_http(
    url: str, client: RecordingClient, token: str | None = None
) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60))
        )
        read, write = await stack.enter_async_context(streamable_http_client(url, http_client=http))
        session = await stack.enter_async_context(client.session(read, write))
        await session.initialize()
        yield session


def gateway_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "app", "gateway", "--stdio", *args]


@asynccontextmanager
async def over_stdio(
    home: Path, client: RecordingClient, *args: str, errlog: Path | None = None
) -> AsyncIterator[ClientSession]:
    """`tooldeck gateway --stdio ARGS` as the client's subprocess: in-process or bridged,
    whichever the data dir calls for (a running daemon, or none)."""
    argv = gateway_command(*args)
    params = StdioServerParameters(
        command=argv[0],
        args=argv[1:],
        env=daemon_env(home, MCP_ENABLED="false"),
        cwd=str(REPO_ROOT),
    )
    log_path = errlog or home.parent / f"gateway-{time.monotonic_ns()}.err"
    with log_path.open("w") as log:
        async with stdio_client(params, errlog=log) as (read, write):
            async with client.session(read, write) as session:
                await session.initialize()
                yield session


def tooldeck(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A CLI verb on `home`, whose fleet is only what the test adds (no built-in servers)."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=daemon_env(home, MCP_ENABLED="false"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=check,
    )


def add_everything(home: Path, name: str, entry: Path) -> None:
    tooldeck(
        home, "server", "add", name, "--command", "node", "--arg", str(entry), "--arg", "stdio"
    )


class EverythingOverHttp:
    """server-everything in its streamableHttp mode, on 127.0.0.1 only."""

    def __init__(self, entry: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.process = subprocess.Popen(
            ["node", "-r", str(TEST_SERVERS / "loopback.cjs"), str(entry), "streamableHttp"],
            env={**os.environ, "PORT": str(self.port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(self._listening, timeout_s=30)
        except BaseException:
            self.stop()
            raise

    def _listening(self) -> bool:
        import socket

        if self.process.poll() is not None:
            raise AssertionError("server-everything's HTTP mode exited at start")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def until(predicate: Callable[[], Any], within: float = 15.0) -> Any:
    """Wait for a condition the server causes (a notification, a callback)."""

    async def probe() -> Any:
        return predicate()

    return await eventually(probe, within=within, every=0.02)


@dataclass
class Naming:
    """How a view names the server's things: prefixed (aggregated) or as they are."""

    server: str
    aggregated: bool

    def tool(self, name: str) -> str:
        return f"{self.server}__{name}" if self.aggregated else name

    prompt = tool

    def uri(self, uri: str) -> str:
        return f"tooldeck://{self.server}/{uri}" if self.aggregated else uri


async def every_feature(session: ClientSession, client: RecordingClient, names: Naming) -> None:
    """Every item of the router's forwarding, against server-everything behind `session`."""
    # -- tools: listed with every field the server gave, newer ones included
    tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    echo = tools[names.tool("echo")]
    assert echo.annotations is not None and echo.annotations.read_only_hint is True
    assert echo.execution is not None  # a field newer than most gateways: kept
    # Shown because the upstream connection declares sampling: the client can answer it.
    assert names.tool("trigger-sampling-request") in tools

    # -- tools/call with _meta (a custom key and a progress token)
    result = await session.call_tool(
        names.tool("echo"), {"message": "hi"}, meta={"example.com/trace": "t-1"}
    )
    assert result.content[0].text == "Echo: hi"  # type: ignore[union-attr]
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total))

    await session.call_tool(
        names.tool("trigger-long-running-operation"),
        {"duration": 0.3, "steps": 3},
        progress_callback=on_progress,
    )
    assert progress == [(1, 3), (2, 3), (3, 3)]

    # -- server-to-client requests, answered by this client
    result = await session.call_tool(
        names.tool("trigger-sampling-request"), {"prompt": "hello", "maxTokens": 5}
    )
    assert len(client.sampling) == 1 and SAMPLED in str(result.content)
    await session.call_tool(names.tool("trigger-elicitation-request"), {})
    assert len(client.elicitation) == 1
    result = await session.call_tool(names.tool("get-roots-list"), {})
    assert str(ROOT.uri) in str(result.content)
    asked = client.roots_asked
    await session.send_roots_list_changed()  # the server asks again: client -> server notice
    await until(lambda: client.roots_asked > asked)

    # -- URIs inside results, structured content
    links = await session.call_tool(names.tool("get-resource-links"), {"count": 2})
    link_uris = [str(block.uri) for block in links.content if block.type == "resource_link"]
    assert link_uris and all(uri.startswith(names.uri("demo://")) for uri in link_uris)
    read = await session.read_resource(link_uris[0])
    assert str(read.contents[0].uri) == link_uris[0]
    reference = await session.call_tool(
        names.tool("get-resource-reference"), {"resourceType": "Text", "resourceId": 4}
    )
    embedded = [block for block in reference.content if block.type == "resource"]
    assert str(embedded[0].resource.uri) == names.uri("demo://resource/dynamic/text/4")
    structured = await session.call_tool(
        names.tool("get-structured-content"), {"location": "Chicago"}
    )
    assert structured.structured_content and "temperature" in structured.structured_content

    # -- resources: templates, reads, subscriptions and their updates
    templates = (await session.list_resource_templates()).resource_templates
    template = names.uri("demo://resource/dynamic/text/{resourceId}")
    assert template in [t.uri_template for t in templates]
    read = await session.read_resource(names.uri("demo://resource/dynamic/text/5"))
    assert "Resource 5" in read.contents[0].text  # type: ignore[union-attr]
    first = str((await session.list_resources()).resources[0].uri)
    assert first.startswith(names.uri(""))
    await session.subscribe_resource(first)
    await session.call_tool(names.tool("toggle-subscriber-updates"), {})
    updated = await until(
        lambda: [
            n
            for n in client.notices
            if getattr(n, "method", "") == "notifications/resources/updated"
        ]
    )
    assert str(updated[0].params.uri) == first
    await session.call_tool(names.tool("toggle-subscriber-updates"), {})
    await session.unsubscribe_resource(first)

    # -- prompts and completions, routed by table
    prompts = {prompt.name for prompt in (await session.list_prompts()).prompts}
    assert names.prompt("simple-prompt") in prompts
    got = await session.get_prompt(
        names.prompt("resource-prompt"), {"resourceType": "Text", "resourceId": "2"}
    )
    embedded_uris = [m.content.resource.uri for m in got.messages if m.content.type == "resource"]
    assert str(embedded_uris[0]).startswith(names.uri("demo://"))
    completed = await session.complete(
        types.PromptReference(type="ref/prompt", name=names.prompt("completable-prompt")),
        {"name": "department", "value": "E"},
    )
    assert "Engineering" in completed.completion.values

    # -- logging: the level reaches the server, its messages reach the client
    await session.set_logging_level("debug")
    await session.call_tool(names.tool("toggle-simulated-logging"), {})
    await until(lambda: client.logs)
    await session.call_tool(names.tool("toggle-simulated-logging"), {})

    # -- list changes from the server (a new session resource)
    await session.call_tool(
        names.tool("gzip-file-as-resource"),
        {"name": "x.gz", "data": "data:text/plain;base64,aGVsbG8="},
    )
    await until(lambda: "notifications/resources/list_changed" in client.methods())

    # -- cancellation travels: the client gives up, the next call is answered
    try:
        await session.call_tool(
            names.tool("trigger-long-running-operation"),
            {"duration": 3, "steps": 3},
            read_timeout_seconds=0.3,
        )
    except MCPError as exc:
        assert exc.code == types.REQUEST_TIMEOUT
    else:
        raise AssertionError("the call outlived the client's timeout")
    result = await session.call_tool(names.tool("echo"), {"message": "after cancel"})
    assert result.content[0].text == "Echo: after cancel"  # type: ignore[union-attr]
    await session.send_ping()


async def settle() -> None:
    """One loop turn: let a face flush what a test just wrote."""
    await asyncio.sleep(0)


# ---- a wire-level client, for comparing answers field by field -------------------------------

SAMPLING_REPLY = {
    "role": "assistant",
    "content": {"type": "text", "text": "sampled!"},
    "model": "test-model",
    "stopReason": "endTurn",
}
ELICIT_REPLY = {"action": "accept", "content": {"name": "Ada", "check": True, "integer": 1}}
ROOTS_REPLY = {"roots": [{"uri": "file:///tmp/root-a", "name": "a", "_meta": {"x": 1}}]}


class RawClient:
    """An MCP client over a subprocess's stdio that keeps every message exactly as it came
    (the SDK's typed client would hide fields dropped or added) and answers server requests
    with fixed replies."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.next_id = 0
        self.waiters: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.notifications: list[dict[str, Any]] = []
        self.listed_at = 0
        self.server_requests: list[dict[str, Any]] = []
        self.reader: asyncio.Task[None] | None = None
        self.replies = {
            "sampling/createMessage": SAMPLING_REPLY,
            "elicitation/create": ELICIT_REPLY,
            "roots/list": ROOTS_REPLY,
            "ping": {},
        }

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=REPO_ROOT,
            env=self.env,
            limit=2**24,
        )
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        import json

        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            message = json.loads(line)
            if "method" not in message:
                waiter = self.waiters.pop(message.get("id"), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(message)
            elif "id" in message:
                self.server_requests.append(message)
                reply = self.replies.get(message["method"])
                self.write(
                    {"jsonrpc": "2.0", "id": message["id"], "result": reply}
                    if reply is not None
                    else {
                        "jsonrpc": "2.0",
                        "id": message["id"],
                        "error": {"code": -32601, "message": "no"},
                    }
                )
            else:
                self.notifications.append(message)

    def write(self, message: dict[str, Any]) -> None:
        import json

        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        waiter = asyncio.get_running_loop().create_future()
        self.waiters[self.next_id] = waiter
        self.write(message)
        async with asyncio.timeout(30):
            return await waiter

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.write(message)

    async def close(self) -> int | None:
        if self.process is None:
            return None
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            async with asyncio.timeout(10):
                code = await self.process.wait()
        except TimeoutError:
            self.process.kill()
            code = await self.process.wait()
        if self.reader is not None:
            self.reader.cancel()
        return code
