"""`p`: gateway profiles, each a named set of servers and tools with its own endpoint.

The list shows every profile with its tool count and the estimated tokens of its tool list (the
context every request of its clients carries); the pane below previews the cursor row's tools.
`n` and `e` open the form, which checks every field as it is typed and previews the tools the
patterns choose before anything is saved; `ctrl+d` deletes after asking.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, DataTable, Input, Label, Static

from app.core.errors import TooldeckError
from app.core.profiles import ProfileCreate, ProfilePreview, ProfileResponse
from app.tui.base import describe_error
from app.tui.screens.catalogue import CatalogueScreen
from app.tui.screens.form_fields import CheckedForm, form_row, problems_by_field

MUTATING = frozenset({"new_profile", "edit_profile", "delete_profile"})
PREVIEW_TOOLS = 200
FIELDS = ("name", "description", "servers", "tools")


def describe_preview(preview: ProfilePreview) -> Text:
    text = Text()
    text.append(f"{preview.tool_count} tools", style="bold")
    text.append(f" · ~{preview.estimated_tokens:,} tokens", style="bold")
    text.append(f"\n{preview.token_method}", style="dim")
    servers = ", ".join(preview.servers) or "no server"
    text.append(f"\nservers: {servers}", style="dim")
    for pattern in preview.unmatched:
        text.append(f"\n{pattern!r} chooses nothing now", style="yellow")
    for tool in preview.tools[:PREVIEW_TOOLS]:
        style = "" if tool.enabled else "dim strike"
        text.append(f"\n  {tool.exposed_name}", style=style)
        if tool.title:
            text.append(f"  {tool.title}", style="dim")
    if len(preview.tools) > PREVIEW_TOOLS:
        text.append(f"\n  … {len(preview.tools) - PREVIEW_TOOLS} more", style="dim")
    return text


def cut(text: str, style: str = "") -> Text:
    """A cell that shows where its column cut it (the preview below has the whole)."""
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


class ProfilesScreen(CatalogueScreen):
    TABLE_ID = "profiles-table"
    HINT_ID = "profiles-hint"
    DETAIL_ID = "profile-preview"
    HINT = (
        "each profile is an MCP endpoint: /mcp/profiles/<name> or "
        "`tooldeck gateway --stdio --profile <name>`"
    )
    COLUMNS = (
        ("Profile", 16),
        ("Servers", 18),
        ("Tools", 22),
        ("Count", 5),
        ("~Tokens", 8),
        ("Endpoint", 26),
    )
    MUTATING = MUTATING
    HELP_TITLE = "gateway profiles"
    DEFAULT_CSS = """
    ProfilesScreen #profiles-table { height: 1fr; min-height: 5; }
    ProfilesScreen #profile-preview-box { height: 2fr; }
    ProfilesScreen #profiles-hint { color: $foreground-muted; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="profiles-back"),
        Binding("n", "new_profile", "New", id="profiles-new"),
        Binding("e", "edit_profile", "Edit", id="profiles-edit"),
        Binding("ctrl+d", "delete_profile", "Delete", id="profiles-delete"),
        Binding("r", "reload", "Reload", id="profiles-reload"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._profiles: dict[str, ProfileResponse] = {}
        self._previews: dict[str, ProfilePreview] = {}

    def heading(self) -> str:
        count = len(self._profiles)
        return f"Gateway profiles · {count} profile{'s' if count != 1 else ''}"

    @work(exclusive=True, group="profiles-screen", exit_on_error=False)
    async def load(self) -> None:
        ops = self.deck.ops
        if ops is None:
            return
        profiles = await ops.list_profiles()
        previews = {profile.name: await ops.preview_profile(profile.name) for profile in profiles}
        self._profiles = {profile.name: profile for profile in profiles}
        self._previews = previews
        self._fill()

    def _fill(self) -> None:
        table = self.query_one("#profiles-table", DataTable)
        key = self.cursor_key
        with self.app.batch_update():
            table.clear()
            for profile in self._profiles.values():
                preview = self._previews.get(profile.name)
                table.add_row(
                    cut(profile.name, style="bold"),
                    cut(" ".join(profile.servers)),
                    cut(" ".join(profile.tools) or "* every tool", style="dim"),
                    Text(str(preview.tool_count) if preview else "?", justify="right"),
                    Text(f"{preview.estimated_tokens:,}" if preview else "?", justify="right"),
                    cut(profile.endpoint, style="dim"),
                    key=profile.name,
                )
            keys = list(self._profiles)
            if key in keys:
                table.move_cursor(row=keys.index(key), animate=False, scroll=False)
        self._status()
        self.show_detail()

    def show_detail(self) -> None:
        box = self.query_one("#profile-preview-box")
        detail = self.query_one("#profile-preview", Static)
        name = self.cursor_key
        preview = self._previews.get(name) if name else None
        if preview is None:
            box.border_title = "Tools"
            detail.update(Text("no profiles yet: n adds one", style="dim italic"))
            return
        box.border_title = f"Tools of {name}"
        detail.update(describe_preview(preview))

    # ---- actions ---------------------------------------------------------------------------

    def action_new_profile(self) -> None:
        self.app.push_screen(ProfileFormScreen(None), self._after_form)

    def action_edit_profile(self) -> None:
        name = self.cursor_key
        if name is None:
            self.notify("No profile under the cursor.", severity="warning")
            return
        self.app.push_screen(ProfileFormScreen(self._profiles[name]), self._after_form)

    def _after_form(self, saved: ProfileResponse | None) -> None:
        if saved is not None:
            self.notify(f"Saved profile {saved.name}.", markup=False, timeout=4)
            self.load()

    def action_delete_profile(self) -> None:
        from app.tui.screens.confirm import ConfirmScreen

        name = self.cursor_key
        if name is None:
            self.notify("No profile under the cursor.", severity="warning")
            return
        question = ConfirmScreen(
            "Delete profile",
            f"Delete the profile {name}? Clients of /mcp/profiles/{name} will be refused.",
            confirm_label="Delete",
        )
        self.app.push_screen(question, lambda yes: self.run_delete(name) if yes else None)

    @work(group="profiles-actions", exit_on_error=False)
    async def run_delete(self, name: str) -> None:
        ops = self.deck.ops
        if ops is None:
            return
        await ops.delete_profile(name, actor=self.deck.actor)
        self.notify(f"Deleted profile {name}.", markup=False, timeout=4)
        self.load()


class ProfileFormScreen(CheckedForm[ProfileResponse]):
    """Create or edit a profile; every field is checked as it is typed, and the tools the
    patterns choose are previewed before anything is saved."""

    DEFAULT_CSS = """
    ProfileFormScreen #profile-dialog { height: 90%; max-width: 100; }
    ProfileFormScreen #profile-form-preview-box { height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", id="profile-save", priority=True),
        Binding("escape", "cancel", "Cancel", id="profile-cancel"),
    ]
    FIELDS = FIELDS

    def __init__(self, original: ProfileResponse | None) -> None:
        super().__init__()
        self.original = original

    def compose(self) -> ComposeResult:
        profile = self.original
        title = f"Edit profile {profile.name}" if profile else "New profile"
        with Vertical(id="profile-dialog", classes="dialog"):
            yield Label(title, classes="dialog-title")
            yield from form_row(
                "Name",
                "name",
                Input(
                    profile.name if profile else "",
                    id="name",
                    placeholder="lowercase-name",
                    compact=True,
                ),
            )
            yield from form_row(
                "Description",
                "description",
                Input(
                    (profile.description or "") if profile else "", id="description", compact=True
                ),
            )
            yield from form_row(
                "Servers",
                "servers",
                Input(
                    " ".join(profile.servers) if profile else "*",
                    id="servers",
                    placeholder="names or globs: github fs-*",
                    compact=True,
                ),
            )
            yield from form_row(
                "Tools",
                "tools",
                Input(
                    " ".join(profile.tools) if profile else "",
                    id="tools",
                    placeholder="read_* github/create_issue !*/delete_*  (empty: every tool)",
                    compact=True,
                ),
            )
            yield Static("", id="error-form", classes="form-error", markup=False)
            with VerticalScroll(id="profile-form-preview-box", classes="pane"):
                yield Static("", id="profile-form-preview")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Save", id="save", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#profile-form-preview-box").border_title = "Tools it chooses"
        self.query_one("#name", Input).focus()
        self.check()

    def values(self) -> dict[str, Any]:
        def words(field: str) -> list[str]:
            return self.query_one(f"#{field}", Input).value.split()

        description = self.query_one("#description", Input).value.strip()
        return {
            "name": self.query_one("#name", Input).value.strip(),
            "description": description or None,
            "servers": words("servers"),
            "tools": words("tools"),
        }

    def problems(self) -> dict[str, str]:
        return problems_by_field(ProfileCreate, self.values(), FIELDS)

    def check(self) -> None:
        errors = self.problems()
        self.show_errors(errors)
        if not any(field in errors for field in ("servers", "tools")):
            self.preview()

    @work(exclusive=True, group="profile-preview", exit_on_error=False)
    async def preview(self) -> None:
        ops = self.deck.ops
        if ops is None:
            return
        values = self.values()
        draft = {"servers": values["servers"] or ["*"], "tools": values["tools"]}
        try:
            found = await ops.preview_profile_draft(draft)
        except TooldeckError as exc:
            self.query_one("#profile-form-preview", Static).update(
                Text(describe_error(exc), style="red")
            )
            return
        self.query_one("#profile-form-preview", Static).update(describe_preview(found))

    async def submit(self, values: dict[str, Any]) -> ProfileResponse | None:
        ops = self.deck.ops
        assert ops is not None
        if self.original is None:
            return await ops.create_profile(values, actor=self.deck.actor)
        return await ops.update_profile(self.original.name, values, actor=self.deck.actor)
