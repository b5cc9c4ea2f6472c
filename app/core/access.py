"""Named API tokens and what each scope may do.

A token has a name (the audit actor of what it does), a scope, and for a gateway token
optionally one profile whose endpoint is all it reaches. The value is shown once, when the token
is made; only its hash is stored.

- `admin`: everything, the token file's token (named `admin`) included;
- `operator`: reads, and starts, stops, restarts, enables, disables, acknowledges, calls;
  never creates or edits a definition, never reveals a secret;
- `read`: GET requests only, secrets masked;
- `gateway`: the MCP gateway (`/mcp...`) only, or one profile's endpoint.

What a request needs is its `Access`: the operations table declares it per route.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scope = Literal["admin", "operator", "read", "gateway"]
SCOPES: tuple[Scope, ...] = ("admin", "operator", "read", "gateway")
# What a request needs: `read` a look, `operate` an action on what exists, `admin` a change of
# definitions or a secret, `gateway` the MCP endpoints.
Access = Literal["read", "operate", "admin", "gateway"]

GRANTS: dict[Scope, frozenset[Access]] = {
    "admin": frozenset({"read", "operate", "admin", "gateway"}),
    "operator": frozenset({"read", "operate"}),
    "read": frozenset({"read"}),
    "gateway": frozenset({"gateway"}),
}
SCOPE_HELP: dict[Scope, str] = {
    "admin": "everything",
    "operator": "start, stop, restart, enable, disable, acknowledge, call; no edits, no secrets",
    "read": "GET requests only, secrets masked",
    "gateway": "the MCP gateway (/mcp) only, optionally one profile's endpoint",
}
# The token file's token (`tooldeck token show`): it keeps working, as an admin token.
FILE_TOKEN_NAME = "admin"
TOKEN_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# The header by which an admin token's holder names the person it acts for.
ON_BEHALF_OF = " on behalf of "


def grants(scope: Scope, access: Access) -> bool:
    return access in GRANTS[scope]


def acting_as(token_name: str, on_behalf_of: str | None) -> str:
    """The audit actor of a request: the token's name, and whom its holder acts for."""
    return f"{token_name}{ON_BEHALF_OF}{on_behalf_of}" if on_behalf_of else token_name


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="lowercase letters, digits, . _ -; the audit actor")
    scope: Scope
    profile: str | None = Field(
        None, max_length=64, description="gateway tokens only: the one profile it reaches"
    )

    @model_validator(mode="after")
    def _check(self) -> TokenCreate:
        if not TOKEN_NAME.match(self.name):
            raise ValueError(
                "name: up to 64 lowercase letters, digits, '.', '_' or '-', starting with a "
                "letter or digit"
            )
        if self.name == FILE_TOKEN_NAME:
            raise ValueError(f"name: {FILE_TOKEN_NAME!r} is the token file's token")
        if self.profile is not None and self.scope != "gateway":
            raise ValueError("profile: only a gateway token is bound to a profile")
        return self


class TokenInfo(BaseModel):
    """A token as listed: never its value."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    scope: Scope
    profile: str | None = None
    created_at: datetime | None = None
    created_by: str | None = None
    last_used_at: datetime | None = None


class IssuedToken(TokenInfo):
    """A token just made: its value is in this answer and nowhere else, ever again."""

    token: str
