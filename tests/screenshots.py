"""`make screenshots`: SVGs of the real dashboard on the demo fleet, in screenshots/.

    python -m tests.screenshots [--out DIR] [NAME ...]

Each shot opens the app on a fresh copy of the demo data dir (servers in every state, 30 days
of usage), with the demo's fixed clock, presses its keys and waits for the screen's reads before
saving. The snapshot tests drive the same shots, so what the README shows is what is tested.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable

from app.core.settings import Settings, load_settings
from app.ops.bootstrap import open_operations
from app.tui.app import TooldeckApp
from app.tui.base import still_cursors
from app.tui.screens.main import MainScreen
from tests.demo_data import DEMO_NOW, build_demo, demo_sessions
from tests.runtime_helpers import eventually
from tests.tui_helpers import settle
from widgets.status_bar import LinkState

REPO = Path(__file__).resolve().parent.parent
# The demo is its own world: no built-in servers seeded, none rewritten to this machine's paths.
# A fixed node name: the default, the host name, would show in the server form's placement.
DEMO_FLAGS: dict[str, Any] = {"mcp_enabled": False, "node": "deck"}


@dataclass(frozen=True)
class Shot:
    name: str
    title: str
    size: tuple[int, int] = (120, 36)
    keys: tuple[str, ...] = ()
    read_only: bool = False
    # The dashboard as it looks attached to a daemon that stopped answering (the behaviour
    # itself is tested against a real daemon in tests/test_http_tui_attach.py).
    link: LinkState | None = None
    # The demo's gateway sessions (tests/demo_data.py), as an attached daemon reports them.
    gateway: bool = False


SHOTS: tuple[Shot, ...] = (
    Shot("main", "The dashboard"),
    Shot("main-80x24", "The dashboard at 80x24", size=(80, 24)),
    Shot(
        "marks",
        "Three servers marked, sorted by errors",
        keys=("E", "space", "space", "space"),
    ),
    Shot("filter", "Filtered with /", keys=("slash", "g", "i", "t", "enter")),
    Shot("tools", "The tools of the highlighted server", keys=("down", "down", "tab")),
    Shot("help", "Help: every key of the screen", keys=("question_mark",)),
    Shot("new-server", "Adding a server", keys=("n",)),
    Shot("form-errors", "Inline validation", keys=("n", "B", "a", "d", "ctrl+s")),
    Shot("discard-form", "esc on a filled form asks first", keys=("n", *"notes-2", "escape")),
    Shot("edit-server", "Editing a server, secrets masked", keys=("down", "down", "e")),
    Shot("delete", "Delete asks first", keys=("space", "down", "space", "ctrl+d")),
    Shot(
        "call-tool",
        "Calling a tool from its schema",
        keys=("tab", "down", "down", "c", *"(2+3)*4"),
    ),
    Shot("analytics", "Analytics over 30 days", keys=("4", "a")),
    Shot("analytics-7d-80x24", "Analytics over 7 days at 80x24", size=(80, 24), keys=("3", "a")),
    Shot("events", "Events", keys=("v",)),
    Shot("event-detail", "An event read whole", keys=("v", *"jjjjjjjj", "enter")),
    Shot("alerts", "Open and resolved alerts", keys=("exclamation_mark", "t")),
    Shot("audit", "The audit trail: who changed what", keys=("u", "down", "down", "down")),
    Shot("details", "Server details", keys=("E", "g", "enter")),
    Shot("log", "A server's stderr", keys=("E", "g", "l")),
    Shot("palette", "The command palette", keys=("ctrl+p", "r", "e", "s")),
    Shot("profiles", "Gateway profiles and what their tool lists cost", keys=("p",)),
    Shot(
        "profile-form",
        "A profile's form: checked as typed, with its tools previewed",
        keys=("p", "n", *"Bad", "tab", "tab", "tab", *" !*/create_*"),
    ),
    Shot("tokens", "API tokens: who may do what, and when each was last used", keys=("o", "down")),
    Shot(
        "clients",
        "Gateway clients: who is connected, and what each calls",
        keys=("w",),
        gateway=True,
    ),
    Shot("clients-80x24", "Gateway clients at 80x24", size=(80, 24), keys=("w",), gateway=True),
    Shot(
        "client-detail", "One client and the tools it calls most", keys=("w", "enter"), gateway=True
    ),
    Shot(
        "client-detail-80x24",
        "One client at 80x24",
        size=(80, 24),
        keys=("w", "down", "enter"),
        gateway=True,
    ),
    Shot("profiles-80x24", "Gateway profiles at 80x24", size=(80, 24), keys=("p",)),
    Shot("tokens-80x24", "API tokens at 80x24", size=(80, 24), keys=("o", "down")),
    # The demo's tools were all called within the week: the last day's window has some to trim.
    Shot(
        "trim",
        "Trim: unused tools, the context each costs, two marked",
        keys=("z", "d", "d", "space", "space"),
    ),
    Shot("trim-80x24", "Trim at 80x24", size=(80, 24), keys=("z", "d", "d", "space")),
    Shot(
        "trim-confirm",
        "Disabling the marked tools asks first",
        keys=("z", "d", "d", "space", "space", "minus"),
    ),
    Shot("alert-rules", "Alert rules: thresholds and hooks, saved to config.toml", keys=("m",)),
    Shot(
        "alert-rules-80x24",
        "Alert rules at 80x24, a bad value named beside its field",
        size=(80, 24),
        keys=("m", "backspace", "backspace", "0"),
    ),
    Shot(
        "server-limits",
        "Limits and run-as in the server form, checked beside each field",
        keys=("down", "down", "e", *["tab"] * 15, "0", "ctrl+s"),
    ),
    Shot(
        "server-limits-80x24",
        "The server form's limits at 80x24",
        size=(80, 24),
        keys=("down", "down", "e", *["tab"] * 23, *"nobody-here", "ctrl+s"),
    ),
    Shot("read-only", "Read-only mode", read_only=True),
    Shot(
        "daemon-unreachable",
        "Attached to a daemon that stopped answering",
        link=LinkState(mode="attached", where="http://127.0.0.1:8765", unreachable=True),
    ),
)


def demo_settings(home: Path) -> Settings:
    return load_settings(home, DEMO_FLAGS)


async def build_demo_home(home: Path) -> int:
    ops = await open_operations(demo_settings(home))
    try:
        fleet = await build_demo(ops)
    finally:
        await ops.db.dispose()
    return fleet.usage_rows


def copy_home(template: Path, home: Path) -> Path:
    shutil.copytree(template, home, dirs_exist_ok=True)
    return home


def demo_app(home: Path, shot: Shot) -> TooldeckApp:
    return TooldeckApp(
        demo_settings(home),
        read_only=shot.read_only,
        with_runtime=False,
        clock=lambda: DEMO_NOW,
        cursor_blink=False,
        refresh_interval=3600.0,
    )


async def ready(pilot: Pilot[Any], within: float = 20.0) -> None:
    """Wait until the main screen shows the fleet and the highlighted server's detail."""

    async def loaded() -> bool:
        await settle(pilot)
        screen = pilot.app.screen
        return isinstance(screen, MainScreen) and screen.loaded

    await eventually(loaded, within=within)


