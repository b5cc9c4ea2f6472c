"""A gateway call at one node for a server another node runs: forwarded to the owner with the
node's own credential, answered there, and metered once, by the owner, under the client's name.
Real `tooldeck --headless` nodes on a real PostgreSQL, a real SDK client."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import psutil
import pytest

from app.faces.gateway.router import FORWARDED_CLIENT_KEY
from app.runtime.node_credentials import fleet_keys
from storage.db import Database
from tests.daemon_helpers import Daemon, wait_for
from tests.fleet_helpers import (
    node_of,
    nodes_seen_by,
    running_copies,
    servers_of,
    start_node,
    tagged_server,
    usage_by_source,
    usage_rows,
)
from tests.gateway_helpers import Naming, RecordingClient, every_feature, over_http
from tests.runtime_helpers import eventually

SERVER = "on-alpha"
TOOL = f"{SERVER}__whoami"
CLIENT = "forwarding-test-client"
DIRECT = "direct-test-client"
CALL_TIMEOUT_S = 2


@pytest.fixture
def fleet_url(new_pg_database: Callable[..., str]) -> str:
    return new_pg_database()


@pytest.fixture
def pair(tmp_path: Path, fleet_url: str) -> Iterator[dict[str, Daemon]]:
    nodes = {name: start_node(tmp_path, fleet_url, name) for name in ("alpha", "beta")}
    try:
        wait_for(
            lambda: {n for n, e in nodes_seen_by(nodes["beta"]).items() if e["alive"]} == set(nodes)
        )
        # A call timeout shorter than the time beta takes to find a paused alpha dead (the
        # lease, 5 s, less a renewal period): a call to a paused alpha times out first.
        spec = {**tagged_server(SERVER, "alpha"), "call_timeout_s": CALL_TIMEOUT_S}
        with nodes["alpha"].client() as client:
            answer = client.post("/api/v1/toolservers/servers", json=spec)
            assert answer.status_code == 201, answer.text
        wait_for(lambda: servers_of(nodes["beta"])[SERVER]["status"] == "running", timeout_s=30)
        yield nodes
    finally:
        for node in nodes.values():
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGCONT)
        # Beta first: its links to alpha end with it, and alpha need not wait for their streams.
        for node in reversed(nodes.values()):
            if node.process.poll() is None:
                node.stop()
        # A killed alpha's server lives until its fence ends it, at the lease's end: the next
        # fleet test counts the copies of every tagged server there is.
        wait_for(lambda: not running_copies().get(SERVER), timeout_s=30)


def stop_on(node: Daemon, server_id: str) -> None:
    with node.client() as client:
        answer = client.post(f"/api/v1/toolservers/servers/{server_id}/stop")
        assert answer.status_code == 200, answer.text


def answered_by(result: Any, pair: dict[str, Daemon]) -> str | None:
    """The node whose child process answered `whoami`."""
    assert not result.is_error, result
    return node_of(psutil.Process(int(result.content[0].text)), pair)


def call_count(node: Daemon) -> float:
    """How many calls of the tool this node's own call path timed (its Prometheus histogram)."""
    with node.client() as client:
        text = client.get("/metrics").text
    series = f'tooldeck_tool_call_duration_seconds_count{{server="{SERVER}",tool="whoami"}}'
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_a_call_through_beta_runs_on_alpha_and_is_counted_once(
    pair: dict[str, Daemon], fleet_url: str
) -> None:
    alpha, beta = pair["alpha"], pair["beta"]
    async with over_http(f"{beta.url}/mcp", RecordingClient(name=CLIENT), beta.token) as session:
        listed = await session.list_tools()
        assert TOOL in [tool.name for tool in listed.tools]
        result = await session.call_tool(TOOL, {})
    # Answered by the server alpha started: its pid is a child of alpha's daemon.
    assert answered_by(result, pair) == "alpha"
    # The client's name went along beside the call, and no further than alpha.
    assert result.meta == {"got": None}
    # Timed once, by the owner's call path; beta only forwarded it.
    assert call_count(alpha) == 1
    assert call_count(beta) == 0

    # A person's token naming another client (and face) in the call gets its own client's name
    # used, and the server does not see the name either.
    direct = RecordingClient(name=DIRECT)
    async with over_http(f"{alpha.url}/mcp", direct, alpha.token) as session:
        impostor = {FORWARDED_CLIENT_KEY: {"name": CLIENT, "source": "cli"}}
        result = await session.call_tool(TOOL, {}, meta=impostor)  # type: ignore[arg-type]
    assert not result.is_error
    assert result.meta == {"got": None}
    assert call_count(alpha) == 2

    # Beta stopped: whatever it recorded is flushed. Then alpha's rows, under the clients' names.
    assert beta.stop() == 0
    expected = sorted([(CLIENT, 1), (DIRECT, 1)])

    async def counted_once() -> bool:
        return sorted(await usage_rows(fleet_url)) == expected

    await eventually(counted_once, within=20)
    assert alpha.stop() == 0
    assert await usage_by_source(fleet_url) == sorted(
        [(CLIENT, "gateway", 1), (DIRECT, "gateway", 1)]
    )


