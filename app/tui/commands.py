"""The command palette (`ctrl+p`): every operation by name.

Two kinds of entries: the main screen's actions ("Restart", applied to the marked rows or the
cursor row, as the key would), and the same verbs named for each server ("Restart calculator"),
so a server can be acted on without finding it in the table. In read-only mode nothing that
changes state is offered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

from app.core.errors import TooldeckError
from app.core.periods import PERIOD_NAMES
from app.core.schemas import ServerToolResponse
from app.tui.base import Deck, deck_of
from app.tui.screens.main import MainScreen
from widgets import formatting as fmt
from widgets.server_table import ServerRow


@dataclass(frozen=True)
class DeckCommand:
    name: str
    help: str
    action: str  # an action of the main screen
    mutating: bool = False


COMMANDS: tuple[DeckCommand, ...] = (
    DeckCommand("New server", "Add a server with the form (n)", "new_server", True),
    DeckCommand("Edit server", "Change the cursor row's server (e)", "edit_server", True),
    DeckCommand("Server details", "Everything about the cursor row's server (enter)", "details"),
    DeckCommand(
        "Delete servers", "Delete the marked servers, after asking (ctrl+d)", "delete", True
    ),
    DeckCommand("Start servers", "Start the marked servers or the cursor row (s)", "start", True),
    DeckCommand("Stop servers", "Stop the marked servers or the cursor row (x)", "stop", True),
    DeckCommand(
        "Restart servers", "Restart the marked servers or the cursor row (r)", "restart", True
    ),
    DeckCommand(
        "Enable servers", "Enable the marked servers or the cursor row (+)", "enable", True
    ),
    DeckCommand(
        "Disable servers", "Disable the marked servers or the cursor row (-)", "disable", True
    ),
    DeckCommand("Refresh tools", "List the tools again (f)", "refresh_tools", True),
    DeckCommand(
        "Check health now", "Probe the marked servers or the cursor row (h)", "health_check", True
    ),
    DeckCommand("Server log", "The cursor row's stderr, followed (l)", "log"),
    DeckCommand("Analytics", "Top tools, failing tools, usage and latency charts (a)", "analytics"),
    DeckCommand("Events", "Every event, filtered by server or kind (v)", "events"),
    DeckCommand("Alerts", "Open alerts, resolved ones, acknowledge (!)", "alerts"),
    DeckCommand("Audit trail", "Who changed what and when, before and after (u)", "audit"),
    DeckCommand(
        "Gateway profiles",
        "Named sets of servers and tools, each its own MCP endpoint, with their context cost (p)",
        "profiles",
    ),
    DeckCommand(
        "API tokens",
        "Named tokens with a scope: who may do what over HTTP, and when each was last used (o)",
        "tokens",
    ),
    DeckCommand(
        "Gateway clients",
        "Who is connected to the gateway now, and what each client calls (w)",
        "clients",
    ),
    DeckCommand(
        "Trim unused tools",
        "Enabled tools nobody called lately, what each costs in context; disable them (z)",
        "trim",
    ),
    DeckCommand(
        "Alert rules",
        "Alert thresholds and hooks, checked as typed, saved to config.toml (m)",
        "alert_rules",
    ),
    DeckCommand(
        "Nodes",
        "The daemons sharing this database: alive or down, servers each runs, last heartbeat",
        "nodes",
    ),
    DeckCommand(
        "Import configuration",
        "Import servers from Claude Desktop, Cursor or VS Code's file (i)",
        "import_config",
        True,
    ),
    DeckCommand("Filter", "Filter the focused table (/)", "filter"),
    DeckCommand("Clear filter and marks", "Clear the filter, then the marks (esc)", "clear"),
    DeckCommand("Toggle tool", "Enable or disable the highlighted tool (t)", "toggle_tool", True),
    DeckCommand(
        "Toggle bypass",
        "Bypass the highlighted tool when its server is down (b)",
        "toggle_bypass",
        True,
    ),
    DeckCommand("Call tool", "Call the highlighted tool with a form (c)", "call_tool", True),
    *(
        DeckCommand(f"Period {period}", f"Show usage over the last {period}", f"period('{period}')")
        for period in PERIOD_NAMES
    ),
)

# Verbs offered per server by name; `action` is a bulk operation or a screen method.
SERVER_VERBS: tuple[tuple[str, str, bool], ...] = (
    ("Start", "start", True),
    ("Stop", "stop", True),
    ("Restart", "restart", True),
    ("Enable", "enable", True),
    ("Disable", "disable", True),
    ("Refresh tools of", "refresh", True),
    ("Edit", "edit", True),
    ("Log of", "log", False),
    ("Details of", "details", False),
)
LIVE = frozenset({"running", "degraded", "starting"})


def verb_fits(operation: str, server: ServerRow) -> bool:
    """Whether a verb makes sense for the server as it is: no Start for a running one."""
    if operation == "start":
        return server.enabled and server.status not in LIVE
    if operation == "stop":
        return server.status in LIVE
    if operation == "restart":
        return server.enabled and server.status in {"running", "degraded", "error"}
    if operation == "refresh":
        return server.status in {"running", "degraded"}
    if operation == "enable":
        return not server.enabled
    if operation == "disable":
        return server.enabled
    return True


class OperationsProvider(Provider):
    """Offers the dashboard's operations, and a call of every tool that can be called; runs
    them on the main screen."""

    async def startup(self) -> None:
        """The callable tools, read once when the palette opens."""
        self._tools: list[ServerToolResponse] = []
        ops = self._deck.ops
        if ops is None or self._deck.read_only:
            return
        try:
            self._tools = await ops.list_gateway_tools()
        except TooldeckError:  # no tools to offer; the rest of the palette still works
            return

    def _main(self) -> MainScreen | None:
        for screen in self.app.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        return None

    @property
    def _deck(self) -> Deck:
        return deck_of(self.app)

    def _allowed(self, command: DeckCommand) -> bool:
        return not (command.mutating and self._deck.read_only)

    async def _run(self, action: str) -> None:
        main = self._main()
        if main is None:
            return
        while self.app.screen is not main and len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        await main.run_action(action)

    async def discover(self) -> Hits:
        for command in COMMANDS:
            if self._allowed(command):
                yield DiscoveryHit(
                    command.name, partial(self._run, command.action), help=command.help
                )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in COMMANDS:
            if not self._allowed(command):
                continue
            score = matcher.match(command.name)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(command.name),
                    partial(self._run, command.action),
                    help=command.help,
                )
        main = self._main()
        if main is None or len(query.strip()) < 2:
            return
        read_only = self._deck.read_only
        # (what is offered, what it runs, its help line), for each server and tool by name
        named: list[tuple[str, Callable[[], Any], str]] = []
        for server in main.server_models():
            for verb, operation, mutating in SERVER_VERBS:
                if (mutating and read_only) or not verb_fits(operation, server):
                    continue
                named.append(
                    (
                        f"{verb} {server.name}",
                        partial(main.act_on_server, operation, server.key),
                        f"{server.status}, {server.tools_enabled}/{server.tools_total} tools",
                    )
                )
        for tool in getattr(self, "_tools", []):
            named.append(
                (
                    f"Call {tool.name} on {tool.server_name}",
                    partial(main.call_tool, tool),
                    fmt.truncate(tool.description or "call it with a form", 80),
                )
            )
        for name, run, help_text in named:
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), run, help=help_text)
