"""`tooldeck server login NAME` and `tooldeck server logout NAME`: OAuth for HTTP servers.

The login prints the URL to open. On this machine, a listener on 127.0.0.1 receives the
browser's redirect; over SSH (`--paste`) the browser, elsewhere, lands on a page that does not
load, and the person pastes its address back here.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from urllib.parse import urlsplit

from app.cli.common import actor, add_json_flag, fail, print_json
from app.cli.runtime import _verbs
from app.ops.protocol import Operations

# The redirect of a pasted login: nothing needs to listen there.
PASTE_PORT = 8976
CALLBACK_PATH = "/callback"
DONE_PAGE = (
    b"<!doctype html><title>Tooldeck</title>"
    b"<p>Tooldeck received the authorization. You can close this tab.</p>"
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    server = _verbs(subparsers, "server")
    login = server.add_parser(
        "login",
        help="log in to an OAuth-protected HTTP server",
        description="Print the URL to open in a browser and complete the OAuth login when the "
        "browser comes back: to a listener on 127.0.0.1, or, with --paste (over SSH), by "
        "pasting the address the browser was sent to.",
    )
    login.add_argument("name")
    login.add_argument(
        "--paste", action="store_true", help="paste the redirect URL instead of listening"
    )
    login.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"the redirect's port on 127.0.0.1 (default: any free one; {PASTE_PORT} with --paste)",
    )
    add_json_flag(login)
    login.set_defaults(handler=login_server)

    logout = server.add_parser("logout", help="forget a server's OAuth tokens")
    logout.add_argument("name")
    add_json_flag(logout)
    logout.set_defaults(handler=logout_server)


class RedirectListener:
    """One HTTP server on 127.0.0.1 that waits for the browser's redirect to `/callback`."""

    def __init__(self) -> None:
        self.redirected: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def open(self, port: int) -> str:
        self.server = await asyncio.start_server(self._answer, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}{CALLBACK_PATH}"

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode("latin-1").split()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            target = request_line[1] if len(request_line) >= 2 else ""
            if request_line[:1] == ["GET"] and urlsplit(target).path == CALLBACK_PATH:
                body, status = DONE_PAGE, b"200 OK"
                if not self.redirected.done():
                    self.redirected.set_result(f"http://127.0.0.1:{self.port}{target}")
            else:
                body, status = b"not found", b"404 Not Found"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: text/html; charset=utf-8\r\n"
                b"Content-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
            await writer.drain()
        except (OSError, UnicodeError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def _pasted(prompt: str) -> str:
    print(prompt, end="", flush=True)
    line = await asyncio.to_thread(sys.stdin.readline)
    if not line.strip():
        raise EOFError
    return line.strip()


async def login_server(args: argparse.Namespace, ops: Operations) -> int:
    listener: RedirectListener | None = None
    try:
        if args.paste:
            redirect_uri = f"http://127.0.0.1:{args.port or PASTE_PORT}{CALLBACK_PATH}"
        else:
            listener = RedirectListener()
            try:
                redirect_uri = await listener.open(args.port or 0)
            except OSError as exc:
                return fail(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}")
        started = await ops.begin_login(args.name, redirect_uri, actor=actor())
        print(f"Open this URL in a browser to log in to {started.server}:\n")
        print(f"  {started.authorization_url}\n", flush=True)
        if listener is not None:
            print(f"Waiting for the browser to come back to {redirect_uri} ...", flush=True)
            redirected = await listener.redirected
        else:
            try:
                redirected = await _pasted(
                    "The browser then opens a page that does not load; paste its address here: "
                )
            except EOFError:
                return fail("login cancelled: no redirect URL pasted")
        server = await ops.finish_login(args.name, redirected, actor=actor())
    finally:
        if listener is not None:
            await listener.close()
    if args.json:
        print_json(server)
    else:
        print(f"logged in to {server.name}: {server.status}")
    return 0


async def logout_server(args: argparse.Namespace, ops: Operations) -> int:
    server = await ops.logout_server(args.name, actor=actor())
    if args.json:
        print_json(server)
    else:
        print(f"logged out of {server.name}: {server.status}")
    return 0
