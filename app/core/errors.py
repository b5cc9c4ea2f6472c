"""Errors a user can cause or act on. Every face maps them the same way (HTTP status, exit 1)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError


class TooldeckError(Exception):
    """Base for errors whose message is meant for a person."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": type(self).__name__, "message": str(self)}
        if self.field:
            body["field"] = self.field
        return body


class InvalidInput(TooldeckError):
    status_code = 422


class NotFound(TooldeckError):
    status_code = 404


class Conflict(TooldeckError):
    """The request is valid but clashes with what exists (a duplicate name, a built-in)."""

    status_code = 409


class NotRunning(TooldeckError):
    """An operation needs the supervisor or a running server and there is none."""

    status_code = 409


class StartFailed(NotRunning):
    """A server was asked to start and could not; the message is the cause a person can fix."""


class CallFailed(TooldeckError):
    """A tool call reached a server but got no result: it timed out or the connection broke."""

    status_code = 502


def invalid_from_pydantic(exc: ValidationError) -> InvalidInput:
    """The first error of a pydantic validation, as one message naming the field."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or None
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    elif message.startswith("Assertion failed, "):
        message = message.removeprefix("Assertion failed, ")
    # Cross-field checks raise "field: message" from a model validator, which has no location.
    if field is None and (match := re.match(r"^([a-z_]+): (.+)$", message)):
        field, message = match.group(1), match.group(2)
    return InvalidInput(message, field=field)


class Unauthorized(TooldeckError):
    """The HTTP API was called without the daemon's bearer token, or with another one."""

    status_code = 401


class Forbidden(TooldeckError):
    """The caller's token is valid but its scope does not cover this request."""

    status_code = 403


class PayloadTooLarge(TooldeckError):
    status_code = 413


class Unavailable(TooldeckError):
    """The daemon this process attached to does not answer, or failed on its side."""

    status_code = 503


class BadRequest(TooldeckError):
    """A request the HTTP API cannot even read, such as a body that is not JSON."""

    status_code = 400


class Busy(TooldeckError):
    """A server is at its concurrent-call limit and its queue is full."""

    status_code = 429


# Errors of the database layer, in the words of a person who can act on them. Matched by name:
# this module is below storage and does not import the database library.
_PLAIN_DATABASE: tuple[tuple[str, str, str], ...] = (
    ("OperationalError", "database is locked", "the database was busy (another writer held it)"),
    ("OperationalError", "disk i/o error", "the database file could not be written (disk error)"),
    ("OperationalError", "unable to open database", "the database file could not be opened"),
    ("OperationalError", "no such table", "the database is not at this version's schema"),
    ("PendingRollbackError", "", "a database write failed part-way and was undone"),
    ("IntegrityError", "", "the database refused a write that clashed with a stored row"),
    ("TimeoutError", "queuepool", "every database connection was busy"),
)
# SQLAlchemy appends these to its messages: a link, the SQL and its parameters.
_LIBRARY_NOISE = re.compile(
    r"\s*(\(Background on this error at: [^)]*\)|\[SQL: .*|\[parameters: .*)", re.S
)


def plain_error(error: BaseException) -> str:
    """An unexpected error in one line a person can read: the facade's own words for our
    errors, a sentence for the database's known failures (the detail belongs in the log), and
    otherwise the error's type and first line, without the library's links and SQL."""
    if isinstance(error, TooldeckError):
        return str(error)
    name = type(error).__name__
    text = str(error)
    if type(error).__module__.startswith("sqlalchemy"):
        lowered = text.lower()
        for known, needle, sentence in _PLAIN_DATABASE:
            if name == known and needle in lowered:
                return sentence
    first = _LIBRARY_NOISE.sub("", text).strip().splitlines()
    return f"{name}: {first[0]}" if first else name
