"""The gateway over streamable HTTP: `/mcp`, `/mcp/servers/<name>`, `/mcp/profiles/<name>`.

`HttpCore` holds the MCP side and never awaits: a request is handed to it with a `Responder`,
and the answer is written through that responder whenever the router delivers it. `AsgiApp`
drives it from the daemon's ASGI app, behind the daemon's token and body limit; a leaner HTTP
server can drive the same core.

- A POST carrying a request is answered with one `application/json` body when its final answer
  is the first thing to send; when progress or a server's request comes first, the answer
  becomes an SSE stream that ends with the final answer.
- A POST carrying a notification or a client's answer: 202.
- GET: the session's own SSE stream (list changes, logs, resource updates, server requests
  not tied to one call). There is no event store, so a `Last-Event-ID` is answered 400.
- DELETE ends the session. Sessions idle for `SESSION_IDLE_S` without a stream are ended.
- Stateless mode (`TOOLDECK_GATEWAY_STATELESS`): no session ids; each POST is a session of its
  own that ends with its answer; no GET stream.
- Host and Origin are checked when the daemon listens on loopback (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import unquote

import orjson

from app.core import jsonrpc
from app.core.jsonrpc import Message
from app.faces.gateway.router import SUPPORTED_PROTOCOL_VERSIONS, Router, Session, View

logger = logging.getLogger(__name__)

MCP_PREFIX = "/mcp"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
SESSION_IDLE_S = 1800.0
BACKLOG_MAX = 1000
_dumps = orjson.dumps
Headers = list[tuple[bytes, bytes]]
# The name of the API token a request's headers carry, if one the daemon knows.
TokenNamer = Callable[[Mapping[bytes, bytes]], str | None]


class Responder(Protocol):
    def json(self, status: int, body: bytes, headers: Headers) -> None: ...
    def start_sse(self, headers: Headers) -> None: ...
    def sse(self, data: bytes) -> None: ...
    def end(self) -> None: ...


def sse_event(message: Message) -> bytes:
    return b"event: message\ndata: " + _dumps(message) + b"\n\n"


def problem(text: str) -> bytes:
    return _dumps({"error": "BadRequest", "message": text})


class _Exchange:
    """One POSTed request until its final answer."""

    __slots__ = ("headers", "responder", "streaming")

    def __init__(self, responder: Responder, headers: Headers) -> None:
        self.responder = responder
        self.streaming = False
        self.headers = headers


class HttpSession:
    def __init__(
        self, core: HttpCore, view: View, session_id: str | None, token_name: str | None = None
    ) -> None:
        self.id = session_id
        self.waiting: dict[Any, _Exchange] = {}
        self.stream: Responder | None = None
        self.backlog: collections.deque[Message] = collections.deque(maxlen=BACKLOG_MAX)
        self.last_seen = time.monotonic()
        self.session: Session = core.router.open_session(view, self.deliver, "http", token_name)
        self.session.on_cancelled = self.cancelled

    def cancelled(self, client_id: Any) -> None:
        # No JSON-RPC answer follows a cancellation; the POST still needs an end.
        exchange = self.waiting.pop(client_id, None)
        if exchange is not None:
            if not exchange.streaming:
                exchange.responder.start_sse(exchange.headers)
            exchange.responder.end()

    def deliver(self, message: Message, related: Any) -> None:
        if related is not None:
            exchange = self.waiting.get(related)
            if exchange is not None:
                final = "method" not in message and message.get("id") == related
                if final:
                    del self.waiting[related]
                    if not exchange.streaming:
                        exchange.responder.json(200, _dumps(message), exchange.headers)
                        return
                elif not exchange.streaming:
                    exchange.streaming = True
                    exchange.responder.start_sse(exchange.headers)
                exchange.responder.sse(sse_event(message))
                if final:
                    exchange.responder.end()
                return
        if self.stream is not None:
            self.stream.sse(sse_event(message))
        elif self.id is not None:
            self.backlog.append(message)  # sent when the client opens its GET stream

    def close(self) -> None:
        self.session.close()
        for exchange in self.waiting.values():
            if exchange.streaming:
                exchange.responder.end()
            else:
                exchange.responder.json(404, problem("the session ended"), exchange.headers)
        self.waiting.clear()
        if self.stream is not None:
            self.stream.end()
            self.stream = None


class HttpCore:
    def __init__(
        self,
        router: Router,
        *,
        check_hosts: bool = True,
        stateless: bool = False,
        token_namer: TokenNamer | None = None,
    ) -> None:
        self.router = router
        self.check_hosts = check_hosts
        self.stateless = stateless
        self.token_namer = token_namer
        self.sessions: dict[bytes, HttpSession] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for http_session in list(self.sessions.values()):
            http_session.close()
        self.sessions.clear()

    def view_for(self, path: str) -> View | None:
        rest = path[len(MCP_PREFIX) :].strip("/")
        if not rest:
            return View(self.router, "aggregated")
        kind, _, name = rest.partition("/")
        name = unquote(name)
        if kind == "servers" and name and "/" not in name:
            return View(self.router, "server", name)
        if kind == "profiles" and name and "/" not in name:
            return View(self.router, "profile", name)
        return None

    def handle(
        self, method: bytes, path: str, headers: dict[bytes, bytes], body: bytes, r: Responder
    ) -> None:
        """Every HTTP request to the gateway; answers through `r`, now or later."""
        view = self.view_for(path)
        if view is None:
            r.json(404, _dumps({"error": "NotFound", "message": f"no gateway at {path}"}), [])
            return
        refusal = self._refusal(headers)
        if refusal is not None:
            status, text = refusal
            r.json(status, _dumps({"error": "Forbidden", "message": text}), [])
            return
        if method == b"POST":
            self._post(view, headers, body, r)
        elif method == b"GET":
            self._get(headers, r)
        elif method == b"DELETE":
            http_session = self.sessions.pop(headers.get(b"mcp-session-id", b""), None)
            if http_session is not None:
                http_session.close()
                r.json(200, b"", [])
            else:
                r.json(404, problem("unknown session"), [])
        else:
            r.json(405, problem("use POST, GET or DELETE"), [(b"allow", b"GET, POST, DELETE")])

    def _refusal(self, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        if self.check_hosts:
            host = _host_name(headers.get(b"host", b""))
            if host not in LOOPBACK_NAMES:
                return 421, f"host {host!r} is not this gateway's (DNS rebinding?)"
            origin = headers.get(b"origin")
            if origin is not None and _host_name(origin.split(b"://", 1)[-1]) not in (
                LOOPBACK_NAMES
            ):
                return 403, f"origin {origin.decode('latin-1')!r} may not use this gateway"
        version = headers.get(b"mcp-protocol-version")
        if version is not None and version.decode("latin-1") not in SUPPORTED_PROTOCOL_VERSIONS:
            return 400, (
                f"MCP-Protocol-Version {version.decode('latin-1')!r} is not supported; "
                f"use one of {', '.join(SUPPORTED_PROTOCOL_VERSIONS)}"
            )
        return None

    def _post(self, view: View, headers: dict[bytes, bytes], body: bytes, r: Responder) -> None:
        message = jsonrpc.parse(body, quiet=True) if body else None
        if message is None:
            error = jsonrpc.error_response(
                None, jsonrpc.PARSE_ERROR, "the body is not one JSON-RPC message"
            )
            r.json(400, _dumps(error), [])
            return
        is_request = "method" in message and "id" in message
        if self.stateless:
            self._post_stateless(view, message, is_request, r)
            return
        session_id = headers.get(b"mcp-session-id")
        extra: Headers = []
        if session_id is None and message.get("method") == "initialize":
            token_name = self.token_namer(headers) if self.token_namer is not None else None
            http_session = HttpSession(self, view, secrets.token_hex(16), token_name)
            assert http_session.id is not None
            self.sessions[http_session.id.encode()] = http_session
            extra = [(b"mcp-session-id", http_session.id.encode())]
            self._sweep_later()
        else:
            found = self.sessions.get(session_id) if session_id else None
            if found is None:
                text = "unknown Mcp-Session-Id" if session_id else "send Mcp-Session-Id"
                error = jsonrpc.error_response(message.get("id"), jsonrpc.INVALID_REQUEST, text)
                r.json(404 if session_id else 400, _dumps(error), [])
                return
            http_session = found
        http_session.last_seen = time.monotonic()
        if not is_request:
            http_session.session.receive(message)
            r.json(202, b"", extra)
            return
        http_session.waiting[message["id"]] = _Exchange(r, extra)
        http_session.session.receive(message)

    def _post_stateless(self, view: View, message: Message, is_request: bool, r: Responder) -> None:
        http_session = HttpSession(self, view, None)
        session = http_session.session
        # Without a handshake of its own, each POST stands for an initialized client.
        session.protocol_version = SUPPORTED_PROTOCOL_VERSIONS[-1]
        if not is_request:
            session.receive(message)
            session.close()
            r.json(202, b"", [])
            return
        request_id = message["id"]

        class _Closing:
            def json(self, status: int, body: bytes, headers: Headers) -> None:
                r.json(status, body, headers)
                session.close()

            def start_sse(self, headers: Headers) -> None:
                r.start_sse(headers)

            def sse(self, data: bytes) -> None:
                r.sse(data)

            def end(self) -> None:
                r.end()
                session.close()

        http_session.waiting[request_id] = _Exchange(_Closing(), [])
        session.receive(message)

    def _get(self, headers: dict[bytes, bytes], r: Responder) -> None:
        if self.stateless:
            r.json(405, problem("this gateway is stateless: it has no GET stream"), [])
            return
        if b"text/event-stream" not in headers.get(b"accept", b""):
            r.json(406, problem("a GET needs Accept: text/event-stream"), [])
            return
        if headers.get(b"last-event-id") is not None:
            r.json(400, problem("this gateway keeps no events: a stream cannot be resumed"), [])
            return
        http_session = self.sessions.get(headers.get(b"mcp-session-id", b""))
        if http_session is None:
            r.json(404, problem("unknown session"), [])
            return
        if http_session.stream is not None:
            r.json(409, problem("this session already has a stream open"), [])
            return
        http_session.stream = r
        http_session.last_seen = time.monotonic()
        r.start_sse([])
        r.sse(b": open\n\n")
        while http_session.backlog:
            r.sse(sse_event(http_session.backlog.popleft()))

    def disconnected(self, r: Responder) -> None:
        """The connection that carried `r` is gone."""
        for http_session in self.sessions.values():
            if http_session.stream is r:
                http_session.stream = None
                http_session.last_seen = time.monotonic()
            for key in [k for k, ex in http_session.waiting.items() if ex.responder is r]:
                del http_session.waiting[key]

    def _sweep_later(self) -> None:
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(SESSION_IDLE_S / 4, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        limit = time.monotonic() - SESSION_IDLE_S
        for key, http_session in list(self.sessions.items()):
            idle = http_session.stream is None and not http_session.waiting
            if idle and http_session.session.idle and http_session.last_seen < limit:
                del self.sessions[key]
                http_session.close()
        if self.sessions:
            self._sweep_later()


def _host_name(value: bytes) -> str:
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[: text.find("]") + 1] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


# ---- ASGI, for mounting in the daemon's app -------------------------------------------------


class _AsgiResponder:
    __slots__ = ("items", "waiter")

    def __init__(self) -> None:
        self.items: collections.deque[tuple[Any, ...]] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None

    def _push(self, item: tuple[Any, ...]) -> None:
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def json(self, status: int, body: bytes, headers: Headers) -> None:
        self._push(("json", status, body, headers))

    def start_sse(self, headers: Headers) -> None:
        self._push(("start", headers))

    def sse(self, data: bytes) -> None:
        self._push(("data", data))

    def end(self) -> None:
        self._push(("end",))

    async def next(self) -> tuple[Any, ...]:
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
            self.waiter = None
        return self.items.popleft()


_SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class AsgiApp:
    """The core as an ASGI app; the body has been size-checked by the daemon's middleware."""

    def __init__(self, core: HttpCore) -> None:
        self.core = core

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        # Read to the end of the request (a GET's too), so that the next `receive()` is the
        # client going away.
        chunks = []
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                return
            chunks.append(event.get("body", b""))
            if not event.get("more_body"):
                break
        body = b"".join(chunks)
        responder = _AsgiResponder()
        headers = dict(scope["headers"])
        self.core.handle(scope["method"].encode(), scope["path"], headers, body, responder)
        disconnected: asyncio.Future[Any] | None = None
        try:
            while True:
                if not responder.items:
                    # Long-lived streams: watch for the client going away too.
                    if disconnected is None:
                        disconnected = asyncio.ensure_future(receive())
                    waiter = asyncio.ensure_future(responder.next())
                    await asyncio.wait({waiter, disconnected}, return_when=asyncio.FIRST_COMPLETED)
                    if not waiter.done():
                        waiter.cancel()
                        return
                    item = waiter.result()
                else:
                    item = await responder.next()
                kind = item[0]
                if kind == "json":
                    _, status, payload, extra = item
                    sent: Headers = [(b"content-length", str(len(payload)).encode()), *extra]
                    if payload:
                        sent.append((b"content-type", b"application/json"))
                    await send({"type": "http.response.start", "status": status, "headers": sent})
                    await send({"type": "http.response.body", "body": payload})
                    return
                if kind == "start":
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 200,
                            "headers": _SSE_HEADERS + item[1],
                        }
                    )
                elif kind == "data":
                    await send({"type": "http.response.body", "body": item[1], "more_body": True})
                else:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
        finally:
            self.core.disconnected(responder)
            if disconnected is not None and not disconnected.done():
                disconnected.cancel()
