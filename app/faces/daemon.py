"""`tooldeck --headless`: the supervisor, scheduler and usage recorder behind the HTTP API.

Nothing here (or below it) imports Textual: a server under systemd has no terminal to draw on,
and a test checks `sys.modules`.

Start: settings, JSON logs, the data dir's lock (a second daemon refuses, naming the first's
pid), the token, the listening socket (so a busy port fails before any server starts), the
core, then the address is published in the lock for CLIs and dashboards to attach.
Stop (SIGTERM, SIGINT or SIGHUP): stop accepting, give in-flight requests a moment and cancel
the rest, then the core's shutdown flushes usage and stops every server; exit 0. A second
signal cuts the wait for in-flight requests short.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager

from app.core.jsonlog import configure_json_logging
from app.core.settings import Settings, load_settings
from app.core.stop_signals import STOP_SIGNALS
from app.runtime.api_token import TokenStore
from app.runtime.lock import AlreadyRunning, SupervisorLock

log = logging.getLogger("tooldeck.daemon")

# In-flight HTTP requests get this long after a stop signal; the core's own shutdown (flush
# usage, stop servers: a stdio child gets 2 s to leave before SIGTERM) must fit in what is left
# of systemd's 10 s.
HTTP_DRAIN_S = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("headless mode")
    group.add_argument(
        "--headless",
        action="store_true",
        help="run the supervisor, scheduler and HTTP API without the dashboard",
    )
    group.add_argument("--host", help="address to listen on (default 127.0.0.1, TOOLDECK_HOST)")
    group.add_argument(
        "--port", type=int, help="port (default 8765, TOOLDECK_PORT; 0 picks a free one)"
    )
    group.add_argument(
        "--no-auth",
        action="store_true",
        help="serve without the bearer token (refused unless listening on loopback)",
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_host(host: str) -> str:
    """How a client on this machine reaches a daemon bound to `host`."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # The protocol named, not 0: asyncio sets TCP_NODELAY on accepted connections only for a
    # socket whose `proto` says TCP. Without it every answer on a kept-alive connection waited
    # ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def run_headless(args: argparse.Namespace) -> int:
    settings = load_settings(
        args.data_dir, {"data_dir": args.data_dir, "host": args.host, "port": args.port}
    )
    port = settings.port
    if args.no_auth and not is_loopback(settings.host):
        return _fail(
            f"refusing to serve on {settings.host} without auth: anyone who can reach it "
            "could run commands; drop --no-auth or listen on 127.0.0.1"
        )
    log_file = configure_json_logging(settings)
    lock = SupervisorLock(settings.data_dir, "daemon")
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        log.error(str(exc))
        return _fail(str(exc))
    try:
        tokens = None if args.no_auth else TokenStore(settings.data_dir)
        try:
            sock = bind_socket(settings.host, port)
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", settings.host, port, exc.strerror or exc)
            return _fail(f"cannot listen on {settings.host}:{port}: {exc.strerror or exc}")
        if not is_loopback(settings.host):
            log.warning(
                "listening on %s: requests and the bearer token travel unencrypted unless "
                "TLS is put in front",
                settings.host,
            )
            if settings.host in ("0.0.0.0", "::") and not settings.allowed_hosts:
                log.warning(
                    "listening on every address: requests must name this machine by a loopback "
                    "address or one listed in TOOLDECK_ALLOWED_HOSTS, or they are refused"
                )
        log.info(
            "starting",
            extra={"pid": os.getpid(), "data_dir": str(settings.data_dir), "log": str(log_file)},
        )
        return asyncio.run(serve(settings, lock, tokens, sock))
    except Exception:
        # Whatever stopped the daemon goes to its JSON log too, not only to a traceback on a
        # terminal nobody watches under systemd.
        log.exception("the daemon failed")
        return 1
    finally:
        lock.release()


