"""`tooldeck client-config`: for each MCP client, an entry its configuration file accepts, pointing
at the gateway of this data dir (the running daemon's address over HTTP)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from app.runtime.api_token import token_path
from tests.cli_runner import tooldeck
from tests.daemon_helpers import start_daemon
from tests.gateway_helpers import INITIALIZE, MCP_ACCEPT


def client_config(*args: str) -> tuple[dict[str, object], str]:
    result = tooldeck("client-config", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def test_stdio_snippets_name_the_command_and_the_data_dir() -> None:
    claude, notes = client_config("claude")
    entry = claude["mcpServers"]["tooldeck"]  # type: ignore[index]
    assert entry["args"][-2:] == ["gateway", "--stdio"]
    assert Path(entry["command"]).exists()
    assert entry["env"]["TOOLDECK_HOME"] == os.environ["TOOLDECK_HOME"]
    assert "# for Claude Desktop's claude_desktop_config.json" in notes
    vscode, _ = client_config("vscode")
    assert vscode["servers"]["tooldeck"]["type"] == "stdio"  # type: ignore[index]


def test_claude_desktop_never_gets_a_url_entry_it_would_reject() -> None:
    """Its file takes only launched servers: over "HTTP" it gets the stdio bridge, and is told."""
    claude, notes = client_config("claude", "--http", "--reveal")
    entry = claude["mcpServers"]["tooldeck"]  # type: ignore[index]
    assert set(entry) == {"command", "args", "env"}
    assert entry["args"][-2:] == ["gateway", "--stdio"]
    assert "takes only servers it launches, not a URL" in notes


def test_http_entries_without_a_daemon_carry_a_gateway_token_of_their_own() -> None:
    home = Path(os.environ["TOOLDECK_HOME"])
    cursor, notes = client_config("cursor", "--http")
    entry = cursor["mcpServers"]["tooldeck"]  # type: ignore[index]
    assert entry["url"] == "http://127.0.0.1:8765/mcp"
    first = entry["headers"]["Authorization"].removeprefix("Bearer ")
    assert first.startswith("tdk_")
    assert "no daemon is running" in notes and "tooldeck token revoke cursor" in notes
    # The admin token is neither made nor written: the entry's token is a gateway one.
    assert not token_path(home).exists()
    again, notes = client_config("cursor", "--http")
    second = again["mcpServers"]["tooldeck"]["headers"]["Authorization"]  # type: ignore[index]
    assert second != f"Bearer {first}" and "no longer works" in notes
    listed = json.loads(tooldeck("token", "list", "--json").stdout)
    assert [(token["name"], token["scope"]) for token in listed] == [("cursor", "gateway")]


def test_http_entries_reach_the_gateway_and_nothing_else(tmp_path: Path) -> None:
    home = Path(os.environ["TOOLDECK_HOME"])
    daemon = start_daemon(home)  # on a free port, not the default
    try:
        assert not daemon.url.endswith(":8765")
        cursor, notes = client_config("cursor", "--http", "--reveal")
        entry = cursor["mcpServers"]["tooldeck"]  # type: ignore[index]
        assert entry["url"] == f"{daemon.url}/mcp"
        assert daemon.token and daemon.token not in json.dumps(cursor)
        assert "no daemon" not in notes
        gateway = {"Authorization": entry["headers"]["Authorization"], **MCP_ACCEPT}
        with daemon.client() as http:
            assert http.post("/mcp", headers=gateway, json=INITIALIZE).status_code == 200
            refused = http.get("/api/v1/toolservers/servers", headers=gateway)
            assert refused.status_code == 403
        # A profile's entry has a token bound to that profile.
        assert tooldeck("profile", "add", "coding", "--server", "calculator").returncode == 0
        vscode, notes = client_config("vscode", "--http", "--profile", "coding")
        server = vscode["servers"]["tooldeck-coding"]  # type: ignore[index]
        assert server["type"] == "http" and server["url"] == f"{daemon.url}/mcp/profiles/coding"
        bound = {"Authorization": server["headers"]["Authorization"], **MCP_ACCEPT}
        assert "/mcp/profiles/coding" in notes
        with daemon.client() as http:
            reached = http.post("/mcp/profiles/coding", headers=bound, json=INITIALIZE)
            assert reached.status_code == 200
            assert http.post("/mcp", headers=bound, json=INITIALIZE).status_code == 403
    finally:
        assert daemon.stop() == 0


def test_unknown_client_is_a_usage_error() -> None:
    assert tooldeck("client-config", "emacs").returncode == 2
