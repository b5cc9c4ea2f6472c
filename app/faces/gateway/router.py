"""The message router: client sessions on one side, the servers' connections on the other.

Every message is a dict parsed once. The router rewrites only what routing needs (request ids,
progress tokens, tool and prompt names, resource URIs) and forwards the same dict. Forwarding
is synchronous: a face calls `Session.receive(msg)`, the router writes to the connection, and
the answer comes back through a per-request callback that writes to the face. Only fan-out
work (merged lists, `logging/setLevel`, a start on demand) runs as a task.

Views (what one endpoint exposes):
- aggregated (`/mcp`, `gateway --stdio`): every enabled server, names `<server>__<name>`, URIs
  `tooldeck://<server>/<uri>`, lists merged; unknown methods answer -32601;
- per server (`/mcp/servers/<name>`, `--server NAME`): one server, nothing renamed, unknown
  methods forwarded; the client gets the server's own `initialize` result;
- profile (`/mcp/profiles/<name>`, `--profile NAME`): an aggregated view of the profile's
  servers and tools only.

Intent applies on every view, from memory (app.ops.gateway_port): disabled servers and tools
are refused and left out of lists, a bypassed tool whose server is down answers at once, a
stopped server that starts on demand is started, concurrency limits hold, and every call is
metered (its time to the final answer, its outcome, the client's name). A call to a server
another node runs goes over this node's link to it (app.runtime.peers) and is metered there, by
the owner, under the client's name this router sends along in the call's `_meta`.

Server-to-client requests (sampling, elicitation, roots) go to the session whose call caused
them. A connection is shared by every session, and stdio carries no "related request" on the
wire, so: with calls of exactly one session in flight on that server, that session; with none
in flight, the only attached session that declared the capability; otherwise the server gets
an MCP error that says why (`-32002`, "calls of 2 client sessions are in flight").
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from app.core import jsonrpc
from app.core.clients import GatewaySession, Transport
from app.core.errors import TooldeckError
from app.core.jsonrpc import Message
from app.core.schemas import CALL_SOURCES
from app.core.tool_names import NameTable
from app.core.usage_record import Outcome
from app.faces.gateway import uris
from app.ops.gateway_port import SOURCE as GATEWAY_SOURCE
from app.ops.gateway_port import GatewayPort, ServerIntent, ToolIntent
from app.runtime.connections import Connection
from app.runtime.node_credentials import is_node_identity
from app.runtime.peers import FORWARDED_CLIENT_KEY

logger = logging.getLogger(__name__)

SUPPORTED_PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_PROTOCOL_VERSION = SUPPORTED_PROTOCOL_VERSIONS[-1]
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_LEVEL_RANK = {name: rank for rank, name in enumerate(LOG_LEVELS)}
MAX_LIST_PAGES = 1000

# list method -> (result key, capability, the field renamed in aggregated views)
LISTS = {
    "tools/list": ("tools", "tools", "name"),
    "prompts/list": ("prompts", "prompts", "name"),
    "resources/list": ("resources", "resources", "uri"),
    "resources/templates/list": ("resourceTemplates", "resources", "uriTemplate"),
}
_LIST_CHANGED = {
    "notifications/tools/list_changed": ("tools/list",),
    "notifications/prompts/list_changed": ("prompts/list",),
    "notifications/resources/list_changed": ("resources/list", "resources/templates/list"),
}
_CAPABILITY_OF_REQUEST = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}
TOOLS_CHANGED = jsonrpc.notification("notifications/tools/list_changed")

Deliver = Callable[[Message, Any], None]  # (message, the client request it belongs to, or None)
Rewrite = Callable[[dict[str, Any], str], None]


def tool_error(text: str) -> Message:
    """A tool call's failure as a result the model can read (not a protocol error)."""
    return {"content": [{"type": "text", "text": text}], "isError": True}


class InFlight:
    """A client request forwarded to a server, until its final answer."""

    __slots__ = (
        "arguments",
        "client_id",
        "client_name",
        "client_token",
        "conn",
        "deadline",
        "gate",
        "hard_deadline",
        "rewrite",
        "server",
        "session",
        "source",
        "started",
        "timeout_s",
        "timer",
        "tool",
        "tool_name",
        "upstream_id",
    )

    def __init__(self, session: Session, client_id: Any, conn: Connection) -> None:
        self.session = session
        self.client_id = client_id
        self.conn = conn
        self.upstream_id = 0
        self.rewrite: Rewrite | None = None
        self.client_token: Any = None
        self.started = time.monotonic()
        self.timeout_s = 0.0
        self.deadline = 0.0
        self.hard_deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        # Set for tools/call: what metering needs.
        self.server: ServerIntent | None = None
        self.tool: ToolIntent | None = None
        self.tool_name: str | None = None
        self.arguments: Any = None
        self.gate: object = None
        self.client_name: str | None = session.client_name
        self.source = GATEWAY_SOURCE

    def on_response(self, reply: Message) -> None:
        session = self.session
        if session.inflight.get(self.client_id) is not self:
            return  # cancelled or timed out: the client no longer waits for it
        del session.inflight[self.client_id]
        router = session.router
        router.finished(self)
        reply["id"] = self.client_id
        result = reply.get("result")
        if result is not None:
            if self.rewrite is not None:
                self.rewrite(result, self.conn.name)
        elif self.tool_name is not None:
            reply = router.call_failure(self, reply)
        if self.tool_name is not None:
            router.meter(self, reply)
        session.deliver(reply, self.client_id)

    def expire(self) -> None:
        session = self.session
        if session.inflight.get(self.client_id) is not self:
            return
        now = time.monotonic()
        if now < self.deadline:  # progress moved the deadline on
            self.timer = asyncio.get_running_loop().call_at(
                asyncio.get_running_loop().time() + (self.deadline - now), self.expire
            )
            return
        del session.inflight[self.client_id]
        router = session.router
        self.conn.pending.pop(self.upstream_id, None)
        router.finished(self)
        self.conn.notify(
            "notifications/cancelled", {"requestId": self.upstream_id, "reason": "timed out"}
        )
        text = f"{self.conn.where} did not answer within {self.timeout_s:g} s"
        if self.tool_name is not None:
            text = f"{self.tool_name} timed out after {now - self.started:.3g} s"
            if self.conn.peer_node is not None:
                text += f" (its server runs on node {self.conn.peer_node})"
            reply = jsonrpc.result_response(self.client_id, tool_error(text))
            router.meter(self, reply)
        else:
            reply = jsonrpc.error_response(self.client_id, jsonrpc.REQUEST_TIMEOUT, text)
        session.deliver(reply, self.client_id)


