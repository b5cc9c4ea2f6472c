"""Settings: flags > environment > `config.toml` in the data dir > defaults.

The origin document's variable names (`TOOL_SERVER_*`, `MCP_*`) are kept as they are; every other
setting is `TOOLDECK_<NAME>`. `tooldeck config` shows the effective value of each and where it
came from.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from app.core.scrub import mask_all_but_origin, mask_command, mask_url

CONFIG_FILE_NAME = "config.toml"
# Settings named by the origin document keep their own names; the rest use the prefix.
ORIGIN_NAMES = {
    "tool_server_health_check_interval",
    "tool_server_auto_update_interval",
    "tool_server_cleanup_interval",
    "tool_server_usage_retention_days",
    "mcp_enabled",
    "mcp_servers",
}
NODE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
BUILTIN_SERVER_NAMES = ("filesystem", "browser", "calculator")


class ConfigError(Exception):
    """A setting has a value it cannot take. The message is one line for the user."""


def env_name(field: str) -> str:
    return field.upper() if field in ORIGIN_NAMES else f"TOOLDECK_{field.upper()}"


def _names(field: str) -> AliasChoices:
    return AliasChoices(field, env_name(field))


def default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "tooldeck"


def resolve_data_dir(flag: str | Path | None = None) -> Path:
    """The data dir comes from the flag or TOOLDECK_HOME only: the config file lives inside it."""
    if flag:
        return Path(flag).expanduser().resolve()
    home = os.environ.get("TOOLDECK_HOME")
    if home:
        return Path(home).expanduser().resolve()
    return default_data_dir()


PositiveSeconds = Annotated[int, Field(gt=0, description="a whole number of seconds > 0")]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        extra="ignore", populate_by_name=True, case_sensitive=False, env_prefix=""
    )

    # The origin document's settings.
    tool_server_health_check_interval: PositiveSeconds = Field(
        300, validation_alias=_names("tool_server_health_check_interval")
    )
    tool_server_auto_update_interval: PositiveSeconds = Field(
        3600, validation_alias=_names("tool_server_auto_update_interval")
    )
    tool_server_cleanup_interval: PositiveSeconds = Field(
        86400, validation_alias=_names("tool_server_cleanup_interval")
    )
    tool_server_usage_retention_days: int = Field(
        90,
        gt=0,
        description="a whole number of days > 0",
        validation_alias=_names("tool_server_usage_retention_days"),
    )
    mcp_enabled: bool = Field(
        True, description="true or false", validation_alias=_names("mcp_enabled")
    )
    mcp_servers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(BUILTIN_SERVER_NAMES),
        description=f"a comma-separated list of {', '.join(BUILTIN_SERVER_NAMES)}",
        validation_alias=_names("mcp_servers"),
    )

    # Tooldeck's own settings.
    database_url: str | None = Field(
        None,
        description="an SQLAlchemy URL with an async driver: sqlite+aiosqlite:///path/to.db or "
        "postgresql+asyncpg://user:password@host:5432/tooldeck",
        validation_alias=_names("database_url"),
    )
    database_pool_size: int = Field(
        5,
        ge=1,
        le=100,
        description="PostgreSQL connections kept open per engine, 1 to 100 (SQLite: unused)",
        validation_alias=_names("database_pool_size"),
    )
    database_max_overflow: int = Field(
        10,
        ge=0,
        le=100,
        description="PostgreSQL connections opened beyond the pool under load, 0 to 100",
        validation_alias=_names("database_max_overflow"),
    )
    log_level: str = Field(
        "INFO",
        pattern=r"(?i)^(debug|info|warning|error|critical)$",
        description="one of debug, info, warning, error, critical",
        validation_alias=_names("log_level"),
    )
    health_check_timeout_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="seconds, > 0 and <= 600",
        validation_alias=_names("health_check_timeout_s"),
    )
    degraded_latency_ms: float = Field(
        2000.0,
        gt=0,
        description="milliseconds > 0: a health probe slower than this marks a server degraded",
        validation_alias=_names("degraded_latency_ms"),
    )
    start_concurrency: int = Field(
        8,
        ge=1,
        le=256,
        description="a whole number from 1 to 256",
        validation_alias=_names("start_concurrency"),
    )
    health_concurrency: int = Field(
        16,
        ge=1,
        le=256,
        description="a whole number from 1 to 256",
        validation_alias=_names("health_concurrency"),
    )
    store_call_payloads: bool = Field(
        False,
        description="true or false: keep tool call arguments and results (they may hold secrets)",
        validation_alias=_names("store_call_payloads"),
    )
    payload_max_bytes: int = Field(
        16384,
        ge=256,
        description="a whole number of bytes >= 256",
        validation_alias=_names("payload_max_bytes"),
    )
    usage_flush_interval_s: float = Field(
        0.5,
        gt=0,
        le=60,
        description="seconds, > 0 and <= 60",
        validation_alias=_names("usage_flush_interval_s"),
    )
    usage_batch_size: int = Field(
        1000,
        ge=1,
        description="a whole number >= 1",
        validation_alias=_names("usage_batch_size"),
    )
    usage_queue_max: int = Field(
        100_000,
        ge=100,
        description="a whole number >= 100",
        validation_alias=_names("usage_queue_max"),
    )
    failing_tool_error_rate: float = Field(
        0.2,
        ge=0,
        le=1,
        description="a fraction from 0 to 1",
        validation_alias=_names("failing_tool_error_rate"),
    )
    failing_tool_min_calls: int = Field(
        5,
        ge=1,
        description="a whole number >= 1",
        validation_alias=_names("failing_tool_min_calls"),
    )
    log_max_bytes: int = Field(
        1_048_576,
        ge=4096,
        description="a whole number of bytes >= 4096",
        validation_alias=_names("log_max_bytes"),
    )
    log_backups: int = Field(
        3,
        ge=0,
        le=50,
        description="a whole number from 0 to 50",
        validation_alias=_names("log_backups"),
    )
    gateway_separator: str = Field(
        "__",
        pattern=r"^[A-Za-z0-9_.-]{1,4}$",
        description="1 to 4 of the characters A-Z a-z 0-9 _ . - (between server and tool names)",
        validation_alias=_names("gateway_separator"),
    )
    gateway_page_size: int = Field(
        100,
        ge=1,
        le=1000,
        description="a whole number from 1 to 1000 (tools per tools/list page)",
        validation_alias=_names("gateway_page_size"),
    )
    gateway_max_name_length: int = Field(
        128,
        ge=24,
        le=128,
        description="a whole number from 24 to 128: longer tool and prompt names exposed by the "
        "gateway end in a stable short hash (64 suits model providers that reject longer ones)",
        validation_alias=_names("gateway_max_name_length"),
    )
    gateway_max_call_s: float = Field(
        600.0,
        ge=1,
        le=86400,
        description="seconds from 1 to 86400: the longest a gateway call may run, however much "
        "progress it reports (progress extends a call's own timeout up to this)",
        validation_alias=_names("gateway_max_call_s"),
    )
    gateway_stateless: bool = Field(
        False,
        description="true or false: serve /mcp without sessions (every POST stands alone; no "
        "GET stream, so no notifications outside a call)",
        validation_alias=_names("gateway_stateless"),
    )
    gateway_bridge_reconnect_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="seconds from 0 to 3600: how long `gateway --stdio` waits for a restarted "
        "daemon before it exits",
        validation_alias=_names("gateway_bridge_reconnect_s"),
    )
    max_result_bytes: int = Field(
        8 * 1024 * 1024,
        ge=64 * 1024,
        le=1024 * 1024 * 1024,
        description="bytes from 65536 to 1073741824: a bigger message from a server becomes an "
        "error answer, and a bigger request body to /mcp is refused",
        validation_alias=_names("max_result_bytes"),
    )
    tui_refresh_s: float = Field(
        2.0,
        ge=0.5,
        le=60,
        description="seconds from 0.5 to 60 between dashboard refreshes (raise it on slow links)",
        validation_alias=_names("tui_refresh_s"),
    )
    host: str = Field(
        "127.0.0.1",
        description="an address to listen on, such as 127.0.0.1, ::1 or 0.0.0.0",
        validation_alias=_names("host"),
    )
    port: int = Field(
        8765,
        ge=0,
        le=65535,
        description="a port from 0 to 65535 (0 picks a free one)",
        validation_alias=_names("port"),
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="a comma-separated list of host names the API answers to besides loopback "
        "ones and the listening address (* for any)",
        validation_alias=_names("allowed_hosts"),
    )

    # Several nodes on one PostgreSQL (app.runtime.fleet).
    node: str | None = Field(
        None,
        description="a node name: 1-64 letters, digits, '.', '-' or '_', not 'any' "
        "(default: the host name)",
        validation_alias=_names("node"),
    )
    advertise_url: str | None = Field(
        None,
        description="the http(s) URL other nodes reach this one at (default: its own address)",
        validation_alias=_names("advertise_url"),
    )
    lease_s: float = Field(
        8.0,
        ge=1,
        le=300,
        description="seconds from 1 to 300 a node holds a server's lease without renewing it",
        validation_alias=_names("lease_s"),
    )

    # Alerts (app.governance.alerts) and resource limits (app.governance.limits_watchdog).
    alert_interval_s: float = Field(
        60.0, gt=0, description="seconds > 0", validation_alias=_names("alert_interval_s")
    )
    alert_cooldown_s: float = Field(
        900.0,
        ge=0,
        description="seconds >= 0: a condition back within this time reopens its alert quietly",
        validation_alias=_names("alert_cooldown_s"),
    )
    alert_down_minutes: float = Field(
        10.0, gt=0, description="minutes > 0", validation_alias=_names("alert_down_minutes")
    )
    alert_health_failures: int = Field(
        3, ge=1, description="a whole number >= 1", validation_alias=_names("alert_health_failures")
    )
    alert_window_minutes: float = Field(
        15.0, gt=0, description="minutes > 0", validation_alias=_names("alert_window_minutes")
    )
    alert_error_rate: float = Field(
        0.5,
        gt=0,
        le=1,
        description="a fraction > 0 and <= 1",
        validation_alias=_names("alert_error_rate"),
    )
    alert_min_calls: int = Field(
        10, ge=1, description="a whole number >= 1", validation_alias=_names("alert_min_calls")
    )
    alert_p95_ms: float = Field(
        5000.0, gt=0, description="milliseconds > 0", validation_alias=_names("alert_p95_ms")
    )
    alert_anomaly_weeks: int = Field(
        4,
        ge=2,
        le=52,
        description="a whole number from 2 to 52",
        validation_alias=_names("alert_anomaly_weeks"),
    )
    alert_anomaly_mads: float = Field(
        5.0, gt=0, description="a number > 0", validation_alias=_names("alert_anomaly_mads")
    )
    alert_anomaly_min_calls: int = Field(
        20,
        ge=1,
        description="a whole number >= 1",
        validation_alias=_names("alert_anomaly_min_calls"),
    )
    alert_command: str | None = Field(
        None,
        description="a command (split like a shell would, run without one) fed each alert's JSON",
        validation_alias=_names("alert_command"),
    )
    alert_webhook_url: str | None = Field(
        None,
        description="an http(s) URL to POST each alert's JSON to",
        validation_alias=_names("alert_webhook_url"),
    )
    alert_hook_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="seconds, > 0 and <= 300",
        validation_alias=_names("alert_hook_timeout_s"),
    )
    alert_hook_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="a whole number from 0 to 10",
        validation_alias=_names("alert_hook_retries"),
    )
    limits_sample_interval_s: float = Field(
        5.0,
        gt=0,
        le=600,
        description="seconds, > 0 and <= 600",
        validation_alias=_names("limits_sample_interval_s"),
    )
    # Memory and CPU history of local servers: a sample a minute for a week is 10,080 rows per
    # server, enough for the health pane's sparklines and a week's look back.
    resource_sample_interval_s: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="seconds, from 1 to 3600",
        validation_alias=_names("resource_sample_interval_s"),
    )
    resource_history_days: int = Field(
        7,
        gt=0,
        le=3650,
        description="a whole number of days from 1 to 3650",
        validation_alias=_names("resource_history_days"),
    )

    # Not a setting anyone writes: where this configuration was loaded from.
    data_dir: Path = Field(default_factory=default_data_dir, exclude=True)

    @field_validator("mcp_servers", "allowed_hosts", mode="before")
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("mcp_servers")
    @classmethod
    def _known_servers(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in BUILTIN_SERVER_NAMES]
        if unknown:
            raise ValueError(f"unknown built-in server {', '.join(unknown)}")
        return value

    @field_validator("host")
    @classmethod
    def _listening_address(cls, value: str) -> str:
        # An empty host makes the socket listen on every interface, while the log would say
        # 127.0.0.1: refuse it rather than open the API to the network by accident.
        if not value.strip():
            raise ValueError("it is empty")
        if any(char.isspace() for char in value):
            raise ValueError("it has spaces")
        return value

    @field_validator("node")
    @classmethod
    def _node_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not NODE_NAME_PATTERN.match(value) or value == "any":
            raise ValueError("use 1-64 letters, digits, '.', '-' or '_', and not 'any'")
        return value

    @field_validator("advertise_url")
    @classmethod
    def _reachable_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("needs an http:// or https:// URL with a host")
        return value.rstrip("/")

    @property
    def node_name(self) -> str:
        """This node's name: the setting, else the host name made fit for one."""
        if self.node:
            return self.node
        host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64].strip("-")
        return host if host and host != "any" else "node"

    @field_validator("database_url")
    @classmethod
    def _usable_database_url(cls, value: str | None) -> str | None:
        return None if value is None else check_database_url(value)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _current_toml_file
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None and toml_file.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'tooldeck.db'}"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"


