"""Pieces of the one tool-call path: argument checks and the shape of a result.

Kept out of `app.ops.facade` so the facade stays readable, and free of MCP imports so a CLI verb
that never calls a tool does not pay for loading the SDK. jsonschema is imported on first use.
"""

from __future__ import annotations

import json
import logging
import math
from collections import OrderedDict
from typing import Any

from app.core.errors import InvalidInput

logger = logging.getLogger(__name__)

VALIDATOR_CACHE_SIZE = 512
ERROR_TEXT_CHARS = 500


class ArgumentChecker:
    """Validates tool arguments against input schemas, compiling each schema once."""

    def __init__(self, size: int = VALIDATOR_CACHE_SIZE) -> None:
        self._size = size
        self._validators: OrderedDict[str, Any] = OrderedDict()

    def check(self, arguments: Any, schema: dict[str, Any] | None) -> dict[str, Any]:
        """The arguments as a dict, or InvalidInput naming every bad field."""
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise InvalidInput(
                f"must be a JSON object, not {_json_type(arguments)}", field="arguments"
            )
        unsendable = _non_finite(arguments, "")
        if unsendable is not None:
            # JSON has no infinity or NaN: the SDK would send null in its place, unasked.
            raise InvalidInput(f"{unsendable or 'a value'}: not a finite number", field="arguments")
        if not schema:
            return arguments
        validator = self._validator(schema)
        if validator is None:
            return arguments
        problems = sorted(
            (_describe(error) for error in validator.iter_errors(arguments)),
            key=lambda item: item[0],
        )
        if problems:
            raise InvalidInput("; ".join(text for _, text in problems), field="arguments")
        return arguments

    def _validator(self, schema: dict[str, Any]) -> Any:
        key = json.dumps(schema, sort_keys=True, default=str)
        if key in self._validators:
            self._validators.move_to_end(key)
            return self._validators[key]
        from jsonschema import SchemaError
        from jsonschema.validators import validator_for

        cls = validator_for(schema)
        try:
            cls.check_schema(schema)
        except SchemaError as exc:
            # The server's schema is broken; let the server judge its own arguments.
            logger.warning("a tool's input schema is invalid, not checking arguments: %s", exc)
            validator = None
        else:
            validator = cls(schema)
        self._validators[key] = validator
        if len(self._validators) > self._size:
            self._validators.popitem(last=False)
        return validator


def _non_finite(value: Any, path: str) -> str | None:
    """The path of the first infinite or NaN number in `value` (1e999 parses to infinity)."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def _describe(error: Any) -> tuple[str, str]:
    """(field, message) for one jsonschema error, worded for a person."""
    path = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "required":
        missing = _quoted(error.message)
        name = f"{path}.{missing}" if path else missing
        return name, f"{name} is required"
    if error.validator == "additionalProperties" and not path:
        extra = ", ".join(sorted(set(error.instance) - set(error.schema.get("properties", {}))))
        return extra, f"{extra}: no such argument"
    if error.validator == "type":
        expected = error.validator_value
        wanted = " or ".join(expected) if isinstance(expected, list) else expected
        got = _json_type(error.instance)
        return path, f"{path or 'the arguments'} must be {wanted}, not {got}"
    return path, f"{path or 'the arguments'}: {error.message}"


def _quoted(message: str) -> str:
    # jsonschema words it "'name' is a required property".
    if message.startswith("'") and "'" in message[1:]:
        return message[1 : message.index("'", 1)]
    return message


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number" if isinstance(value, float) else "integer"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def content_dicts(result: Any) -> list[dict[str, Any]]:
    """An MCP result's content blocks as JSON-ready dicts."""
    return [
        block.model_dump(mode="json", by_alias=True, exclude_none=True)
        for block in getattr(result, "content", None) or []
    ]


def error_text(content: list[dict[str, Any]]) -> str:
    """The words of an error result, for the usage row and a one-line message."""
    texts = [block.get("text", "") for block in content if block.get("type") == "text"]
    text = " ".join(part.strip() for part in texts if part.strip()) or "the tool reported an error"
    return text[:ERROR_TEXT_CHARS]
