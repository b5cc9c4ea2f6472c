"""`tooldeck client-config claude|cursor|vscode [--http]`: what to paste into an MCP
client's configuration so that it reaches the gateway, in the form that client's file accepts.

- Claude Desktop's `claude_desktop_config.json` takes only servers it launches as commands
  (`command`, `args`, `env`); a `url` entry is dropped or breaks the file. Its remote servers are
  added in the app (Settings > Connectors) and reached from Anthropic's cloud, which cannot see a
  daemon on this machine. So Claude always gets `tooldeck gateway --stdio`, which forwards to the
  daemon while one runs and supervises the data dir itself otherwise.
- Cursor's `mcp.json` takes a remote server as `url` plus `headers`.
- VS Code's `mcp.json` takes `"type": "http"` with `url` and `headers`.

An HTTP entry carries a gateway token made for that client (named after it, bound to the
profile when the entry is a profile's): it reaches the MCP gateway only, so the file never holds
the admin token, and revoking it cuts off that one client. Asking again replaces it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from app.cli.common import actor, cli_settings, fail
from app.cli.gateway_cmd import add_view_arguments, view_of
from app.core.access import IssuedToken
from app.core.errors import Conflict, TooldeckError
from app.core.settings import Settings, resolve_data_dir
from app.faces.daemon import url_host
from app.ops.attach import open_facade, running_daemon

CLIENTS = ("claude", "cursor", "vscode")
WHERE = {
    "claude": "Claude Desktop's claude_desktop_config.json",
    "cursor": "Cursor's ~/.cursor/mcp.json (or .cursor/mcp.json in a project)",
    "vscode": "VS Code's .vscode/mcp.json (or the user mcp.json)",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = subparsers.add_parser(
        "client-config",
        help="the snippet that points an MCP client at the gateway",
        description="Print the entry to paste into an MCP client's configuration file, in the "
        "form that client accepts. Claude Desktop's file takes only launched (stdio) servers, "
        "so its entry always runs `tooldeck gateway --stdio`, which forwards to a running "
        "daemon; Cursor and VS Code can connect to the daemon's /mcp over HTTP (--http).",
    )
    config.add_argument("client", choices=CLIENTS)
    config.add_argument(
        "--http",
        action="store_true",
        help="connect to the running daemon's /mcp over HTTP (Cursor, VS Code; Claude Desktop "
        "gets the stdio entry, which forwards to the daemon)",
    )
    add_view_arguments(config)
    # The entry always carries a gateway token of its own now; kept for scripts that pass it.
    config.add_argument("--reveal", action="store_true", help=argparse.SUPPRESS)
    config.set_defaults(command_runner=print_client_config)


def stdio_entry(
    data_dir: Path, kind: str = "aggregated", name: str | None = None
) -> dict[str, Any]:
    # The console script beside this interpreter: clients do not share the shell's PATH.
    script = Path(sys.executable).parent / "tooldeck"
    command = str(script) if script.exists() else shutil.which("tooldeck") or sys.executable
    entry_args = ["gateway", "--stdio"]
    if kind != "aggregated" and name:
        entry_args += [f"--{kind}", name]
    if command == sys.executable:
        entry_args = ["-m", "app", *entry_args]
    # The client starts the command with its own environment: name the data dir explicitly.
    return {"command": command, "args": entry_args, "env": {"TOOLDECK_HOME": str(data_dir)}}


async def gateway_url(settings: Settings, path: str = "/mcp") -> tuple[str, bool]:
    """The gateway's URL: the running daemon's (True), else where one would listen (False)."""
    daemon = await running_daemon(settings)
    if daemon is not None and daemon.url:
        return f"{daemon.url.rstrip('/')}{path}", True
    return f"http://{url_host(settings.host)}:{settings.port}{path}", False


def print_client_config(args: argparse.Namespace) -> int:
    settings = cli_settings(args)
    kind, name = view_of(args)
    key = "tooldeck" if name is None else f"tooldeck-{name}"
    notes: list[str] = [f"for {WHERE[args.client]}"]
    if not args.http or args.client == "claude":
        entry = stdio_entry(resolve_data_dir(args.data_dir), kind, name)
        if args.http:
            notes.append(
                "Claude Desktop's file takes only servers it launches, not a URL: this entry "
                "runs `tooldeck gateway --stdio`, which forwards to the daemon while one runs"
            )
        document = _document(args.client, key, entry, "stdio")
        _print(document, notes)
        return 0

    path = "/mcp" if name is None else f"/mcp/{kind}s/{quote(name, safe='')}"
    url, running = asyncio.run(gateway_url(settings, path))
    if not running:
        if settings.port == 0:
            return fail("no daemon is running and TOOLDECK_PORT is 0: start it to learn its port")
        notes.append(f"no daemon is running: {url} is where `tooldeck --headless` will listen")
    profile = name if kind == "profile" else None
    token_name = f"{args.client}-{name}"[:64] if name else args.client
    try:
        issued, replaced = asyncio.run(_gateway_token(settings, token_name, profile))
    except TooldeckError as exc:
        return fail(str(exc))
    secret = issued.token
    reach = f"/mcp/profiles/{profile}" if profile else "the gateway (/mcp) only"
    notes.append(
        f"a gateway token named {token_name!r} is written in: it reaches {reach}; "
        f"`tooldeck token revoke {token_name}` cuts this client off"
    )
    if replaced:
        notes.append(f"the token {token_name!r} made before for this client no longer works")
    entry = {"url": url, "headers": {"Authorization": f"Bearer {secret}"}}
    document = _document(args.client, key, entry, "http")
    _print(document, notes)
    return 0


async def _gateway_token(
    settings: Settings, name: str, profile: str | None
) -> tuple[IssuedToken, bool]:
    """A new gateway token for a client, replacing the one made before for it (its value was
    shown once and is known nowhere now); a token of another scope by that name is kept."""
    async with open_facade(settings) as ops:
        existing = {token.name: token for token in await ops.list_tokens()}
        replaced = name in existing
        if replaced:
            if existing[name].scope != "gateway":
                raise Conflict(
                    f"a {existing[name].scope} token is named {name!r}: revoke it first "
                    f"(`tooldeck token revoke {name}`)"
                )
            await ops.revoke_token(name, actor=actor())
        data = {"name": name, "scope": "gateway", "profile": profile}
        return await ops.add_token(data, actor=actor()), replaced


def _document(client: str, key: str, entry: dict[str, Any], kind: str) -> dict[str, Any]:
    if client == "vscode":
        return {"servers": {key: {"type": kind, **entry}}}
    return {"mcpServers": {key: entry}}


def _print(document: dict[str, Any], notes: list[str]) -> None:
    print(json.dumps(document, indent=2))
    # The notes go to stderr: stdout stays the bare JSON for `> file` and `| jq`.
    for note in notes:
        print(f"# {note}", file=sys.stderr)
