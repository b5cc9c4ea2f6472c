"""The gateway end to end, against server-everything (npm) over stdio and streamable HTTP.

One daemon serves a fleet of three upstreams: `everything` and `e__v` (server-everything over
stdio; the second name contains the separator, which splitting would mis-route) and `remote`
(server-everything in its streamableHttp mode). A second data dir without a daemon serves
`gateway --stdio` in-process. Every item the router forwards is played by a real SDK client
that declares sampling, elicitation and roots, on the aggregated and the per-server endpoints,
over HTTP, over stdio in-process and over stdio bridged to the daemon.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from app.core.tool_names import short_hash
from tests.daemon_helpers import Daemon, daemon_env, start_daemon, wait_for
from tests.gateway_helpers import (
    SAMPLED,
    EverythingOverHttp,
    Naming,
    RawClient,
    RecordingClient,
    add_everything,
    every_feature,
    gateway_command,
    initialize_request,
    over_http,
    over_stdio,
    tooldeck,
    until,
)
from tests.runtime_helpers import eventually

pytestmark = pytest.mark.timeout(300)

INIT = initialize_request("raw", "2025-11-25")
ACCEPT = {"accept": "application/json, text/event-stream"}


@dataclass
class Fleet:
    home: Path  # the daemon's data dir
    daemon: Daemon
    remote: EverythingOverHttp
    solo: Path  # a data dir with no daemon: `gateway --stdio` runs the servers itself

    def headers(self, **extra: str) -> dict[str, str]:
        return {**self.daemon.headers(), **ACCEPT, **extra}


def no_builtins(home: Path) -> dict[str, str]:
    return daemon_env(home, MCP_ENABLED="false")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, server_everything: Path) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("fleet")
    home, solo = base / "daemon-home", base / "solo-home"
    remote = EverythingOverHttp(server_everything)
    try:
        for data_dir in (home, solo):
            add_everything(data_dir, "everything", server_everything)
        add_everything(home, "e__v", server_everything)
        tooldeck(
            home, "server", "add", "remote", "--transport", "streamable_http", "--url", remote.url
        )
        fleet = Fleet(home, start_daemon(home, env=no_builtins(home)), remote, solo)
        try:
            with fleet.daemon.client() as api:

                def all_running() -> bool:
                    servers = api.get("/api/v1/toolservers/servers").json()
                    return {s["name"]: s["status"] for s in servers} == dict.fromkeys(
                        ("e__v", "everything", "remote"), "running"
                    )

                wait_for(all_running, timeout_s=60)
            yield fleet
        finally:
            # The tests restart the daemon: stop whichever runs now.
            fleet.daemon.stop()
    finally:
        remote.stop()


def connect(
    fleet: Fleet, face: str, view: str, client: RecordingClient, server: str = "everything"
) -> AbstractAsyncContextManager[ClientSession]:
    args = ("--server", server) if view == "server" else ()
    if face == "http":
        path = f"/mcp/servers/{server}" if view == "server" else "/mcp"
        return over_http(fleet.daemon.url + path, client, fleet.daemon.token)
    if face == "bridge":
        return over_stdio(fleet.home, client, *args)
    return over_stdio(fleet.solo, client, *args)


# ---- a client cannot tell the per-server endpoint from the server itself --------------------

INIT_PARAMS = {
    "protocolVersion": "2025-11-25",
    "capabilities": {
        "sampling": {},
        "elicitation": {"form": {}, "url": {}},
        "roots": {"listChanged": True},
    },
    "clientInfo": {"name": "faithful-test", "version": "1"},
}
CLOCK = re.compile(r"\d{1,2}:\d\d:\d\d [AP]M")


async def play(client: RawClient) -> list[tuple[str, dict[str, Any]]]:
    """The same requests, in the same order, for a direct and a routed client."""
    answers: list[tuple[str, dict[str, Any]]] = []

    async def ask(label: str, method: str, params: dict[str, Any] | None = None) -> Any:
        reply = await client.request(method, params)
        reply.pop("id", None)
        answers.append((label, reply))
        return reply

    await ask("initialize", "initialize", INIT_PARAMS)
    client.notify("notifications/initialized")
    # The server asks for roots right after initialized (directly) or once told the client
    # arrived (routed): wait for that before comparing anything.
    await until(lambda: any(r["method"] == "roots/list" for r in client.server_requests))
    await ask("ping", "ping")
    for method in ("tools/list", "prompts/list", "resources/list", "resources/templates/list"):
        await ask(method, method)
    # A server that registers tools by the client's capabilities announces them right after
    # `initialized`; behind Tooldeck that happened when the server started, so the first
    # listing is already complete. Notices are compared from here on.
    client.listed_at = len(client.notifications)
    meta = {"progressToken": "tok-1", "custom.example/field": {"a": [1, 2]}}
    await ask("echo", "tools/call", {"name": "echo", "arguments": {"message": "hi"}, "_meta": meta})
    await ask(
        "progress",
        "tools/call",
        {
            "name": "trigger-long-running-operation",
            "arguments": {"duration": 0.2, "steps": 3},
            "_meta": {"progressToken": 77},
        },
    )
    for tool, arguments in [
        ("get-resource-links", {"count": 3}),
        ("get-resource-reference", {"resourceType": "Text", "resourceId": 2}),
        ("get-structured-content", {"location": "New York"}),
        ("get-annotated-message", {"messageType": "success", "includeImage": True}),
        ("get-tiny-image", {}),
        ("get-sum", {"a": 1, "b": 2}),
        ("trigger-sampling-request", {"prompt": "hello", "maxTokens": 10}),
        ("trigger-elicitation-request", {}),
        ("get-roots-list", {}),
        ("no-such-tool", {}),
    ]:
        await ask(f"call {tool}", "tools/call", {"name": tool, "arguments": arguments})
    await ask("read", "resources/read", {"uri": "demo://resource/static/document/architecture.md"})
    await ask("read template", "resources/read", {"uri": "demo://resource/dynamic/text/7"})
    await ask("subscribe", "resources/subscribe", {"uri": "demo://resource/dynamic/text/1"})
    await ask("unsubscribe", "resources/unsubscribe", {"uri": "demo://resource/dynamic/text/1"})
    await ask("prompt", "prompts/get", {"name": "simple-prompt"})
    await ask("prompt args", "prompts/get", {"name": "args-prompt", "arguments": {"city": "Oslo"}})
    await ask(
        "prompt resource",
        "prompts/get",
        {"name": "resource-prompt", "arguments": {"resourceType": "Text", "resourceId": "3"}},
    )
    await ask(
        "complete",
        "completion/complete",
        {
            "ref": {"type": "ref/prompt", "name": "completable-prompt"},
            "argument": {"name": "department", "value": "E"},
        },
    )
    await ask(
        "complete in context",
        "completion/complete",
        {
            "ref": {"type": "ref/prompt", "name": "completable-prompt"},
            "argument": {"name": "name", "value": ""},
            "context": {"arguments": {"department": "Engineering"}},
        },
    )
    await ask("set level", "logging/setLevel", {"level": "debug"})
    await ask("unknown method", "foo/bar", {})
    return answers


def normalized(reply: dict[str, Any]) -> Any:
    # server-everything stamps the resources it makes up with the wall clock.
    return json.loads(CLOCK.sub("<time>", json.dumps(reply, sort_keys=True)))


@pytest.mark.parametrize("face", ["stdio", "bridge"])
async def test_the_per_server_endpoint_answers_as_the_server_itself(
    fleet: Fleet, face: str, server_everything: Path
) -> None:
    direct = RawClient(["node", str(server_everything), "stdio"])
    home = fleet.solo if face == "stdio" else fleet.home
    routed = RawClient(gateway_command("--server", "everything"), env=no_builtins(home))
    results = []
    for client in (direct, routed):
        await client.start()
        try:
            results.append(await play(client))
        finally:
            await client.close()
    direct_answers, routed_answers = results
    assert [label for label, _ in direct_answers] == [label for label, _ in routed_answers]
    for (label, mine), (_, theirs) in zip(direct_answers, routed_answers, strict=True):
        assert normalized(theirs) == normalized(mine), label
    # Notifications of the same kinds, progress exactly, server requests the same (roots/list
    # comes at a different moment: see play()).
    progress = [
        [n["params"] for n in c.notifications if n["method"] == "notifications/progress"]
        for c in (direct, routed)
    ]
    assert progress[0] == progress[1] and len(progress[0]) == 3
    kinds = [
        sorted({n["method"] for n in c.notifications[c.listed_at :]}) for c in (direct, routed)
    ]
    assert kinds[0] == kinds[1]
    requests = [
        [(r["method"], r.get("params")) for r in c.server_requests if r["method"] != "roots/list"]
        for c in (direct, routed)
    ]
    assert requests[0] == requests[1]


@pytest.mark.parametrize("view", ["aggregated", "server"])
@pytest.mark.parametrize("face", ["http", "stdio", "bridge"])
async def test_every_message_type_passes(fleet: Fleet, face: str, view: str) -> None:
    client = RecordingClient(name=f"router-{face}-{view}")
    async with connect(fleet, face, view, client) as session:
        await every_feature(session, client, Naming("everything", aggregated=view != "server"))


async def test_a_server_named_with_the_separator_routes_by_table(fleet: Fleet) -> None:
    client = RecordingClient()
    async with connect(fleet, "http", "aggregated", client) as session:
        tools = {tool.name for tool in (await session.list_tools()).tools}
        assert {"e__v__echo", "everything__echo", "remote__echo"} <= tools
        result = await session.call_tool("e__v__echo", {"message": "via e__v"})
        assert result.content[0].text == "Echo: via e__v"  # type: ignore[union-attr]
        prompt = await session.get_prompt("e__v__args-prompt", {"city": "Paris"})
        assert "Paris" in str(prompt.messages[0].content)
        read = await session.read_resource("tooldeck://e__v/demo://resource/dynamic/text/1")
        assert str(read.contents[0].uri) == "tooldeck://e__v/demo://resource/dynamic/text/1"
        with pytest.raises(Exception, match="Unknown tool"):
            await session.call_tool("nobody__echo", {"message": "x"})


async def test_a_streamable_http_upstream_per_server(fleet: Fleet) -> None:
    client = RecordingClient()
    async with connect(fleet, "http", "server", client, server="remote") as session:
        progress: list[float] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append(done)

        result = await session.call_tool("echo", {"message": "remote"})
        assert result.content[0].text == "Echo: remote"  # type: ignore[union-attr]
        await session.call_tool(
            "trigger-long-running-operation",
            {"duration": 0.2, "steps": 2},
            progress_callback=on_progress,
        )
        assert progress == [1, 2]
        sampled = await session.call_tool(
            "trigger-sampling-request", {"prompt": "over http", "maxTokens": 3}
        )
        assert SAMPLED in str(sampled.content)


async def test_calls_are_metered_with_the_clients_name(fleet: Fleet) -> None:
    client = RecordingClient(name="metered-client")
    async with connect(fleet, "http", "server", client) as session:
        await session.call_tool("echo", {"message": "one"})
        await session.call_tool("get-sum", {"a": 1, "b": 2})
    async with connect(fleet, "bridge", "aggregated", client) as session:
        await session.call_tool("everything__echo", {"message": "two"})

    def rows() -> list[tuple[str, int, float]]:
        with sqlite3.connect(fleet.home / "tooldeck.db") as db:
            query = (
                "select tool_name, success, response_time_ms from tool_usage "
                "where source = 'gateway' and client_name = 'metered-client'"
            )
            return list(db.execute(query))

    found = wait_for(lambda: len(rows()) == 3 and rows(), timeout_s=20)
    assert sorted(name for name, _ok, _ms in found) == ["echo", "echo", "get-sum"]
    assert all(ok == 1 and ms > 0 for _name, ok, ms in found)


def post(fleet: Fleet, body: object, path: str = "/mcp", **headers: str) -> httpx2.Response:
    return httpx2.post(
        fleet.daemon.url + path,
        json=body,
        headers=fleet.headers(**headers),
        timeout=30,
        trust_env=False,
    )


def test_http_session_hygiene(fleet: Fleet) -> None:
    opened = post(fleet, INIT)
    assert opened.status_code == 200
    assert opened.headers["content-type"] == "application/json"  # nothing streamed
    capabilities = opened.json()["result"]["capabilities"]
    # Advertised as sent: Tooldeck tells its clients of every list change.
    assert capabilities["tools"]["listChanged"] is True
    assert capabilities["resources"] == {"subscribe": True, "listChanged": True}
    session = opened.headers["mcp-session-id"]
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call"}
    echo = post(
        fleet,
        {**call, "params": {"name": "everything__echo", "arguments": {"message": "json"}}},
        **{"mcp-session-id": session},
    )
    assert echo.headers["content-type"] == "application/json"
    assert echo.json()["result"]["content"][0]["text"] == "Echo: json"
    streamed = post(
        fleet,
        {
            **call,
            "params": {
                "name": "everything__trigger-long-running-operation",
                "arguments": {"duration": 0.2, "steps": 2},
                "_meta": {"progressToken": "p"},
            },
        },
        **{"mcp-session-id": session},
    )
    assert streamed.headers["content-type"] == "text/event-stream"
    assert streamed.text.count("notifications/progress") == 2

    url = fleet.daemon.url + "/mcp"
    with httpx2.Client(trust_env=False, timeout=10) as http:
        resume = http.get(
            url,
            headers=fleet.headers(
                **{"accept": "text/event-stream", "last-event-id": "7", "mcp-session-id": session}
            ),
        )
        assert resume.status_code == 400 and "resumed" in resume.json()["message"]
        unknown = http.post(
            url, json=INIT | {"id": 3}, headers=fleet.headers(**{"mcp-session-id": "x"})
        )
        assert unknown.status_code == 404
        rebinding = http.post(url, json=INIT, headers=fleet.headers(host="evil.example"))
        assert rebinding.status_code == 421
        cross_site = http.post(url, json=INIT, headers=fleet.headers(origin="https://evil.example"))
        assert cross_site.status_code == 403
        no_token = http.post(url, json=INIT, headers=ACCEPT)
        assert no_token.status_code == 401
        missing = http.post(url + "/servers/nobody", json=INIT, headers=fleet.headers())
        assert missing.json()["error"]["message"] == "no server 'nobody'"
        # Bodies up to TOOLDECK_MAX_RESULT_BYTES (8 MiB by default), not the API's 1 MB.
        large = {**INIT, "params": {**INIT["params"], "pad": "x" * 2_000_000}}
        assert http.post(url, json=large, headers=fleet.headers()).status_code == 200
        huge = {**INIT, "params": {**INIT["params"], "pad": "x" * 9_000_000}}
        assert http.post(url, json=huge, headers=fleet.headers()).status_code == 413
        gone = http.delete(url, headers=fleet.headers(**{"mcp-session-id": session}))
        assert gone.status_code == 200


async def test_a_client_on_the_newest_protocol_falls_back_and_hears_list_changes(
    fleet: Fleet,
) -> None:
    """`mcp.Client` (mode auto) probes `server/discover`; the gateway speaks 2025-11-25, so the
    client settles there, where list changes are ordinary notifications."""
    seen: list[str] = []

    async def on_message(message: object) -> None:
        seen.append(getattr(message, "method", ""))

    argv = gateway_command("--server", "everything")
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=no_builtins(fleet.home))
    async with Client(params, message_handler=on_message) as client:
        assert client.protocol_version == "2025-11-25"
        await client.call_tool(
            "gzip-file-as-resource", {"name": "y.gz", "data": "data:text/plain;base64,aGk="}
        )
        await until(lambda: "notifications/resources/list_changed" in seen)


async def test_a_person_switching_a_tool_reaches_connected_clients(fleet: Fleet) -> None:
    client = RecordingClient()
    async with connect(fleet, "http", "server", client) as session:
        before = len(client.methods())
        with fleet.daemon.client() as api:
            api.post("/api/v1/toolservers/tools/get-env/disable", params={"server": "everything"})
            try:
                await until(lambda: "notifications/tools/list_changed" in client.methods()[before:])
                # (A notice of an earlier change may come first: what counts is the listing.)

                async def listed_without_get_env() -> set[str] | None:
                    names = {tool.name for tool in (await session.list_tools()).tools}
                    return names if "get-env" not in names else None

                names = await eventually(listed_without_get_env, within=10)
                assert "get-env" not in names and "echo" in names
                with pytest.raises(Exception, match="get-env of everything is disabled"):
                    await session.call_tool("get-env", {})
            finally:
                api.post(
                    "/api/v1/toolservers/tools/get-env/enable", params={"server": "everything"}
                )


async def test_names_capped_at_64_end_in_a_stable_hash(fleet: Fleet) -> None:
    client = RecordingClient()
    argv = gateway_command()
    params = StdioServerParameters(
        command=argv[0],
        args=argv[1:],
        env={**no_builtins(fleet.solo), "TOOLDECK_GATEWAY_MAX_NAME_LENGTH": "24"},
    )
    async with stdio_client(params) as (read, write), client.session(read, write) as session:
        await session.initialize()
        tools = (await session.list_tools()).tools
        names = [tool.name for tool in tools]
        assert all(len(name) <= 24 for name in names) and len(set(names)) == len(names)
        # Cut to 15 characters, then "_" and 8 hex digits of a hash of server and name.
        long = "everything__tri_" + short_hash("everything", "trigger-long-running-operation")
        assert long in names
        result = await session.call_tool(long, {"duration": 0.1, "steps": 1})
        assert "completed" in str(result.content)


# ---- the stdio bridge to the daemon: one session for its life, through a restart ------------


async def test_the_bridge_holds_its_session_and_outlives_a_daemon_restart(fleet: Fleet) -> None:
    client = RawClient(gateway_command(), env=no_builtins(fleet.home))
    await client.start()
    try:
        await client.request("initialize", INIT_PARAMS)
        client.notify("notifications/initialized")
        for number in range(100):
            reply = await client.request(
                "tools/call", {"name": "everything__echo", "arguments": {"message": str(number)}}
            )
            assert reply["result"]["content"][0]["text"] == f"Echo: {number}"
        reply = await client.request(
            "tools/call",
            {
                "name": "everything__gzip-file-as-resource",
                "arguments": {"name": "b.gz", "data": "data:text/plain;base64,aGVsbG8="},
            },
        )
        link = next(b for b in reply["result"]["content"] if b["type"] == "resource_link")
        await until(
            lambda: any(
                n["method"] == "notifications/resources/list_changed" for n in client.notifications
            )
        )
        read = await client.request("resources/read", {"uri": link["uri"]})
        assert read["result"]["contents"][0]["uri"] == link["uri"]

        # The daemon restarts underneath, with a call in flight.
        seen = len(client.notifications)
        slow = asyncio.ensure_future(
            client.request(
                "tools/call",
                {
                    "name": "everything__trigger-long-running-operation",
                    "arguments": {"duration": 30, "steps": 2},
                },
            )
        )
        await until(lambda: fleet.daemon.process.poll() is None)
        fleet.daemon.stop()
        lost = await slow  # answered, not left hanging: an error that says why
        assert "error" in lost or lost["result"].get("isError"), lost
        fleet.daemon = start_daemon(fleet.home, env=no_builtins(fleet.home))
        # Reconnected: the client is told to list again, and calls go on in the same session.
        await until(
            lambda: any(
                n["method"] == "notifications/tools/list_changed"
                for n in client.notifications[seen:]
            ),
            within=60,
        )
        reply = await client.request(
            "tools/call", {"name": "everything__echo", "arguments": {"message": "after"}}
        )
        assert reply["result"]["content"][0]["text"] == "Echo: after"
    finally:
        assert await client.close() == 0


async def test_the_bridge_exits_with_one_line_when_the_daemon_stays_away(fleet: Fleet) -> None:
    env = {**no_builtins(fleet.home), "TOOLDECK_GATEWAY_BRIDGE_RECONNECT_S": "0.5"}
    argv = gateway_command()
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stderr is not None
    process.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode() + b"\n")
    assert process.stdout is not None
    assert json.loads(await process.stdout.readline())["result"] == {}
    fleet.daemon.stop()
    try:
        async with asyncio.timeout(30):
            code = await process.wait()
        lines = (await process.stderr.read()).decode().strip().splitlines()
        assert code == 1
        assert lines[-1] == (
            "tooldeck: the Tooldeck daemon went away and did not come back within 0.5 s; "
            "the gateway bridge exits"
        )
    finally:
        fleet.daemon = start_daemon(fleet.home, env=no_builtins(fleet.home))
