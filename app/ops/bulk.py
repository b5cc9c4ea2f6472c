"""The facade's bulk operation: one closed-set operation over many servers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import or_, select

from app.core.errors import Conflict, InvalidInput, NotFound, NotRunning, plain_error
from app.core.schemas import BulkOperationItem, BulkOperationResult, BulkToolServerOperation
from app.ops.base import validated
from app.ops.control import ControlOperations
from app.ops.servers import ServerOperations
from storage.models import ToolServer

logger = logging.getLogger(__name__)

BULK_CONCURRENCY = 8


class BulkOperations(ControlOperations, ServerOperations):
    """One operation over many servers."""

    async def bulk(
        self, data: BulkToolServerOperation | dict[str, Any], *, actor: str
    ) -> BulkOperationResult:
        request = validated(BulkToolServerOperation, data)
        actions: dict[str, Callable[[str], Awaitable[Any]]] = {
            "start": lambda ref: self.start_server(ref, actor=actor),
            "stop": lambda ref: self.stop_server(ref, actor=actor),
            "restart": lambda ref: self.restart_server(ref, actor=actor),
            "enable": lambda ref: self.enable_server(ref, actor=actor),
            "disable": lambda ref: self.disable_server(ref, actor=actor),
            "delete": lambda ref: self.delete_server(ref, actor=actor),
            "refresh": lambda ref: self.refresh_tools(ref, actor=actor),
        }
        action = actions[request.operation]
        limit = asyncio.Semaphore(BULK_CONCURRENCY)

        async def one(ref: str) -> BulkOperationItem:
            async with limit:
                try:
                    await action(ref)
                except (Conflict, InvalidInput, NotFound, NotRunning) as exc:
                    return BulkOperationItem(server_id=ref, success=False, message=str(exc))
                except Exception as exc:  # one server's failure must not sink the others
                    # The result is read by people (a dashboard notice, a CLI line): a sentence
                    # there, the driver's detail in the log.
                    logger.warning("bulk %s of %s failed", request.operation, ref, exc_info=True)
                    return BulkOperationItem(server_id=ref, success=False, message=plain_error(exc))
            return BulkOperationItem(server_id=ref, success=True, message=f"{request.operation} ok")

        unique_refs = await self._one_ref_per_server(request.server_ids)
        results = await asyncio.gather(*(one(ref) for ref in unique_refs))
        failed = [item for item in results if not item.success]
        return BulkOperationResult(
            total_requested=len(unique_refs),
            successful=len(results) - len(failed),
            failed=len(failed),
            results=list(results),
            errors=[f"{item.server_id}: {item.message}" for item in failed],
        )

    async def _one_ref_per_server(self, refs: list[str]) -> list[str]:
        """The refs in order, one per server: a server named by its name and its id is acted on
        once, not twice at the same time. A ref naming no server is kept, to be reported."""
        unique = list(dict.fromkeys(refs))
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(ToolServer.id, ToolServer.name).where(
                        or_(ToolServer.id.in_(unique), ToolServer.name.in_(unique))
                    )
                )
            ).all()
        by_id = {server_id: server_id for server_id, _name in rows}
        by_name = {name: server_id for server_id, name in rows}
        chosen: dict[str, str] = {}
        for ref in unique:
            chosen.setdefault(by_id.get(ref) or by_name.get(ref) or f"?{ref}", ref)
        return list(chosen.values())
