"""The operations over HTTP, for a CLI or dashboard attached to a running daemon.

`RemoteOperations` implements the `Operations` protocol: each operation is generated from its
rows in app/ops/table.py (path, body, query, output model) and takes the protocol's signature;
the few whose shape differs are written here. It raises the same `app.core.errors` exceptions
as the in-process facade (rebuilt from the daemon's JSON error bodies), so a caller cannot tell
which one it holds. A contract test runs every row both ways.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx2
from pydantic import BaseModel, TypeAdapter
from pydantic_core import to_jsonable_python

from app import __version__
from app.core import errors
from app.core.errors import InvalidInput, NotFound, TooldeckError, Unavailable
from app.core.interchange import parse_document
from app.core.schemas import ImportReport, ProbeReport, ToolServerCreate, ToolServerResponse
from app.core.settings import Settings
from app.ops.protocol import Operations, ReadOperations, operation_names, shaped_as
from app.ops.table import OPERATIONS, OperationSpec

ACTOR_HEADER = "X-Tooldeck-Actor"
# Marks a request as a program's: no web page can send it cross-site (app.faces.http.access_guard).
CLIENT_HEADER = "X-Tooldeck-Client"
DEFAULT_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5.0
# Starting a server or calling a tool is bounded by the server's own timeouts (up to an hour),
# which the daemon enforces; the client must not give up first.
LONG_TIMEOUT = httpx2.Timeout(None, connect=CONNECT_TIMEOUT_S)
# The rows by operation and route name, for the operations written by hand here.
ROWS = {(spec.name, spec.route): spec for spec in OPERATIONS}


def _error_classes() -> dict[str, type[TooldeckError]]:
    found: dict[str, type[TooldeckError]] = {}
    pending: list[type[TooldeckError]] = [TooldeckError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.__name__, cls)
        pending.extend(cls.__subclasses__())
    return found


_BY_STATUS: dict[int, type[TooldeckError]] = {
    400: errors.BadRequest,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    422: errors.InvalidInput,
}


def error_from_response(response: httpx2.Response) -> TooldeckError:
    """The exception the daemon raised, rebuilt from its JSON body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return Unavailable(f"the daemon answered {response.status_code} without an error body")
    field = body.get("field") if isinstance(body.get("field"), str) else None
    message: str = body["message"]
    if field and message.startswith(f"{field}: "):
        # The body's message is str(exc), which already names the field; don't name it twice.
        message = message.removeprefix(f"{field}: ")
    fallback = _BY_STATUS.get(response.status_code, Unavailable)
    cls = _error_classes().get(str(body.get("error")), fallback)
    try:
        return cls(message, field=field)
    except TypeError:  # a subclass with a constructor of its own, such as AlreadyRunning
        return fallback(message, field=field)


