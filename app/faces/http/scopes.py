"""What a request needs of its token, by method and path, from the operations table's rows.

Looked up before routing (in the auth middleware), so that a token's scope is checked on every
request, one to an unknown path or to `/mcp` included: an unknown path is a read for a GET and
an admin's otherwise.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from app.core.access import Access, grants
from app.core.errors import Forbidden
from app.ops.table import OPERATIONS, SECRET_QUERIES, OperationSpec
from app.runtime.access_tokens import Identity

PROFILE_ENDPOINT = "/mcp/profiles/"
FALSE_WORDS = frozenset({"", "0", "false", "f", "no", "n", "off"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WHO_MAY: dict[Access, str] = {
    "read": "a read, operator or admin token",
    "operate": "an operator or admin token",
    "admin": "an admin token",
    "gateway": "a gateway or admin token",
}


def _pattern(spec: OperationSpec) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", spec.path)
    body = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
    return re.compile(f"^{body}/?$")


# In the table's order: a fixed path (`/servers/bulk`) comes before a `{placeholder}` one.
ROUTES: tuple[tuple[str, re.Pattern[str], Access], ...] = tuple(
    (spec.method, _pattern(spec), spec.needs) for spec in OPERATIONS
)


def is_gateway_path(path: str) -> bool:
    return path == "/mcp" or path.startswith("/mcp/")


def needed_access(method: str, path: str, query_string: bytes = b"") -> Access:
    """The access a request needs: its route's, or an admin's when it asks to see secrets."""
    if is_gateway_path(path):
        return "gateway"
    if _reveals(query_string):
        return "admin"
    method = "GET" if method == "HEAD" else method
    for route_method, pattern, access in ROUTES:
        if route_method == method and pattern.match(path):
            return access
    return "read" if method in READ_METHODS else "admin"


def _reveals(query_string: bytes) -> bool:
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    return any(name in SECRET_QUERIES and value.lower() not in FALSE_WORDS for name, value in pairs)


def reaches(profile: str | None, path: str) -> bool:
    """Whether a gateway token bound to `profile` (None: to none) may use the gateway `path`."""
    if profile is None:
        return True
    return path.rstrip("/") == PROFILE_ENDPOINT + profile


def refusal_of(
    identity: Identity, method: str, path: str, query_string: bytes = b""
) -> Forbidden | None:
    """Why the token's scope does not cover the request, or None when it does."""
    access = needed_access(method, path, query_string)
    if not grants(identity.scope, access):
        return Forbidden(
            f"token {identity.name!r} has scope {identity.scope!r}, which does not cover "
            f"{method} {path}: it needs {WHO_MAY[access]}"
        )
    if access == "gateway" and not reaches(identity.profile, path):
        return Forbidden(
            f"token {identity.name!r} reaches only the gateway profile {identity.profile!r}: "
            f"{PROFILE_ENDPOINT}{identity.profile}"
        )
    return None
