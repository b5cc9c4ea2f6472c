"""A form's fields checked as they are typed: a row per field with its error line under it,
and the first problem a model finds in each field put on that line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Label, Static

from app.tui.screens.server_form import field_errors


def form_row(label: str, field: str, widget: Widget) -> ComposeResult:
    with Horizontal(classes="form-row", id=f"row-{field}"):
        yield Label(label, classes="form-label")
        yield widget
    yield Static("", id=f"error-{field}", classes="form-error", markup=False)


def show_field_errors(screen: Screen[Any], fields: Sequence[str], errors: dict[str, str]) -> None:
    """Each field's error under it (the form's own line for the rest); the others cleared."""
    for field in (*fields, "form"):
        label = screen.query_one(f"#error-{field}", Static)
        message = errors.get(field)
        label.update(message or "")
        label.set_class(bool(message), "-visible")


def problems_by_field(
    model: type[BaseModel], values: dict[str, Any], fields: Sequence[str]
) -> dict[str, str]:
    """The first problem `model` finds in each field of `values`; {} when there is none."""
    try:
        model.model_validate(values)
    except ValidationError as exc:
        found: dict[str, str] = {}
        for problem in field_errors(exc):
            field = (problem.field or "form").split(".")[0]
            found.setdefault(field if field in fields else "form", problem.message)
        return found
    return {}
