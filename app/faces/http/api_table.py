"""The README's table of the HTTP API, generated from the table of operations.

`python -m app.faces.http.api_table` prints it; a test checks that the README holds exactly
this, so the documented API and the served one cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from app.faces.http.routes import HAND_WRITTEN
from app.ops.protocol import Operations
from app.ops.table import OPERATIONS, OperationSpec

HEADER = ("| Method | Path | What |", "| --- | --- | --- |")
# Served beside the table's operations (app.faces.http.routes and .middleware).
OTHER_ROUTES = (
    ("GET", "/metrics", "Prometheus text format: servers, tools, calls, errors, refusals, latency"),
    ("GET", "/healthz", "Liveness: the daemon answers (no token needed)"),
    ("POST GET DELETE", "/mcp", "The MCP gateway, every server (streamable HTTP), gateway token"),
    ("POST GET DELETE", "/mcp/servers/{name}", "The MCP gateway, one server exactly as it is"),
    ("POST GET DELETE", "/mcp/profiles/{name}", "The MCP gateway, a profile's servers and tools"),
    ("GET", "/openapi.json, /docs", "The OpenAPI document and its script-free page (no token)"),
)


def first_sentence(doc: str | None) -> str:
    text = " ".join((doc or "").split())
    match = re.match(r"(.+?\.)(\s|$)", text)
    sentence = match.group(1) if match else text
    return sentence.rstrip(".")


def describe(spec: OperationSpec) -> str:
    """What a row does, with its query parameters and body."""
    endpoint = HAND_WRITTEN.get(spec.route) if spec.custom_route else None
    doc = endpoint.__doc__ if endpoint is not None else getattr(Operations, spec.name).__doc__
    what = first_sentence(doc)
    extras = []
    query = [spec.http_name(name) for name, place in spec.places.items() if place == "query"]
    if spec.custom_route and endpoint is not None:
        # A hand-written route declares its own query parameters (a tool's `server`).
        query = [name for name in spec.query if name not in query] + query
    if query:
        extras.append("`?" + "&".join(f"{name}=" for name in query) + "`")
    if spec.body is not None:
        extras.append(f"body `{spec.body.__name__}`")
    elif endpoint is not None and (body := _body_model(endpoint)) is not None:
        extras.append(f"optional body `{body.__name__}`")
    if spec.status != 200:
        extras.append(f"answers {spec.status}")
    return what + (f" ({'; '.join(extras)})" if extras else "")


def _body_model(endpoint: Any) -> Any:
    """The model of a hand-written route's optional `body`, if it takes one."""
    hint = get_type_hints(endpoint, include_extras=True).get("body")
    if hint is None:
        return None
    if get_origin(hint) is Annotated:
        hint = get_args(hint)[0]
    models = [member for member in get_args(hint) if member is not type(None)]
    return models[0] if models else hint


def api_table() -> str:
    rows = [
        f"| `{spec.method}` | `{spec.path}` | {describe(spec)} |"
        for spec in sorted(OPERATIONS, key=lambda spec: (spec.path, spec.method))
    ]
    rows += [f"| `{method}` | `{path}` | {what} |" for method, path, what in OTHER_ROUTES]
    return "\n".join([*HEADER, *rows])


if __name__ == "__main__":
    print(api_table())
