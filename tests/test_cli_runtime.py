"""`tooldeck server probe|logs|start|health`, `tool call` and `jobs` without a daemon.

Through a daemon these verbs take the same facade methods over HTTP; that path is the daemon's
contract tests' business. Here: what works without one, and what refuses clearly.
"""

from __future__ import annotations

import json

import pytest

from app.cli import main
from app.core.settings import Settings


def test_probe_lists_the_calculator_tools(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["server", "probe", "calculator"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("calculator: ok in ")
    assert "tooldeck-calculator 1.0.0" in out and "protocol   2025-11-25" in out
    assert "    add       Add two numbers: a + b." in out


def test_probe_json_and_a_failing_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["server", "add", "broken", "--command", "tooldeck-nope"]) == 0
    capsys.readouterr()
    assert main(["server", "probe", "broken", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["error"] == "command not found: tooldeck-nope"
    assert main(["server", "probe", "broken"]) == 1
    assert "error      command not found: tooldeck-nope" in capsys.readouterr().err


def test_logs_read_the_log_file(capsys: pytest.CaptureFixture[str], settings: Settings) -> None:
    settings.logs_dir.mkdir(parents=True)
    (settings.logs_dir / "calculator.log").write_text("first\nsecond\nthird\n")
    assert main(["server", "logs", "calculator", "-n", "2"]) == 0
    assert capsys.readouterr().out == "second\nthird\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["server", "start", "calculator"],
        ["server", "health", "calculator"],
        ["jobs"],
        ["jobs", "run", "health"],
    ],
)
def test_runtime_verbs_without_a_daemon_say_how_to_get_one(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    assert "start `tooldeck --headless` or the dashboard" in capsys.readouterr().err


def test_tool_call_arguments_must_be_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tool", "call", "calculator", "add", "--args", "{a: 2}"]) == 1
    assert capsys.readouterr().err.startswith("tooldeck: --args: not JSON:")


def test_tool_call_without_a_daemon_runs_a_one_shot_supervisor(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The call starts only the server it needs, is metered, and leaves nothing running."""
    assert main(["tool", "call", "calculator", "add", "--args", '{"a": 2, "b": 3}']) == 0
    captured = capsys.readouterr()
    assert captured.out == "5\n"
    assert captured.err.startswith("(ok, ")
    assert main(["analytics", "--period", "24h", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_calls_today"] == 1
    assert main(["server", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["status"] == "stopped"
    # A tool's error result exits 1 with the tool's message.
    assert main(["tool", "call", "calculator", "divide", "--args", '{"a": 1, "b": 0}']) == 1
    assert "division by zero" in capsys.readouterr().err
