"""`tooldeck web`: the dashboard in a browser, through textual-serve.

Each browser tab that connects gets its own dashboard process, whose screen a terminal emulator
in the page draws. What stands in front of it:
- Host and Origin are checked as the daemon checks them (the `HostChecks` the command hands in:
  app.faces.http.access_guard's), so a page elsewhere, or a rebound DNS name, reaches nothing.
- The page wants a token: the API's (`tooldeck token show`) or a named one of scope admin,
  operator or read (a read token's deck hides every action). It is given once, as `?token=` or
  a bearer header; the answer sets a session cookie (HttpOnly, SameSite=Strict) and sends the
  browser on to `/`, so the token leaves the address bar and its history. The cookie is checked
  on every request, the websocket's included, and the token behind it again when a tab opens a
  dashboard, so a revoked token opens no more.
- The dashboard runs from an argument list built here (this interpreter, `-m app`, the data
  dir), never from a shell command line: textual-serve would run its command through a shell.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp_jinja2
from aiohttp import web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

from app.core.access import Scope

log = logging.getLogger(__name__)

COOKIE = "tooldeck_deck"
# Scopes that may watch the deck; a gateway token is for MCP clients only.
DECK_SCOPES: frozenset[Scope] = frozenset({"admin", "operator", "read"})
DEFAULT_PORT = 8765
# A person's terminal: enough for the dashboard, and no one keeps a tab open for longer.
MAX_SESSIONS = 256

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# What the deck asks of the daemon's access checks, handed in by the command that serves it
# (the dashboard's layer reaches neither the HTTP face nor the runtime's token store).
class HostChecks(Protocol):
    def refusal(self, method: str, headers: Mapping[bytes, bytes]) -> Any: ...


class Identity(Protocol):
    name: str
    scope: Scope


class Credentials(Protocol):
    async def identify(self, token: str) -> Identity | None: ...


def dashboard_argv(data_dir: Path, *, read_only: bool) -> list[str]:
    """The dashboard's command: fixed words and the data dir as one argument each."""
    argv = [sys.executable, "-m", "app", "--data-dir", str(data_dir)]
    if read_only:
        argv.append("--read-only")
    return argv


class DashboardProcess(AppService):
    """textual-serve's app service, started from an argument list instead of a shell line."""

    def __init__(self, argv: Sequence[str], **options: Any) -> None:
        super().__init__(" ".join(argv), **options)
        self.argv = list(argv)

    async def _open_app_process(self, width: int = 80, height: int = 24) -> Any:
        environment = self._build_environment(width=width, height=height)
        self._process = process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment,
        )
        assert process.stdin is not None
        self._stdin = process.stdin
        return process


@dataclass(frozen=True)
class Session:
    token: str
    name: str
    read_only: bool


class WebDeck(Server):
    """textual-serve's server with the checks above in front of every request."""

    def __init__(
        self,
        data_dir: Path,
        credentials: Credentials,
        hosts: HostChecks,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        read_only: bool = False,
    ) -> None:
        super().__init__("tooldeck", host=host, port=port, title="Tooldeck")
        self.data_dir = data_dir
        self.credentials = credentials
        self.hosts = hosts
        self.read_only = read_only
        self.sessions: dict[str, Session] = {}

    async def on_startup(self, app: web.Application) -> None:
        return None  # textual-serve prints a banner; the command says where it serves itself

    async def make_app(self) -> web.Application:
        app = await self._make_app()
        app.middlewares.append(self._guard)
        return app

    # ---- checks ---------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        headers = {
            name.lower().encode("latin-1"): value.encode("latin-1")
            for name, value in request.headers.items()
        }
        refusal = self.hosts.refusal(request.method, headers)
        if refusal is not None:
            return web.Response(status=refusal.status_code, text=f"{refusal}\n")
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, text="the deck only reads pages\n")
        given = _given_token(request)
        if given is not None:
            return await self._sign_in(given)
        if self._session(request) is None:
            return web.Response(
                status=401,
                text="open this page with ?token=<token>: the API token (`tooldeck token "
                "show`) or a named token of scope admin, operator or read\n",
            )
        return await handler(request)

    async def _sign_in(self, given: str) -> web.StreamResponse:
        identity = await self._deck_identity(given)
        if identity is None:
            return web.Response(status=401, text="that token opens no deck\n")
        if len(self.sessions) >= MAX_SESSIONS:
            self.sessions.pop(next(iter(self.sessions)))
        key = secrets.token_urlsafe(32)
        read_only = self.read_only or identity.scope == "read"
        self.sessions[key] = Session(given, identity.name, read_only)
        response = web.Response(status=303, headers={"Location": "/"})
        response.set_cookie(COOKIE, key, httponly=True, samesite="Strict", path="/")
        return response

    async def _deck_identity(self, given: str) -> Identity | None:
        identity = await self.credentials.identify(given)
        if identity is None or identity.scope not in DECK_SCOPES:
            return None
        return identity

    def _session(self, request: web.Request) -> Session | None:
        key = request.cookies.get(COOKIE)
        return self.sessions.get(key) if key else None

    # ---- pages ----------------------------------------------------------------------------

    async def handle_index(self, request: web.Request) -> web.StreamResponse:  # type: ignore[override]
        # URLs of the host the browser used (checked above), so the cookie goes with them.
        base = f"{request.scheme}://{request.host}"
        router = request.app.router
        context = {
            "font_size": to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": "ws" + base[4:] + str(router["websocket"].url_for()),
            "config": {"static": {"url": base + "/static/"}},
            "application": {"name": self.title},
        }
        return aiohttp_jinja2.render_template("app_index.html", request, context)

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        session = self._session(request)
        websocket = web.WebSocketResponse(heartbeat=15)
        if session is None or await self._deck_identity(session.token) is None:
            # The token was revoked since the page was opened.
            self.sessions.pop(request.cookies.get(COOKIE, ""), None)
            await websocket.prepare(request)
            await websocket.close(code=4401, message=b"token no longer valid")
            return websocket
        width = to_int(request.query.get("width", "80"), 80)
        height = to_int(request.query.get("height", "24"), 24)
        service: DashboardProcess | None = None
        try:
            await websocket.prepare(request)
            service = DashboardProcess(
                dashboard_argv(self.data_dir, read_only=session.read_only),
                write_bytes=websocket.send_bytes,
                write_str=websocket.send_str,
                close=websocket.close,
                download_manager=self.download_manager,
                debug=self.debug,
            )
            await service.start(width, height)
            await self._process_messages(websocket, service)
        except asyncio.CancelledError:
            await websocket.close()
        except Exception:
            log.exception("the deck's connection failed")
        finally:
            if service is not None:
                await service.stop()
        return websocket


def _given_token(request: web.Request) -> str | None:
    if "token" in request.query:
        return request.query["token"]
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