def driver(keys: Sequence[str], link: LinkState | None = None, gateway: bool = False) -> Any:
    """A `run_before` for snapshot tests and shots: load, press the keys, wait for reads."""

    async def drive(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        if gateway:
            pilot.app.ops.gateway_sessions.register(demo_sessions)
        for key in keys:
            await pilot.press(key)
            await settle(pilot, rounds=1)
        if link is not None:
            app = pilot.app
            assert isinstance(app, TooldeckApp)
            app.show_link(link)
        await settle(pilot)
        await tables_laid_out(pilot)
        # The dashboard's screens hold their cursors still when asked to; the command palette
        # is Textual's own screen and blinks regardless, so a shot taken half a second after
        # the last key lost the cursor cell after the search text.
        still_cursors(pilot.app.screen)

    return drive


async def tables_laid_out(pilot: Pilot[Any]) -> None:
    """Wait until every table of the screen has sized its columns.

    A DataTable measures auto-width columns on its next idle; under load a capture could come
    first and show them at their header's width. (Textual keeps the flag private.)
    """

    async def laid_out() -> bool:
        await pilot.pause()
        tables = pilot.app.screen.query(DataTable)
        return not any(table._require_update_dimensions for table in tables)

    await eventually(laid_out, within=10, every=0.02)


async def take(home: Path, shot: Shot) -> str:
    app = demo_app(home, shot)
    async with app.run_test(size=shot.size) as pilot:
        await driver(shot.keys, shot.link, shot.gateway)(pilot)
        svg = app.export_screenshot(title=f"Tooldeck · {shot.title}")
        await app.action_quit()
    return svg


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "screenshots")
    parser.add_argument("names", nargs="*", help="only these shots")
    args = parser.parse_args(argv)
    chosen = [shot for shot in SHOTS if not args.names or shot.name in args.names]
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tooldeck-demo-") as scratch:
        template = Path(scratch) / "template"
        rows = asyncio.run(build_demo_home(template))
        print(f"demo fleet: {rows} usage rows over 30 days", file=sys.stderr)
        for index, shot in enumerate(chosen):
            home = copy_home(template, Path(scratch) / f"shot-{index}")
            svg = asyncio.run(take(home, shot))
            target = args.out / f"{shot.name}.svg"
            target.write_text(svg)
            print(f"wrote {target.relative_to(REPO) if target.is_relative_to(REPO) else target}")
        if not args.names or WEB_SHOT in args.names:
            write_web_shot(args.out, Path(scratch) / WEB_SHOT)
    return 0


WEB_SHOT = "web"


def write_web_shot(out: Path, home: Path) -> None:
    """`tooldeck web` in headless Chromium, as PNG: a browser's page is no SVG."""
    from tests.web_browser import chromium_missing, web_screenshot

    missing = chromium_missing()
    if missing is not None:
        print(f"skipped {WEB_SHOT}.png: {missing}", file=sys.stderr)
        return
    home.mkdir(parents=True)
    target = out / f"{WEB_SHOT}.png"
    target.write_bytes(asyncio.run(web_screenshot(home)))
    print(f"wrote {target.relative_to(REPO) if target.is_relative_to(REPO) else target}")


if __name__ == "__main__":
    sys.exit(main())
