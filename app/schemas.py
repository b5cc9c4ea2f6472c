"""Input and output models of the operations facade. Field names follow the origin document."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = re.compile(r"^[a-z0-9_-]{1,64}$")
ENV_KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER_NAME_PATTERN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
MASK = "********"

Transport = Literal["stdio", "streamable_http", "sse"]
TRANSPORTS: tuple[str, ...] = ("stdio", "streamable_http", "sse")
ServerStatus = Literal["stopped", "starting", "running", "degraded", "stopping", "error"]
SERVER_STATUSES: tuple[str, ...] = (
    "stopped",
    "starting",
    "running",
    "degraded",
    "stopping",
    "error",
)
BulkOperationName = Literal["start", "stop", "restart", "enable", "disable", "delete", "refresh"]
BULK_OPERATIONS: tuple[str, ...] = (
    "start",
    "stop",
    "restart",
    "enable",
    "disable",
    "delete",
    "refresh",
)
CallSource = Literal["tui", "api", "cli", "gateway"]


def check_name(value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise ValueError("use 1-64 lowercase letters, digits, '-' or '_'")
    return value


def check_env(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not ENV_KEY_PATTERN.match(key):
            raise ValueError(f"{key!r} is not a valid environment variable name")
    return value


def check_headers(value: dict[str, str]) -> dict[str, str]:
    for key, header in value.items():
        if not HEADER_NAME_PATTERN.match(key):
            raise ValueError(f"{key!r} is not a valid header name")
        if "\n" in header or "\r" in header:
            raise ValueError(f"the value of {key!r} contains a line break")
    return value


def check_http_url(value: str | None) -> str:
    parsed = urlparse(value or "")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError("needs an http:// or https:// URL with a host")
    return value or ""


class _ServerFields(BaseModel):
    """Fields a person sets on a server, with their bounds."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    display_name: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=4000)
    transport: Transport = "stdio"
    command: str | None = Field(None, max_length=4000)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    auto_start: bool = True
    auto_update: bool = True
    max_failures: int = Field(3, ge=1, le=10)
    startup_timeout_s: float = Field(30.0, gt=0, le=600)
    call_timeout_s: float = Field(60.0, gt=0, le=3600)

    _check_env = field_validator("env")(check_env)
    _check_headers = field_validator("headers")(check_headers)


class ToolServerCreate(_ServerFields):
    name: str

    _check_name = field_validator("name")(check_name)

    @model_validator(mode="after")
    def _transport_needs(self) -> ToolServerCreate:
        if self.transport == "stdio":
            if not self.command:
                raise ValueError("command: a stdio server needs a command")
        else:
            try:
                check_http_url(self.url)
            except ValueError as exc:
                raise ValueError(f"url: a {self.transport} server {exc}") from None
        return self


class ToolServerUpdate(BaseModel):
    """A partial update: only the fields given change. The name never changes."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    display_name: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=4000)
    transport: Transport | None = None
    command: str | None = Field(None, max_length=4000)
    args: list[str] | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] | None = None
    enabled: bool | None = None
    auto_start: bool | None = None
    auto_update: bool | None = None
    max_failures: int | None = Field(None, ge=1, le=10)
    startup_timeout_s: float | None = Field(None, gt=0, le=600)
    call_timeout_s: float | None = Field(None, gt=0, le=3600)

    @model_validator(mode="before")
    @classmethod
    def _name_is_immutable(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" in data:
            raise ValueError("name: a server's name cannot be changed")
        return data


class ToolServerResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    display_name: str | None
    description: str | None
    transport: Transport
    command: str | None
    args: list[str]
    env: dict[str, str]
    cwd: str | None
    url: str | None
    headers: dict[str, str]
    enabled: bool
    auto_start: bool
    auto_update: bool
    max_failures: int
    startup_timeout_s: float
    call_timeout_s: float
    is_builtin: bool
    status: ServerStatus
    disabled_reason: str | None
    consecutive_failures: int
    last_health_check: datetime | None
    last_startup_success: datetime | None
    last_startup_error: str | None
    created_at: datetime
    updated_at: datetime
    created_by: str | None
    tools_count: int = 0
    enabled_tools_count: int = 0


class ServerToolResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    server_id: str
    server_name: str | None = None
    name: str
    display_name: str | None
    description: str | None
    input_schema: dict[str, Any] | None
    enabled: bool
    is_available: bool
    bypass_when_unavailable: bool
    total_calls: int
    total_errors: int
    last_called: datetime | None
    last_error: str | None
    avg_response_time_ms: float | None
    discovered_at: datetime
    updated_at: datetime


class ServerEventResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    server_id: str | None
    server_name: str | None = None
    kind: str
    message: str
    actor: str | None
    created_at: datetime


class BulkToolServerOperation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    server_ids: list[str] = Field(min_length=1)
    operation: BulkOperationName
    parameters: dict[str, Any] = Field(default_factory=dict)


class BulkOperationItem(BaseModel):
    server_id: str
    success: bool
    message: str


class BulkOperationResult(BaseModel):
    total_requested: int
    successful: int
    failed: int
    results: list[BulkOperationItem]
    errors: list[str]


class ServerHealth(BaseModel):
    """What the origin document's health endpoint returns, plus the probe's latency."""

    server_id: str
    server_name: str
    status: ServerStatus
    is_running: bool
    is_responsive: bool
    tools_count: int
    last_check: datetime | None
    error_message: str | None = None
    latency_ms: float | None = None
