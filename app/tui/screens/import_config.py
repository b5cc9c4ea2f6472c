"""`i`: import servers from an MCP client's configuration (Claude Desktop, Cursor, VS Code).

The same import as `tooldeck import`: Preview runs it as a dry run and lists what each entry
would become (its new name, create/overwrite/skip and why); Import runs it for real. A file that
cannot be read or holds a bad entry is one line under the path, and nothing is written: the
facade validates every entry before it touches the database.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Footer, Input, Label, Select, Static

from app.core import interchange
from app.core.schemas import ConflictPolicy, ImportItem, ImportReport
from app.tui.base import DeckModal, describe_error

CONFLICT_LABELS: tuple[tuple[str, ConflictPolicy], ...] = (
    ("skip servers that exist", "skip"),
    ("overwrite servers that exist", "overwrite"),
    ("import beside them, renamed", "rename"),
)
ACTION_STYLES = {
    "create": "green",
    "rename": "green",
    "overwrite": "yellow",
    "unchanged": "dim",
    "skip": "dim",
}


def default_path() -> str:
    """Claude Desktop's configuration when it exists here, else nothing."""
    try:
        path = interchange.client_config_path("claude")
    except Exception:  # an unknown platform: no default
        return ""
    return str(path) if path.is_file() else ""


def read_file(path: str) -> object:
    """The document in `path` (`~` expanded); one InvalidInput line when it cannot be read."""
    return interchange.read_document(Path(path).expanduser())


def item_message(item: ImportItem) -> str:
    parts = [item.reason] if item.reason else []
    parts.extend(item.warnings)
    return "; ".join(parts)


def report_summary(report: ImportReport) -> str:
    verb = "would create" if report.dry_run else "created"
    parts = [f"{verb} {report.created}"]
    if report.overwritten:
        parts.append(f"{'would overwrite' if report.dry_run else 'overwrote'} {report.overwritten}")
    if report.unchanged:
        parts.append(f"{report.unchanged} unchanged")
    if report.skipped:
        parts.append(f"skipped {report.skipped}")
    return ", ".join(parts)


