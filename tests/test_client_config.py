"""`tooldeck client-config`: for each MCP client, an entry its configuration file accepts, pointing
at the gateway of this data dir (the running daemon's address over HTTP)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from app.runtime.api_token import token_path
from tests.cli_runner import one_line_error, tooldeck
from tests.daemon_helpers import start_daemon


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


def test_http_entries_without_a_daemon_say_so_and_never_make_a_token() -> None:
    home = Path(os.environ["TOOLDECK_HOME"])
    cursor, notes = client_config("cursor", "--http")
    entry = cursor["mcpServers"]["tooldeck"]  # type: ignore[index]
    assert entry == {
        "url": "http://127.0.0.1:8765/mcp",
        "headers": {"Authorization": "Bearer ********"},
    }
    assert "no daemon is running" in notes and "tooldeck token show" in notes
    line = one_line_error(tooldeck("client-config", "vscode", "--http", "--reveal"))
    assert "no API token in" in line
    assert not token_path(home).exists()


def test_http_entries_use_the_running_daemons_address_and_token(tmp_path: Path) -> None:
    home = Path(os.environ["TOOLDECK_HOME"])
    daemon = start_daemon(home)  # on a free port, not the default
    try:
        assert not daemon.url.endswith(":8765")
        cursor, notes = client_config("cursor", "--http", "--reveal")
        assert cursor["mcpServers"]["tooldeck"] == {  # type: ignore[index]
            "url": f"{daemon.url}/mcp",
            "headers": {"Authorization": f"Bearer {daemon.token}"},
        }
        assert "no daemon" not in notes
        # VS Code asks for the token and keeps it in its secret storage: nothing in the file.
        vscode, _ = client_config("vscode", "--http")
        server = vscode["servers"]["tooldeck"]  # type: ignore[index]
        assert server["type"] == "http" and server["url"] == f"{daemon.url}/mcp"
        assert server["headers"] == {"Authorization": "Bearer ${input:tooldeck-token}"}
        assert vscode["inputs"] == [  # type: ignore[comparison-overlap]
            {
                "type": "promptString",
                "id": "tooldeck-token",
                "description": "Tooldeck's API token (`tooldeck token show`)",
                "password": True,
            }
        ]
    finally:
        assert daemon.stop() == 0


def test_unknown_client_is_a_usage_error() -> None:
    assert tooldeck("client-config", "emacs").returncode == 2
