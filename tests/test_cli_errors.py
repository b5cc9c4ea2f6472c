"""A user's mistake is one line and a non-zero exit, never a traceback; help texts say what an
option takes, in which unit, and list the choices."""

from __future__ import annotations

import json

import pytest

from app.cli import main
from tests.cli_runner import one_line_error, tooldeck


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("server", "show", ""), "no server ''"),
        (("limits", "calculator", "--max-rss-mb", "inf"), "max_rss_mb: Input should be a finite"),
        (("limits", "calculator", "--max-cpu-percent", "nan"), "max_cpu_percent:"),
        (
            ("tool", "call", "calculator", "add", "--args", '{"a": 1e999, "b": 1}'),
            "arguments: a: not a finite number",
        ),
        (("audit", "--since", "99999999d"), "since: 99999999d goes back before the year 1"),
        (("alerts", "ack", "99999999999999999999"), "no alert 99999999999999999999"),
    ],
)
def test_bad_values_are_one_line_and_exit_1(args: tuple[str, ...], needle: str) -> None:
    assert needle in one_line_error(tooldeck(*args), code=1)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("tool", "auto-disable", "calculator", "add", "zero"), "expected a number of failed"),
        (
            ("bulk", "frob", "calculator"),
            "invalid choice: 'frob' (choose from 'start', 'stop', 'restart', 'enable', "
            "'disable', 'delete', 'refresh')",
        ),
        (
            ("jobs", "run", "frob"),
            "(choose from 'health', 'capabilities', 'cleanup', 'resources', 'alerts'",
        ),
    ],
)
def test_usage_errors_exit_2_and_say_what_is_accepted(args: tuple[str, ...], needle: str) -> None:
    result = tooldeck(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert needle in result.stderr


def test_limits_sustain_0_restarts_at_once_instead_of_being_refused() -> None:
    result = tooldeck("limits", "calculator", "--sustain", "0", "--max-rss-mb", "512", "--json")
    assert result.returncode == 0, result.stderr
    limits = json.loads(result.stdout)
    assert limits["sustain_s"] == 0 and limits["max_rss_mb"] == 512


def help_of(*verb: str, capsys: pytest.CaptureFixture[str]) -> str:
    """`tooldeck VERB --help`, in-process (help needs no data dir), as one spaced line."""
    with pytest.raises(SystemExit) as done:
        main([*verb, "--help"])
    assert done.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_texts_name_units_and_choices(capsys: pytest.CaptureFixture[str]) -> None:
    events = help_of("events", capsys=capsys)
    assert "What happened, newest first" in events and "started, start_failed" in events
    add = help_of("server", "add", capsys=capsys)
    for words in (
        "how long a start may take, in seconds",
        "how long a tool call may take, in seconds",
        "before it is disabled (1-10, default 3)",
        "the program a stdio server runs",
        "the address of a streamable_http or sse server",
    ):
        assert words in add, words
    bulk = help_of("bulk", capsys=capsys)
    assert "start, stop, restart, enable, disable, delete, refresh" in bulk
    jobs = help_of("jobs", "run", capsys=capsys)
    assert "health, capabilities, cleanup, resources, alerts, limits, fleet" in jobs