class RemoteOperations(Operations):
    """`Operations` over the daemon's HTTP API."""

    # Nothing here hears the daemon's changes or alerts: faces attached to it refresh on a timer.
    changes = None
    alerts = None
    call_latency = None
    # A daemon always runs a supervisor.
    supervised = True

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        settings: Settings | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.settings = settings
        # The client header tells the daemon's AccessGuard that no web page sent this request.
        headers = {CLIENT_HEADER: f"tooldeck/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx2.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx2.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
            # The daemon is on this machine or behind an SSH tunnel: never via a proxy.
            trust_env=False,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> RemoteOperations:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    @asynccontextmanager
    async def open_reader(self) -> AsyncIterator[ReadOperations]:
        yield self

    # ---- transport -----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        actor: str | None = None,
        long: bool = False,
    ) -> Any:
        """One call to the daemon: the decoded JSON answer, or the daemon's error raised."""
        headers = {ACTOR_HEADER: actor} if actor else None
        given = (params or {}).items()
        query = {key: _query_value(value) for key, value in given if value is not None}
        try:
            response = await self._client.request(
                method,
                path,
                params=query,
                json=json,
                headers=headers,
                timeout=LONG_TIMEOUT if long else httpx2.USE_CLIENT_DEFAULT,
            )
        except httpx2.TimeoutException:
            raise Unavailable(f"the daemon at {self.base_url} did not answer in time") from None
        except httpx2.TransportError as exc:
            raise Unavailable(f"cannot reach the daemon at {self.base_url} ({exc})") from None
        if response.status_code >= 400:
            raise error_from_response(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def send(
        self, spec: OperationSpec, arguments: Mapping[str, Any], *, body: Any = None
    ) -> Any:
        """The operation of `spec` with these arguments (by the facade's names), answered.
        `body` replaces the one the arguments would make."""
        places = spec.places
        for http in spec.path_names:
            if str(arguments[spec.argument(http)]) == "":
                # An empty segment would make another path (`/servers/` is the list); the
                # facade in-process answers the same.
                raise NotFound(f"no {_noun_before(spec.path, http)} ''")
        path = spec.path.format(
            **{http: _segment(str(arguments[spec.argument(http)])) for http in spec.path_names}
        )
        query = {
            spec.http_name(name): value
            for name, value in arguments.items()
            if places.get(name) == "query"
        }
        if body is None and spec.body_arg is not None:
            body = _payload(arguments[spec.body_arg])
        elif body is None and spec.body is not None:
            # None is left out: the body's own default stands for it (no reason, no arguments).
            body = {
                spec.http_name(name): to_jsonable_python(value)
                for name, value in arguments.items()
                if places.get(name) == "body" and value is not None
            }
        actor = arguments.get("actor") if places.get("actor") == "actor" else None
        answer = await self.request(
            spec.method, path, params=query, json=body, actor=actor, long=spec.long
        )
        return None if spec.output is None else _parse(spec.output, answer)

    # ---- the operations whose shape differs ----------------------------------------------------

    async def set_server_enabled(
        self, ref: str, enabled: bool, *, actor: str, reason: str | None = None
    ) -> ToolServerResponse:
        if enabled:
            return await self.enable_server(ref, actor=actor)
        arguments = {"ref": ref, "actor": actor}
        body = {"reason": reason} if reason else None
        answer: ToolServerResponse = await self.send(
            ROWS["disable_server", "disable_server"], arguments, body=body
        )
        return answer

    async def probe(self, target: str | ToolServerCreate | dict[str, Any]) -> ProbeReport:
        route = "probe_server" if isinstance(target, str) else "probe_definition"
        report: ProbeReport = await self.send(ROWS["probe", route], {"target": target})
        return report


def _generated(name: str, specs: Sequence[OperationSpec]) -> Callable[..., Awaitable[Any]]:
    """The operation `name`, sent by the first of its rows that fits the call: the row's fixed
    arguments are the call's, and the call gives everything the row's path needs."""
    signature = specs[0].signature

    async def operation(self: RemoteOperations, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        for spec in specs:
            if all(arguments[key] == value for key, value in spec.fixed.items()) and all(
                arguments[spec.argument(http)] is not None for http in spec.path_names
            ):
                return await self.send(spec, arguments)
        raise InvalidInput(f"{name}: no endpoint of the API takes these arguments")

    return shaped_as(Operations, name, operation)


def _document_checked(send: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def import_servers(
        self: RemoteOperations, document: Any, *args: Any, **kwargs: Any
    ) -> ImportReport:
        if not isinstance(document, dict):
            # The daemon's body can only carry an object; say what the facade would say.
            parse_document(document)
        report: ImportReport = await send(self, document, *args, **kwargs)
        return report

    return shaped_as(Operations, "import_servers", import_servers)


def _generate_operations() -> None:
    rows: dict[str, list[OperationSpec]] = {}
    for spec in OPERATIONS:
        rows.setdefault(spec.name, []).append(spec)
    for name in operation_names(Operations):
        if name in vars(RemoteOperations):
            continue
        if name not in rows:
            raise TypeError(f"RemoteOperations.{name}: no row in app/ops/table.py sends it")
        setattr(RemoteOperations, name, _generated(name, rows[name]))
    RemoteOperations.import_servers = _document_checked(RemoteOperations.import_servers)  # type: ignore[method-assign]


_generate_operations()


def _noun_before(path: str, placeholder: str) -> str:
    """What a path segment names, from the collection before it: `/servers/{id}` -> server."""
    collection = path.split(f"/{{{placeholder}}}")[0].rsplit("/", 1)[-1]
    return collection.removesuffix("s") or "item"


def _segment(ref: str) -> str:
    # Dots are escaped too: a name like ".." must reach the daemon as a name, not a path step.
    return quote(ref, safe="").replace(".", "%2E")


def _payload(data: BaseModel | dict[str, Any]) -> Any:
    # Only the fields given: a partial update must not send the others as nulls that clear.
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", exclude_unset=True)
    return to_jsonable_python(data)


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return value


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _parse(model: Any, data: Any) -> Any:
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = TypeAdapter(model)
    return adapter.validate_python(data)
