"""`tooldeck web` and a real headless Chromium, driven over its DevTools protocol.

Shared by the browser test (tests/test_web_deck.py) and `make screenshots` (screenshots/web.png).
The page draws the terminal on a canvas, so what the dashboard shows is read where it travels:
the websocket frames the app sends to the page, which Chromium reports to a DevTools client.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.daemon_helpers import daemon_env

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--window-size=1280,800",
)
STARTUP_S = 60.0


def chromium_missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed (`make browser` installs Debian's chromium)"
    return None


def _lines_of(stream: Any) -> queue.Queue[str]:
    """The stream's lines as they come, read on a thread of their own."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _line_with(lines: queue.Queue[str], text: str, what: str, seen: list[str]) -> str:
    while True:
        try:
            line = lines.get(timeout=STARTUP_S)
        except queue.Empty:
            raise AssertionError(f"{what} did not start: {''.join(seen)}") from None
        seen.append(line)
        if text in line:
            return line


@contextmanager
def web_deck(data_dir: Path, *args: str, **env: str) -> Iterator[str]:
    """`tooldeck web --port 0` on `data_dir`; yields its address (http://127.0.0.1:PORT)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "--data-dir", str(data_dir), "web", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=daemon_env(data_dir, **env),
        cwd=REPO,
    )
    try:
        seen: list[str] = []
        line = _line_with(_lines_of(process.stdout), "dashboard is at", "tooldeck web", seen)
        yield line.split("dashboard is at ", 1)[1].split()[0].rstrip("/")
    finally:
        _end(process)


def _end(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Page:
    """One Chromium tab over CDP: commands, and the websocket frames its page exchanges."""

    socket: aiohttp.ClientWebSocketResponse
    received: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    _next_id: int = 0
    _answers: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _loaded: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[self._next_id] = answer
        await self.socket.send_json({"id": self._next_id, "method": method, "params": params})
        reply = await asyncio.wait_for(answer, timeout=STARTUP_S)
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def listen(self) -> None:
        async for message in self.socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if "id" in data:
                waiting = self._answers.pop(data["id"], None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(data)
                continue
            method = data.get("method")
            if method == "Page.loadEventFired":
                self._loaded.set()
            if method in ("Network.webSocketFrameReceived", "Network.webSocketFrameSent"):
                response = data["params"]["response"]
                payload = response["payloadData"]
                if response.get("opcode") == 2:  # binary: base64
                    payload = base64.b64decode(payload).decode("utf-8", "replace")
                target = self.received if method.endswith("Received") else self.sent
                target.append(payload)
                self._changed.set()

    async def navigate(self, url: str) -> None:
        """Open `url` and wait until its page has loaded."""
        self._loaded.clear()
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(self._loaded.wait(), timeout=STARTUP_S)

    async def body_text(self) -> str:
        answer = await self.send("Runtime.evaluate", expression="document.body.innerText")
        return str(answer["result"].get("value", ""))

    def screen_text(self) -> str:
        """Everything the dashboard has drawn so far, escape sequences and all."""
        return "".join(self.received)

    async def wait_for_text(self, text: str, within: float = STARTUP_S) -> None:
        """Until the dashboard has drawn `text` (woken by each frame, never polling)."""
        try:
            async with asyncio.timeout(within):
                while text not in self.screen_text():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            page = await self.body_text()
            raise AssertionError(
                f"{text!r} not drawn in {within:.0f}s; page text {page[:300]!r}, frames sent "
                f"{self.sent[:5]}, drawn {self.screen_text()[-500:]!r}"
            ) from None

    async def type(self, text: str) -> None:
        """Each character as the keypress a keyboard makes: xterm.js turns a keypress into
        the character it sends (a bare key down carries no key code it could map)."""
        for char in text:
            await self.send("Input.dispatchKeyEvent", type="char", key=char, text=char)

    async def screenshot(self) -> bytes:
        """What the tab shows, as PNG."""
        shot = await self.send("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])


@asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Page]:
    """A fresh headless Chromium (its own profile dir) and its first tab."""
    process = _launch_chromium(profile)
    try:
        seen: list[str] = []
        line = await asyncio.to_thread(
            _line_with, _lines_of(process.stderr), "DevTools listening on", "chromium", seen
        )
        endpoint = line.split("DevTools listening on ", 1)[1].strip()
        port = endpoint.split(":")[2].split("/")[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as answer:
                targets = await answer.json(content_type=None)
            [tab] = [target for target in targets if target["type"] == "page"]
            async with http.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=0) as socket:
                page = Page(socket)
                listening = asyncio.create_task(page.listen())
                try:
                    await page.send("Network.enable")
                    await page.send("Page.enable")
                    # A headless tab is never the focused window: without this, the page's
                    # input loses its focus and its keys on the first navigation.
                    await page.send("Emulation.setFocusEmulationEnabled", enabled=True)
                    yield page
                finally:
                    listening.cancel()
                    with suppress(asyncio.CancelledError):
                        await listening
    finally:
        await asyncio.to_thread(_end, process)
        shutil.rmtree(profile, ignore_errors=True)


def _launch_chromium(profile: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HOME": str(profile)},
    )


async def open_deck(page: Page, address: str, token: str) -> None:
    """Sign in with the token and wait until the dashboard has drawn its main screen."""
    await page.navigate(f"{address}/?token={token}")
    await page.wait_for_text("Servers")
    # Keys go to the terminal's input, as a click on the page would focus it.
    await page.send(
        "Runtime.evaluate", expression="document.querySelector('.xterm-helper-textarea').focus()"
    )


async def web_screenshot(home: Path) -> bytes:
    """`make screenshots`' web.png: a small real fleet, all running, in the browser's deck."""
    from app.core.settings import load_settings
    from app.ops.bootstrap import open_operations
    from app.runtime.api_token import load_or_create_token
    from tests.conftest import stdio_server_spec

    env = daemon_env(home)
    ops = await open_operations(load_settings(home, {"mcp_servers": [env["MCP_SERVERS"]]}))
    try:
        for name, script in (("library", "library"), ("notes", "tiny"), ("hungry", "hungry")):
            await ops.create_server(stdio_server_spec(name, script), actor="screenshots")
    finally:
        await ops.db.dispose()
    token = load_or_create_token(home)
    with web_deck(home) as address:
        async with chromium(home.parent / "chromium-profile") as page:
            await open_deck(page, address, token)
            await page.wait_for_text("● 4")
            return await page.screenshot()
