"""`tooldeck import` and `tooldeck export` end to end, in subprocesses, on a temporary home."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.cli_runner import tooldeck

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CLAUDE = str(FIXTURES / "claude_desktop_config.json")
SECRETS = ("BSA-fixture-secret-123", "ghp_fixtureSecret456")


def server_names(env: dict[str, str] | None = None) -> list[str]:
    listed = tooldeck("server", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    return sorted(server["name"] for server in json.loads(listed.stdout))


def test_import_of_the_claude_file_then_a_masked_vscode_export() -> None:
    imported = tooldeck("import", CLAUDE)
    assert imported.returncode == 0, imported.stderr
    assert "Brave Search" in imported.stdout  # the name mapping is shown
    assert "3 created" in imported.stdout
    assert "ignored unknown key 'autoApprove'" in imported.stderr
    assert server_names() == ["brave-search", "calculator", "github", "sqlite"]

    exported = tooldeck("export", "--format", "vscode")
    assert exported.returncode == 0, exported.stderr
    servers = json.loads(exported.stdout)["servers"]
    assert servers["brave-search"]["env"] == {"BRAVE_API_KEY": "********"}
    assert servers["github"]["type"] == "stdio"
    assert not any(secret in exported.stdout for secret in SECRETS)
    assert "--include-secrets" in exported.stderr


def test_dry_run_shows_the_plan_and_writes_nothing() -> None:
    planned = tooldeck("import", CLAUDE, "--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    report = json.loads(planned.stdout)
    assert report["dry_run"] is True
    assert {item["name"]: item["action"] for item in report["items"]} == {
        "brave-search": "create",
        "github": "create",
        "sqlite": "create",
    }
    assert server_names() == ["calculator"]
    text = tooldeck("import", CLAUDE, "--dry-run")
    assert "would create" in text.stdout
    assert "nothing was written" in text.stdout


def test_conflicts_skip_by_default_and_overwrite_or_rename_on_request() -> None:
    assert tooldeck("server", "add", "github", "--command", "old").returncode == 0

    skipped = json.loads(tooldeck("import", CLAUDE, "--json").stdout)
    assert [item["action"] for item in skipped["items"] if item["name"] == "github"] == ["skip"]

    renamed = json.loads(tooldeck("import", CLAUDE, "--rename", "--json").stdout)
    assert {item["name"]: item["action"] for item in renamed["items"]} == {
        "brave-search-2": "rename",
        "github-2": "rename",
        "sqlite-2": "rename",
    }

    overwritten = tooldeck("import", CLAUDE, "--overwrite")
    assert overwritten.returncode == 0, overwritten.stderr
    assert "overwritten" in overwritten.stdout
    shown = json.loads(tooldeck("server", "show", "github", "--json").stdout)
    assert shown["command"] == "docker"
    events = json.loads(tooldeck("events", "github", "--json").stdout)
    assert events[0]["kind"] == "updated"
    assert events[0]["actor"].startswith("cli")

    builtin = tooldeck(
        "import", "-", "--overwrite", stdin='{"mcpServers": {"calculator": {"command": "x"}}}'
    )
    assert builtin.returncode == 0, builtin.stderr
    assert "an import never replaces it" in builtin.stdout


def test_export_with_secrets_to_a_file_round_trips_into_an_empty_home(tmp_path: Path) -> None:
    assert tooldeck("import", CLAUDE).returncode == 0
    assert tooldeck("import", str(FIXTURES / "cursor_mcp.json")).returncode == 0
    out = tmp_path / "exported.json"

    exported = tooldeck("export", "--include-secrets", "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == ""
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert all(secret in out.read_text() for secret in SECRETS)

    other = {"TOOLDECK_HOME": str(tmp_path / "other")}
    imported = tooldeck("import", str(out), env=other)
    assert imported.returncode == 0, imported.stderr

    def servers(env: dict[str, str] | None = None) -> dict[str, Any]:
        listed = tooldeck("server", "list", "--json", env=env)
        keep = ("transport", "command", "args", "cwd", "url")
        return {s["name"]: {k: s[k] for k in keep} for s in json.loads(listed.stdout)}

    assert servers(other) == servers()
    shown = json.loads(tooldeck("server", "show", "github", "--reveal", "--json", env=other).stdout)
    assert shown["env"] == {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_fixtureSecret456"}


def test_import_from_known_client_locations(tmp_path: Path) -> None:
    home = tmp_path / "user"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": ""}
    missing = tooldeck("import", "--from", "claude", env=env)
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        "tooldeck: Claude Desktop's configuration not found at "
        f"{home}/.config/Claude/claude_desktop_config.json"
    )

    claude_dir = home / ".config" / "Claude"
    claude_dir.mkdir(parents=True)
    (claude_dir / "claude_desktop_config.json").write_text(Path(CLAUDE).read_text())
    cursor_dir = home / ".cursor"
    cursor_dir.mkdir()
    (cursor_dir / "mcp.json").write_text((FIXTURES / "cursor_mcp.json").read_text())

    assert tooldeck("import", "--from", "claude", env=env).returncode == 0
    assert tooldeck("import", "--from", "cursor", env=env).returncode == 0
    assert "linear" in server_names(env) and "sqlite" in server_names(env)


GOOD = {"command": "npx"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{ not json", "is not JSON: Expecting property name"),
        ('[{"mcpServers": {}}]', "expected a JSON object with mcpServers or servers, got a list"),
        ('{"preferences": {}}', "no mcpServers or servers object"),
        ({"mcpServers": {"good": GOOD, "bad": {"env": {}}}}, "mcpServers.bad: has neither"),
        (
            {"mcpServers": {"good": GOOD, "bad": {"command": "x", "args": "-y"}}},
            "mcpServers.bad.args: must be a list of strings",
        ),
        (
            {"servers": {"good": GOOD, "bad": {"command": "x", "env": ["A=1"]}}},
            "servers.bad.env: must be an object of strings",
        ),
    ],
)
def test_bad_files_are_one_line_exit_1_and_write_nothing(
    tmp_path: Path, content: str | dict[str, Any], message: str
) -> None:
    path = tmp_path / "config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    result = tooldeck("import", str(path))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"tooldeck: {path}")
    assert message in result.stderr
    assert server_names() == ["calculator"]


def test_missing_and_unreadable_files_are_one_line_exit_1(tmp_path: Path) -> None:
    missing = tooldeck("import", str(tmp_path / "missing.json"))
    assert (missing.returncode, missing.stderr) == (
        1,
        f"tooldeck: {tmp_path / 'missing.json'} not found\n",
    )
    directory = tooldeck("import", str(tmp_path))
    assert (directory.returncode, directory.stderr) == (
        1,
        f"tooldeck: {tmp_path} is a directory, not a file\n",
    )


def test_export_of_an_unknown_server_fails_without_writing(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = tooldeck("export", "ghost", "-o", str(out))
    assert result.returncode == 1
    assert result.stderr == "tooldeck: no server 'ghost'\n"
    assert not out.exists()
