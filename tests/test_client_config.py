"""`tooldeck client-config`: snippets that point MCP clients at the gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app.runtime.api_token import token_path


def client_config(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "client-config", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=60,
    )


def test_stdio_snippets_name_the_command_and_the_data_dir() -> None:
    claude = json.loads(client_config("claude").stdout)
    entry = claude["mcpServers"]["tooldeck"]
    assert entry["args"][-2:] == ["gateway", "--stdio"]
    assert Path(entry["command"]).exists()
    assert entry["env"]["TOOLDECK_HOME"] == os.environ["TOOLDECK_HOME"]
    vscode = json.loads(client_config("vscode").stdout)
    assert vscode["servers"]["tooldeck"]["type"] == "stdio"


def test_http_snippet_masks_the_token_unless_revealed() -> None:
    masked = client_config("cursor", "--http")
    entry = json.loads(masked.stdout)["mcpServers"]["tooldeck"]
    assert entry["url"] == "http://127.0.0.1:8765/mcp"
    assert entry["headers"]["Authorization"] == "Bearer ********"
    assert "tooldeck token show" in masked.stderr
    revealed = json.loads(client_config("vscode", "--http", "--reveal").stdout)
    token = revealed["servers"]["tooldeck"]["headers"]["Authorization"].removeprefix("Bearer ")
    assert len(token) >= 32 and token != "********"
    # The token revealed is the one the daemon will check.
    assert token_path(Path(os.environ["TOOLDECK_HOME"])).read_text().strip() == token


def test_unknown_client_is_a_usage_error() -> None:
    assert client_config("emacs").returncode == 2
