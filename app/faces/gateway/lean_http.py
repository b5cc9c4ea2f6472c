"""The daemon's HTTP protocol: uvicorn's httptools protocol that answers the gateway's own paths
(`/mcp`, `/mcp/servers/<n>`, `/mcp/profiles/<n>`) without going through ASGI.

Through the ASGI app every MCP message cost a task, a chain of middleware coroutines, a future
per answer and a queue of send events; profiled under load that was more than half of the
daemon's busy time on the call path. Here a request that is complete goes straight to
`HttpCore.handle` with the exchange itself as the `Responder`, and the answer is written to the
socket when the router delivers it: no task, no await.

What the API's middleware asks of these paths is asked here too, by a function the daemon
passes in: `admit(method, path, query, headers)` is the middleware's own checks (Host, Origin,
the token and its scope, the announced length; app/faces/http/middleware.py
`gateway_admission`), answering a refusal, True, or False when only the middleware can tell
(a token it must look up in the database). The body limit while the body streams in is
`max_bytes`, answered by `too_large`.

Everything else (the API, a gateway request `admit` cannot decide, one that arrives while an
earlier answer on the same connection is still being written, or that expects `100-continue`)
goes the usual ASGI way, through the middleware to the same core that the app mounts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import unquote

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app.faces.gateway.http_face import Headers, HttpCore

Refusal = tuple[int, bytes, Headers]
# True: admitted; False: only the ASGI app can tell, hand the request on to it.
Admit = Callable[[str, str, bytes, Mapping[bytes, bytes]], Refusal | bool]

_SSE_HEAD = (
    b"content-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"x-accel-buffering: no\r\ntransfer-encoding: chunked\r\n"
)
_JSON_TYPE = b"content-type: application/json\r\n"
_CLOSE = b"connection: close\r\n"


def is_gateway_path(path: str) -> bool:
    return path == "/mcp" or path.startswith("/mcp/")


class _Signal:
    """What uvicorn calls on a request's `message_event`; nothing waits on it here."""

    __slots__ = ()

    def set(self) -> None:
        pass


_NO_WAITER = _Signal()


class LeanExchange:
    """One gateway request on a connection, and its answer (the `Responder` of `HttpCore`).

    It stands in uvicorn's `cycle` slot, so uvicorn's own pipelining, graceful shutdown and
    keep-alive timer treat it like any request of the connection."""

    __slots__ = (
        "body",
        "disconnected",
        "headers",
        "keep_alive",
        "message_event",
        "method",
        "more_body",
        "path",
        "protocol",
        "response_complete",
        "streaming",
    )

    def __init__(
        self,
        protocol: LeanGatewayProtocol,
        method: bytes,
        path: str,
        headers: dict[bytes, bytes],
        keep_alive: bool,
    ) -> None:
        self.protocol = protocol
        self.method = method
        self.path = path
        self.headers = headers
        self.keep_alive = keep_alive
        self.body = bytearray()
        self.more_body = True
        self.disconnected = False
        self.response_complete = False
        self.streaming = False
        self.message_event = _NO_WAITER

    def _head(self, status: int, extra: Headers) -> list[bytes]:
        parts = [STATUS_LINE[status]]
        for name, value in self.protocol.server_state.default_headers:
            parts += (name, b": ", value, b"\r\n")
        for name, value in extra:
            parts += (name, b": ", value, b"\r\n")
        if not self.keep_alive:
            parts.append(_CLOSE)
        return parts

    # -- Responder ---------------------------------------------------------------------------
    def json(self, status: int, body: bytes, headers: Headers) -> None:
        if self.response_complete or self.disconnected:
            return
        parts = self._head(status, headers)
        parts.append(b"content-length: %d\r\n" % len(body))
        if body:
            parts.append(_JSON_TYPE)
        parts += (b"\r\n", body)
        self.protocol.transport.write(b"".join(parts))
        self._complete()

    def start_sse(self, headers: Headers) -> None:
        if self.response_complete or self.disconnected or self.streaming:
            return
        self.streaming = True
        parts = self._head(200, headers)
        parts += (_SSE_HEAD, b"\r\n")
        self.protocol.transport.write(b"".join(parts))

    def sse(self, data: bytes) -> None:
        if self.streaming and not (self.response_complete or self.disconnected):
            self.protocol.transport.write(b"%x\r\n%b\r\n" % (len(data), data))

    def end(self) -> None:
        if self.streaming and not (self.response_complete or self.disconnected):
            self.protocol.transport.write(b"0\r\n\r\n")
            self._complete()

    def _complete(self) -> None:
        self.response_complete = True
        protocol = self.protocol
        if not self.keep_alive:
            protocol.transport.close()
        protocol.on_response_complete()


class LeanGatewayProtocol(HttpToolsProtocol):
    """Set up by `lean_protocol`; uvicorn makes one per connection."""

    core: HttpCore
    admit: Admit
    max_bytes: int
    too_large: Callable[[], Refusal]

    def on_headers_complete(self) -> None:
        previous = self.cycle
        idle = previous is None or previous.response_complete
        if idle and not self.expect_100_continue and not self.parser.should_upgrade():
            url = httptools.parse_url(self.url)
            raw_path = url.path.decode("latin-1")
            path = unquote(raw_path) if "%" in raw_path else raw_path
            if is_gateway_path(path):
                method = self.parser.get_method()
                headers = dict(self.headers)
                verdict = self.admit(method.decode("ascii"), path, url.query or b"", headers)
                if verdict is not False:
                    self._take(method, raw_path, headers, verdict)
                    return
        super().on_headers_complete()

    def _take(
        self, method: bytes, raw_path: str, headers: dict[bytes, bytes], verdict: Refusal | bool
    ) -> None:
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        exchange = LeanExchange(self, method, raw_path, headers, keep_alive)
        self.cycle = exchange  # type: ignore[assignment]
        if isinstance(verdict, tuple):
            # Answered before the body is read: the connection cannot be reused after it.
            exchange.keep_alive = False
            exchange.json(*verdict)

    def on_body(self, body: bytes) -> None:
        exchange = self.cycle
        if not isinstance(exchange, LeanExchange):
            super().on_body(body)
            return
        if exchange.response_complete:
            return
        exchange.body += body
        if len(exchange.body) > self.max_bytes:
            exchange.keep_alive = False
            exchange.json(*self.too_large())

    def on_message_complete(self) -> None:
        exchange = self.cycle
        if not isinstance(exchange, LeanExchange):
            super().on_message_complete()
            return
        if exchange.response_complete:
            return
        exchange.more_body = False
        self.core.handle(
            exchange.method, exchange.path, exchange.headers, bytes(exchange.body), exchange
        )

    def connection_lost(self, exc: Exception | None) -> None:
        exchange = self.cycle
        super().connection_lost(exc)
        if isinstance(exchange, LeanExchange):
            self.core.disconnected(exchange)


def lean_protocol(
    core: HttpCore, *, admit: Admit, max_bytes: int, too_large: Callable[[], Refusal]
) -> type[LeanGatewayProtocol]:
    """The protocol class to give uvicorn's `Config(http=...)`, bound to this core and checks."""
    return type(
        "BoundLeanGatewayProtocol",
        (LeanGatewayProtocol,),
        {"core": core, "admit": staticmethod(admit), "max_bytes": max_bytes,
         "too_large": staticmethod(too_large)},
    )  # fmt: skip


__all__ = [
    "Admit",
    "LeanExchange",
    "LeanGatewayProtocol",
    "Refusal",
    "is_gateway_path",
    "lean_protocol",
]