async def serve(
    settings: Settings, lock: SupervisorLock, tokens: TokenStore | None, sock: socket.socket
) -> int:
    # Imported here, not at the top: every CLI verb imports this module for its flags.
    import uvicorn

    from app.faces.gateway.http_face import AsgiApp, HttpCore
    from app.faces.gateway.lean_http import lean_protocol
    from app.faces.gateway.service import running_router, socket_path
    from app.faces.gateway.stdio_face import close_socket, open_socket
    from app.faces.http.access_guard import HostPolicy
    from app.faces.http.api import create_app
    from app.faces.http.middleware import (
        gateway_admission,
        gateway_token_name,
        gateway_too_large,
    )
    from app.faces.http.ops_socket import serve_operations
    from app.ops.bootstrap import running_core
    from app.runtime.access_tokens import Credentials

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            # The daemon handles SIGTERM/SIGINT itself. uvicorn's own handling would re-raise
            # the signal once it stops serving, killing the process before the core flushes
            # usage and stops the servers.
            yield

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    server: uvicorn.Server | None = None

    def on_signal(signum: signal.Signals) -> None:
        if stopping.is_set():
            log.warning("second %s: no more waiting for requests in flight", signum.name)
            if server is not None:
                server.force_exit = True
            return
        log.info("%s: stopping", signum.name)
        stopping.set()
        if server is not None:
            server.should_exit = True

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    own_url = f"http://{url_host(settings.host)}:{sock.getsockname()[1]}"
    try:
        async with (
            running_core(settings, advertise_url=own_url) as ops,
            running_router(ops) as router,
            AsyncExitStack() as gateway_scope,
        ):
            # Host and Origin of `/mcp` are checked by the API's AccessGuard, with the same
            # names as every other path.
            mcp = HttpCore(router, check_hosts=False, stateless=settings.gateway_stateless)
            # The local CLI's way in, as with every supervising face (no token: the socket is
            # private); the HTTP API below is for everyone else.
            await gateway_scope.enter_async_context(serve_operations(ops, lock))
            # Left before the core: MCP sessions end before the servers behind them stop.
            gateway_scope.callback(mcp.close)
            gateway_socket = socket_path(settings.data_dir)
            bridges = await open_socket(router, gateway_socket)
            gateway_scope.push_async_callback(close_socket, bridges, gateway_socket)
            credentials = None if tokens is None else Credentials(tokens, ops.db)
            if credentials is not None:
                # Other nodes forward their clients' calls to this node's servers with these.
                credentials.nodes = ops.node_keys
                ops.changes.subscribe(credentials.on_change)
                mcp.token_namer = gateway_token_name(credentials)
            hosts = HostPolicy(settings.allowed_hosts, listen_host=settings.host)
            # The gateway's paths are answered by a lean protocol without ASGI, after the same
            # checks as the middleware's; the app mounts the same core for what that protocol
            # hands on (see lean_http).
            lean = lean_protocol(
                mcp,
                admit=gateway_admission(hosts, credentials, settings.max_result_bytes),
                max_bytes=settings.max_result_bytes,
                too_large=functools.partial(gateway_too_large, settings.max_result_bytes),
            )
            config = uvicorn.Config(
                create_app(
                    ops,
                    tokens=credentials,
                    mcp_app=AsgiApp(mcp),
                    mcp_max_bytes=settings.max_result_bytes,
                    hosts=hosts,
                ),
                log_config=None,
                access_log=False,  # our middleware writes one JSON line per request instead
                lifespan="off",  # the core's lifetime is this function's, not the app's
                timeout_graceful_shutdown=int(HTTP_DRAIN_S),
                server_header=False,
                http=lean,
            )
            server = Server(config)
            if not stopping.is_set():
                lock.publish(own_url, gateway_socket=str(gateway_socket))
                log.info("listening", extra={"url": own_url, "auth": tokens is not None})
                # What start-up made (the ORM, settings, the catalogue, imported modules) lives
                # as long as the daemon; frozen, it is no longer walked by the collections
                # that the call path's allocations trigger (about a tenth of the daemon's CPU
                # per call at 8 in flight on /mcp).
                gc.collect()
                gc.freeze()
                await server.serve(sockets=[sock])
            log.info("stopping the core: flushing usage, stopping servers")
    finally:
        sock.close()
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
    log.info("stopped")
    return 0


def _fail(message: str) -> int:
    print(f"tooldeck: {message}", file=sys.stderr)
    return 1
