"""Gateway profiles: a named set of servers and tools, chosen by name and by glob.

A profile has its own gateway endpoint (`/mcp/profiles/<name>`, `gateway --stdio --profile
NAME`) where a client sees only the profile's tools. The selection rules live here, once, for the
router (which tools a client may list and call) and for the facade (the preview a person sees
while editing a profile).

- `servers`: server names or globs (`github`, `fs-*`, `*`).
- `tools`: tool patterns; `glob` matches a tool of any chosen server, `server/glob` one server's
  tools, and a leading `!` leaves matching tools out. With no including pattern, every tool of
  the chosen servers is in.

The context cost of a profile is the size, in tokens, of the tool list its clients receive.
No tokenizer ships with Tooldeck (and none can be fetched offline), so it is estimated and the
method is named wherever the figure is shown.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.core.schemas import check_name

SERVER_PATTERN = re.compile(r"^[a-z0-9_\-*?\[\]!]{1,64}$")
TOOL_PATTERN = re.compile(r"^!?(?:[a-z0-9_\-*?\[\]!]{1,64}/)?[^\s/]{1,200}$")
MAX_PATTERNS = 200
TOKEN_METHOD = "estimate: characters of the JSON tool list / 4 (no tokenizer is bundled)"
CHARS_PER_TOKEN = 4


def estimate_tokens(serialized: str) -> int:
    """Tokens of a serialized tool list, by the rule of thumb named in TOKEN_METHOD."""
    return math.ceil(len(serialized) / CHARS_PER_TOKEN)


def _check_servers(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        if not SERVER_PATTERN.match(pattern):
            raise ValueError(
                f"{pattern!r} is not a server name or glob (lowercase letters, digits, - _ "
                "and the glob characters * ? [ ])"
            )
    return _unique(patterns)


def _check_tools(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        if not TOOL_PATTERN.match(pattern):
            raise ValueError(
                f"{pattern!r} is not a tool pattern: use TOOL, SERVER/TOOL or !PATTERN, "
                "with globs and no spaces"
            )
    return _unique(patterns)


def _unique(patterns: list[str]) -> list[str]:
    return list(dict.fromkeys(pattern.strip() for pattern in patterns))


class ProfileFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(None, max_length=500)
    servers: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        max_length=MAX_PATTERNS,
        description="server names or globs, e.g. ['github', 'fs-*']",
    )
    tools: list[str] = Field(
        default_factory=list,
        max_length=MAX_PATTERNS,
        description="tool patterns: TOOL, SERVER/TOOL, !PATTERN to leave out; none: every tool",
    )

    _check_servers = field_validator("servers")(_check_servers)
    _check_tools = field_validator("tools")(_check_tools)


class ProfileCreate(ProfileFields):
    name: str = Field(description="1-64 lowercase letters, digits, '-' or '_'")

    _check_name = field_validator("name")(check_name)


class ProfileUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str | None = Field(None, max_length=500)
    servers: list[str] | None = Field(None, min_length=1, max_length=MAX_PATTERNS)
    tools: list[str] | None = Field(None, max_length=MAX_PATTERNS)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value)

    @field_validator("servers")
    @classmethod
    def _servers(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_servers(value)

    @field_validator("tools")
    @classmethod
    def _tools(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_tools(value)


class ProfileResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str | None
    servers: list[str]
    tools: list[str]
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None
    endpoint: str = ""


class ProfileTool(BaseModel):
    server_name: str
    name: str  # on its server
    exposed_name: str  # as the profile's clients see it
    title: str | None = None
    description: str | None = None
    enabled: bool = True
    is_available: bool = False


class ProfilePreview(BaseModel):
    profile: str
    servers: list[str] = Field(description="the servers the profile chooses")
    tools: list[ProfileTool]
    tool_count: int
    estimated_tokens: int = Field(description="tokens of the JSON tool list its clients receive")
    token_method: str = TOKEN_METHOD
    unmatched: list[str] = Field(
        default_factory=list, description="patterns that choose nothing now (typos?)"
    )


class Selection:
    """Which servers and tools a profile chooses; answers are cached per name."""

    __slots__ = ("_cache", "_excludes", "_includes", "servers")

    def __init__(self, servers: list[str] | tuple[str, ...], tools: list[str] | tuple[str, ...]):
        self.servers = tuple(servers)
        self._includes = tuple(_split(p) for p in tools if not p.startswith("!"))
        self._excludes = tuple(_split(p[1:]) for p in tools if p.startswith("!"))
        self._cache: dict[tuple[str, str], bool] = {}

    @classmethod
    def of(cls, profile: Any) -> Selection:
        return cls(list(profile.servers or ()), list(profile.tools or ()))

    def has_server(self, server: str) -> bool:
        return any(fnmatchcase(server, pattern) for pattern in self.servers)

    def has_tool(self, server: str, tool: str) -> bool:
        key = (server, tool)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._decide(server, tool)
        return found

    def _decide(self, server: str, tool: str) -> bool:
        if not self.has_server(server):
            return False
        if self._includes and not any(_matches(p, server, tool) for p in self._includes):
            return False
        return not any(_matches(p, server, tool) for p in self._excludes)

    def unmatched(self, servers: list[str], tools: list[tuple[str, str]]) -> list[str]:
        """The patterns that choose nothing among `servers` and `tools` ((server, tool))."""
        missing = [p for p in self.servers if not any(fnmatchcase(s, p) for s in servers)]
        for prefix, patterns in (("", self._includes), ("!", self._excludes)):
            for server_glob, tool_glob in patterns:
                if not any(_matches((server_glob, tool_glob), s, t) for s, t in tools):
                    shown = f"{server_glob}/{tool_glob}" if server_glob else tool_glob
                    missing.append(prefix + shown)
        return missing


def _split(pattern: str) -> tuple[str | None, str]:
    server, sep, tool = pattern.partition("/")
    return (server, tool) if sep else (None, pattern)


def _matches(pattern: tuple[str | None, str], server: str, tool: str) -> bool:
    server_glob, tool_glob = pattern
    if server_glob is not None and not fnmatchcase(server, server_glob):
        return False
    return fnmatchcase(tool, tool_glob)