class View:
    """What one endpoint exposes: `kind` is "aggregated", "server" or "profile"."""

    def __init__(self, router: Router, kind: str, name: str | None = None) -> None:
        if kind not in ("aggregated", "server", "profile") or (kind != "aggregated") != bool(name):
            raise ValueError(f"bad view {kind!r} {name!r}")
        self.router = router
        self.kind = kind
        self.name = name or ""
        self.transparent = kind == "server"

    @property
    def label(self) -> str:
        return self.kind if self.kind == "aggregated" else f"{self.kind} {self.name}"

    def has(self, server: str) -> bool:
        intent = self.router.port.server(server)
        if intent is None or not intent.enabled:
            return False
        if self.kind == "server":
            return server == self.name
        if self.kind == "profile":
            selection = self.router.port.profile(self.name)
            return selection is not None and selection.has_server(server)
        return True

    def allows_tool(self, server: str, tool: str) -> bool:
        if self.kind != "profile":
            return True
        selection = self.router.port.profile(self.name)
        return selection is not None and selection.has_tool(server, tool)

    def servers(self) -> list[ServerIntent]:
        return [s for s in self.router.port.enabled_servers() if self.has(s.name)]

    def connections(self) -> list[Connection]:
        port = self.router.port
        found = (port.connection(server.id) for server in self.servers())
        return [conn for conn in found if conn is not None]

    def missing(self) -> str | None:
        """Why this view has nothing to show, or None."""
        if self.kind == "profile" and self.router.port.profile(self.name) is None:
            return f"no profile {self.name!r}"
        if self.kind == "server":
            intent = self.router.port.server(self.name)
            if intent is None:
                return f"no server {self.name!r}"
            if not intent.enabled:
                why = f" ({intent.disabled_reason})" if intent.disabled_reason else ""
                return f"server {self.name} is disabled{why}"
        return None


class Session:
    """One client connection: the stdio face's only client, a socket client, an HTTP session."""

    def __init__(
        self,
        router: Router,
        view: View,
        deliver: Deliver,
        transport: Transport = "stdio",
        token_name: str | None = None,
    ) -> None:
        self.router = router
        self.view = view
        self.deliver = deliver
        # Who this is, for the clients screen: read only when someone asks.
        self.id = f"s{next(_session_numbers)}"
        self.transport: Transport = transport
        self.token_name = token_name
        self.since = datetime.now(UTC)
        self.calls = 0
        self.errors = 0
        self.client_info: Message = {}
        self.client_capabilities: Message = {}
        self.protocol_version: str | None = None
        self.log_level: str | None = None
        self.inflight: dict[Any, InFlight] = {}
        # Server-to-client requests sent to this client: our id -> (conn, its id, its token).
        self.outgoing: dict[int, tuple[Connection, Any, Any]] = {}
        self._next_out_id = 0
        self.closed = False
        self.busy = 0  # router tasks working for this session
        # The face's hook for a cancelled request: no answer will follow (HTTP ends its POST).
        self.on_cancelled: Callable[[Any], None] | None = None

    @property
    def idle(self) -> bool:
        return not self.inflight and not self.busy

    @property
    def client_name(self) -> str | None:
        name = self.client_info.get("name")
        return name if isinstance(name, str) else None

    def describe(self) -> GatewaySession:
        version = self.client_info.get("version")
        return GatewaySession(
            id=self.id,
            client_name=self.client_name,
            client_version=version if isinstance(version, str) else None,
            protocol_version=self.protocol_version,
            transport=self.transport,
            endpoint=self.view.label,
            token_name=self.token_name,
            since=self.since,
            calls=self.calls,
            errors=self.errors,
        )

    # ---- from the client ------------------------------------------------------------------

    def receive(self, message: Message) -> None:
        method = message.get("method")
        if method is None:
            self._client_response(message)
        elif "id" not in message:
            self._client_notification(method, message)
        else:
            handler = self.router.handlers.get(method)
            if handler is not None:
                handler(self, message)
            elif self.view.transparent:
                self.router.forward_transparent(self, message)
            else:
                self.router.error(
                    self, message, jsonrpc.METHOD_NOT_FOUND, f"Method not found: {method}"
                )

    def _client_response(self, message: Message) -> None:
        entry = self.outgoing.pop(message.get("id"), None)  # type: ignore[arg-type]
        if entry is None:
            return
        conn, upstream_request_id, _token = entry
        self.router.server_requests.pop((conn, upstream_request_id), None)
        message["id"] = upstream_request_id
        conn.send(message)

    def _client_notification(self, method: str, message: Message) -> None:
        router = self.router
        params = message.get("params") or {}
        if method == "notifications/cancelled":
            inflight = self.inflight.pop(params.get("requestId"), None)
            if inflight is not None:
                inflight.conn.pending.pop(inflight.upstream_id, None)
                router.finished(inflight)
                params["requestId"] = inflight.upstream_id
                inflight.conn.send(message)
                if self.on_cancelled is not None:
                    self.on_cancelled(inflight.client_id)
                if inflight.tool_name is not None:
                    reply = jsonrpc.result_response(None, tool_error("cancelled by the client"))
                    router.meter(inflight, reply, outcome="cancelled")
        elif method == "notifications/initialized":
            router.session_initialized(self)
        elif method == "notifications/progress":
            # Progress on a server's request (e.g. sampling) goes back to that server.
            token = params.get("progressToken")
            for conn, _id, upstream_token in self.outgoing.values():
                if upstream_token is not None and upstream_token == token:
                    conn.send(message)
                    break
        elif method == "notifications/roots/list_changed" or self.view.transparent:
            for conn in self.view.connections():
                conn.send(dict(message))
        else:
            logger.debug("dropping client notification %s in an aggregated view", method)

    # ---- to the client --------------------------------------------------------------------

    def next_out_id(self) -> int:
        self._next_out_id += 1
        return self._next_out_id

    def wants_log(self, level: Any) -> bool:
        if self.log_level is None:
            return True
        return _LEVEL_RANK.get(level, len(LOG_LEVELS)) >= _LEVEL_RANK[self.log_level]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.deliver = _drop  # late answers of fan-out tasks go nowhere
        self.router.session_closed(self)


