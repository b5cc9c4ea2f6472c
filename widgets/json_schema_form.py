"""A form generated from a tool's JSON Schema (`inputSchema`): one input per property.

Scalars get their own input (text, number, checkbox, a select for enums); arrays, objects and
anything the form cannot type get a one-line JSON input. `value()` returns the arguments or
raises `FieldError` naming the property, and the form shows the message under that input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, Select, Static

JSON_KINDS = ("array", "object", "json")


class FieldError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str  # string, integer, number, boolean, enum, array, object, json
    required: bool
    title: str
    description: str
    default: Any
    choices: tuple[Any, ...] = ()
    nullable: bool = False


def _resolve_type(schema: dict[str, Any]) -> tuple[str, bool, tuple[Any, ...]]:
    """The kind of input for a property schema, whether null is allowed, and enum choices."""
    nullable = False
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        # Optional[X] is `anyOf: [X, {type: null}]`; anything else is edited as JSON.
        concrete = [option for option in options if option.get("type") != "null"]
        nullable = len(concrete) < len(options)
        if len(concrete) == 1:
            kind, _, choices = _resolve_type(concrete[0])
            return kind, nullable, choices
        return "json", nullable, ()
    if "enum" in schema and isinstance(schema["enum"], list):
        return "enum", None in schema["enum"], tuple(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        nullable = "null" in kind
        kinds = [item for item in kind if item != "null"]
        kind = kinds[0] if len(kinds) == 1 else "json"
    if kind in ("string", "integer", "number", "boolean", "array", "object"):
        return str(kind), nullable, ()
    return "json", nullable, ()


def fields_from_schema(schema: dict[str, Any] | None) -> list[FieldSpec]:
    if not schema:
        return []
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    specs = []
    for name, prop in properties.items():
        prop = prop if isinstance(prop, dict) else {}
        kind, nullable, choices = _resolve_type(prop)
        specs.append(
            FieldSpec(
                name=name,
                kind=kind,
                required=name in required,
                title=str(prop.get("title") or name),
                description=str(prop.get("description") or ""),
                default=prop.get("default"),
                choices=choices,
                nullable=nullable,
            )
        )
    return specs


def parse_field(spec: FieldSpec, raw: Any) -> tuple[bool, Any]:
    """(present, value) for a field's raw input; raises FieldError when it cannot be parsed."""
    if spec.kind == "boolean":
        return True, bool(raw)
    if spec.kind == "enum":
        if raw is Select.NULL or raw is None:
            if spec.required:
                raise FieldError(spec.name, "choose a value")
            return False, None
        return True, raw
    text = str(raw)
    if not text.strip():
        if spec.required:
            raise FieldError(spec.name, "a value is required")
        return False, None
    if spec.kind == "string":
        return True, text
    if spec.kind == "integer":
        try:
            return True, int(text.strip())
        except ValueError:
            raise FieldError(spec.name, "expected a whole number") from None
    if spec.kind == "number":
        try:
            number = float(text.strip())
        except ValueError:
            raise FieldError(spec.name, "expected a number") from None
        return True, int(number) if number.is_integer() and "." not in text else number
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FieldError(spec.name, f"not valid JSON ({exc.msg})") from None
    if spec.kind == "array" and not isinstance(value, list):
        raise FieldError(spec.name, "expected a JSON array, such as [1, 2]")
    if spec.kind == "object" and not isinstance(value, dict):
        raise FieldError(spec.name, 'expected a JSON object, such as {"key": 1}')
    return True, value


def choice_label(choice: Any) -> str:
    """An enum choice as a person reads it: a string as it is, anything else as JSON."""
    return choice if isinstance(choice, str) else json.dumps(choice)


def _initial_text(spec: FieldSpec, value: Any) -> str:
    if value is None:
        return ""
    if spec.kind in JSON_KINDS:
        return json.dumps(value)
    return str(value)