async def test_the_node_credential_opens_the_gateway_only(
    pair: dict[str, Daemon], fleet_url: str
) -> None:
    alpha = pair["alpha"]
    db = Database(fleet_url)
    try:
        credential = (await fleet_keys(db)).credential("beta")
    finally:
        await db.dispose()
    as_node = {"Authorization": f"Bearer {credential}"}
    wrong = {"Authorization": f"Bearer {credential[:-4]}0000"}
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "probe", "version": "1"},
        },
    }
    mcp_headers = {"Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient(base_url=alpha.url, trust_env=False, timeout=30) as http:
        refused = await http.get("/api/v1/toolservers/servers", headers=as_node)
        assert refused.status_code == 401, refused.text
        assert "opens only the gateway" in refused.json()["message"]
        answer = await http.post(
            f"/mcp/servers/{SERVER}", json=initialize, headers={**as_node, **mcp_headers}
        )
        assert answer.status_code == 200, answer.text
        answer = await http.post("/mcp", json=initialize, headers={**wrong, **mcp_headers})
        assert answer.status_code == 401, answer.text
    # Never written down by either node.
    for node in pair.values():
        for log in node.data_dir.rglob("*.log*"):
            assert credential not in log.read_text(errors="replace"), log


async def test_a_call_for_a_node_that_died_gets_an_error_naming_it(
    pair: dict[str, Daemon],
) -> None:
    alpha, beta = pair["alpha"], pair["beta"]
    async with over_http(f"{beta.url}/mcp", RecordingClient(name=CLIENT), beta.token) as session:
        await session.list_tools()
        assert not (await session.call_tool(TOOL, {})).is_error
        # Stopped on alpha, the server is started there again by a call through beta.
        server_id = servers_of(beta)[SERVER]["id"]
        stop_on(alpha, server_id)
        wait_for(lambda: servers_of(beta)[SERVER]["status"] == "stopped")
        assert answered_by(await session.call_tool(TOOL, {}), pair) == "alpha"
        alpha.kill()
        result = await session.call_tool(TOOL, {})
        assert result.is_error
        # Whether the link saw alpha go before this call ("the connection to on-alpha on node
        # alpha closed") or not ("on-alpha runs on node alpha, which cannot be reached"), the
        # error says where the server runs; so do the next ones.
        text = result.content[0].text  # type: ignore[union-attr]
        assert SERVER in text and "node alpha" in text, text
        result = await session.call_tool(TOOL, {})
        assert result.is_error
        assert "runs on node alpha" in result.content[0].text  # type: ignore[union-attr]

        # Beta's own API is unaffected: there the server is placed on beta, and the same client
        # session calls it where it runs now.
        with beta.client() as client:
            answer = client.put(
                f"/api/v1/toolservers/servers/{server_id}", json={"placement": "beta"}
            )
            assert answer.status_code == 200, answer.text
        wait_for(
            lambda: (
                (servers_of(beta)[SERVER]["node"], servers_of(beta)[SERVER]["status"])
                == ("beta", "running")
            ),
            timeout_s=30,
        )
        assert answered_by(await session.call_tool(TOOL, {}), pair) == "beta"


async def test_a_call_sent_as_its_server_stops_on_the_owner_is_still_answered(
    pair: dict[str, Daemon],
) -> None:
    """Sent on the link just before the forwarding node hears the server stopped (and closes
    that link), the call starts it again on its owner and gets its answer there."""
    alpha, beta = pair["alpha"], pair["beta"]
    async with over_http(f"{beta.url}/mcp", RecordingClient(name=CLIENT), beta.token) as session:
        await session.list_tools()
        assert not (await session.call_tool(TOOL, {})).is_error
        server_id = servers_of(beta)[SERVER]["id"]
        stop_on(alpha, server_id)
        assert answered_by(await session.call_tool(TOOL, {}), pair) == "alpha"


async def test_a_call_for_a_paused_node_ends_at_the_call_timeout(pair: dict[str, Daemon]) -> None:
    alpha, beta = pair["alpha"], pair["beta"]
    async with over_http(f"{beta.url}/mcp", RecordingClient(name=CLIENT), beta.token) as session:
        await session.list_tools()
        assert not (await session.call_tool(TOOL, {})).is_error
        alpha.process.send_signal(signal.SIGSTOP)
        result = await session.call_tool(TOOL, {})
        assert result.is_error
        text = result.content[0].text  # type: ignore[union-attr]
        assert "whoami timed out" in text and "node alpha" in text, text
        # Beta's API answers meanwhile.
        assert servers_of(beta)[SERVER]["placement"] == "alpha"


async def test_every_message_type_passes_through_the_forwarding_node(
    pair: dict[str, Daemon], server_everything: Path
) -> None:
    alpha, beta = pair["alpha"], pair["beta"]
    spec = {
        "name": "everything",
        "command": "node",
        "args": [str(server_everything), "stdio"],
        "placement": "alpha",
    }
    with alpha.client() as client:
        answer = client.post("/api/v1/toolservers/servers", json=spec)
        assert answer.status_code == 201, answer.text
    wait_for(lambda: servers_of(beta)["everything"]["status"] == "running", timeout_s=60)
    recording = RecordingClient(name=CLIENT)
    async with over_http(f"{beta.url}/mcp", recording, beta.token) as session:
        # The API shows the server running as soon as alpha says so, which can be before alpha
        # has stored its tools: a client calls what it was listed.
        await eventually(lambda: lists(session, "everything__echo"))
        # Until beta's link to it is up, beta lists a server alpha runs from the shared
        # catalogue; a call waits for the link.
        warm = await session.call_tool("everything__echo", {"message": "link up"})
        assert not warm.is_error, warm
        await every_feature(session, recording, Naming("everything", aggregated=True))


async def lists(session: Any, name: str) -> bool:
    return name in {tool.name for tool in (await session.list_tools()).tools}
