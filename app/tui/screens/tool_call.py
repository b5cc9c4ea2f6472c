"""`c` on a tool: fill in its arguments (a form from its input schema, or raw JSON), call it
through the facade (recorded with source `tui`), and read the result and its duration."""

from __future__ import annotations

import asyncio
import json
import time
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


# How often the elapsed time of a call in flight is redrawn.
ELAPSED_TICK_S = 0.1


def calling_text(tool: str, elapsed_s: float) -> Text:
    text = Text()
    text.append(f"Calling {tool}… ", style="italic")
    text.append(f"{elapsed_s:.1f}s", style="bold")
    text.append("   esc cancels", style="dim")
    return text


def cancelled_text(elapsed_s: float) -> Text:
    text = Text()
    text.append("■ cancelled", style="bold yellow")
    text.append(f" after {elapsed_s:.1f}s: no result; not counted as a tool error", style="dim")
    return text


class ToolCallScreen(DeckScreen[None]):
    HELP_TITLE = "call a tool"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back / cancel the call", id="call-back"),
        Binding("ctrl+r", "run", "Call", id="call-run", priority=True),
        Binding("ctrl+j", "toggle_raw", "Form/JSON", id="call-raw", priority=True),
    ]

    def __init__(self, tool: ServerToolResponse) -> None:
        super().__init__()
        self.tool = tool
        self.raw = False
        # The call in flight, and when it began (monotonic): esc cancels it.
        self._in_flight: asyncio.Task[ToolCallResult] | None = None
        self._began = 0.0

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
        form = self.query_one(JsonSchemaForm)
        if not self.raw:
            # Carry what the form holds into the JSON, when it parses.
            try:
                current = form.value()
            except FieldError:
                current = {}
            self.query_one("#call-json", TextArea).text = json.dumps(current, indent=2)
            self.raw = True
            self._show_mode()
            self.query_one("#call-json").focus()
        else:
            # And the JSON back into the same form: its inputs are kept, only their values set.
            self.raw = False
            self._show_mode()
            form.set_values(self.arguments_from_json())
            inputs = form.query(".schema-input")
            if inputs:
                inputs.first().focus()
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
        if self.calling:
            self.notify("A call is in flight: esc cancels it.", severity="warning", timeout=3)
            return
        arguments = self.arguments()
        if arguments is None:
            return
        self._began = time.monotonic()
        self._show_elapsed()
        self.call(arguments)

    @property
    def calling(self) -> bool:
        return self._in_flight is not None and not self._in_flight.done()

    def _show_elapsed(self) -> None:
        self.query_one("#call-result", Static).update(
            calling_text(self.tool.name, time.monotonic() - self._began)
        )

    def action_back(self) -> None:
        if self.calling:
            assert self._in_flight is not None
            self._in_flight.cancel()
            return
        self.app.pop_screen()

    @work(exclusive=True, group="call", exit_on_error=False)
    async def call(self, arguments: dict[str, Any]) -> None:
        ops = self.deck.ops
        if ops is None:
            return
        output = self.query_one("#call-result", Static)
        # The call is a task of its own, so that esc cancels the call alone (the call path
        # records it as cancelled, not as the tool's error) and this worker shows it.
        in_flight = asyncio.ensure_future(
            ops.call_tool(
                self.tool.server_id,
                self.tool.name,
                arguments,
                source="tui",
                user=self.deck.actor,
            )
        )
        self._in_flight = in_flight
        ticker = self.set_interval(ELAPSED_TICK_S, self._show_elapsed, name="call-elapsed")
        try:
            await asyncio.wait([in_flight])
        finally:
            ticker.stop()
            if not in_flight.done():  # the screen closed: the call goes with it
                in_flight.cancel()
        if in_flight.cancelled():
            output.update(cancelled_text(time.monotonic() - self._began))
            return
        error = in_flight.exception()
        if isinstance(error, TooldeckError):
            output.update(Text(f"✖ {describe_error(error)}", style="bold red"))
            return
        if error is not None:
            raise error
        output.update(result_renderable(in_flight.result()))