def check_database_url(url: str) -> str:
    """`url` if Tooldeck can open it: an SQLAlchemy URL whose driver is installed and async.

    Checked when settings load, so a bad URL is one line naming the variable instead of a
    traceback from the first query of every verb.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError("not a URL of the form driver://...") from None
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise ValueError(f"no database driver is called {parsed.drivername!r}") from None
    if not getattr(dialect, "is_async", False):
        raise ValueError(
            f"{parsed.drivername} is a synchronous driver: use sqlite+aiosqlite:///path"
        )
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise ValueError(f"the driver of {parsed.drivername} is not installed ({exc})") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"{parsed.get_backend_name()} is not supported: use SQLite or PostgreSQL")
    return url


def masked_setting(field: str, value: Any) -> Any:
    """A setting's value as it is shown (`tooldeck config`, errors): the database URL without
    its credentials, a webhook URL without its path (often the secret), the alert command
    without its arguments (they may carry a token)."""
    if not isinstance(value, str):
        return value
    if field == "database_url":
        return mask_url(value)
    if field == "alert_webhook_url":
        return mask_all_but_origin(value)
    if field == "alert_command":
        return mask_command(value)
    return value


# pydantic-settings builds sources from the class; the file's path is per load, so it is handed
# over here for the duration of one `load_settings` call.
_current_toml_file: Path | None = None


@dataclass(frozen=True)
class SettingOrigin:
    name: str  # the variable a person would set
    value: Any
    source: str  # "flag", "env", "file <path>" or "default"


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable TOML file ({exc})") from exc


def _field_for_key(key: str) -> str | None:
    lowered = key.lower()
    for field in Settings.model_fields:
        if lowered in (field, env_name(field).lower()):
            return field
    return None


def load_settings(
    data_dir: str | Path | None = None, flags: dict[str, Any] | None = None
) -> Settings:
    """Load and validate settings; a bad value raises ConfigError with one line naming it."""
    global _current_toml_file
    directory = resolve_data_dir(data_dir)
    config_file = directory / CONFIG_FILE_NAME
    file_values = _read_config_file(config_file)
    unknown = [key for key in file_values if _field_for_key(key) is None]
    if unknown:
        raise ConfigError(f"{config_file}: unknown setting {', '.join(sorted(unknown))}")
    given = {key: value for key, value in (flags or {}).items() if value is not None}
    _current_toml_file = config_file
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        raise ConfigError(_describe_error(exc, given, file_values, config_file)) from None
    finally:
        _current_toml_file = None
    settings.data_dir = directory
    return settings


def _describe_error(
    exc: ValidationError, flags: dict[str, Any], file_values: dict[str, Any], config_file: Path
) -> str:
    error = exc.errors()[0]
    key = str(error["loc"][0]) if error["loc"] else ""
    field = _field_for_key(key) or key
    name = env_name(field) if field in Settings.model_fields else key
    source = _source_of(field, flags, file_values, config_file)
    info = Settings.model_fields.get(field)
    accepts = info.description if info and info.description else error["msg"]
    value = error.get("input")
    value = masked_setting(field, value)
    # A validator of ours says what exactly is wrong; pydantic's own messages add nothing.
    reason = error.get("ctx", {}).get("error") if error["type"] == "value_error" else None
    why = f" ({reason})" if reason and info and info.description else ""
    return f"{name}={value!r} ({source}): expected {accepts}{why}"


def _env_value(field: str) -> str | None:
    wanted = env_name(field).lower()
    for key, value in os.environ.items():
        if key.lower() == wanted:
            return value
    return None


def _source_of(
    field: str, flags: dict[str, Any], file_values: dict[str, Any], config_file: Path
) -> str:
    if field in flags:
        return "flag"
    if _env_value(field) is not None:
        return "env"
    if any(_field_for_key(key) == field for key in file_values):
        return f"file {config_file}"
    return "default"


def describe_settings(
    settings: Settings, flags: dict[str, Any] | None = None
) -> list[SettingOrigin]:
    """Every effective setting (secrets masked), the variable that sets it, and where its value
    came from."""
    config_file = settings.data_dir / CONFIG_FILE_NAME
    file_values = _read_config_file(config_file)
    given = {key: value for key, value in (flags or {}).items() if value is not None}
    rows = [SettingOrigin("TOOLDECK_HOME", str(settings.data_dir), _data_dir_source(given))]
    for field in Settings.model_fields:
        if field == "data_dir":
            continue
        value = getattr(settings, field)
        if field == "database_url" and value is None:
            value = settings.effective_database_url
        rows.append(
            SettingOrigin(
                env_name(field),
                masked_setting(field, value),
                _source_of(field, given, file_values, config_file),
            )
        )
    return rows


def _data_dir_source(flags: dict[str, Any]) -> str:
    if flags.get("data_dir"):
        return "flag"
    return "env" if os.environ.get("TOOLDECK_HOME") else "default"