class JsonSchemaForm(Vertical):
    """Inputs for the properties of an object schema."""

    DEFAULT_CSS = """
    JsonSchemaForm {
        height: auto;
    }
    JsonSchemaForm > .schema-field {
        height: auto;
    }
    """

    def __init__(
        self,
        schema: dict[str, Any] | None,
        values: dict[str, Any] | None = None,
        *,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.fields = fields_from_schema(schema)
        self._index = {spec.name: index for index, spec in enumerate(self.fields)}
        self._values = values or {}

    def compose(self) -> ComposeResult:
        if not self.fields:
            yield Static("This tool takes no arguments.", classes="schema-empty")
        for index, spec in enumerate(self.fields):
            # Property names need not be valid widget ids, so fields are numbered.
            with Vertical(classes="schema-field", id=f"field-{index}"):
                label = spec.title + (" *" if spec.required else "")
                hint = f" ({spec.kind})" if spec.kind not in ("string", "boolean", "enum") else ""
                if spec.kind != "boolean":
                    yield Label(label + hint, classes="schema-label")
                yield self._input(spec)
                if spec.description:
                    yield Static(spec.description, classes="schema-help", markup=False)
                yield Static("", classes="schema-error", markup=False)

    def _input(self, spec: FieldSpec) -> Widget:
        value = self._values.get(spec.name, spec.default)
        name = f"arg-{spec.name}"
        if spec.kind == "boolean":
            return Checkbox(spec.title, bool(value), name=name, classes="schema-input")
        if spec.kind == "enum":
            options = [
                (choice_label(choice), choice) for choice in spec.choices if choice is not None
            ]
            return Select(
                options,
                value=value if value in spec.choices and value is not None else Select.NULL,
                allow_blank=not spec.required,
                name=name,
                classes="schema-input",
            )
        input_type = {"integer": "integer", "number": "number"}.get(spec.kind, "text")
        placeholder = {"array": "[...]", "object": "{...}", "json": "JSON"}.get(spec.kind, "")
        return Input(
            _initial_text(spec, value),
            placeholder=placeholder,
            type=input_type,  # type: ignore[arg-type]
            name=name,
            classes="schema-input",
        )

    def set_values(self, values: dict[str, Any]) -> None:
        """Show these arguments in the inputs (what the raw JSON holds, back in the form);
        a property left out is emptied, as it would be left out of the call."""
        for spec in self.fields:
            widget = self._widget(spec)
            value = values.get(spec.name)
            if isinstance(widget, Checkbox):
                widget.value = bool(value)
            elif isinstance(widget, Select):
                if value in spec.choices and value is not None:
                    widget.value = value
                elif not spec.required:  # a required choice has no blank to go back to
                    widget.clear()
            else:
                assert isinstance(widget, Input)
                widget.value = _initial_text(spec, value)
            self.show_error(spec.name, "")

    def _widget(self, spec: FieldSpec) -> Widget:
        return self.query_one(f"#field-{self._index[spec.name]} .schema-input")

    def _raw(self, spec: FieldSpec) -> Any:
        widget = self._widget(spec)
        if isinstance(widget, Checkbox):
            return widget.value
        if isinstance(widget, Select):
            return widget.value
        assert isinstance(widget, Input)
        return widget.value

    def value(self) -> dict[str, Any]:
        """The arguments; shows every field's error and raises the first one."""
        arguments: dict[str, Any] = {}
        first: FieldError | None = None
        for spec in self.fields:
            try:
                present, parsed = parse_field(spec, self._raw(spec))
            except FieldError as exc:
                self.show_error(spec.name, exc.message)
                first = first or exc
                continue
            self.show_error(spec.name, "")
            if present:
                arguments[spec.name] = parsed
        if first is not None:
            raise first
        return arguments

    def show_error(self, field: str, message: str) -> None:
        if field not in self._index:
            return
        for error in self.query(f"#field-{self._index[field]} .schema-error"):
            assert isinstance(error, Static)
            error.update(message)
            error.set_class(bool(message), "-visible")
