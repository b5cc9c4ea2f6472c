"""The facade's runtime operations: they need a supervisor in this process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from app.core.errors import InvalidInput
from app.core.schemas import (
    JobStatus,
    ProbeReport,
    ServerHealth,
    ServerRuntimeInfo,
    ToolServerCreate,
    ToolServerResponse,
)
from app.ops.base import MASKABLE, OpsBase, keep_masked_fields, validated
from storage.queries import find_server


class ControlOperations(OpsBase):
    """What needs the supervisor: start, stop, restart, refresh, health, logs, jobs, probe."""

    async def start_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        return await self._run_on_runtime(ref, actor, "start")

    async def stop_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        return await self._run_on_runtime(ref, actor, "stop")

    async def restart_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        return await self._run_on_runtime(ref, actor, "restart")

    async def refresh_tools(self, ref: str, *, actor: str) -> ToolServerResponse:
        return await self._run_on_runtime(ref, actor, "refresh_tools")

    async def _run_on_runtime(self, ref: str, actor: str, verb: str) -> ToolServerResponse:
        server = await self.get_server(ref)
        runtime = self._require_runtime()
        method: Callable[..., Awaitable[Any]] = getattr(runtime, verb)
        await method(server.id, actor=actor)
        return await self.get_server(server.id)

    async def check_health(self, ref: str) -> ServerHealth:
        """Probe a server now (ping, or a tool listing where ping is missing)."""
        server = await self.get_server(ref)
        return await self._require_runtime().check_health(server.id)

    async def runtime_info(self, ref: str) -> ServerRuntimeInfo:
        """Its process (pid, RSS, CPU), uptime, last probe latency and next retry."""
        server = await self.get_server(ref)
        return await self._require_runtime().runtime_info(server.id)

    async def log_tail(self, ref: str, lines: int = 100) -> list[str]:
        """The last lines of a server's stderr: from the node that runs it when another one does;
        here, live from the supervisor, else its log file."""
        if not 1 <= lines <= 10_000:
            raise InvalidInput("use a number from 1 to 10000", field="lines")
        server = await self.get_server(ref)
        if self.peers is not None:
            from app.runtime.peer_logs import owner_log_tail

            remote = await owner_log_tail(
                self.db,
                server_id=server.id,
                server_name=server.name,
                node=self.peers.node,
                credential=self.peers.credential,
                lease_s=self.peers.lease_s,
                lines=lines,
            )
            if remote is not None:
                return remote
        if self.runtime is not None:
            return await self.runtime.log_tail(server.id, lines)
        from app.runtime.serverlog import log_path, read_log_tail

        path = log_path(self.settings, server.name)
        return await asyncio.to_thread(read_log_tail, path, lines)

    async def scheduler_jobs(self) -> list[JobStatus]:
        return self._require_scheduler().status()

    async def run_job(self, name: str) -> JobStatus:
        return await self._require_scheduler().run_now(name)

    async def probe(self, target: str | ToolServerCreate | dict[str, Any]) -> ProbeReport:
        source: Any
        if isinstance(target, str):
            async with self.db.read() as session:
                source = await self._server(session, target)
        else:
            source = validated(ToolServerCreate, target)
            async with self.db.read() as session:
                saved = await find_server(session, source.name)
            if saved is not None:
                # A form filled from a masked GET sends the masks back: use the stored secrets.
                kept = keep_masked_fields(source.model_dump(include=MASKABLE), saved)
                source = source.model_copy(update=kept)
        from app.runtime.probe import probe

        return await probe(
            source,
            startup_timeout=source.startup_timeout_s,
            call_timeout=self.settings.health_check_timeout_s,
        )
