"""Shared by the dashboard's tests: a fixed clock, a runtime stand-in, and waiting for workers.

The runtime stand-in replaces the supervisor only where a test is about the dashboard's
behaviour (marks, progress, a hanging action); it speaks no MCP. Tests about calls use the
real supervisor and a real server.
"""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from textual.command import Command, CommandList
from textual.pilot import Pilot
from textual.widgets import Input, Static

from app.core.schemas import ServerHealth, ServerRuntimeInfo
from app.core.settings import Settings
from app.ops.facade import LocalOperations
from app.tui.app import TooldeckApp

FIXED_NOW = datetime(2019, 3, 14, 15, 9, 26, tzinfo=UTC)


class FakeRuntime:
    """Records what it was asked to do; `hang` makes restarts wait until released."""

    def __init__(self, *, hang: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.hang = hang
        self.release = asyncio.Event()

    async def _act(self, verb: str, server_id: str) -> None:
        self.calls.append((verb, server_id))
        if self.hang and verb == "restart":
            await self.release.wait()

    async def start(self, server_id: str, *, actor: str) -> None:
        await self._act("start", server_id)

    async def stop(self, server_id: str, *, actor: str) -> None:
        await self._act("stop", server_id)

    async def restart(self, server_id: str, *, actor: str) -> None:
        await self._act("restart", server_id)

    async def refresh_tools(self, server_id: str, *, actor: str) -> int:
        await self._act("refresh", server_id)
        return 0

    async def intent_changed(self, server_id: str) -> None:
        return None

    async def forget(self, server_id: str) -> None:
        return None

    def is_running(self, server_id: str) -> bool:
        return False

    async def check_health(self, server_id: str) -> ServerHealth:
        await self._act("health", server_id)
        return ServerHealth(
            server_id=server_id,
            server_name=server_id,
            status="running",
            is_running=True,
            is_responsive=True,
            tools_count=0,
            last_check=FIXED_NOW,
            latency_ms=3.0,
        )

    async def runtime_info(self, server_id: str) -> ServerRuntimeInfo:
        return ServerRuntimeInfo(server_id=server_id, server_name=server_id, status="running")

    async def log_tail(self, server_id: str, lines: int = 100) -> list[str]:
        return [f"line {index}" for index in range(5)]


def make_app(settings: Settings, ops: LocalOperations, **options: Any) -> TooldeckApp:
    """The dashboard on an open facade, with a fixed clock and still cursors; no timer refresh
    unless asked, so a test decides when data is read."""
    options.setdefault("clock", lambda: FIXED_NOW)
    options.setdefault("cursor_blink", False)
    options.setdefault("refresh_interval", 3600.0)
    return TooldeckApp(settings, ops=ops, **options)


async def settle(pilot: Pilot[Any], rounds: int = 3) -> None:
    """Wait until the dashboard's workers (not the core's) are done and the screen is idle."""
    app = pilot.app
    for _ in range(rounds):
        await pilot.pause()
        running = [
            worker for worker in app.workers if worker.group != "core" and not worker.is_finished
        ]
        if running:
            await asyncio.wait(
                [asyncio.ensure_future(_quiet(worker.wait())) for worker in running], timeout=20
            )
    await pilot.pause()


def drawn_lines(widget: Any) -> list[str]:
    """A widget's lines as drawn on screen, as plain text."""
    return [
        "".join(segment.text for segment in widget.render_line(y))
        for y in range(widget.size.height)
    ]


def notices(app: Any) -> list[str]:
    """The texts of the notifications shown so far."""
    return [str(notification.message) for notification in app._notifications]


async def palette_search(pilot: Pilot[Any], text: str) -> str:
    """Type into the open command palette; once its search is done, the highlighted command."""
    for key in text:
        await pilot.press({" ": "space"}.get(key, key))
    await settle(pilot)  # the palette searches in a worker
    highlighted = pilot.app.screen.query_one(CommandList).highlighted_option
    assert isinstance(highlighted, Command)
    return str(highlighted.hit.text)


async def _quiet(waiting: Any) -> None:
    try:
        await waiting
    except Exception:  # a failed worker is reported by the app; the test checks what it shows
        return


async def add_servers(ops: LocalOperations, *names: str, **fields: Any) -> list[str]:
    ids = []
    for name in names:
        created = await ops.create_server({"name": name, "command": "true", **fields}, actor="test")
        ids.append(created.id)
    return ids


def copy_tree(source: Path, target: Path) -> None:
    import shutil

    shutil.copytree(source, target, dirs_exist_ok=True)


async def type_ahead(pilot: Pilot[Any], *keys: str) -> None:
    """Keys as a fast typist (or a paste) sends them: all queued before the app reads the
    first, unlike `pilot.press`, which waits for the app to settle after each one."""
    from textual import events

    app = pilot.app
    driver = app._driver
    assert driver is not None
    for key in keys:
        event = events.Key(key, key if len(key) == 1 else None)
        event.set_sender(app)
        driver.send_message(event)
    await settle(pilot)


class PseudoTerminal:
    """A command in a pseudo-terminal of 100x30, as a person's terminal runs it: what it
    writes is gathered in `output`; `send` types."""

    def __init__(self, command: list[str], *, env: dict[str, str]) -> None:
        import fcntl
        import os
        import pty
        import struct
        import subprocess
        import termios

        self.output = b""
        self._master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        self.process = subprocess.Popen(
            command,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "TERM": "xterm-256color", **env},
            cwd=Path(__file__).resolve().parent.parent,
            close_fds=True,
        )
        os.close(slave)
        os.set_blocking(self._master, False)

    def _drain(self) -> None:
        import os

        while True:
            try:
                chunk = os.read(self._master, 65536)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                return
            self.output += chunk

    async def wait_for(self, text: bytes, within: float = 30.0) -> None:
        from tests.runtime_helpers import eventually

        async def shown() -> bool:
            self._drain()
            return text in self.output

        await eventually(shown, within=within)

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def send(self, keys: bytes) -> None:
        import os

        os.write(self._master, keys)

    async def exit_code(self, within: float = 30.0) -> int:
        from tests.runtime_helpers import eventually

        async def ended() -> bool:
            self._drain()
            return self.process.poll() is not None

        await eventually(ended, within=within)
        self._drain()
        return int(self.process.returncode)

    def close(self) -> None:
        import os

        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self._master)


def text_of(widget: Static) -> str:
    """What a Static shows, as plain text."""
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(widget.content)  # type: ignore[arg-type]
    return console.export_text()


async def type_into(pilot: Pilot[Any], field: str, text: str) -> None:
    """Replace an input's text by typing, as a person would."""
    widget = pilot.app.screen.query_one(f"#{field}", Input)
    widget.value = ""
    widget.focus()
    if text:
        await pilot.press(*text)
    await settle(pilot)


def error_of(app: Any, field: str) -> str:
    """The error line under a form's field; "" while it is hidden."""
    label = app.screen.query_one(f"#error-{field}", Static)
    return text_of(label).strip() if label.has_class("-visible") else ""
