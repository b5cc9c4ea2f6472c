"""OAuth 2.1 upstreams against a real OAuth-protected MCP server on 127.0.0.1 (a subprocess).

The browser is played by an HTTP client that opens the authorization URL and reads where the
authorization server redirects it, as a person's browser would be sent.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from sqlalchemy import update

from app.core.errors import InvalidInput, StartFailed
from app.core.settings import Settings
from app.ops.facade import LocalOperations
from app.runtime.connections import NeedsLogin
from app.runtime.server_state import ServerState
from app.runtime.supervisor import Supervisor
from storage.models import ServerOAuth
from tests.conftest import PYTHON, TEST_SERVERS
from tests.runtime_helpers import eventually, fast_supervisor, free_port, listening
from tests.test_tui_pilot import main_screen
from tests.tui_helpers import add_servers, drawn_lines, make_app, settle
from widgets.health_pane import HealthPane
from widgets.status_bar import StatusBar


@pytest.fixture(params=["streamable-http", "sse"])
async def oauth_server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str]]:
    """(base URL, the MCP endpoint) of a running OAuth-protected server."""
    port = free_port()
    transport: str = request.param
    process = await asyncio.create_subprocess_exec(
        PYTHON,
        str(TEST_SERVERS / "oauth_protected.py"),
        str(port),
        transport,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await eventually(lambda: listening(port), within=20)
        base = f"http://127.0.0.1:{port}"
        yield base, f"{base}/sse" if transport == "sse" else f"{base}/mcp"
    finally:
        process.kill()
        await process.wait()


@pytest.fixture
async def supervised(ops: LocalOperations) -> AsyncIterator[Supervisor]:
    supervisor = fast_supervisor(ops)
    yield supervisor
    await supervisor.shutdown()


def _definition(url: str) -> dict[str, Any]:
    transport = "sse" if url.endswith("/sse") else "streamable_http"
    return {"name": "guarded", "transport": transport, "url": url}


async def _browse(authorization_url: str) -> str:
    """What a browser does with the URL: the authorization server approves and redirects."""
    async with httpx2.AsyncClient() as browser:
        response = await browser.get(authorization_url)
    assert response.status_code in (302, 303, 307), response.text
    return response.headers["location"]


async def _stats(base: str) -> dict[str, int]:
    async with httpx2.AsyncClient() as client:
        return (await client.get(f"{base}/test/stats")).json()


async def _stored(ops: LocalOperations) -> ServerOAuth | None:
    server = await ops.get_server("guarded")
    async with ops.db.read() as session:
        return await session.get(ServerOAuth, server.id)


async def _login(ops: LocalOperations) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    started = await ops.begin_login("guarded", redirect_uri, actor="t")
    assert started.authorization_url.startswith("http://127.0.0.1:")
    redirected = await _browse(started.authorization_url)
    assert redirected.startswith(redirect_uri + "?")
    server = await ops.finish_login("guarded", redirected, actor="t")
    assert server.status == "running", server.last_startup_error


async def test_a_server_without_tokens_needs_login_and_is_not_retried(
    ops: LocalOperations, supervised: Supervisor, oauth_server: tuple[str, str]
) -> None:
    base, url = oauth_server
    await ops.create_server(_definition(url), actor="t")
    with pytest.raises(StartFailed, match="needs login: run `tooldeck server login guarded`"):
        await ops.start_server("guarded", actor="t")
    server = await ops.get_server("guarded")
    assert server.status == "needs_login"
    assert server.last_startup_error == "needs login: run `tooldeck server login guarded`"
    # Not a failure to count towards auto-disable, and no retry behind our back.
    assert server.consecutive_failures == 0 and server.enabled
    assert not supervised.is_running(server.id)
    assert supervised._handles[server.id].task is None
    # An unattended start registers nothing and asks for nothing at the authorization server.
    assert (await _stats(base))["registered"] == 0


async def test_login_then_tools_work_tokens_stay_secret_and_refresh(
    ops: LocalOperations, supervised: Supervisor, oauth_server: tuple[str, str]
) -> None:
    base, url = oauth_server
    await ops.create_server(_definition(url), actor="t")
    await _login(ops)

    tools = {tool.name for tool in await ops.list_tools("guarded")}
    assert tools == {"whoami", "add"}
    result = await ops.call_tool("guarded", "add", {"a": 2, "b": 3}, source="cli")
    assert not result.is_error and "5" in json.dumps(result.model_dump(mode="json"))

    row = await _stored(ops)
    assert row is not None and row.tokens and row.client_info
    tokens = json.loads(row.tokens)
    secrets = [tokens["access_token"], tokens["refresh_token"]]
    shown = [
        (await ops.get_server("guarded")).model_dump_json(),
        (await ops.get_server("guarded", reveal=True)).model_dump_json(),
        json.dumps(await ops.export_servers(["guarded"])),
        json.dumps(await ops.export_servers(["guarded"], include_secrets=True)),
        "\n".join(await ops.log_tail("guarded", 1000)),
        json.dumps([event.model_dump(mode="json") for event in await ops.list_events("guarded")]),
    ]
    for text in shown:
        for secret in secrets:
            assert secret not in text

    # The access token expired while nobody looked: the server refuses it, and the recorded
    # expiry says so, so the next start refreshes instead of asking for a login.
    async with httpx2.AsyncClient() as client:
        assert (await client.post(f"{base}/test/expire")).status_code == 200
    async with ops.db.session() as session:
        await session.execute(
            update(ServerOAuth)
            .where(ServerOAuth.server_id == row.server_id)
            .values(expires_at=time.time() - 1)
        )
    restarted = await ops.restart_server("guarded", actor="t")
    assert restarted.status == "running", restarted.last_startup_error
    assert (await _stats(base))["refreshed"] == 1
    refreshed = await _stored(ops)
    assert refreshed is not None and refreshed.expires_at and refreshed.expires_at > time.time()
    assert json.loads(refreshed.tokens or "{}")["access_token"] != tokens["access_token"]
    result = await ops.call_tool("guarded", "whoami", {}, source="cli")
    assert "authorized" in json.dumps(result.model_dump(mode="json"))


async def test_logout_forgets_the_tokens_and_the_server_needs_login_again(
    ops: LocalOperations, supervised: Supervisor, oauth_server: tuple[str, str]
) -> None:
    base, url = oauth_server
    await ops.create_server(_definition(url), actor="t")
    await _login(ops)
    assert (await _stats(base))["refresh"] == 1
    server = await ops.logout_server("guarded", actor="t")
    assert server.status == "needs_login"
    assert await _stored(ops) is None
    # Revoked at the authorization server too, not only forgotten here.
    stats = await _stats(base)
    assert stats["revoked"] == 2 and stats["refresh"] == 0 and stats["access"] == 0
    (logged_out,) = await ops.list_events("guarded", kind="logged_out")
    assert logged_out.message == "logged out: tokens revoked" and logged_out.actor == "t"
    assert [event.kind for event in await ops.list_events("guarded", kind="logged_in")]
    assert not supervised.is_running(server.id)
    with pytest.raises(StartFailed, match="needs login"):
        await ops.start_server("guarded", actor="t")


async def test_login_refuses_what_cannot_log_in(
    ops: LocalOperations, oauth_server: tuple[str, str]
) -> None:
    _base, url = oauth_server
    await ops.create_server(_definition(url), actor="t")
    await ops.create_server({"name": "local", "command": PYTHON, "args": ["-V"]}, actor="t")
    with pytest.raises(InvalidInput, match="local is a stdio server: it has no login"):
        await ops.begin_login("local", "http://127.0.0.1:1/callback", actor="t")
    started = await ops.begin_login("guarded", "http://127.0.0.1:9/callback", actor="t")
    with pytest.raises(
        InvalidInput, match=re.escape("not the redirect to http://127.0.0.1:9/callback")
    ):
        await ops.finish_login("guarded", "http://example.com/?code=x", actor="t")
    assert started.authorization_url
    assert await _stored(ops) is None


async def test_the_dashboard_shows_a_server_that_needs_login(
    settings: Settings, ops: LocalOperations
) -> None:
    (server_id,) = await add_servers(ops, "guarded")
    await ServerState(ops.db).needs_login(server_id, NeedsLogin("guarded").message)
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        main = main_screen(app)
        state = main.query_one(StatusBar).state
        assert state is not None and state.counts.get("needs_login") == 1
        row = next(line for line in drawn_lines(main.servers) if "guarded" in line)
        assert "⚿" in row
        pane = " ".join(" ".join(drawn_lines(main.query_one(HealthPane))).split())
        assert "status ⚿ needs_login" in pane
        assert "login needs login: run `tooldeck server login guarded`" in pane


async def test_login_to_a_server_without_oauth_says_so(ops: LocalOperations) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        PYTHON,
        str(TEST_SERVERS / "scripted.py"),
        "--http",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await eventually(lambda: listening(port), within=20)
        await ops.create_server(_definition(f"http://127.0.0.1:{port}/mcp"), actor="t")
        with pytest.raises(InvalidInput, match="guarded did not ask for a login: it has no OAuth"):
            await ops.begin_login("guarded", "http://127.0.0.1:9/callback", actor="t")
    finally:
        process.kill()
        await process.wait()
    assert await _stored(ops) is None
