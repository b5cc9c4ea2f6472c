"""The clients screen's facts, end to end: a real SDK client connected through the gateway
(HTTP to a real daemon, a `gateway --stdio` bridge to it, and the in-process stdio face) to a
real upstream from tests/servers; the API, the CLI and the attached dashboard show its session
and its calls, and the session is gone once the client disconnects (or DELETEs it, or idles
out)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from app.core.settings import Settings
from app.faces.gateway.http_face import SESSION_IDLE_S
from tests.conftest import PYTHON, TEST_SERVERS
from tests.daemon_helpers import Daemon, start_daemon, tooldeck_on
from tests.gateway_helpers import INITIALIZE, RecordingClient, over_http, over_stdio, tooldeck
from tests.runtime_helpers import eventually

pytestmark = pytest.mark.asyncio
TINY = str(TEST_SERVERS / "tiny.py")


def _clients(daemon: Daemon, **params: str) -> dict[str, Any]:
    with daemon.client() as http:
        answer = http.get("/api/v1/gateway/clients", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _sessions_of(report: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [s for s in report["sessions"] if s["client_name"] == name]


def _cli_json(home: Path, *args: str) -> Any:
    done = tooldeck_on(home, "clients", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("clients") / "home"
    running = start_daemon(home)
    try:
        added = tooldeck_on(home, "server", "add", "tiny", "--command", PYTHON, "--arg", TINY)
        assert added.returncode == 0, added.stderr
        yield running
    finally:
        running.stop()


async def test_an_http_client_is_listed_with_its_calls_until_it_leaves(daemon: Daemon) -> None:
    home = daemon.data_dir
    issued = tooldeck_on(home, "token", "add", "deck-client", "--scope", "gateway", "--json")
    assert issued.returncode == 0, issued.stderr
    token = json.loads(issued.stdout)["token"]
    client = RecordingClient(name="clients-http")

    async with over_http(f"{daemon.url}/mcp", client, token=token) as session:
        await session.list_tools()
        for _ in range(3):
            assert not (await session.call_tool("tiny__ping", {})).is_error
        assert (await session.call_tool("calculator__sqrt", {"x": -1})).is_error

        report = await asyncio.to_thread(_clients, daemon, period="1h")
        assert report["gateway_running"] is True
        [listed] = _sessions_of(report, "clients-http")
        assert listed["client_version"] == "1.0"
        assert listed["protocol_version"] == "2025-11-25"
        assert listed["transport"] == "http"
        assert listed["endpoint"] == "aggregated"
        assert listed["token_name"] == "deck-client"
        assert (listed["calls"], listed["errors"]) == (4, 1)
        [figures] = [c for c in report["clients"] if c["client_name"] == "clients-http"]
        assert (figures["calls"], figures["errors"], figures["sessions"]) == (4, 1, 1)
        assert figures["p95_response_time_ms"] is not None

        # The CLI, attached to the daemon, gives the same; and one client's tools, most first.
        detail = await asyncio.to_thread(_cli_json, home, "clients-http", "--period", "1h")
        tools = [
            (t["server_name"], t["tool_name"], t["calls"], t["errors"]) for t in detail["tools"]
        ]
        assert tools == [("tiny", "ping", 3, 0), ("calculator", "sqrt", 1, 1)]
        table = await asyncio.to_thread(tooldeck_on, home, "clients", "--period", "1h")
        assert "clients-http" in table.stdout and "deck-client" in table.stdout

    async def gone() -> bool:
        report = await asyncio.to_thread(_clients, daemon, period="1h")
        return not _sessions_of(report, "clients-http")

    await eventually(gone)
    # Its figures stay: they are the usage rows', not the session's.
    report = await asyncio.to_thread(_clients, daemon, period="1h")
    assert [c["calls"] for c in report["clients"] if c["client_name"] == "clients-http"] == [4]


async def test_a_bridged_stdio_client_is_the_daemons_until_eof(daemon: Daemon) -> None:
    client = RecordingClient(name="clients-bridge")
    async with over_stdio(daemon.data_dir, client, "--server", "tiny") as session:
        await session.call_tool("ping", {})
        report = await asyncio.to_thread(_clients, daemon)
        [listed] = _sessions_of(report, "clients-bridge")
        assert (listed["transport"], listed["endpoint"]) == ("bridge", "server tiny")
        assert listed["token_name"] is None and listed["calls"] == 1

    async def gone() -> bool:
        return not _sessions_of(await asyncio.to_thread(_clients, daemon), "clients-bridge")

    await eventually(gone)


async def test_the_attached_dashboard_shows_the_client_live_until_it_leaves(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    from textual.widgets import DataTable

    from app.core.settings import load_settings
    from app.tui.app import TooldeckApp
    from app.tui.screens.clients import ClientDetailScreen, ClientsScreen

    def rows(app: TooldeckApp, table_id: str) -> list[list[str]]:
        table = app.screen.query_one(f"#{table_id}", DataTable)
        return [[str(cell) for cell in table.get_row(row.key)] for row in table.ordered_rows]

    def session_row(app: TooldeckApp) -> list[str] | None:
        found = [row for row in rows(app, "clients-sessions") if row[0] == "clients-deck"]
        return found[0] if found else None

    async def shown(predicate: Any) -> Any:
        async def probe() -> Any:
            return predicate()

        return await eventually(probe, within=30)

    monkeypatch.setenv("TOOLDECK_HOME", str(daemon.data_dir))
    app = TooldeckApp(load_settings(daemon.data_dir), refresh_interval=0.2, cursor_blink=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await shown(lambda: app.ops is not None and app.data is not None)
        await pilot.press("w")
        await shown(lambda: isinstance(app.screen, ClientsScreen))
        client = RecordingClient(name="clients-deck")
        async with over_http(f"{daemon.url}/mcp", client, token=daemon.token) as session:
            await session.call_tool("tiny__ping", {})
            await session.call_tool("tiny__ping", {})
            # Endpoint, token, calls: the file token is the admin's.
            row = await shown(lambda: (r := session_row(app)) is not None and r[4] == "2" and r)
            assert row[1:3] == ["aggregated", "admin"] and row[6] == "http"
            await shown(
                lambda: (
                    ["clients-deck", "1", "2", "0"] in [r[:4] for r in rows(app, "clients-figures")]
                )
            )
            app.screen.query_one("#clients-sessions", DataTable).focus()
            keys = [r[0] for r in rows(app, "clients-sessions")]
            for _ in range(keys.index("clients-deck")):
                await pilot.press("down")
            await pilot.press("enter")
            await shown(lambda: isinstance(app.screen, ClientDetailScreen))
            await shown(
                lambda: [r[:3] for r in rows(app, "client-tools")] == [["ping", "tiny", "2"]]
            )
            await pilot.press("escape")
        await shown(lambda: isinstance(app.screen, ClientsScreen) and session_row(app) is None)
        await pilot.press("q")


async def test_an_unknown_client_is_a_404_with_a_message(daemon: Daemon) -> None:
    with daemon.client() as http:
        answer = http.get("/api/v1/gateway/clients/detail", params={"name": "nobody"})
        assert answer.status_code == 404
        assert "nobody" in answer.json()["message"]
        bad = http.get("/api/v1/gateway/clients", params={"period": "2y"})
        assert bad.status_code in (400, 422) and "period" in bad.text
    done = tooldeck_on(daemon.data_dir, "clients", "nobody")
    assert done.returncode != 0 and "nobody" in done.stderr and len(done.stderr.splitlines()) == 1


async def test_the_in_process_stdio_gateway_serves_its_own_sessions(tmp_path: Path) -> None:
    home = tmp_path / "stdio-home"
    tooldeck(home, "server", "add", "tiny", "--command", PYTHON, "--arg", TINY)
    client = RecordingClient(name="clients-stdio")
    async with over_stdio(home, client) as session:
        await session.call_tool("tiny__ping", {})
        # The CLI attaches to the supervising `gateway --stdio` and reads its sessions.
        report = await asyncio.to_thread(_cli_json, home)
        assert report["gateway_running"] is True
        [listed] = _sessions_of(report, "clients-stdio")
        assert (listed["transport"], listed["calls"]) == ("stdio", 1)
    # Nothing runs a gateway now: the figures stay, the sessions say there is none.
    report = await asyncio.to_thread(_cli_json, home)
    assert report["gateway_running"] is False and report["sessions"] == []
    assert [c["calls"] for c in report["clients"] if c["client_name"] == "clients-stdio"] == [1]


class _Answers:
    """Where the HTTP face writes its answers (the face's own output, not the protocol)."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes, list[tuple[bytes, bytes]]]] = []

    def json(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.sent.append((status, body, headers))

    def start_sse(self, headers: list[tuple[bytes, bytes]]) -> None:
        pass

    def sse(self, data: bytes) -> None:
        pass

    def end(self) -> None:
        pass


async def test_http_sessions_end_on_delete_and_on_idle_expiry(settings: Settings) -> None:
    from app.faces.gateway.http_face import HttpCore
    from app.faces.gateway.service import running_router
    from app.ops.bootstrap import running_core

    body = json.dumps(INITIALIZE).encode()
    headers = {b"host": b"127.0.0.1", b"content-type": b"application/json"}

    def opened(core: HttpCore) -> bytes:
        answers = _Answers()
        core.handle(b"POST", "/mcp", headers, body, answers)
        [(status, _body, extra)] = answers.sent
        assert status == 200
        return dict(extra)[b"mcp-session-id"]

    async with running_core(settings) as ops:
        async with running_router(ops) as router:
            core = HttpCore(router)
            deleted, idle = opened(core), opened(core)
            assert [s.client_name for s in (await ops.clients()).sessions] == ["access-test"] * 2

            answers = _Answers()
            core.handle(b"DELETE", "/mcp", {**headers, b"mcp-session-id": deleted}, b"", answers)
            assert answers.sent[0][0] == 200
            assert len((await ops.clients()).sessions) == 1

            core.sessions[idle].last_seen -= SESSION_IDLE_S + 1
            core._sweep()
            report = await ops.clients()
            assert report.sessions == [] and report.gateway_running
            core.close()
        # The gateway gone, the facade says so instead of listing no one.
        assert not (await ops.clients()).gateway_running
