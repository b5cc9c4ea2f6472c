"""Every error the API answers, as JSON: `{"error": kind, "message": ..., "field": ...}`.

A `TooldeckError` from the facade keeps its own status (404 for an unknown id, 409, 422, ...);
FastAPI's request validation becomes the facade's InvalidInput, naming the field the way the
facade names it; Starlette's own errors (unknown path, wrong method, body too large) get the
same shape. A bug is a 500 whose body names the request id to look for in the log.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import BadRequest, InvalidInput, TooldeckError, Unauthorized, Unavailable


class ErrorBody(BaseModel):
    error: str = Field(description="the kind of error, e.g. NotFound")
    message: str = Field(description="what went wrong, for a person")
    field: str | None = Field(None, description="the input field at fault, when there is one")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "The request could not be read (e.g. the body is not JSON)"),
        (401, "No bearer token, or the wrong one"),
        (403, "The token's scope does not cover this request"),
        (404, "No such server, tool or job"),
        (409, "A conflict: a duplicate name, a built-in server, or nothing running"),
        (413, "The body is over 1 MB"),
        (422, "A field has a value it cannot take; `field` names it"),
        (503, "Shutting down, or the database cannot take the write now (locked, disk full)"),
    )
}


def error_response(exc: TooldeckError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)


_LOCATIONS = ("body", "query", "path", "header", "cookie")


def invalid_from_request(exc: RequestValidationError) -> TooldeckError:
    """The first validation error, named by its field the way the facade names it."""
    error = exc.errors()[0]
    loc = [str(part) for part in error.get("loc", ())]
    where = loc[0] if loc and loc[0] in _LOCATIONS else ""
    rest = loc[1:] if where else loc
    kind = error.get("type", "")
    if kind == "json_invalid":
        detail = error.get("ctx", {}).get("error", "")
        return BadRequest(
            f"not valid JSON ({detail})" if detail else "not valid JSON", field="body"
        )
    field = ".".join(rest) or None
    message = str(error.get("msg", "invalid"))
    if kind == "extra_forbidden":
        message = "unknown field"
    elif kind == "missing" and where == "body" and not rest:
        message = "a JSON body is required"
    elif where == "body" and not rest and isinstance(error.get("input"), bytes | str):
        message = "expected a JSON object (send it with Content-Type: application/json)"
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    # Cross-field checks raise "field: message" from a model validator, which has no location.
    if field is None and (match := re.match(r"^([a-z_]+): (.+)$", message)):
        field, message = match.group(1), match.group(2)
    return InvalidInput(message, field=field or where or None)


async def _tooldeck_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TooldeckError)
    return error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(invalid_from_request(exc))


_HTTP_ERROR_NAMES = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    name = _HTTP_ERROR_NAMES.get(exc.status_code, "BadRequest")
    message = str(exc.detail)
    if exc.status_code == 404:
        message = "no such endpoint: see /docs for the API"
    body = {"error": name, "message": message}
    if exc.status_code == 413:
        body.update(field="body", message=f"body: {message}")
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _database_refused(_request: Request, exc: Exception) -> JSONResponse:
    """The database refused (locked by another process past the busy timeout, a full disk, a
    read-only data dir): nobody's mistake and nothing broken here, so a 503 to retry later."""
    assert isinstance(exc, OperationalError)
    reason = str(exc.orig or exc).splitlines()[0]
    return error_response(Unavailable(f"the database cannot take this now ({reason}): try again"))


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TooldeckError, _tooldeck_error)
    app.add_exception_handler(OperationalError, _database_refused)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


def shutting_down() -> JSONResponse:
    return error_response(Unavailable("cancelled: the daemon is shutting down"))


def internal_error(request_id: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": "InternalError",
            "message": f"the daemon failed on its side; see its log for request {request_id}",
        },
        status_code=500,
    )
