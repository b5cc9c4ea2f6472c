"""Settings: the origin document's names and defaults, precedence, and bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.settings import ConfigError, describe_settings, load_settings


def test_defaults_follow_the_origin_document(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MCP_SERVERS")
    settings = load_settings(data_dir)
    assert settings.tool_server_health_check_interval == 300
    assert settings.tool_server_auto_update_interval == 3600
    assert settings.tool_server_cleanup_interval == 86400
    assert settings.tool_server_usage_retention_days == 90
    assert settings.mcp_enabled is True
    assert settings.mcp_servers == ["filesystem", "browser", "calculator"]
    assert settings.effective_database_url.endswith(f"{data_dir}/tooldeck.db")


def test_flag_beats_env_beats_file_beats_default(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (data_dir / "config.toml").write_text(
        "tool_server_health_check_interval = 10\nTOOL_SERVER_CLEANUP_INTERVAL = 20\nport = 9000\n"
    )
    monkeypatch.setenv("TOOL_SERVER_CLEANUP_INTERVAL", "30")
    monkeypatch.setenv("TOOLDECK_PORT", "9001")
    settings = load_settings(data_dir, {"port": 9002})
    assert settings.tool_server_health_check_interval == 10  # file
    assert settings.tool_server_cleanup_interval == 30  # env over file
    assert settings.port == 9002  # flag over env
    assert settings.tool_server_auto_update_interval == 3600  # default

    sources = {row.name: row.source for row in describe_settings(settings, {"port": 9002})}
    assert sources["TOOL_SERVER_HEALTH_CHECK_INTERVAL"].startswith("file ")
    assert sources["TOOL_SERVER_CLEANUP_INTERVAL"] == "env"
    assert sources["TOOLDECK_PORT"] == "flag"
    assert sources["TOOL_SERVER_AUTO_UPDATE_INTERVAL"] == "default"
    assert sources["TOOLDECK_HOME"] == "env"


def test_data_dir_flag_beats_tooldeck_home(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "elsewhere")
    assert settings.data_dir == (tmp_path / "elsewhere").resolve()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TOOL_SERVER_HEALTH_CHECK_INTERVAL", "abc", "whole number of seconds > 0"),
        ("TOOL_SERVER_HEALTH_CHECK_INTERVAL", "-5", "whole number of seconds > 0"),
        ("TOOL_SERVER_USAGE_RETENTION_DAYS", "0", "days > 0"),
        ("MCP_ENABLED", "maybe", "true or false"),
        ("MCP_SERVERS", "calculator,toaster", "comma-separated list"),
        ("TOOLDECK_PORT", "70000", "port from 0 to 65535"),
        ("TOOLDECK_LOG_LEVEL", "loud", "one of debug"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(data_dir)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{variable}={value!r}")
    assert expected in message


def test_bad_value_in_file_names_the_file(data_dir: Path) -> None:
    (data_dir / "config.toml").write_text("tool_server_cleanup_interval = -1\n")
    with pytest.raises(
        ConfigError, match=r"TOOL_SERVER_CLEANUP_INTERVAL=-1 \(file .*config.toml\)"
    ):
        load_settings(data_dir)


def test_unknown_key_or_broken_file_is_refused(data_dir: Path) -> None:
    (data_dir / "config.toml").write_text("helth_interval = 3\n")
    with pytest.raises(ConfigError, match="unknown setting helth_interval"):
        load_settings(data_dir)
    (data_dir / "config.toml").write_text("this is not toml = = =\n")
    with pytest.raises(ConfigError, match="not a readable TOML file"):
        load_settings(data_dir)
