"""`c` on a tool: fill in its arguments (a form from its input schema, or raw JSON), call it
through the facade (recorded with source `tui`), and read the result and its duration."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.json import JSON
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Footer, Input, Static, TextArea

from app.core.errors import TooldeckError
from app.core.schemas import ServerToolResponse, ToolCallResult
from app.tui.base import DeckScreen, describe_error
from widgets import formatting as fmt
from widgets.json_schema_form import FieldError, JsonSchemaForm
from widgets.status_bar import StatusBar, StatusState


def result_renderable(result: ToolCallResult) -> RenderableType:
    heading = Text()
    if result.is_error:
        heading.append("✖ error", style="bold red")
    else:
        heading.append("✔ ok", style="bold green")
    heading.append(f"  in {fmt.millis(result.duration_ms)}", style="dim")
    parts: list[RenderableType] = [heading]
    if result.error_message and not result.content:
        parts.append(Text(result.error_message, style="red"))
    for item in result.content:
        if item.get("type") == "text":
            parts.append(Text(str(item.get("text", ""))))
        else:
            parts.append(JSON.from_data(item))
    if result.structured_content is not None:
        parts.append(Text("structured content", style="dim"))
        parts.append(JSON.from_data(result.structured_content))
    return Group(*parts)


class ToolCallScreen(DeckScreen[None]):
    HELP_TITLE = "call a tool"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="call-back"),
        Binding("ctrl+r", "run", "Call", id="call-run", priority=True),
        Binding("ctrl+j", "toggle_raw", "Form/JSON", id="call-raw", priority=True),
    ]

    def __init__(self, tool: ServerToolResponse) -> None:
        super().__init__()
        self.tool = tool
        self.raw = False

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal(id="call-body"):
            with Vertical(id="call-input", classes="pane"):
                if self.tool.description:
                    yield Static(self.tool.description, id="call-description", markup=False)
                with VerticalScroll(id="call-form-box"):
                    yield JsonSchemaForm(self.tool.input_schema, id="call-form")
                yield TextArea("{}", id="call-json", soft_wrap=True)
                yield Static("", id="call-json-error", classes="form-error", markup=False)
                with Horizontal(classes="dialog-buttons"):
                    yield Button("Call", id="call", variant="primary")
                    yield Button("JSON", id="raw")
            with VerticalScroll(id="call-output", classes="pane"):
                yield Static(Text("No call yet.", style="dim"), id="call-result")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        server = self.tool.server_name or self.tool.server_id
        self.query_one("#call-input").border_title = f"Arguments · {self.tool.name}"
        self.query_one("#call-output").border_title = "Result"
        self.query_one(StatusBar).show(
            StatusState(
                period=self.deck.period,
                read_only=self.deck.read_only,
                title=f"Call {self.tool.name} on {server}",
            )
        )
        self._show_mode()
        inputs = self.query("#call-form Input")
        if inputs:
            inputs.first().focus()
        else:
            self.query_one("#call", Button).focus()

    def _show_mode(self) -> None:
        self.query_one("#call-form-box").display = not self.raw
        self.query_one("#call-json").display = self.raw
        self.query_one("#call-json-error").display = self.raw
        self.query_one("#raw", Button).label = "Form" if self.raw else "JSON"

    def arguments(self) -> dict[str, Any] | None:
        """The arguments of the current mode, or None after showing what is wrong."""
        if self.raw:
            error = self.query_one("#call-json-error", Static)
            try:
                value = json.loads(self.query_one("#call-json", TextArea).text or "{}")
            except json.JSONDecodeError as exc:
                error.update(f"not valid JSON: {exc.msg} (line {exc.lineno})")
                error.set_class(True, "-visible")
                return None
            if not isinstance(value, dict):
                error.update("the arguments must be a JSON object")
                error.set_class(True, "-visible")
                return None
            error.update("")
            error.set_class(False, "-visible")
            return value
        try:
            return self.query_one(JsonSchemaForm).value()
        except FieldError:
            return None

    @on(Button.Pressed, "#raw")
    def action_toggle_raw(self) -> None:
        if not self.raw:
            # Carry what the form holds into the JSON, when it parses.
            try:
                current = self.query_one(JsonSchemaForm).value()
            except FieldError:
                current = {}
            self.query_one("#call-json", TextArea).text = json.dumps(current, indent=2)
            self.raw = True
            self._show_mode()
            self.query_one("#call-json").focus()
        else:
            self.raw = False
            self._show_mode()
            values = self.arguments_from_json()
            form_box = self.query_one("#call-form-box")
            form_box.remove_children()
            form_box.mount(JsonSchemaForm(self.tool.input_schema, values, id="call-form"))
            self.call_after_refresh(self.settle_cursors)
        self.settle_cursors()

    def arguments_from_json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.query_one("#call-json", TextArea).text or "{}")
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}

    @on(Input.Submitted, "#call-form Input")
    def _submitted(self, _event: Input.Submitted) -> None:
        self.action_run()

    @on(Button.Pressed, "#call")
    def action_run(self) -> None:
        arguments = self.arguments()
        if arguments is None:
            return
        self.query_one("#call-result", Static).update(Text("Calling…", style="italic"))
        self.call(arguments)

    @work(exclusive=True, group="call", exit_on_error=False)
    async def call(self, arguments: dict[str, Any]) -> None:
        ops = self.deck.ops
        if ops is None:
            return
        output = self.query_one("#call-result", Static)
        try:
            result = await ops.call_tool(
                self.tool.server_id,
                self.tool.name,
                arguments,
                source="tui",
                user=self.deck.actor,
            )
        except TooldeckError as exc:
            output.update(Text(f"✖ {describe_error(exc)}", style="bold red"))
            return
        output.update(result_renderable(result))
