"""Every read takes --json for scripts; reading the API token never makes one."""

from __future__ import annotations

import json
import os
from pathlib import Path

from app.runtime.api_token import token_path
from tests.cli_runner import one_line_error, tooldeck


def test_token_show_never_makes_a_token(tmp_path: Path) -> None:
    home = Path(os.environ["TOOLDECK_HOME"])
    line = one_line_error(tooldeck("token", "show"))
    assert line.startswith(f"tooldeck: no API token in {home}: the daemon makes it")
    assert not token_path(home).exists()
    made = tooldeck("token", "rotate")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    shown = tooldeck("token", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {"token": token}


def test_logs_export_and_db_current_take_json(tmp_path: Path) -> None:
    home = Path(os.environ["TOOLDECK_HOME"])
    added = tooldeck("server", "add", "demo", "--command", "x", "--env", "API_KEY=s3cret")
    assert added.returncode == 0, added.stderr
    (home / "logs").mkdir(parents=True, exist_ok=True)
    (home / "logs" / "demo.log").write_text("one\ntwo\n")
    logs = tooldeck("server", "logs", "demo", "--json")
    assert logs.returncode == 0, logs.stderr
    assert json.loads(logs.stdout) == ["one", "two"]

    exported = tooldeck("export", "demo", "--json")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["mcpServers"]["demo"]["env"] == {"API_KEY": "********"}
    written = tooldeck("export", "demo", "--json", "-o", str(tmp_path / "out.json"))
    assert written.returncode == 0, written.stderr
    assert json.loads(written.stdout) == {"path": str(tmp_path / "out.json"), "servers": ["demo"]}

    current = tooldeck("db", "current", "--json")
    assert current.returncode == 0, current.stderr
    revision = json.loads(current.stdout)
    assert revision["up_to_date"] is True and revision["current"] == revision["head"]


def test_server_list_reveals_env_values_when_asked() -> None:
    added = tooldeck("server", "add", "demo", "--command", "x", "--env", "API_KEY=s3cret")
    assert added.returncode == 0, added.stderr
    masked = json.loads(tooldeck("server", "list", "--json").stdout)
    revealed = json.loads(tooldeck("server", "list", "--json", "--reveal").stdout)
    by_name = {server["name"]: server for server in revealed}
    assert {server["name"]: server for server in masked}["demo"]["env"] == {"API_KEY": "********"}
    assert by_name["demo"]["env"] == {"API_KEY": "s3cret"}