class Router:
    """Routes between client sessions and server connections (see the module doc)."""

    def __init__(self, port: GatewayPort) -> None:
        self.port = port
        settings = port.settings
        self.max_call_s = settings.gateway_max_call_s
        self.page_size = settings.gateway_page_size
        self.tools = NameTable(settings.gateway_separator, settings.gateway_max_name_length)
        self.prompts = NameTable(settings.gateway_separator, settings.gateway_max_name_length)
        self.sessions: set[Session] = set()
        # (conn, upstream progress token) -> request; the token is the upstream request id.
        self.progress: dict[tuple[Connection, Any], InFlight] = {}
        # (conn, its request id) -> (session, our id): server-to-client requests in flight.
        self.server_requests: dict[tuple[Connection, Any], tuple[Session, int]] = {}
        # (server name, upstream uri) -> subscribed sessions.
        self.subscriptions: dict[tuple[str, str], set[Session]] = {}
        # (server name, list method) -> every item; only for servers that announce changes.
        self.catalog: dict[tuple[str, str], list[Message]] = {}
        self.log_levels: dict[str, str] = {}
        self.server_info: Message = {"name": "tooldeck", "version": _version()}
        self.handlers: dict[str, Callable[[Session, Message], None]] = {
            "initialize": self._initialize,
            "ping": self._ping,
            "tools/call": self._tools_call,
            "tools/list": self._list,
            "prompts/list": self._list,
            "resources/list": self._list,
            "resources/templates/list": self._list,
            "prompts/get": self._prompts_get,
            "resources/read": self._resources_read,
            "resources/subscribe": self._subscribe,
            "resources/unsubscribe": self._unsubscribe,
            "completion/complete": self._complete,
            "logging/setLevel": self._set_level,
        }
        self._tasks: set[asyncio.Task[Any]] = set()
        self._detach: Callable[[], None] | None = None
        port.on_reload(self._intent_changed)

    # ---- life -----------------------------------------------------------------------------

    def attach(self) -> None:
        """Start receiving the servers' messages (the connection registry's one listener)."""
        self._detach = self.port.connections.attach(self)

    def close(self) -> None:
        for session in list(self.sessions):
            session.close()
        if self._detach is not None:
            self._detach()
        for task in self._tasks:
            task.cancel()

    def open_session(
        self,
        view: View,
        deliver: Deliver,
        transport: Transport = "stdio",
        token_name: str | None = None,
    ) -> Session:
        session = Session(self, view, deliver, transport, token_name)
        self.sessions.add(session)
        return session

    def describe_sessions(self) -> list[GatewaySession]:
        """The sessions connected now (those that said `initialize`), for the clients screen."""
        return [s.describe() for s in list(self.sessions) if s.protocol_version is not None]

    def spawn(self, work: Any, session: Session | None = None) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        if session is not None:
            session.busy += 1
        task.add_done_callback(lambda done: self._task_done(done, session))

    def _task_done(self, task: asyncio.Task[Any], session: Session | None) -> None:
        self._tasks.discard(task)
        if session is not None:
            session.busy -= 1
        if not task.cancelled() and task.exception() is not None:
            logger.error("a gateway task failed", exc_info=task.exception())

    # ---- connections coming and going -----------------------------------------------------

    def connection_up(self, conn: Connection) -> None:
        """A server (re)started: restore what its sessions asked of it, and tell them."""
        name = conn.name
        for _server, uri in [key for key in self.subscriptions if key[0] == name]:
            self.spawn(_quietly(conn.request("resources/subscribe", {"uri": uri})))
        self.log_levels.pop(name, None)
        sessions = self._sessions_for(name)
        levels = [s.log_level for s in sessions if s.log_level]
        if levels and "logging" in conn.capabilities:
            level = min(levels, key=_LEVEL_RANK.__getitem__)
            self.log_levels[name] = level
            self.spawn(_quietly(conn.request("logging/setLevel", {"level": level})))
        if any("roots" in s.client_capabilities for s in sessions):
            # It may have asked for roots before any client could answer: let it ask again.
            conn.notify("notifications/roots/list_changed")
        self._lists_changed(sessions, conn)

    def upstream_closed(self, conn: Connection) -> None:
        name = conn.name
        self.log_levels.pop(name, None)
        for key in [key for key in self.catalog if key[0] == name]:
            del self.catalog[key]
        for key, (session, down_id) in list(self.server_requests.items()):
            if key[0] is conn:
                del self.server_requests[key]
                session.outgoing.pop(down_id, None)
        self._lists_changed(self._sessions_for(name), conn)

    def _lists_changed(self, sessions: list[Session], conn: Connection) -> None:
        for session in sessions:
            if session.view.transparent:
                continue
            session.deliver(TOOLS_CHANGED, None)
            if "prompts" in conn.capabilities:
                session.deliver(jsonrpc.notification("notifications/prompts/list_changed"), None)
            if "resources" in conn.capabilities:
                session.deliver(jsonrpc.notification("notifications/resources/list_changed"), None)

    def _intent_changed(self, server_ids: set[str | None], kinds: set[Any]) -> None:
        """A person changed servers, tools or profiles: their clients re-list."""
        names = {
            intent.name
            for server_id in server_ids
            if server_id is not None
            and (intent := self.port.snapshot.by_id.get(server_id)) is not None
        }
        everyone = None in server_ids
        for session in list(self.sessions):
            view = session.view
            if view.transparent and not everyone and view.name not in names:
                continue
            session.deliver(TOOLS_CHANGED, None)

    def session_initialized(self, session: Session) -> None:
        if "roots" in session.client_capabilities:
            for conn in session.view.connections():
                if self._attached(conn, "roots") == [session]:
                    conn.notify("notifications/roots/list_changed")

    def session_closed(self, session: Session) -> None:
        self.sessions.discard(session)
        for inflight in list(session.inflight.values()):
            inflight.conn.pending.pop(inflight.upstream_id, None)
            self.finished(inflight)
            inflight.conn.notify(
                "notifications/cancelled",
                {"requestId": inflight.upstream_id, "reason": "the client went away"},
            )
            if inflight.tool_name is not None:
                reply = jsonrpc.result_response(None, tool_error("the client went away"))
                self.meter(inflight, reply)
        session.inflight.clear()
        for conn, upstream_request_id, _token in session.outgoing.values():
            self.server_requests.pop((conn, upstream_request_id), None)
            conn.send(
                jsonrpc.error_response(
                    upstream_request_id, jsonrpc.CONNECTION_CLOSED, "the client session closed"
                )
            )
        session.outgoing.clear()
        for key, subscribers in list(self.subscriptions.items()):
            if session in subscribers:
                subscribers.discard(session)
                if not subscribers:
                    del self.subscriptions[key]
                    server = self.port.server(key[0])
                    conn = self.port.connection(server.id) if server is not None else None
                    if conn is not None:
                        self.spawn(_quietly(conn.request("resources/unsubscribe", {"uri": key[1]})))

    # ---- the forwarding core --------------------------------------------------------------

    def forward(
        self,
        session: Session,
        message: Message,
        conn: Connection,
        rewrite: Rewrite | None = None,
        timeout_s: float = 60.0,
    ) -> InFlight:
        client_id = message["id"]
        inflight = InFlight(session, client_id, conn)
        inflight.rewrite = rewrite
        inflight.timeout_s = timeout_s
        inflight.deadline = inflight.started + timeout_s
        inflight.hard_deadline = inflight.started + max(timeout_s, self.max_call_s)
        upstream_id = conn.next_id()
        inflight.upstream_id = upstream_id
        params = message.get("params")
        if isinstance(params, dict):
            meta = params.get("_meta")
            if isinstance(meta, dict) and "progressToken" in meta:
                # Tokens of two sessions may be equal: the upstream request id never is.
                inflight.client_token = meta["progressToken"]
                meta["progressToken"] = upstream_id
                self.progress[(conn, upstream_id)] = inflight
        session.inflight[client_id] = inflight
        message["id"] = upstream_id
        if conn.is_closed:
            conn.forward(message, inflight.on_response)  # answers at once: connection closed
            return inflight
        conn.pending[upstream_id] = inflight.on_response
        loop = asyncio.get_running_loop()
        inflight.timer = loop.call_at(loop.time() + timeout_s, inflight.expire)
        conn.write(message)
        return inflight

    def forward_transparent(self, session: Session, message: Message) -> None:
        """A request of a per-server view that needs nothing rewritten."""
        server = self.port.server(session.view.name)
        conn = self.port.connection(server.id) if server is not None else None
        if server is None or conn is None:
            self.error(session, message, jsonrpc.ROUTING_ERROR, self._down(session.view.name))
            return
        self.forward(session, message, conn, None, server.call_timeout_s)

    def finished(self, inflight: InFlight) -> None:
        """Whatever ended a request: its timer, progress route and concurrency place go."""
        if inflight.timer is not None:
            inflight.timer.cancel()
            inflight.timer = None
        if inflight.client_token is not None:
            self.progress.pop((inflight.conn, inflight.upstream_id), None)
        if inflight.gate is not None:
            self.port.gates.release(inflight.gate)
            inflight.gate = None

    def reply(self, session: Session, message: Message, result: Message) -> None:
        session.deliver(jsonrpc.result_response(message["id"], result), message["id"])

    def error(self, session: Session, message: Message, code: int, text: str) -> None:
        session.deliver(jsonrpc.error_response(message["id"], code, text), message["id"])

    def call_failure(self, inflight: InFlight, reply: Message) -> Message:
        """A call that got no result: Tooldeck's own failures become tool errors the model can
        read; a server's own JSON-RPC error passes as it is."""
        error = reply.get("error") or {}
        data = error.get("data") if isinstance(error, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        ours = code == jsonrpc.CONNECTION_CLOSED or (
            isinstance(data, dict) and data.get("tooldeck") == jsonrpc.TOO_LARGE
        )
        if not ours:
            return reply
        return jsonrpc.result_response(reply.get("id"), tool_error(str(error.get("message"))))

    def meter(self, inflight: InFlight, reply: Message, outcome: Outcome | None = None) -> None:
        server = inflight.server
        if server is None or inflight.tool_name is None:
            return
        result = reply.get("result")
        if isinstance(result, dict):
            success = not result.get("isError", False)
            error = None if success else _first_text(result.get("content"))
        else:
            success = False
            error = str((reply.get("error") or {}).get("message", "no result"))
            result = None
        session = inflight.session
        session.calls += 1
        if not success:
            session.errors += 1
        if inflight.conn.peer_node is not None:
            return  # the node that owns the server meters it, under this client's name
        self.port.record(
            server,
            inflight.tool,
            inflight.tool_name,
            began=inflight.started,
            success=success,
            error=error,
            client_name=inflight.client_name,
            source=inflight.source,
            arguments=inflight.arguments,
            result=result,
            outcome=outcome,
        )

    @staticmethod
    def _down(server: str) -> str:
        return f"server {server} is not running"

    # ---- requests: the handshake ----------------------------------------------------------

    def _initialize(self, session: Session, message: Message) -> None:
        params = message.get("params") or {}
        session.client_info = params.get("clientInfo") or {}
        session.client_capabilities = params.get("capabilities") or {}
        requested = params.get("protocolVersion")
        view = session.view
        missing = view.missing()
        if missing is not None:
            self.error(session, message, jsonrpc.INVALID_PARAMS, missing)
            return
        if not view.transparent:
            result: Message = {
                "protocolVersion": None,
                "capabilities": {
                    # Servers come and go under us: every list may change, and we say so.
                    "tools": {"listChanged": True},
                    "prompts": {"listChanged": True},
                    "resources": {"subscribe": True, "listChanged": True},
                    "logging": {},
                    "completions": {},
                },
                "serverInfo": self.server_info,
                "instructions": (
                    f"Tooldeck gateway ({view.label}): the tools, prompts and resources of "
                    f"several MCP servers, named <server>{self.tools.separator}<name>; every "
                    "call is routed to its server and metered."
                ),
            }
            self._negotiated(session, message, result, LATEST_PROTOCOL_VERSION, requested)
            return
        server = self.port.server(view.name)
        conn = self.port.connection(server.id) if server is not None else None
        if conn is not None and server is not None:
            self._initialize_as(session, message, conn, requested)
            return
        self.spawn(self._initialize_on_demand(session, message, requested), session)

    async def _initialize_on_demand(
        self, session: Session, message: Message, requested: Any
    ) -> None:
        server = self.port.server(session.view.name)
        assert server is not None
        try:
            conn = await self.port.ensure_running(server)
        except TooldeckError as exc:
            self.error(session, message, jsonrpc.ROUTING_ERROR, str(exc))
            return
        self._initialize_as(session, message, conn, requested)

    def _initialize_as(
        self, session: Session, message: Message, conn: Connection, requested: Any
    ) -> None:
        result = dict(conn.init_result)
        tools = result.get("capabilities", {}).get("tools")
        if isinstance(tools, dict) and not tools.get("listChanged"):
            # Tooldeck tells the client when a person switches one of the server's tools.
            result["capabilities"] = {
                **result["capabilities"],
                "tools": {**tools, "listChanged": True},
            }
        upstream_version = result.get("protocolVersion") or LATEST_PROTOCOL_VERSION
        self._negotiated(session, message, result, upstream_version, requested)

    def _negotiated(
        self, session: Session, message: Message, result: Message, ceiling: str, requested: Any
    ) -> None:
        # The client's version when we speak it and it is not newer than the server's.
        if requested in SUPPORTED_PROTOCOL_VERSIONS and requested <= ceiling:
            result["protocolVersion"] = requested
        else:
            result["protocolVersion"] = ceiling
        session.protocol_version = result["protocolVersion"]
        self.reply(session, message, result)

    def _ping(self, session: Session, message: Message) -> None:
        self.reply(session, message, {})

    # ---- requests: tools ------------------------------------------------------------------

    def _tools_call(self, session: Session, message: Message) -> None:
        params = message.get("params")
        if not isinstance(params, dict) or not isinstance(params.get("name"), str):
            self.error(session, message, jsonrpc.INVALID_PARAMS, "tools/call needs a name")
            return
        exposed = params["name"]
        view = session.view
        if view.transparent:
            server_name, tool_name = view.name, exposed
        else:
            route = self.tools.resolve(exposed)
            if route is None:
                if not any(self.catalog.get((s.name, "tools/list")) for s in view.servers()):
                    # A client that calls before it lists: learn the names, then try once more.
                    self.spawn(self._call_after_listing(session, message), session)
                    return
                self.error(session, message, jsonrpc.INVALID_PARAMS, f"Unknown tool: {exposed}")
                return
            server_name, tool_name = route
            if not view.has(server_name) or not view.allows_tool(server_name, tool_name):
                self.error(session, message, jsonrpc.INVALID_PARAMS, f"Unknown tool: {exposed}")
                return
            params["name"] = tool_name
        server = self.port.server(server_name)
        if server is None or not view.has(server_name):
            missing = view.missing() or f"Unknown tool: {exposed}"
            self.error(session, message, jsonrpc.INVALID_PARAMS, missing)
            return
        self._call(session, message, server, tool_name)

    def _call(self, session: Session, message: Message, server: ServerIntent, name: str) -> None:
        port = self.port
        tool = port.tool(server.id, name)
        if tool is not None and not tool.enabled:
            self.error(
                session,
                message,
                jsonrpc.INVALID_PARAMS,
                f"tool {name} of {server.name} is disabled",
            )
            return
        conn = port.connection(server.id)
        if conn is None or (tool is not None and not tool.is_available):
            if tool is not None and tool.bypass_when_unavailable:
                why = "its server is not running" if conn is None else "its server does not list it"
                self._refuse_call(
                    session, message, server, tool, name, f"{name} is unavailable: {why} (bypass)"
                )
                return
            if conn is None:
                self.spawn(self._call_on_demand(session, message, server, name), session)
                return
        try:
            gate, waiter = port.gates.admit(server.id, server.name)
        except TooldeckError as exc:
            self._refuse_call(session, message, server, tool, name, str(exc))
            return
        if waiter is not None:
            self.spawn(self._call_when_admitted(session, message, server, name, gate, waiter))
            return
        self._send_call(session, message, server, tool, name, conn, gate)

    def _refuse_call(
        self,
        session: Session,
        message: Message,
        server: ServerIntent,
        tool: ToolIntent | None,
        name: str,
        text: str,
    ) -> None:
        """A call that is not sent: a tool error the model can read, metered without a time."""
        client_name, source = _calling_client(session, message)
        self.port.record(
            server,
            tool,
            name,
            began=None,
            success=False,
            error=text,
            client_name=client_name,
            source=source,
            arguments=(message.get("params") or {}).get("arguments"),
            outcome="refused",
        )
        self.reply(session, message, tool_error(text))

    def _send_call(
        self,
        session: Session,
        message: Message,
        server: ServerIntent,
        tool: ToolIntent | None,
        name: str,
        conn: Connection,
        gate: object,
    ) -> None:
        client_name, source = _calling_client(session, message)
        if conn.peer_node is not None:
            _name_the_client(session, message)
        inflight = self.forward(
            session,
            message,
            conn,
            None if session.view.transparent else uris.tool_result,
            server.call_timeout_s,
        )
        inflight.client_name, inflight.source = client_name, source
        inflight.server, inflight.tool, inflight.tool_name = server, tool, name
        inflight.arguments = (message.get("params") or {}).get("arguments")
        inflight.gate = gate
        if session.inflight.get(inflight.client_id) is not inflight:
            # Answered at once (the connection had closed): give the place back.
            self.port.gates.release(gate)
            inflight.gate = None

    async def _call_when_admitted(
        self,
        session: Session,
        message: Message,
        server: ServerIntent,
        name: str,
        gate: object,
        waiter: asyncio.Future[None],
    ) -> None:
        try:
            async with asyncio.timeout(server.call_timeout_s):
                await waiter
        except TimeoutError:
            self.port.gates.abandon(gate, waiter)
            text = f"{name} waited {server.call_timeout_s:g} s for a free place (its limits)"
            self.reply(session, message, tool_error(text))
            return
        except asyncio.CancelledError:
            self.port.gates.abandon(gate, waiter)
            raise
        conn = self.port.connection(server.id)
        if conn is None or session.closed:
            self.port.gates.release(gate)
            self.reply(session, message, tool_error(self._down(server.name)))
            return
        self._send_call(session, message, server, self.port.tool(server.id, name), name, conn, gate)

    async def _call_on_demand(
        self, session: Session, message: Message, server: ServerIntent, name: str
    ) -> None:
        try:
            await self.port.ensure_running(server)
        except TooldeckError as exc:
            tool = self.port.tool(server.id, name)
            self._refuse_call(session, message, server, tool, name, str(exc))
            return
        if not session.closed:
            self._call(session, message, server, name)

    async def _call_after_listing(self, session: Session, message: Message) -> None:
        await self._collect(session.view, "tools/list")
        if self.tools.resolve(message["params"].get("name")) is None:
            self.error(
                session,
                message,
                jsonrpc.INVALID_PARAMS,
                f"Unknown tool: {message['params'].get('name')}",
            )
            return
        self._tools_call(session, message)

    # ---- requests: prompts, resources, completions ----------------------------------------

    def _prompts_get(self, session: Session, message: Message) -> None:
        view = session.view
        if view.transparent:
            self.forward_transparent(session, message)
            return
        params = message.get("params") or {}
        route = self.prompts.resolve(str(params.get("name", "")))
        if route is None or not view.has(route[0]):
            text = f"Unknown prompt: {params.get('name')}"
            self.error(session, message, jsonrpc.INVALID_PARAMS, text)
            return
        params["name"] = route[1]
        self._forward_to(session, message, route[0], uris.prompt_result)

    def _forward_to(
        self, session: Session, message: Message, server_name: str, rewrite: Rewrite | None
    ) -> None:
        server = self.port.server(server_name)
        conn = self.port.connection(server.id) if server is not None else None
        if server is None or conn is None:
            self.error(session, message, jsonrpc.ROUTING_ERROR, self._down(server_name))
            return
        self.forward(session, message, conn, rewrite, server.call_timeout_s)

    def _route_uri(self, session: Session, uri: Any) -> tuple[str, str] | None:
        view = session.view
        if view.transparent:
            return view.name, uri
        if not isinstance(uri, str):
            return None
        decoded = uris.decode(uri)
        if decoded is not None and view.has(decoded[0]):
            return decoded
        return None

    def _unknown_resource(self, session: Session, message: Message, uri: Any) -> None:
        text = f"Unknown resource: {uri} (expected {uris.SCHEME}<server>/<uri>)"
        self.error(session, message, jsonrpc.INVALID_PARAMS, text)

    def _resources_read(self, session: Session, message: Message) -> None:
        params = message.get("params") or {}
        route = self._route_uri(session, params.get("uri"))
        if route is None:
            self._unknown_resource(session, message, params.get("uri"))
            return
        params["uri"] = route[1]
        rewrite = None if session.view.transparent else uris.read_result
        self._forward_to(session, message, route[0], rewrite)

    def _subscribe(self, session: Session, message: Message) -> None:
        params = message.get("params") or {}
        route = self._route_uri(session, params.get("uri"))
        if route is None:
            self._unknown_resource(session, message, params.get("uri"))
            return
        subscribers = self.subscriptions.get(route)
        if subscribers:
            subscribers.add(session)  # the server already sends its updates: share them
            self.reply(session, message, {})
            return
        params["uri"] = route[1]
        server = self.port.server(route[0])
        conn = self.port.connection(server.id) if server is not None else None
        if server is None or conn is None:
            self.error(session, message, jsonrpc.ROUTING_ERROR, self._down(route[0]))
            return
        self.forward(session, message, conn, None, server.call_timeout_s)
        # Counted at once, so an update racing the server's answer is delivered.
        self.subscriptions.setdefault(route, set()).add(session)

    def _unsubscribe(self, session: Session, message: Message) -> None:
        params = message.get("params") or {}
        route = self._route_uri(session, params.get("uri"))
        if route is None:
            self._unknown_resource(session, message, params.get("uri"))
            return
        subscribers = self.subscriptions.get(route)
        if subscribers is not None:
            subscribers.discard(session)
            if subscribers:
                self.reply(session, message, {})
                return
            del self.subscriptions[route]
        params["uri"] = route[1]
        self._forward_to(session, message, route[0], None)

    def _complete(self, session: Session, message: Message) -> None:
        view = session.view
        if view.transparent:
            self.forward_transparent(session, message)
            return
        ref = (message.get("params") or {}).get("ref") or {}
        kind = ref.get("type")
        if kind == "ref/prompt":
            route = self.prompts.resolve(str(ref.get("name", "")))
            if route is not None and view.has(route[0]):
                ref["name"] = route[1]
                self._forward_to(session, message, route[0], None)
                return
        elif kind == "ref/resource":
            uri_route = self._route_uri(session, ref.get("uri"))
            if uri_route is not None:
                ref["uri"] = uri_route[1]
                self._forward_to(session, message, uri_route[0], None)
                return
        text = f"Unknown completion reference: {ref}"
        self.error(session, message, jsonrpc.INVALID_PARAMS, text)

    # ---- requests: logging ----------------------------------------------------------------

    def _set_level(self, session: Session, message: Message) -> None:
        level = (message.get("params") or {}).get("level")
        if level not in _LEVEL_RANK:
            self.error(session, message, jsonrpc.INVALID_PARAMS, f"Unknown log level: {level}")
            return
        session.log_level = level
        self.spawn(self._set_levels(session, message), session)

    async def _set_levels(self, session: Session, message: Message) -> None:
        # A connection is shared: its server runs at the most verbose level any of its sessions
        # asked for, and each session gets only the messages at or above its own level.
        conns = [
            conn
            for conn in session.view.connections()
            if "logging" in conn.capabilities or session.view.transparent
        ]
        errors: list[Message] = []
        for conn in conns:
            levels = [s.log_level for s in self._sessions_for(conn.name) if s.log_level]
            effective = min(levels, key=_LEVEL_RANK.__getitem__) if levels else session.log_level
            if effective is None or self.log_levels.get(conn.name) == effective:
                continue
            try:
                await conn.request("logging/setLevel", {"level": effective}, timeout_s=30)
                self.log_levels[conn.name] = effective
            except TimeoutError:
                errors.append({"code": jsonrpc.REQUEST_TIMEOUT, "message": "timed out"})
            except Exception as exc:
                code = getattr(exc, "code", jsonrpc.INTERNAL_ERROR)
                errors.append({"code": code, "message": str(exc)})
        if errors and len(errors) == len(conns):
            session.deliver(
                {"jsonrpc": "2.0", "id": message["id"], "error": errors[0]}, message["id"]
            )
        else:
            self.reply(session, message, {})

    # ---- requests: lists ------------------------------------------------------------------

    def _list(self, session: Session, message: Message) -> None:
        view = session.view
        if view.transparent:
            server = self.port.server(view.name)
            conn = self.port.connection(server.id) if server is not None else None
            if server is None or conn is None:
                self.error(session, message, jsonrpc.ROUTING_ERROR, self._down(view.name))
                return
            rewrite = self._tool_filter(server) if message["method"] == "tools/list" else None
            self.forward(session, message, conn, rewrite, server.call_timeout_s)
            return
        self.spawn(self._list_merged(session, message), session)

    def _tool_filter(self, server: ServerIntent) -> Rewrite | None:
        """Per-server tools/list: leave out what a person switched off, touch nothing else."""
        hidden = {
            tool.name
            for tool in self.port.tools_of(server.id)
            if not tool.enabled or (tool.bypass_when_unavailable and not tool.is_available)
        }
        if not hidden:
            return None

        def drop_hidden(result: dict[str, Any], _server: str) -> None:
            tools = result.get("tools")
            if isinstance(tools, list):
                result["tools"] = [
                    t for t in tools if not (isinstance(t, dict) and t.get("name") in hidden)
                ]

        return drop_hidden

    async def _list_merged(self, session: Session, message: Message) -> None:
        method = message["method"]
        items = await self._collect(session.view, method)
        cursor = (message.get("params") or {}).get("cursor")
        start = int(cursor) if isinstance(cursor, str) and cursor.isdigit() else 0
        if cursor is not None and not (isinstance(cursor, str) and cursor.isdigit()):
            self.error(session, message, jsonrpc.INVALID_PARAMS, f"bad cursor {cursor!r}")
            return
        page: Message = {LISTS[method][0]: items[start : start + self.page_size]}
        if start + self.page_size < len(items):
            page["nextCursor"] = str(start + self.page_size)
        self.reply(session, message, page)

    async def _collect(self, view: View, method: str) -> list[Message]:
        _key, capability, field = LISTS[method]
        servers = view.servers()
        live: list[tuple[ServerIntent, Connection]] = []
        stored: list[ServerIntent] = []
        for server in servers:
            conn = self.port.connection(server.id)
            if conn is not None:
                if capability in conn.capabilities:
                    live.append((server, conn))
            elif method == "tools/list":
                stored.append(server)
        pages = await asyncio.gather(
            *(self._catalog(conn, method) for _server, conn in live), return_exceptions=True
        )
        merged: list[Message] = []
        for (server, conn), items in zip(live, pages, strict=True):
            if isinstance(items, BaseException):
                logger.warning("%s of %s failed: %s", method, conn.name, items)
                continue
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get(field), str):
                    continue
                out = self._exposed(view, server, method, field, item)
                if out is not None:
                    merged.append(out)
        for server in stored:
            # A stopped server's tools stay listed (a call starts it on demand), from the
            # catalogue, unless they answer with an error at once (bypass).
            for tool in self.port.tools_of(server.id):
                if tool.bypass_when_unavailable:
                    continue
                out = self._exposed(view, server, method, field, tool.listing)
                if out is not None:
                    merged.append(out)
        return merged

    def _exposed(
        self, view: View, server: ServerIntent, method: str, field: str, item: Message
    ) -> Message | None:
        out = dict(item)  # shallow: the cache is shared with other sessions
        if method == "tools/list":
            name = item["name"]
            intent = self.port.tool(server.id, name)
            if intent is not None and not intent.enabled:
                return None
            if intent is not None and intent.bypass_when_unavailable and not intent.is_available:
                return None
            if not view.allows_tool(server.name, name):
                return None
            out["name"] = self.tools.expose(server.name, name)
        elif method == "prompts/list":
            out["name"] = self.prompts.expose(server.name, item["name"])
        else:
            out[field] = uris.encode(server.name, item[field])
        return out

    async def _catalog(self, conn: Connection, method: str) -> list[Message]:
        """All pages of one server's list; cached only where the server announces changes."""
        key, capability = LISTS[method][0], LISTS[method][1]
        cacheable = bool((conn.capabilities.get(capability) or {}).get("listChanged"))
        cached = self.catalog.get((conn.name, method)) if cacheable else None
        if cached is not None:
            return cached
        items: list[Message] = []
        cursor = None
        for _page in range(MAX_LIST_PAGES):
            result = await conn.request(method, {"cursor": cursor} if cursor else None, 60)
            items.extend(result.get(key) or ())
            cursor = result.get("nextCursor")
            if not cursor:
                break
        if cacheable and not conn.is_closed:
            self.catalog[(conn.name, method)] = items
        return items

    # ---- from the servers -----------------------------------------------------------------

    def _sessions_for(self, server: str) -> list[Session]:
        return [session for session in self.sessions if session.view.has(server)]

    def _attached(self, conn: Connection, capability: str) -> list[Session]:
        return [s for s in self._sessions_for(conn.name) if capability in s.client_capabilities]

    def upstream_notification(self, conn: Connection, message: Message) -> None:
        method = message["method"]
        params = message.get("params") or {}
        if method == "notifications/progress":
            inflight = self.progress.get((conn, params.get("progressToken")))
            if inflight is None:
                return
            params["progressToken"] = inflight.client_token
            inflight.deadline = min(time.monotonic() + inflight.timeout_s, inflight.hard_deadline)
            inflight.session.deliver(message, inflight.client_id)
        elif method == "notifications/message":
            level = params.get("level")
            for session in self._sessions_for(conn.name):
                if session.wants_log(level):
                    session.deliver(message, None)
        elif method == "notifications/resources/updated":
            uri = params.get("uri")
            for session in list(self.subscriptions.get((conn.name, uri), ())):
                if session.view.transparent:
                    session.deliver(message, None)
                else:
                    renamed = dict(params, uri=uris.encode(conn.name, str(uri)))
                    session.deliver(dict(message, params=renamed), None)
        elif method == "notifications/cancelled":
            entry = self.server_requests.pop((conn, params.get("requestId")), None)
            if entry is not None:
                session, down_id = entry
                session.outgoing.pop(down_id, None)
                session.deliver(dict(message, params=dict(params, requestId=down_id)), None)
        else:
            for list_method in _LIST_CHANGED.get(method, ()):
                self.catalog.pop((conn.name, list_method), None)
            for session in self._sessions_for(conn.name):
                session.deliver(message, None)

    def upstream_request(self, conn: Connection, message: Message) -> None:
        """A server's request to its client: to the session whose call caused it."""
        method = message["method"]
        request_id = message["id"]
        owners: dict[Session, list[InFlight]] = {}
        for handler in conn.pending.values():
            inflight = getattr(handler, "__self__", None)
            if isinstance(inflight, InFlight):
                owners.setdefault(inflight.session, []).append(inflight)
        capability = _CAPABILITY_OF_REQUEST.get(method)
        related = None
        if len(owners) == 1:
            session, calls = next(iter(owners.items()))
            related = calls[0].client_id if len(calls) == 1 else None
        elif not owners:
            candidates = (
                self._attached(conn, capability) if capability else self._sessions_for(conn.name)
            )
            if len(candidates) != 1:
                why = (
                    "no client session is attached"
                    if not candidates
                    else f"{len(candidates)} client sessions could answer it"
                )
                conn.send(
                    jsonrpc.error_response(
                        request_id,
                        jsonrpc.ROUTING_ERROR,
                        f"Tooldeck cannot route {method} from {conn.name}: "
                        f"no call in flight and {why}",
                    )
                )
                return
            session = candidates[0]
        else:
            conn.send(
                jsonrpc.error_response(
                    request_id,
                    jsonrpc.ROUTING_ERROR,
                    f"Tooldeck cannot route {method} from {conn.name}: "
                    f"calls of {len(owners)} client sessions are in flight",
                )
            )
            return
        if capability is not None and capability not in session.client_capabilities:
            conn.send(
                jsonrpc.error_response(
                    request_id,
                    jsonrpc.METHOD_NOT_FOUND,
                    f"the client does not support {capability}",
                )
            )
            return
        down_id = session.next_out_id()
        params = message.get("params") or {}
        meta = params.get("_meta") if isinstance(params, dict) else None
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        session.outgoing[down_id] = (conn, request_id, token)
        self.server_requests[(conn, request_id)] = (session, down_id)
        message["id"] = down_id
        session.deliver(message, related)


