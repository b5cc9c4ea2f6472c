"""`o`: the HTTP API's tokens: each one's name, scope, profile and last use, never a value.

`n` opens the form (checked as typed); a token made there is shown once, in a dialog of its
own, and never again: only its hash is kept. `ctrl+d` revokes the cursor row's token after
asking. The token file's token is listed first, as the admin token it is; it is rotated with
`tooldeck token rotate`, not revoked here.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Label, Select, Static

from app.core.access import FILE_TOKEN_NAME, SCOPE_HELP, SCOPES, IssuedToken, TokenCreate, TokenInfo
from app.tui.base import DeckModal
from app.tui.screens.catalogue import CatalogueScreen
from app.tui.screens.form_fields import CheckedForm, form_row, problems_by_field
from widgets import formatting as fmt

MUTATING = frozenset({"new_token", "revoke_token"})
FIELDS = ("name", "scope", "profile")
SCOPE_STYLES = {"admin": "bold red", "operator": "yellow", "read": "green", "gateway": "cyan"}


class TokensScreen(CatalogueScreen):
    TABLE_ID = "tokens-table"
    HINT_ID = "tokens-hint"
    DETAIL_ID = "token-detail"
    HINT = "a token's name is the audit actor of what it does · values are shown once, when made"
    COLUMNS = (
        ("Name", 20),
        ("Scope", 9),
        ("Profile", 16),
        ("Last used", 10),
        ("Made", 10),
        ("Made by", 24),
    )
    MUTATING = MUTATING
    HELP_TITLE = "API tokens"
    DEFAULT_CSS = """
    TokensScreen #tokens-table { height: 1fr; min-height: 5; }
    TokensScreen #token-detail-box { height: auto; max-height: 12; }
    TokensScreen #tokens-hint { color: $foreground-muted; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="tokens-back"),
        Binding("n", "new_token", "New", id="tokens-new"),
        Binding("ctrl+d", "revoke_token", "Revoke", id="tokens-revoke"),
        Binding("r", "reload", "Reload", id="tokens-reload"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._tokens: dict[str, TokenInfo] = {}

    def heading(self) -> str:
        count = len(self._tokens)
        return f"API tokens · {count} named token{'s' if count != 1 else ''}"

    @work(exclusive=True, group="tokens-screen", exit_on_error=False)
    async def load(self) -> None:
        ops = self.deck.ops
        if ops is None:
            return
        tokens = await ops.list_tokens()
        self._tokens = {token.name: token for token in tokens}
        self._fill()

    def _fill(self) -> None:
        now = self.deck.clock()
        table = self.query_one("#tokens-table", DataTable)
        key = self.cursor_key
        with self.app.batch_update():
            table.clear()
            table.add_row(
                Text(FILE_TOKEN_NAME, style="bold"),
                Text("admin", style=SCOPE_STYLES["admin"]),
                Text(fmt.DASH, style="dim"),
                Text(fmt.DASH, style="dim"),
                Text(fmt.DASH, style="dim"),
                Text("the token file", style="dim"),
                key=FILE_TOKEN_NAME,
            )
            for token in self._tokens.values():
                used = fmt.age_minutes(token.last_used_at, now)
                table.add_row(
                    Text(token.name, style="bold"),
                    Text(token.scope, style=SCOPE_STYLES.get(token.scope, "")),
                    Text(token.profile or fmt.DASH, style="" if token.profile else "dim"),
                    Text(f"{used} ago" if token.last_used_at else "never", style="dim"),
                    Text(f"{fmt.age_minutes(token.created_at, now)} ago", style="dim"),
                    Text(token.created_by or fmt.DASH, style="dim"),
                    key=token.name,
                )
            keys = [FILE_TOKEN_NAME, *self._tokens]
            if key in keys:
                table.move_cursor(row=keys.index(key), animate=False, scroll=False)
        self._status()
        self.show_detail()

    def show_detail(self) -> None:
        box = self.query_one("#token-detail-box")
        detail = self.query_one("#token-detail", Static)
        name = self.cursor_key
        if name == FILE_TOKEN_NAME or name is None:
            box.border_title = "admin"
            detail.update(
                Text(
                    "The token file's token (`tooldeck token show`): everything is open to it. "
                    "Rotate it with `tooldeck token rotate`; give every other client a named "
                    "token with the least scope that does its job (n).",
                    style="dim",
                )
            )
            return
        token = self._tokens[name]
        box.border_title = f"{token.name} · {token.scope}"
        text = Text()
        text.append(SCOPE_HELP[token.scope], style="bold")
        if token.profile:
            text.append(f"\nreaches only /mcp/profiles/{token.profile}")
        now = self.deck.clock()
        text.append(
            f"\nmade {fmt.clock_time(token.created_at, now)} by {token.created_by or '?'}"
            f" · last used {fmt.clock_time(token.last_used_at, now)}",
            style="dim",
        )
        detail.update(text)

    # ---- actions ---------------------------------------------------------------------------

    def action_new_token(self) -> None:
        self.app.push_screen(TokenFormScreen(), self._after_form)

    def _after_form(self, issued: IssuedToken | None) -> None:
        if issued is not None:
            self.load()
            self.app.push_screen(TokenShownScreen(issued))

    def action_revoke_token(self) -> None:
        from app.tui.screens.confirm import ConfirmScreen

        name = self.cursor_key
        if name is None:
            self.notify("No token under the cursor.", severity="warning")
            return
        if name == FILE_TOKEN_NAME:
            self.notify(
                "The token file's token is rotated, not revoked: `tooldeck token rotate`.",
                markup=False,
                timeout=6,
            )
            return
        question = ConfirmScreen(
            "Revoke token",
            f"Revoke the token {name}? Every request with it is refused from then on.",
            confirm_label="Revoke",
        )
        self.app.push_screen(question, lambda yes: self.run_revoke(name) if yes else None)

    @work(group="tokens-actions", exit_on_error=False)
    async def run_revoke(self, name: str) -> None:
        ops = self.deck.ops
        if ops is None:
            return
        await ops.revoke_token(name, actor=self.deck.actor)
        self.notify(f"Revoked token {name}.", markup=False, timeout=4)
        self.load()


class TokenFormScreen(CheckedForm[IssuedToken]):
    """A new token: name, scope and (a gateway token's) profile, each checked as typed."""

    DEFAULT_CSS = """
    TokenFormScreen #token-dialog { height: auto; max-width: 90; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", id="token-save", priority=True),
        Binding("escape", "cancel", "Cancel", id="token-cancel"),
    ]
    FIELDS = FIELDS

    def compose(self) -> ComposeResult:
        with Vertical(id="token-dialog", classes="dialog"):
            yield Label("New API token", classes="dialog-title")
            yield from form_row(
                "Name", "name", Input(id="name", placeholder="grafana, ci-agent", compact=True)
            )
            yield from form_row(
                "Scope",
                "scope",
                Select(
                    [(f"{scope}: {SCOPE_HELP[scope]}", scope) for scope in SCOPES],
                    value="read",
                    allow_blank=False,
                    id="scope",
                    compact=True,
                ),
            )
            yield from form_row(
                "Profile",
                "profile",
                Input(id="profile", placeholder="gateway tokens: one profile only", compact=True),
            )
            yield Static("", id="error-form", classes="form-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Make token", id="save", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()
        self.check()

    def values(self) -> dict[str, Any]:
        profile = self.query_one("#profile", Input).value.strip()
        return {
            "name": self.query_one("#name", Input).value.strip(),
            "scope": self.query_one("#scope", Select).value,
            "profile": profile or None,
        }

    def problems(self) -> dict[str, str]:
        values = self.values()
        if not values["name"]:
            return {"name": "a name is needed: it is the audit actor of what the token does"}
        return problems_by_field(TokenCreate, values, FIELDS)

    async def submit(self, values: dict[str, Any]) -> IssuedToken | None:
        ops = self.deck.ops
        assert ops is not None
        return await ops.add_token(values, actor=self.deck.actor)


class TokenShownScreen(DeckModal[None]):
    """A new token's value, this once: selectable, so it can be copied from the terminal."""

    DEFAULT_CSS = """
    TokenShownScreen #token-shown-dialog { height: auto; max-width: 90; }
    TokenShownScreen #token-value { margin: 1 0; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="token-shown-close"),
    ]

    def __init__(self, issued: IssuedToken) -> None:
        super().__init__()
        self.issued = issued

    def compose(self) -> ComposeResult:
        issued = self.issued
        reach = f", reaching only /mcp/profiles/{issued.profile}" if issued.profile else ""
        with Vertical(id="token-shown-dialog", classes="dialog"):
            yield Label(f"Token {issued.name} ({issued.scope}{reach})", classes="dialog-title")
            yield Static(
                "Copy it now: it is shown this once, and only its hash is kept.",
                classes="dialog-hint",
            )
            yield Input(issued.token, id="token-value", compact=True)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Done", id="done", variant="primary")

    def on_mount(self) -> None:
        value = self.query_one("#token-value", Input)
        value.focus()
        value.select_all()

    @on(Button.Pressed, "#done")
    def action_close(self) -> None:
        self.dismiss(None)
