"""Settings that a first start gets wrong stop every verb with one line, not a traceback; and
`tooldeck config` reports what the flags set."""

from __future__ import annotations

import json

import pytest

from tests.cli_runner import one_line_error, tooldeck


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("nonsense", "not a URL"),
        ("sqlite:///tmp/tooldeck.db", "sqlite is a synchronous driver"),
        ("frob+nope:///x", "no database driver is called 'frob+nope'"),
        ("mysql+aiomysql://me:s3cret@db/tooldeck", "not installed"),
    ],
)
def test_a_bad_database_url_is_one_line_naming_the_variable(url: str, why: str) -> None:
    line = one_line_error(tooldeck("server", "list", env={"TOOLDECK_DATABASE_URL": url}))
    assert line.startswith("tooldeck: TOOLDECK_DATABASE_URL=")
    assert "(env): expected an SQLAlchemy URL with an async driver" in line
    assert why in line
    assert "s3cret" not in line  # a password in the URL is never printed


def test_an_empty_host_is_refused_before_anything_listens() -> None:
    line = one_line_error(tooldeck("--headless", "--port", "0", env={"TOOLDECK_HOST": ""}))
    assert line == (
        "tooldeck: TOOLDECK_HOST='' (env): expected an address to listen on, "
        "such as 127.0.0.1, ::1 or 0.0.0.0 (it is empty)"
    )


def test_config_reports_the_host_and_port_flags_and_port_0_from_the_environment() -> None:
    shown = tooldeck("--host", "::1", "--port", "9100", "config", "--json")
    assert shown.returncode == 0, shown.stderr
    rows = {row["name"]: row for row in json.loads(shown.stdout)}
    assert rows["TOOLDECK_HOST"] == {"name": "TOOLDECK_HOST", "value": "::1", "source": "flag"}
    assert rows["TOOLDECK_PORT"] == {"name": "TOOLDECK_PORT", "value": 9100, "source": "flag"}
    # 0 picks a free port, from the environment as from --port.
    from_env = tooldeck("config", "--json", env={"TOOLDECK_PORT": "0"})
    assert from_env.returncode == 0, from_env.stderr
    rows = {row["name"]: row for row in json.loads(from_env.stdout)}
    assert rows["TOOLDECK_PORT"]["value"] == 0
