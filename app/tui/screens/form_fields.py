"""A form's fields checked as they are typed: a row per field with its error line under it,
the first problem a model finds in each field put on that line, and a modal form that saves
only once no field has one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static

from app.core.errors import TooldeckError
from app.tui.base import DeckModal
from app.tui.screens.server_form import field_errors

ResultT = TypeVar("ResultT")


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


class CheckedForm(DeckModal[ResultT | None]):
    """A modal form whose fields are checked as typed; `ctrl+s` (or its Save button) saves only
    when none has a problem, and a refusal of the facade lands under the field it names."""

    FIELDS: ClassVar[tuple[str, ...]]

    def values(self) -> dict[str, Any]:
        raise NotImplementedError

    def problems(self) -> dict[str, str]:
        raise NotImplementedError

    async def submit(self, values: dict[str, Any]) -> ResultT | None:
        """Hand the checked values to the facade; what the form is dismissed with."""
        raise NotImplementedError

    def show_errors(self, errors: dict[str, str]) -> None:
        show_field_errors(self, self.FIELDS, errors)

    def check(self) -> None:
        """Show each field's problem (a form may do more as its fields change)."""
        self.show_errors(self.problems())

    @on(Input.Changed)
    @on(Select.Changed)
    def _field_changed(self) -> None:
        self.check()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        errors = self.problems()
        self.show_errors(errors)
        if not errors:
            self.save(self.values())

    @work(exclusive=True, group="form-save", exit_on_error=False)
    async def save(self, values: dict[str, Any]) -> None:
        if self.deck.ops is None:
            return
        try:
            saved = await self.submit(values)
        except TooldeckError as exc:
            field = exc.field if exc.field in self.FIELDS else "form"
            self.show_errors({field: exc.message})
            return
        self.dismiss(saved)
