"""Create or edit a server in a modal form, validated inline before anything is saved.

Validation is the facade's own: the form builds the same pydantic model the facade accepts
(`ToolServerCreate`), and a refusal from the facade (`InvalidInput`, `Conflict`) carries the
field it is about, so every message lands under its input and the form stays open.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ValidationError
from pydantic_core import InitErrorDetails
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, Static, TextArea

from app.core.errors import Conflict, InvalidInput, TooldeckError, invalid_from_pydantic
from app.core.schemas import (
    MASK,
    TRANSPORTS,
    ProbeReport,
    ServerLimitsResponse,
    ToolServerCreate,
    ToolServerResponse,
)
from app.tui.base import DeckModal, describe_error
from app.tui.screens.confirm import ConfirmScreen
from app.tui.screens.limits_fields import (
    fill_limits,
    limits_differ,
    limits_rows,
    limits_values,
    show_local_limits,
)
from widgets.key_value_editor import KeyValueEditor

TRANSPORT_LABELS = {
    "stdio": "stdio (a local command)",
    "streamable_http": "streamable HTTP",
    "sse": "SSE",
}
NUMBER_FIELDS = {"max_failures": int, "startup_timeout_s": float, "call_timeout_s": float}
FLAG_FIELDS = ("enabled", "auto_start", "auto_update")
# Where a field's message is shown when it has no input of its own.
FIELD_ALIASES = {"__root__": "form"}


def field_errors(exc: ValidationError) -> list[InvalidInput]:
    """Every error of a validation, each put in the facade's words (field and message)."""
    errors = []
    for error in exc.errors():
        detail: InitErrorDetails = {
            "type": error["type"],  # type: ignore[typeddict-item]
            "loc": error["loc"],
            "input": error.get("input"),
        }
        if "ctx" in error:
            detail["ctx"] = error["ctx"]
        try:
            single = ValidationError.from_exception_data(exc.title, [detail])
        except (TypeError, ValueError, KeyError):
            return [invalid_from_pydantic(exc)]
        errors.append(invalid_from_pydantic(single))
    return errors or [invalid_from_pydantic(exc)]


def model_problems(data: dict[str, Any]) -> list[InvalidInput]:
    """Every problem the facade's model finds, cross-field rules included.

    Pydantic skips the model's own checks (a stdio server needs a command) while a field is
    invalid, so fields found invalid are set aside and the rest checked again: the user sees
    every message at once, not one per save.
    """
    problems: list[InvalidInput] = []
    candidate = dict(data)
    for _ in range(3):
        try:
            # Masked secrets pass as they are: the model checks names, the facade keeps values.
            ToolServerCreate.model_validate(candidate)
            return problems
        except ValidationError as exc:
            found = field_errors(exc)
        fresh = [p for p in found if p.field not in {q.field for q in problems}]
        if not fresh:
            return problems
        problems.extend(fresh)
        for problem in fresh:
            head = (problem.field or "").split(".")[0]
            if head not in ToolServerCreate.model_fields:
                return problems
            candidate[head] = PLACEHOLDERS.get(head, ToolServerCreate.model_fields[head].default)
    return problems


# Valid stand-ins for fields already reported, so the remaining rules can be checked.
PLACEHOLDERS: dict[str, Any] = {"name": "placeholder", "env": {}, "headers": {}, "args": []}


def error_slot(field: str | None) -> str:
    """The error label a facade field maps to: `args.0` is shown under args."""
    if not field:
        return "form"
    head = field.split(".")[0]
    return FIELD_ALIASES.get(head, head)


