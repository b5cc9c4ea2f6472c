"""`tooldeck web [--host H] [--port P]`: the dashboard in a browser (app.tui.web_deck)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from app.cli.common import cli_settings
from app.core.settings import Settings
from app.core.stop_signals import Stopped, until_stopped
from app.faces.daemon import is_loopback, url_host

WEB_PORT = 8766  # beside the daemon's 8765


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    web = subparsers.add_parser(
        "web",
        help="serve the dashboard to a browser; the page asks for a token",
        description="Serve the dashboard to a browser. Open the address it prints with "
        "?token=<token>: the API token (`tooldeck token show`) or a named token of scope "
        "admin, operator or read (a read token's dashboard hides every action). Each tab runs "
        "its own dashboard, which acts through the daemon when one runs.",
    )
    web.add_argument(
        "--host",
        dest="web_host",
        metavar="HOST",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; another needs --allow-remote)",
    )
    web.add_argument(
        "--port",
        dest="web_port",
        metavar="PORT",
        type=int,
        default=WEB_PORT,
        help=f"port (default {WEB_PORT}; 0 picks a free one)",
    )
    web.add_argument(
        "--allow-remote",
        action="store_true",
        help="listen on a non-loopback address: the token then crosses the network in clear "
        "unless a TLS proxy stands in front",
    )
    web.set_defaults(command_runner=serve_web)


def serve_web(args: argparse.Namespace) -> int:
    settings = cli_settings(args)
    host: str = args.web_host
    if not is_loopback(host) and not args.allow_remote:
        print(
            f"tooldeck: {host} is not a loopback address: add --allow-remote to listen there",
            file=sys.stderr,
        )
        return 2

    async def main() -> int:
        outcome = await until_stopped(_serve(settings, host, args.web_port, args.read_only))
        return 0 if isinstance(outcome, Stopped) else outcome

    return asyncio.run(main())


async def _serve(settings: Settings, host: str, port: int, read_only: bool) -> int:
    from aiohttp import web

    from app.faces.http.access_guard import HostPolicy
    from app.ops.bootstrap import open_database
    from app.runtime.access_tokens import Credentials
    from app.runtime.api_token import TokenStore
    from app.tui.web_deck import WebDeck

    db = await open_database(settings)
    runner: web.AppRunner | None = None
    try:
        credentials = Credentials(TokenStore(settings.data_dir), db)
        deck = WebDeck(
            settings.data_dir,
            credentials,
            HostPolicy(settings.allowed_hosts, listen_host=host),
            host=host,
            port=port,
            read_only=read_only,
        )
        # No access log: the one request that signs in carries the token in its query.
        runner = web.AppRunner(await deck.make_app(), handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            print(f"tooldeck: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
            return 1
        bound = runner.addresses[0][1] if runner.addresses else port
        print(
            f"tooldeck web: the dashboard is at http://{url_host(host)}:{bound}/ ; open it with "
            "?token=<token> (`tooldeck token show` prints the API token)",
            flush=True,
        )
        await asyncio.Event().wait()
        return 0
    finally:
        if runner is not None:
            await runner.cleanup()
        await db.dispose()