class ImportScreen(DeckModal[ImportReport | None]):
    HELP_TITLE = "import"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "preview", "Preview", id="import-preview", priority=True),
        Binding("ctrl+s", "run_import", "Import", id="import-run", priority=True),
        Binding("escape", "cancel", "Close", id="import-close"),
    ]

    def __init__(self, path: str | None = None) -> None:
        super().__init__()
        self._initial_path = default_path() if path is None else path
        self.report: ImportReport | None = None
        self.busy = False

    def compose(self) -> ComposeResult:
        with Vertical(id="import-dialog", classes="dialog"):
            yield Label("Import servers from an MCP client configuration", classes="dialog-title")
            with Horizontal(classes="form-row"):
                yield Label("File", classes="form-label")
                yield Input(
                    self._initial_path,
                    id="import-path",
                    placeholder="claude_desktop_config.json, .cursor/mcp.json, .vscode/mcp.json",
                    compact=True,
                )
            with Horizontal(classes="form-row"):
                yield Label("Name exists", classes="form-label")
                yield Select(
                    CONFLICT_LABELS,
                    value="skip",
                    allow_blank=False,
                    id="import-conflict",
                    compact=True,
                )
            yield Static("", id="import-error", classes="form-error", markup=False)
            yield Label("", id="import-summary")
            table: DataTable[Text] = DataTable(id="import-table", cursor_type="row")
            yield table
            with Horizontal(classes="dialog-buttons"):
                yield Button("Preview", id="import-preview-button")
                yield Button("Import", id="import-button", variant="primary")
                yield Button("Close", id="import-cancel")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one("#import-table", DataTable)
        table.add_column("Entry", key="source")
        table.add_column("Server name", key="name")
        table.add_column("Action", key="action")
        table.add_column("Message", key="message")
        table.display = False
        self.query_one("#import-path", Input).focus()

    # ---- input ------------------------------------------------------------------------------

    @property
    def path_text(self) -> str:
        return self.query_one("#import-path", Input).value.strip()

    @property
    def on_conflict(self) -> ConflictPolicy:
        value = self.query_one("#import-conflict", Select).value
        return value if value in ("skip", "overwrite", "rename") else "skip"  # type: ignore[return-value]

    def show_error(self, message: str) -> None:
        error = self.query_one("#import-error", Static)
        error.update(message)
        error.set_class(bool(message), "-visible")

    @on(Input.Changed, "#import-path")
    @on(Select.Changed, "#import-conflict")
    def _input_changed(self) -> None:
        # A preview belongs to the file and policy it was made with.
        self.show_error("")
        self.clear_report()

    def clear_report(self) -> None:
        self.report = None
        table = self.query_one("#import-table", DataTable)
        table.clear()
        table.display = False
        self.query_one("#import-summary", Label).update("")

    @on(Input.Submitted, "#import-path")
    def _path_submitted(self) -> None:
        self.action_preview()

    @on(Button.Pressed, "#import-preview-button")
    def _preview_pressed(self) -> None:
        self.action_preview()

    @on(Button.Pressed, "#import-button")
    def _import_pressed(self) -> None:
        self.action_run_import()

    @on(Button.Pressed, "#import-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    # ---- actions ----------------------------------------------------------------------------

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_preview(self) -> None:
        self._start(dry_run=True)

    def action_run_import(self) -> None:
        if self.deck.read_only:
            self.notify("Read-only: nothing can be imported.", severity="warning")
            return
        self._start(dry_run=False)

    def _start(self, *, dry_run: bool) -> None:
        if self.busy:
            return
        if not self.path_text:
            self.show_error("Give the path of a configuration file.")
            return
        self.busy = True
        self._set_buttons()
        self.show_error("")
        self.run_import(self.path_text, self.on_conflict, dry_run=dry_run)

    def _set_buttons(self) -> None:
        for button in self.query(Button):
            if button.id != "import-cancel":
                button.disabled = self.busy

    @work(group="import", exit_on_error=False)
    async def run_import(self, path: str, on_conflict: ConflictPolicy, *, dry_run: bool) -> None:
        try:
            ops = self.deck.ops
            if ops is None:
                self.show_error("The dashboard is still starting: try again in a moment.")
                return
            try:
                document = await asyncio.to_thread(read_file, path)
                report = await ops.import_servers(
                    document, dry_run=dry_run, on_conflict=on_conflict, actor=self.deck.actor
                )
            except Exception as error:  # every refusal is one line under the path
                # What was shown was another file's: it must not pass for this one's.
                self.clear_report()
                self.show_error(describe_error(error))
                if not dry_run:
                    self.notify(
                        "Nothing was imported.", title="Import failed", severity="error", timeout=4
                    )
                return
            self.show_report(report)
            if not dry_run:
                self.notify(f"Imported: {report_summary(report)}.", markup=False, timeout=6)
                self.dismiss(report)
        finally:
            self.busy = False
            if self.is_attached:
                self._set_buttons()

    def show_report(self, report: ImportReport) -> None:
        self.report = report
        table = self.query_one("#import-table", DataTable)
        table.clear()
        for index, item in enumerate(report.items):
            renamed = item.name != item.source_name
            table.add_row(
                Text(item.source_name),
                Text(item.name, style="bold" if renamed else ""),
                Text(item.action, style=ACTION_STYLES.get(item.action, "")),
                Text(item_message(item), style="dim"),
                key=f"{index}:{item.source_name}",
            )
        table.display = True
        sections = ", ".join(report.sections) or "nothing"
        lead = "Preview" if report.dry_run else "Done"
        self.query_one("#import-summary", Label).update(
            f"{lead} ({sections}): {report_summary(report)}"
        )
