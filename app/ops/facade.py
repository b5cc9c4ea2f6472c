"""The operations facade in this process: every user-visible action is one method here.

`LocalOperations` implements the `Operations` protocol (app/ops/protocol.py) over storage and,
when this process runs one, the supervisor; `app/ops/remote.py` implements it over HTTP when a
daemon runs instead. It is composed of parts by job (servers, control, calls, bulk, built-ins,
analytics, process history, interchange, alerts, profiles, tokens, clients), each in its own
module.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.core.changes import ChangeBus
from app.core.settings import Settings
from app.ops.alerts import AlertOperations
from app.ops.analytics import AnalyticsOperations
from app.ops.base import JobRunner, Runtime, UsageSink
from app.ops.builtins import BuiltinOperations, builtin_server_spec
from app.ops.bulk import BulkOperations
from app.ops.calls import CallOperations
from app.ops.clients import ClientOperations
from app.ops.interchange import InterchangeOperations
from app.ops.nodes import NodeOperations
from app.ops.oauth import OAuthOperations
from app.ops.process_history import ProcessHistoryOperations
from app.ops.profiles import ProfileOperations
from app.ops.protocol import ReadOperations
from app.ops.read_thread import ReadThread
from app.ops.tokens import TokenOperations
from app.runtime.call_latency import CallLatency
from app.runtime.gateway_sessions import GatewaySessions
from app.runtime.node_credentials import NodeKeys
from app.runtime.peers import PeerLinks
from storage.db import Database
from storage.models import ServerTool, ToolServer

__all__ = ["JobRunner", "LocalOperations", "Runtime", "UsageSink", "builtin_server_spec"]


class LocalOperations(
    CallOperations,
    BulkOperations,
    BuiltinOperations,
    ClientOperations,
    AnalyticsOperations,
    ProcessHistoryOperations,
    InterchangeOperations,
    AlertOperations,
    ProfileOperations,
    TokenOperations,
    OAuthOperations,
    NodeOperations,
):
    """The facade over storage and (when present) the runtime."""

    # Wired by app.ops.bootstrap.running_core; absent in a process that runs no servers.
    scheduler: JobRunner | None = None
    recorder: UsageSink | None = None
    # On a fleet: links to the servers other nodes run, and the keys nodes prove themselves by.
    peers: PeerLinks | None = None
    node_keys: NodeKeys | None = None

    def __init__(
        self,
        db: Database,
        settings: Settings,
        runtime: Runtime | None = None,
        *,
        recorder: UsageSink | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.runtime = runtime
        self.recorder = recorder
        # Who wants to know that servers or tools changed: the gateway, the dashboard.
        self.changes = ChangeBus()
        self._routes: dict[tuple[str, str], tuple[ToolServer, ServerTool]] = {}
        # Durations of this process's calls per tool, for Prometheus histograms.
        self.call_latency = CallLatency()
        # The client sessions of the gateway this process runs, if it runs one.
        self.gateway_sessions = GatewaySessions()
        self.changes.subscribe(self._forget_routes)

    @property
    def supervised(self) -> bool:
        return self.runtime is not None

    @asynccontextmanager
    async def open_reader(self) -> AsyncIterator[ReadOperations]:
        url, settings = self.db.url, self.settings

        @asynccontextmanager
        async def replica() -> AsyncIterator[ReadOperations]:
            # Its own engine: connections belong to the loop that opened them.
            ops = LocalOperations(
                Database(
                    url,
                    pool_size=settings.database_pool_size,
                    max_overflow=settings.database_max_overflow,
                ),
                settings,
            )
            try:
                yield ops
            finally:
                await ops.db.dispose()

        reader = ReadThread(replica)
        await asyncio.to_thread(reader.start)
        try:
            yield reader
        finally:
            await asyncio.to_thread(reader.stop)
