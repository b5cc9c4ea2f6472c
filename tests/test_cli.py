"""The CLI end to end, in subprocesses, on a temporary TOOLDECK_HOME."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_runner import tooldeck


def test_add_then_list_json_shows_it_with_the_builtins() -> None:
    added = tooldeck(
        "server", "add", "demo", "--command", "python", "--arg", "-m",
        "--arg", "app.builtin.calculator", "--env", "API_KEY=s3cret",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    listed = tooldeck("server", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    servers = {server["name"]: server for server in json.loads(listed.stdout)}
    assert set(servers) == {"demo", "calculator"}
    assert servers["demo"]["args"] == ["-m", "app.builtin.calculator"]
    assert servers["demo"]["env"] == {"API_KEY": "********"}
    assert servers["calculator"]["is_builtin"] is True
    assert "s3cret" not in listed.stdout


def test_duplicate_add_fails_with_one_line_and_exit_1() -> None:
    assert tooldeck("server", "add", "demo", "--command", "x").returncode == 0
    again = tooldeck("server", "add", "demo", "--command", "x")
    assert again.returncode == 1
    assert again.stderr.strip().count("\n") == 0
    assert "already exists" in again.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("server", "add", "Bad", "--command", "x"), "name:"),
        (("server", "add", "a", "--transport", "sse", "--url", "nope"), "url:"),
        (("server", "add", "a"), "command:"),
        (("server", "add", "a", "--command", "x", "--env", "1X=2"), "env:"),
        (("server", "add", "a", "--command", "x", "--max-failures", "11"), "max_failures:"),
        (("server", "show", "ghost"), "no server 'ghost'"),
        (("server", "rm", "calculator"), "built-in"),
        (("tool", "enable", "calculator", "nope"), "no tool 'nope'"),
    ],
)
def test_user_errors_are_one_line_exit_1(args: tuple[str, ...], needle: str) -> None:
    result = tooldeck(*args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_usage_errors_exit_2() -> None:
    assert tooldeck("server", "add").returncode == 2
    assert tooldeck("server", "frobnicate").returncode == 2
    assert tooldeck("server", "add", "a", "--command", "x", "--env", "NOEQUALS").returncode == 2


def test_bad_setting_stops_with_one_line() -> None:
    result = tooldeck("server", "list", env={"TOOL_SERVER_HEALTH_CHECK_INTERVAL": "abc"})
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "tooldeck: TOOL_SERVER_HEALTH_CHECK_INTERVAL='abc' (env): "
        "expected a whole number of seconds > 0"
    )


def test_edit_enable_disable_rm_and_events() -> None:
    assert tooldeck("server", "add", "demo", "--command", "x", "--env", "A=1").returncode == 0
    edit = tooldeck("server", "edit", "demo", "--env", "B=2", "--unset-env", "A", "--no-auto-start")
    assert edit.returncode == 0, edit.stderr
    shown = json.loads(tooldeck("server", "show", "demo", "--json", "--reveal").stdout)
    assert shown["env"] == {"B": "2"} and shown["auto_start"] is False
    assert tooldeck("server", "disable", "demo").returncode == 0
    assert (
        json.loads(tooldeck("server", "list", "--disabled", "--json").stdout)[0]["name"] == "demo"
    )
    assert tooldeck("server", "enable", "demo").returncode == 0
    assert tooldeck("server", "rm", "demo").returncode == 0
    events = json.loads(tooldeck("events", "--json").stdout)
    # A deleted server's events keep its id but lose its name: pick them as "not calculator".
    demo_events = [event for event in events if event["server_name"] != "calculator"]
    assert {e["kind"] for e in demo_events} == {
        "created",
        "updated",
        "disabled",
        "enabled",
        "deleted",
    }
    assert all(event["actor"].startswith("cli:") for event in demo_events)


def test_bulk_disable_reports_each_server() -> None:
    for name in ("one", "two"):
        assert tooldeck("server", "add", name, "--command", "x").returncode == 0
    result = tooldeck("bulk", "disable", "one", "two", "ghost", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert (report["successful"], report["failed"]) == (2, 1)


def test_config_shows_sources_and_db_commands(tmp_path: Path) -> None:
    shown = tooldeck("config", "--json", env={"TOOLDECK_PORT": "9999"})
    rows = {row["name"]: row for row in json.loads(shown.stdout)}
    assert rows["TOOLDECK_PORT"] == {"name": "TOOLDECK_PORT", "value": 9999, "source": "env"}
    assert rows["TOOL_SERVER_HEALTH_CHECK_INTERVAL"]["source"] == "default"
    assert tooldeck("db", "upgrade").returncode == 0
    current = tooldeck("db", "current")
    assert current.returncode == 0 and "up to date" in current.stdout
    other = tooldeck("--data-dir", str(tmp_path / "other"), "db", "current")
    assert "empty" in other.stdout
