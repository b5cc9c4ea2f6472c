"""Who may talk to the daemon at all, before any token is looked at: the Host a request names,
the Origin a browser stamps on it, and proof that a mutation is not a plain cross-site form.

Why each check, with `--no-auth` as much as with a token:
- Host: a page on `rebind.evil.example` whose DNS then points at 127.0.0.1 is "same origin" for
  the browser, which then sends anything. Only the Host header still names the attacker's
  domain, so only names this daemon is known by are accepted (DNS rebinding).
- Origin: a page elsewhere may send requests here; its browser says where it came from.
- A mutation needs a JSON body or a header no form can set: a browser sends those cross-site
  only after a CORS preflight, which this daemon never grants. A `text/plain` or form POST is
  a "simple" request that needs no preflight, so it is refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.errors import TooldeckError
from app.faces.http.errors import error_response
from app.ops.remote import CLIENT_HEADER

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A browser adds none of these to a cross-site request without a preflight.
PROOF_HEADERS = (b"authorization", CLIENT_HEADER.lower().encode(), b"mcp-session-id")


class MisdirectedHost(TooldeckError):
    status_code = 421


class ForeignRequest(TooldeckError):
    status_code = 403


def host_name(value: str) -> str:
    """`Host` or an Origin's authority, without port or brackets, lowercased."""
    text = value.strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def is_loopback_name(name: str) -> bool:
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class HostPolicy:
    """The names this daemon answers to: loopback ones, the address it listens on (when it is
    one address, not all of them), and those a person listed (TOOLDECK_ALLOWED_HOSTS; `*`
    accepts any, for a daemon behind a proxy that checks Host itself)."""

    def __init__(self, allowed: Iterable[str] = (), *, listen_host: str | None = None) -> None:
        names = {host_name(name) for name in allowed if name.strip()}
        if listen_host and listen_host not in ("0.0.0.0", "::", ""):
            names.add(host_name(listen_host))
        self.any = "*" in names
        self.names = frozenset(names - {"*"})

    def allows(self, name: str) -> bool:
        return self.any or is_loopback_name(name) or name in self.names

    def refusal(self, method: str, headers: Mapping[bytes, bytes]) -> TooldeckError | None:
        """Why a request is refused before its token is looked at, or None: the check of
        `AccessGuard`, and of the daemon's lean gateway path, which bypasses it."""
        host = host_name(headers.get(b"host", b"").decode("latin-1"))
        if not self.allows(host):
            return MisdirectedHost(
                f"this daemon does not answer to the host {host!r} (DNS rebinding?); "
                "add it to TOOLDECK_ALLOWED_HOSTS if it is one of this machine's names",
                field="Host",
            )
        origin = headers.get(b"origin")
        if origin is not None:
            text = origin.decode("latin-1")
            _scheme, sep, authority = text.partition("://")
            if not sep or not self.allows(host_name(authority.split("/", 1)[0])):
                return ForeignRequest(
                    f"requests from the web page at {text!r} are refused", field="Origin"
                )
        if method.upper() not in SAFE_METHODS and not _proves_not_simple(headers):
            return ForeignRequest(
                "a change needs a JSON body (Content-Type: application/json) or the header "
                f"{CLIENT_HEADER}: a plain form could send anything else",
                field="Content-Type",
            )
        return None


class AccessGuard:
    """Host, Origin and mutation checks on every path, `/mcp` and unknown ones included."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.policy.refusal(scope["method"], dict(scope.get("headers", [])))
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await error_response(refusal)(scope, receive, send)


def _proves_not_simple(headers: Mapping[bytes, bytes]) -> bool:
    if any(name in headers for name in PROOF_HEADERS):
        return True
    media = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")