class ServerFormScreen(DeckModal[ToolServerResponse | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", id="save", priority=True),
        Binding("ctrl+t", "test", "Test connection", id="test", priority=True),
        Binding("ctrl+r", "reveal", "Reveal secrets", id="reveal", priority=True),
        Binding("escape", "cancel", "Cancel", id="cancel"),
    ]

    def __init__(self, server_id: str | None) -> None:
        super().__init__()
        self.server_id = server_id
        self.original: ToolServerResponse | None = None
        self.original_limits: ServerLimitsResponse | None = None
        # The form as it was shown, to tell whether leaving loses anything.
        self._pristine: dict[str, Any] | None = None

    @property
    def editing(self) -> bool:
        return self.server_id is not None

    # ---- layout ------------------------------------------------------------------------------

    def _row(self, label: str, field: str, widget: Widget) -> ComposeResult:
        with Horizontal(classes="form-row", id=f"row-{field}"):
            yield Label(label, classes="form-label")
            yield widget
        yield Static("", id=f"error-{field}", classes="form-error", markup=False)

    def compose(self) -> ComposeResult:
        title = "Edit server" if self.editing else "New server"
        with Vertical(id="form-dialog", classes="dialog"):
            yield Label(title, classes="dialog-title", id="form-title")
            with VerticalScroll(id="form-body"):
                yield from self._row(
                    "Name", "name", Input(id="name", placeholder="lowercase-name", compact=True)
                )
                yield from self._row(
                    "Display name", "display_name", Input(id="display_name", compact=True)
                )
                yield from self._row(
                    "Description", "description", Input(id="description", compact=True)
                )
                yield from self._row(
                    "Transport",
                    "transport",
                    Select(
                        [(TRANSPORT_LABELS[name], name) for name in TRANSPORTS],
                        value="stdio",
                        allow_blank=False,
                        id="transport",
                        compact=True,
                    ),
                )
                with Vertical(id="stdio-fields"):
                    yield from self._row(
                        "Command",
                        "command",
                        Input(id="command", placeholder="npx, uvx, /path/to/server", compact=True),
                    )
                    yield from self._row(
                        "Arguments",
                        "args",
                        TextArea(
                            id="args", soft_wrap=False, compact=True, placeholder="one per line"
                        ),
                    )
                    yield from self._row(
                        "Working dir",
                        "cwd",
                        Input(id="cwd", placeholder="(optional)", compact=True),
                    )
                    yield from self._row("Environment", "env", KeyValueEditor(id="env", mask=MASK))
                with Vertical(id="http-fields"):
                    yield from self._row(
                        "URL", "url", Input(id="url", placeholder="https://host/mcp", compact=True)
                    )
                    yield from self._row(
                        "Headers",
                        "headers",
                        KeyValueEditor(id="headers", key_placeholder="Header-Name", mask=MASK),
                    )
                yield from self._row(
                    "Max failures",
                    "max_failures",
                    Input("3", id="max_failures", type="integer", compact=True),
                )
                yield from self._row(
                    "Start timeout",
                    "startup_timeout_s",
                    Input(
                        "30",
                        id="startup_timeout_s",
                        type="number",
                        placeholder="seconds",
                        compact=True,
                    ),
                )
                yield from self._row(
                    "Call timeout",
                    "call_timeout_s",
                    Input(
                        "60",
                        id="call_timeout_s",
                        type="number",
                        placeholder="seconds",
                        compact=True,
                    ),
                )
                yield from self._row(
                    "Placement",
                    "placement",
                    Input(
                        id="placement",
                        placeholder="a node, or any (default: this node)",
                        compact=True,
                    ),
                )
                yield from limits_rows(self._row)
                with Horizontal(classes="form-row form-flags"):
                    yield Label("", classes="form-label")
                    yield Checkbox("enabled", True, id="enabled", compact=True)
                    yield Checkbox("auto-start", True, id="auto_start", compact=True)
                    yield Checkbox("auto-update", True, id="auto_update", compact=True)
            yield Static("", id="error-form", classes="form-error", markup=False)
            yield Static("", id="probe-result", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Test connection", id="test")
                yield Button("Cancel", id="cancel")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#probe-result").display = False
        self._show_transport("stdio")
        self.query_one("#test", Button).display = self._can_probe()
        if self.editing:
            name = self.query_one("#name", Input)
            name.disabled = True
            self.load_server()
        else:
            self.query_one("#name", Input).focus()
            self.call_after_refresh(self._remember_pristine)

    def _remember_pristine(self) -> None:
        self._pristine = self._typed()

    def _typed(self) -> dict[str, Any]:
        return {**self.values()[0], "limits": self.limits()[0]}

    @property
    def changed(self) -> bool:
        """Whether the form holds anything its user typed since it opened."""
        return self._pristine is not None and self._typed() != self._pristine

    def _can_probe(self) -> bool:
        return self.deck.data is not None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "test":
            return self._can_probe()
        return True

    @work(exclusive=True, group="form-load", exit_on_error=False)
    async def load_server(self) -> None:
        ops = self.deck.ops
        assert ops is not None and self.server_id is not None
        server = await ops.get_server(self.server_id)
        self.original = server
        self.original_limits = await ops.get_server_limits(self.server_id)
        fill_limits(self, self.original_limits)
        self.fill(server)

    def fill(self, server: ToolServerResponse) -> None:
        self.query_one("#form-title", Label).update(f"Edit server · {server.name}")
        self.query_one("#name", Input).value = server.name
        self.query_one("#display_name", Input).value = server.display_name or ""
        self.query_one("#description", Input).value = server.description or ""
        self.query_one("#transport", Select).value = server.transport
        self.query_one("#command", Input).value = server.command or ""
        self.query_one("#args", TextArea).text = "\n".join(server.args)
        self.query_one("#cwd", Input).value = server.cwd or ""
        self.query_one("#url", Input).value = server.url or ""
        self.query_one("#env", KeyValueEditor).set_pairs(server.env.items())
        self.query_one("#headers", KeyValueEditor).set_pairs(server.headers.items())
        self.query_one("#max_failures", Input).value = str(server.max_failures)
        self.query_one("#startup_timeout_s", Input).value = f"{server.startup_timeout_s:g}"
        self.query_one("#call_timeout_s", Input).value = f"{server.call_timeout_s:g}"
        self.query_one("#placement", Input).value = server.placement
        for flag in FLAG_FIELDS:
            self.query_one(f"#{flag}", Checkbox).value = bool(getattr(server, flag))
        self._show_transport(server.transport)
        self.query_one("#display_name", Input).focus()
        self.settle_cursors()
        # After the environment's and headers' rows are mounted.
        self.call_after_refresh(self._remember_pristine)

    @on(Select.Changed, "#transport")
    def _transport_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self._show_transport(event.value)

    def _show_transport(self, transport: str) -> None:
        self.query_one("#stdio-fields").display = transport == "stdio"
        self.query_one("#http-fields").display = transport != "stdio"
        show_local_limits(self, transport == "stdio")

    # ---- values and validation ---------------------------------------------------------------

    def _number(self, field: str, errors: dict[str, str]) -> Any:
        text = self.query_one(f"#{field}", Input).value.strip()
        kind = NUMBER_FIELDS[field]
        try:
            return kind(text)
        except ValueError:
            errors[field] = "expected a whole number" if kind is int else "expected a number"
            return text

    def values(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The form as the facade's input, and the problems found before asking the facade."""
        errors: dict[str, str] = {}
        transport = self.query_one("#transport", Select).value
        stdio = transport == "stdio"
        env_editor = self.query_one("#env", KeyValueEditor)
        header_editor = self.query_one("#headers", KeyValueEditor)
        for field, editor in (("env", env_editor), ("headers", header_editor)):
            problem = editor.error()
            if problem:
                errors[field] = problem
        args_text = self.query_one("#args", TextArea).text
        data: dict[str, Any] = {
            "name": self.query_one("#name", Input).value.strip(),
            "display_name": self.query_one("#display_name", Input).value.strip() or None,
            "description": self.query_one("#description", Input).value.strip() or None,
            "transport": transport,
            "command": (self.query_one("#command", Input).value.strip() or None) if stdio else None,
            "args": [line for line in args_text.splitlines() if line.strip()] if stdio else [],
            "cwd": (self.query_one("#cwd", Input).value.strip() or None) if stdio else None,
            "env": env_editor.value if stdio else {},
            "url": None if stdio else (self.query_one("#url", Input).value.strip() or None),
            "headers": {} if stdio else header_editor.value,
        }
        for field in NUMBER_FIELDS:
            data[field] = self._number(field, errors)
        for flag in FLAG_FIELDS:
            data[flag] = self.query_one(f"#{flag}", Checkbox).value
        data["placement"] = self.query_one("#placement", Input).value.strip() or None
        return data, errors

    def limits(self) -> tuple[dict[str, Any], dict[str, str]]:
        stdio = self.query_one("#transport", Select).value == "stdio"
        return limits_values(self, stdio)

    def validate_form(self) -> dict[str, Any] | None:
        """Check the form with the facade's model; show every problem under its field."""
        data, errors = self.values()
        for problem in model_problems(data):
            errors.setdefault(error_slot(problem.field), problem.message)
        errors.update(self.limits()[1])
        self.show_errors(errors)
        return None if errors else data

    def show_errors(self, errors: dict[str, str]) -> None:
        for label in self.query(".form-error"):
            assert isinstance(label, Static)
            field = (label.id or "").removeprefix("error-")
            message = errors.get(field, "")
            label.update(message)
            label.set_class(bool(message), "-visible")
        unplaced = [
            f"{field}: {message}"
            for field, message in errors.items()
            if not self.query(f"#error-{field}")
        ]
        if unplaced:
            form = self.query_one("#error-form", Static)
            form.update("\n".join(unplaced))
            form.set_class(True, "-visible")
        if errors:
            first = next(iter(errors))
            target = self.query(f"#row-{first} Input, #row-{first} TextArea, #row-{first} Select")
            if target:
                target.first().focus()

    # ---- actions -----------------------------------------------------------------------------

    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        data = self.validate_form()
        if data is not None:
            self.save(data)

    @work(exclusive=True, group="form-save", exit_on_error=False)
    async def save(self, data: dict[str, Any]) -> None:
        ops = self.deck.ops
        if ops is None:
            return
        limits = self.limits()[0]
        new_limits = limits_differ(limits, self.original_limits)
        try:
            if self.server_id is None:
                saved = await ops.create_server(data, actor=self.deck.actor)
            else:
                # Limits first: refused, they leave the server as it was.
                if new_limits:
                    await self._save_limits(self.server_id, limits)
                changes = {key: value for key, value in data.items() if key != "name"}
                saved = await ops.update_server(self.server_id, changes, actor=self.deck.actor)
        except TooldeckError as exc:
            self.show_errors({error_slot(exc.field): exc.message})
            return
        if self.server_id is None and new_limits:
            try:
                await self._save_limits(saved.id, limits)
            except TooldeckError as exc:
                # The server exists now: the form goes on as its edit form, the refusal shown.
                self.server_id = saved.id
                self.original = saved
                self.query_one("#form-title", Label).update(f"Edit server · {saved.name}")
                self.query_one("#name", Input).disabled = True
                self.show_errors(
                    {
                        error_slot(exc.field): exc.message,
                        "form": f"{saved.name} was saved without its limits: {exc.message}",
                    }
                )
                return
        self.dismiss(saved)

    async def _save_limits(self, server_id: str, limits: dict[str, Any]) -> None:
        ops = self.deck.ops
        assert ops is not None
        try:
            self.original_limits = await ops.set_server_limits(
                server_id, limits, actor=self.deck.actor
            )
        except Conflict as exc:
            # The one conflict of limits: the account this process may not switch to.
            raise InvalidInput(exc.message, field="run_as_user") from None

    @on(Button.Pressed, "#test")
    def action_test(self) -> None:
        data = self.validate_form()
        if data is not None and self._can_probe():
            result = self.query_one("#probe-result", Static)
            result.display = True
            result.update("Connecting…")
            self.probe(data)

    @work(exclusive=True, group="form-probe", exit_on_error=False)
    async def probe(self, data: dict[str, Any]) -> None:
        ops = self.deck.ops
        if ops is None:
            return
        result = self.query_one("#probe-result", Static)
        try:
            outcome = await ops.probe(data)
        except TooldeckError as exc:
            result.update(f"✖ {describe_error(exc)}")
            result.set_classes("-failed")
            return
        result.update(probe_text(outcome))
        result.set_class(not outcome.ok, "-failed")

    def action_reveal(self) -> None:
        for editor in self.query(KeyValueEditor):
            editor.post_message(KeyValueEditor.RevealRequested(editor))

    @on(KeyValueEditor.RevealRequested)
    def _reveal_requested(self, event: KeyValueEditor.RevealRequested) -> None:
        if self.server_id is None:
            event.editor.reveal()
        else:
            self.reveal_secrets(event.editor)

    @work(group="form-reveal", exit_on_error=False)
    async def reveal_secrets(self, editor: KeyValueEditor) -> None:
        ops = self.deck.ops
        assert ops is not None and self.server_id is not None
        server = await ops.get_server(self.server_id, reveal=True)
        editor.reveal(server.env if editor.id == "env" else server.headers)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if not self.changed:
            self.dismiss(None)
            return

        def answered(discard: bool | None) -> None:
            if discard:
                self.dismiss(None)

        what = "the new server" if not self.editing else "your changes"
        self.app.push_screen(
            ConfirmScreen(
                "Discard?",
                f"Leave the form and lose {what}?",
                confirm_label="Discard",
                cancel_label="Keep editing",
            ),
            answered,
        )


def probe_text(report: ProbeReport) -> str:
    """A connection test's result in a few lines: what answered, its tools, how long it took."""
    if not report.ok:
        lines = [f"✖ {report.error or 'the server did not answer'}"]
        lines += [f"  {line}" for line in report.stderr_tail[-3:]]
        return "\n".join(lines)
    who = " ".join(part for part in (report.server_name, report.server_version) if part)
    names = [tool.name for tool in report.tools]
    listed = ", ".join(names[:8]) + ("…" if len(names) > 8 else "")
    return (
        f"✔ {who or 'connected'} in {report.total_ms:.0f} ms, protocol "
        f"{report.protocol_version or '?'}\n  {len(names)} tools: {listed}"
    )
