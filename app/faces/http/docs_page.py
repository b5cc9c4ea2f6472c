"""`/docs`: the API's reference as one HTML page rendered here from the OpenAPI document.

No script runs on it, ours or a CDN's: FastAPI's Swagger page loads its JavaScript from a CDN,
and a token typed into its "Authorize" box is visible to that script. The page's
Content-Security-Policy forbids scripts, frames and any request elsewhere.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem }
h2 { margin-top: 2rem; border-bottom: 1px solid #ccc }
.op { margin: 1rem 0 1.5rem }
.op code.method { font-weight: bold; display: inline-block; min-width: 4.5rem }
table { border-collapse: collapse; margin: .3rem 0 } td, th { padding: .1rem .6rem .1rem 0 }
th { text-align: left; font-weight: 600 } .muted { color: #666 }
"""

docs_router = APIRouter()


@docs_router.get("/docs", include_in_schema=False)
async def docs_page(request: Request) -> HTMLResponse:
    document = request.app.openapi()
    return HTMLResponse(
        render(document),
        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"},
    )


def render(document: dict[str, Any]) -> str:
    info = document.get("info", {})
    sections: dict[str, list[str]] = {}
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            tag = (operation.get("tags") or ["other"])[0]
            sections.setdefault(tag, []).append(_operation(method, path, operation))
    body = [
        f"<h1>{escape(info.get('title', 'API'))} {escape(info.get('version', ''))}</h1>",
        f"<p>{escape(info.get('description', ''))}</p>",
        '<p class="muted">The machine-readable description: <a href="/openapi.json">'
        "/openapi.json</a>.</p>",
    ]
    for tag, operations in sections.items():
        body.append(f"<h2>{escape(tag)}</h2>")
        body.extend(operations)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(info.get('title', 'API'))} API</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>"
    )


def _operation(method: str, path: str, operation: dict[str, Any]) -> str:
    parts = [
        '<div class="op">',
        f'<code class="method">{escape(method.upper())}</code> <code>{escape(path)}</code>',
        f"<div><b>{escape(operation.get('summary', ''))}</b></div>",
    ]
    if operation.get("description"):
        parts.append(f"<div>{escape(operation['description'])}</div>")
    parameters = operation.get("parameters", [])
    if parameters:
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p.get('in', ''))}</td>"
            f"<td>{'required' if p.get('required') else ''}</td>"
            f"<td>{escape(p.get('description', ''))}</td></tr>"
            for p in parameters
        )
        parts.append(f"<table>{rows}</table>")
    body = operation.get("requestBody", {}).get("content", {})
    for media, content in body.items():
        schema = content.get("schema", {})
        name = schema.get("$ref", "").rsplit("/", 1)[-1] or schema.get("type", "")
        parts.append(f'<div class="muted">body: {escape(media)} {escape(name)}</div>')
    codes = ", ".join(escape(str(code)) for code in operation.get("responses", {}))
    parts.append(f'<div class="muted">answers: {codes}</div></div>')
    return "".join(parts)
