"""`tooldeck --headless` as an operator meets it: one per data dir, tokens, attach, status, logs."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from app.runtime.api_token import token_path
from app.runtime.lock import lock_path, read_lock
from tests.daemon_helpers import (
    REPO_ROOT,
    Daemon,
    daemon_env,
    launch,
    start_daemon,
    tooldeck_on,
    wait_for,
)
from tests.gateway_helpers import INITIALIZE, MCP_ACCEPT

SERVERS = "/api/v1/toolservers/servers"


tooldeck = tooldeck_on


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(tmp_path_factory.mktemp("daemon") / "home")
    try:
        yield running
    finally:
        running.stop()


# ---- the core runs without Textual ---------------------------------------------------------

NO_TEXTUAL_PROBE = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    from pathlib import Path

    import httpx2

    from app.cli import main
    from app.runtime.lock import read_lock


    def watch() -> None:
        data_dir = Path(os.environ["TOOLDECK_HOME"])
        while (info := read_lock(data_dir)) is None or not info.url:
            time.sleep(0.05)
        token = (data_dir / "api-token").read_text().strip()
        with httpx2.Client(base_url=info.url, trust_env=False, timeout=30) as http:
            headers = {"Authorization": f"Bearer {token}"}
            for path in ("/api/v1/toolservers/servers", "/metrics", "/openapi.json"):
                http.get(path, headers=headers).raise_for_status()
        loaded = sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))
        print("TEXTUAL", loaded, flush=True)
        os.kill(os.getpid(), signal.SIGINT)


    threading.Thread(target=watch, daemon=True).start()
    sys.exit(main(["--headless", "--port", "0"]))
    """
)


