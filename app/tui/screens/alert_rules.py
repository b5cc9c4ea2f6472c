"""`m` (or `e` on the alerts screen): the alert rules, thresholds and hooks, as a form.

Each field is checked as it is typed, by the same check the facade makes (app.core.alert_rules);
a problem is shown beside its field and `ctrl+s` saves nothing while one is left. Saved rules go
to `config.toml` in the data dir (the screen names the file) and apply to the running alerts at
once. A rule the environment sets is shown, greyed, with its variable: the file cannot change it.
The command's program is looked for on this machine's PATH: the daemon the deck attaches to
listens on loopback, so it is the same machine, and the facade checks again on saving.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Input, Label, Static

from app.core.alert_rules import RULE_SPECS, AlertRule, AlertRules, RuleProblem, check_rule
from app.core.errors import TooldeckError
from app.tui.base import DeckScreen
from app.tui.messages import CoreReady
from widgets.status_bar import StatusBar, StatusState

MUTATING = frozenset({"save"})
GROUP_TITLES = {"thresholds": "Thresholds", "hooks": "Hooks (each new alert's JSON)"}


def shown_text(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def origin_text(rule: AlertRule) -> Text:
    """The unit, then where the running value comes from: the file, the default, or the
    environment (which the file cannot change)."""
    if not rule.editable:
        where, style = f"set by {rule.variable}", "yellow"
    elif rule.source.startswith("file"):
        where, style = "config.toml", "green"
    else:
        where, style = "default", "dim"
    return Text.assemble((rule.unit, "dim"), ("  " if rule.unit else "", ""), (where, style))


class AlertRulesScreen(DeckScreen[None]):
    HELP_TITLE = "alert rules"
    MUTATING = MUTATING
    DEFAULT_CSS = """
    AlertRulesScreen #rules-body { height: 1fr; padding: 0 1; }
    AlertRulesScreen #rules-hint { color: $foreground-muted; padding: 0 1; }
    AlertRulesScreen .rule-row { height: auto; }
    AlertRulesScreen .rule-label { width: 22; color: $foreground-muted; }
    AlertRulesScreen .rule-row Input { width: 1fr; max-width: 48; background: $boost; }
    AlertRulesScreen .rule-row Input:focus { background: $accent 20%; }
    AlertRulesScreen .rule-unit { width: 1fr; min-width: 12; padding: 0 0 0 1; }
    AlertRulesScreen .rule-error { display: none; color: $error; padding: 0 0 0 22; }
    AlertRulesScreen .rule-error.-visible { display: block; }
    AlertRulesScreen .rule-section { text-style: bold; color: $accent; margin: 1 0 0 0; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="rules-back"),
        Binding("ctrl+s", "save", "Save", id="rules-save", priority=True),
        Binding("ctrl+r", "reload", "Reload", id="rules-reload", priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._rules: dict[str, AlertRule] = {}
        self._config_file = ""
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Label("", id="rules-hint")
        with VerticalScroll(id="rules-body"):
            group = None
            for spec in RULE_SPECS:
                if spec.group != group:
                    group = spec.group
                    yield Label(GROUP_TITLES[group], classes="rule-section")
                with Horizontal(classes="rule-row", id=f"row-{spec.name}"):
                    yield Label(spec.label, classes="rule-label")
                    yield Input(id=spec.name, compact=True, disabled=True)
                    yield Label(spec.unit, classes="rule-unit", id=f"unit-{spec.name}")
                yield Static("", id=f"error-{spec.name}", classes="rule-error", markup=False)
            yield Static("", id="error-form", classes="rule-error", markup=False)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self._status()
        self.load()

    def on_core_ready(self, _message: CoreReady) -> None:
        self.refresh_bindings()
        self.load()

    def _status(self) -> None:
        self.query_one(StatusBar).show(
            StatusState(period=self.deck.period, read_only=self.deck.read_only, title="Alert rules")
        )
        # The file's full path is in the notice of a save (and in `tooldeck config`).
        action = "read-only: from" if self.deck.read_only else "ctrl+s saves to"
        self.query_one("#rules-hint", Label).update(
            f"{action} config.toml in the data dir; applied to running alerts at once"
        )

    # ---- reading ---------------------------------------------------------------------------

    @work(exclusive=True, group="alert-rules", exit_on_error=False)
    async def load(self) -> None:
        ops = self.deck.ops
        if ops is None:
            return
        self.show_rules(await ops.alert_rules())

    def show_rules(self, rules: AlertRules) -> None:
        self._config_file = rules.config_file
        self._rules = {rule.name: rule for rule in rules.rules}
        first: Input | None = None
        for rule in rules.rules:
            field = self.query_one(f"#{rule.name}", Input)
            with field.prevent(Input.Changed):
                field.value = shown_text(rule.value)
            field.disabled = self.deck.read_only or not rule.editable
            field.placeholder = f"default {shown_text(rule.default) or 'none'}"
            field.tooltip = rule.accepts
            self.query_one(f"#unit-{rule.name}", Label).update(origin_text(rule))
            if first is None and not field.disabled:
                first = field
        self.show_errors({})
        self._status()
        self.loaded = True
        if first is not None and not isinstance(self.focused, Input):
            first.focus()
        self.settle_cursors()

    # ---- checking --------------------------------------------------------------------------

    def changes(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The fields that differ from what is running, and the problems found in them."""
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, rule in self._rules.items():
            if not rule.editable:
                continue
            text = self.query_one(f"#{name}", Input).value.strip()
            if text == shown_text(rule.value):
                continue
            try:
                check_rule(name, text)
            except RuleProblem as problem:
                errors[name] = problem.message
            values[name] = text
        return values, errors

    def show_errors(self, errors: dict[str, str]) -> None:
        for name in [*self._rules, "form"]:
            label = self.query_one(f"#error-{name}", Static)
            label.update(errors.get(name, ""))
            label.set_class(name in errors, "-visible")

    @on(Input.Changed)
    def _typed(self, _event: Input.Changed) -> None:
        self.show_errors(self.changes()[1])

    # ---- actions ---------------------------------------------------------------------------

    def action_reload(self) -> None:
        self.load()

    def action_save(self) -> None:
        values, errors = self.changes()
        self.show_errors(errors)
        if errors:
            first = next(iter(errors))
            self.query_one(f"#{first}", Input).focus()
            self.notify("Nothing saved: a value is not right.", severity="warning", timeout=4)
            return
        if not values:
            self.notify("Nothing changed.", timeout=3)
            return
        self.save(values)

    @work(exclusive=True, group="alert-rules-save", exit_on_error=False)
    async def save(self, values: dict[str, Any]) -> None:
        ops = self.deck.ops
        if ops is None:
            return
        try:
            saved = await ops.set_alert_rules({"values": values}, actor=self.deck.actor)
        except TooldeckError as exc:
            field = exc.field if exc.field in self._rules else "form"
            self.show_errors({field: exc.message})
            return
        self.show_rules(saved)
        names = ", ".join(self._rules[name].label.lower() for name in values)
        self.notify(
            f"Saved {names} to {saved.config_file}.", title="Alert rules", markup=False, timeout=6
        )