_session_numbers = itertools.count(1)


def _drop(message: Message, related: Any) -> None:
    pass


def _calling_client(session: Session, message: Message) -> tuple[str | None, str]:
    """Who made a call, and through which face: the session's client through the gateway, or
    for a session a node opened to forward its callers' calls, the client and face that node
    names (a call made through its API, CLI or dashboard keeps that source). What a node names
    is taken out of the call either way: the server never sees it, and a client naming someone
    else gets its own name used."""
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    named = meta.pop(FORWARDED_CLIENT_KEY, None) if isinstance(meta, dict) else None
    if isinstance(meta, dict) and not meta:
        del params["_meta"]  # type: ignore[index]
    if is_node_identity(session.token_name):
        if not isinstance(named, dict):
            return None, GATEWAY_SOURCE
        name, source = named.get("name"), named.get("source")
        return (
            name if isinstance(name, str) else None,
            source if source in CALL_SOURCES else GATEWAY_SOURCE,
        )
    return session.client_name, GATEWAY_SOURCE


def _name_the_client(session: Session, message: Message) -> None:
    """For the owner of a server this node forwards a call to: which client made it."""
    params = message.setdefault("params", {})
    client = {"name": session.client_name, "version": session.client_info.get("version")}
    params.setdefault("_meta", {})[FORWARDED_CLIENT_KEY] = client


def _first_text(blocks: Any) -> str | None:
    if isinstance(blocks, list):
        for block in blocks:
            if isinstance(block, dict) and block.get("type") == "text":
                return str(block.get("text"))[:500]
    return None


async def _quietly(work: Any) -> None:
    try:
        await work
    except Exception as exc:
        logger.info("a gateway request to a server failed: %s", exc)


def _version() -> str:
    from app import __version__

    return __version__