def test_headless_never_loads_textual_and_stops_on_sigint(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", NO_TEXTUAL_PROBE],
        capture_output=True,
        text=True,
        env=daemon_env(tmp_path / "home"),
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert "TEXTUAL []" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 0, result.stderr


# ---- one supervisor per data dir -----------------------------------------------------------


def test_a_second_daemon_refuses_naming_the_first_ones_pid(daemon: Daemon) -> None:
    second, stderr_path = launch(daemon.data_dir, "--port", "0")
    assert second.wait(timeout=30) == 1
    stderr = stderr_path.read_text()
    assert f"pid {daemon.pid}" in stderr and "already supervises" in stderr
    # The first one is untouched and still published.
    assert read_lock(daemon.data_dir).pid == daemon.pid  # type: ignore[union-attr]
    with daemon.client() as http:
        assert http.get(SERVERS).status_code == 200


def test_a_stale_lock_is_taken_over(tmp_path: Path) -> None:
    data_dir = tmp_path / "home"
    data_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(data_dir).write_text(
        json.dumps(
            {"pid": dead.pid, "kind": "daemon", "process_started": 1.0, "started_at": 1.0,
             "url": "http://127.0.0.1:9"}
        )
    )  # fmt: skip
    assert read_lock(data_dir) is None
    fresh = start_daemon(data_dir)
    try:
        info = read_lock(data_dir)
        assert info is not None and info.pid == fresh.pid and info.url == fresh.url
    finally:
        assert fresh.stop() == 0
    # A clean stop leaves no lock to take over.
    assert read_lock(data_dir) is None


# ---- auth and binding ------------------------------------------------------------------------


def test_no_auth_off_loopback_is_refused(tmp_path: Path) -> None:
    refused, stderr_path = launch(tmp_path / "home", "--host", "0.0.0.0", "--no-auth")
    assert refused.wait(timeout=30) == 1
    assert "refusing to serve on 0.0.0.0 without auth" in stderr_path.read_text()
    assert read_lock(tmp_path / "home") is None


def test_the_daemon_makes_a_private_token_and_needs_it(daemon: Daemon) -> None:
    assert daemon.token
    assert stat.S_IMODE(token_path(daemon.data_dir).stat().st_mode) == 0o600
    with daemon.client() as http:
        assert http.get("/healthz", headers={"Authorization": ""}).status_code == 200
        assert http.get(SERVERS, headers={"Authorization": ""}).status_code == 401
        assert http.get(SERVERS, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert http.get(SERVERS).status_code == 200


def test_token_rotate_and_show(tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = tooldeck(home, "token", "rotate")
    assert made.returncode == 0 and len(made.stdout.strip()) >= 32
    assert stat.S_IMODE(token_path(home).stat().st_mode) == 0o600
    shown = tooldeck(home, "token", "show")
    assert shown.returncode == 0 and shown.stdout == made.stdout
    rotated = tooldeck(home, "token", "rotate")
    assert rotated.returncode == 0 and rotated.stdout != shown.stdout
    assert token_path(home).read_text().strip() == rotated.stdout.strip()
    assert stat.S_IMODE(token_path(home).stat().st_mode) == 0o600


def test_a_rotated_token_is_judged_at_once_on_the_gateway_path(daemon: Daemon) -> None:
    """`token rotate` by another process: the very next `/mcp` request with the old token is
    refused, and one with the new token admitted (the lean gateway path and the API alike)."""
    old = daemon.token
    assert old is not None
    rotated = tooldeck_on(daemon.data_dir, "token", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip()
    try:
        with httpx2.Client(base_url=daemon.url, trust_env=False, timeout=30) as client:
            for token, status in ((old, 401), (new, 200), (old, 401)):
                headers = {**MCP_ACCEPT, "Authorization": f"Bearer {token}"}
                answer = client.post("/mcp", json=INITIALIZE, headers=headers)
                assert answer.status_code == status, answer.text
                listed = client.get(SERVERS, headers={"Authorization": f"Bearer {token}"})
                assert listed.status_code == status, listed.text
    finally:
        # The other tests of this module use the daemon's first token: put it back.
        temporary = daemon.data_dir / "api-token.restore"
        temporary.write_text(f"{old}\n")
        temporary.chmod(0o600)
        os.replace(temporary, token_path(daemon.data_dir))
    with daemon.client() as http:
        assert http.get(SERVERS).status_code == 200


# ---- CLI attaches, status --------------------------------------------------------------------


def test_cli_verbs_run_inside_the_daemon(daemon: Daemon) -> None:
    home = daemon.data_dir
    with daemon.client() as http:
        wait_for(lambda: http.get(f"{SERVERS}/calculator").json()["status"] == "running")
        before = http.get(f"{SERVERS}/calculator/runtime").json()["pid"]

        added = tooldeck(home, "server", "add", "attached", "--command", "x", "--no-auto-start")
        assert added.returncode == 0, added.stderr
        assert http.get(f"{SERVERS}/attached").status_code == 200
        events = http.get(f"{SERVERS}/attached/events").json()
        assert events[0]["actor"].startswith("cli")

        # A runtime operation, which a CLI on its own could not do: the daemon's supervisor does.
        restarted = tooldeck(home, "bulk", "restart", "calculator")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        after = wait_for(lambda: http.get(f"{SERVERS}/calculator/runtime").json()["pid"])
        assert after != before

        missing = tooldeck(home, "server", "show", "ghost")
        assert missing.returncode == 1 and "no server 'ghost'" in missing.stderr


def test_status_of_a_running_daemon(daemon: Daemon) -> None:
    status = tooldeck(daemon.data_dir, "status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["daemon"] == "running" and report["pid"] == daemon.pid
    assert report["url"] == daemon.url and report["servers_total"] >= 1
    assert report["uptime_s"] >= 0


def test_status_without_a_daemon_exits_3(tmp_path: Path) -> None:
    stopped = tooldeck(tmp_path / "home", "status")
    assert stopped.returncode == 3
    assert stopped.stdout.splitlines()[0].split() == ["daemon", "not", "running"]


def test_prometheus_metrics_count_calls(daemon: Daemon) -> None:
    with daemon.client() as http:
        wait_for(lambda: http.get(f"{SERVERS}/calculator").json()["status"] == "running")
        for _ in range(3):
            answer = http.post(
                "/api/v1/toolservers/tools/subtract/call",
                params={"server": "calculator"},
                json={"arguments": {"a": 5, "b": 2}},
            )
            assert answer.json()["structured_content"] == {"result": 3}

        def scraped() -> str:
            text = http.get("/metrics").text
            # The stored counter moves when the usage writer flushes (the histogram at once).
            counted = 'tooldeck_tool_calls_total{server="calculator",tool="subtract"} 3'
            return text if counted in text else ""

        text = wait_for(scraped)
    assert 'tooldeck_server_up{server="calculator"} 1' in text
    assert 'tooldeck_tool_calls_total{server="calculator",tool="subtract"} 3' in text
    assert 'tooldeck_server_call_latency_seconds{server="calculator",quantile="0.95"}' in text


async def _gateway_session(url: str, token: str | None) -> tuple[list[str], object]:
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, trust_env=False, timeout=30) as client,
        streamable_http_client(f"{url}/mcp", http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = [tool.name for tool in (await session.list_tools()).tools]
        result = await session.call_tool("calculator__add", {"a": 20, "b": 22})
        return tools, result.structured_content


def test_the_mcp_gateway_is_served_at_mcp_behind_the_token(daemon: Daemon) -> None:
    import asyncio

    with daemon.client() as http:
        wait_for(lambda: http.get(f"{SERVERS}/calculator").json()["status"] == "running")
        refused = http.post("/mcp", json={}, headers={"Authorization": ""})
        assert refused.status_code == 401 and refused.json()["error"] == "Unauthorized"
    tools, added = asyncio.run(_gateway_session(daemon.url, daemon.token))
    assert "calculator__add" in tools
    assert added == {"result": 42}


# ---- logs ------------------------------------------------------------------------------------


def test_json_log_lines_carry_the_request_id(daemon: Daemon) -> None:
    with daemon.client() as http:
        http.get(f"{SERVERS}/ghost", headers={"X-Request-ID": "trace-me-42"})
    log_file = daemon.data_dir / "logs" / "daemon.log"

    def logged() -> list[dict[str, object]]:
        lines = [json.loads(line) for line in log_file.read_text().splitlines()]
        return [line for line in lines if line.get("request_id") == "trace-me-42"]

    entry = wait_for(logged)[0]
    assert entry["status"] == 404 and entry["path"] == f"{SERVERS}/ghost"
    assert any(line.get("request_id") == "trace-me-42" for line in daemon.log_lines())
    assert daemon.token not in log_file.read_text()
