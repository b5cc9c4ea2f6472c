"""`tooldeck client-config claude|cursor|vscode [--http] [--reveal]`: what to paste into an MCP
client's configuration so that it reaches the gateway, in the form that client's file accepts.

- Claude Desktop's `claude_desktop_config.json` takes only servers it launches as commands
  (`command`, `args`, `env`); a `url` entry is dropped or breaks the file. Its remote servers are
  added in the app (Settings > Connectors) and reached from Anthropic's cloud, which cannot see a
  daemon on this machine. So Claude always gets `tooldeck gateway --stdio`, which forwards to the
  daemon while one runs and supervises the data dir itself otherwise.
- Cursor's `mcp.json` takes a remote server as `url` plus `headers`.
- VS Code's `mcp.json` takes `"type": "http"` with `url` and `headers`, and `inputs` it prompts
  for once and keeps in its secret storage: the token need not be written into the file.
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

from app.cli.common import cli_settings, fail
from app.cli.gateway_cmd import add_view_arguments, view_of
from app.core.schemas import MASK
from app.core.settings import Settings, resolve_data_dir
from app.faces.daemon import url_host
from app.ops.attach import running_daemon
from app.runtime.api_token import read_token, token_path

CLIENTS = ("claude", "cursor", "vscode")
WHERE = {
    "claude": "Claude Desktop's claude_desktop_config.json",
    "cursor": "Cursor's ~/.cursor/mcp.json (or .cursor/mcp.json in a project)",
    "vscode": "VS Code's .vscode/mcp.json (or the user mcp.json)",
}
VSCODE_TOKEN_INPUT = "tooldeck-token"


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
    config.add_argument(
        "--reveal",
        action="store_true",
        help="write the API token itself into an HTTP entry (default: masked for Cursor, "
        "asked for by VS Code)",
    )
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
    token = None
    if args.reveal:
        try:
            token = read_token(settings.data_dir)
        except OSError as exc:
            return fail(f"cannot read {token_path(settings.data_dir)}: {exc.strerror or exc}")
        if token is None:
            # Never made here: a new token would not be the one a daemon elsewhere checks.
            return fail(
                f"no API token in {settings.data_dir} yet: the daemon makes it at its first start"
            )
    inputs: list[dict[str, Any]] = []
    if token is not None:
        secret = token
    elif args.client == "vscode":
        secret = f"${{input:{VSCODE_TOKEN_INPUT}}}"
        inputs.append(
            {
                "type": "promptString",
                "id": VSCODE_TOKEN_INPUT,
                "description": "Tooldeck's API token (`tooldeck token show`)",
                "password": True,
            }
        )
        notes.append("VS Code asks for the token once (`tooldeck token show`) and keeps it")
    else:
        secret = MASK
        notes.append("the token is masked: put in `tooldeck token show`, or add --reveal")
    entry = {"url": url, "headers": {"Authorization": f"Bearer {secret}"}}
    document = _document(args.client, key, entry, "http")
    if inputs:
        document = {"inputs": inputs, **document}
    _print(document, notes)
    return 0


def _document(client: str, key: str, entry: dict[str, Any], kind: str) -> dict[str, Any]:
    if client == "vscode":
        return {"servers": {key: {"type": kind, **entry}}}
    return {"mcpServers": {key: entry}}


def _print(document: dict[str, Any], notes: list[str]) -> None:
    print(json.dumps(document, indent=2))
    # The notes go to stderr: stdout stays the bare JSON for `> file` and `| jq`.
    for note in notes:
        print(f"# {note}", file=sys.stderr)
