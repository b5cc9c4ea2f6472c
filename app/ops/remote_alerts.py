"""The audit, alert, limit and trim operations over HTTP: a mixin of `RemoteOperations`.

Each method has its `app.ops.alerts.AlertOperations` twin's name and signature (the contract
test compares them). It needs only the remote facade's `request()`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, TypeAdapter

from app.core.schemas import (
    AlertResponse,
    AuditEntry,
    ServerLimitsResponse,
    ServerLimitsSpec,
    ServerToolResponse,
    TrimReport,
    TrimResult,
)

TOOLSERVERS = "/api/v1/toolservers"


def _segment(ref: str) -> str:
    return quote(ref, safe="").replace(".", "%2E")


def _parse(model: Any, data: Any) -> Any:
    return TypeAdapter(model).validate_python(data)


class RemoteAlertOperations:
    async def request(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError  # RemoteOperations.request

    async def list_audit(
        self,
        server_ref: str | None = None,
        *,
        since: str | None = None,
        actor: str | None = None,
        limit: int = 500,
    ) -> list[AuditEntry]:
        params = {"server": server_ref, "since": since, "actor": actor, "limit": limit}
        return _parse(list[AuditEntry], await self.request("GET", "/api/v1/audit", params=params))

    async def list_alerts(
        self, *, include_resolved: bool = False, limit: int = 200
    ) -> list[AlertResponse]:
        params = {"all": "true" if include_resolved else "false", "limit": limit}
        data = await self.request("GET", "/api/v1/alerts", params=params)
        return _parse(list[AlertResponse], data)

    async def ack_alert(self, alert_id: int, *, actor: str) -> AlertResponse:
        data = await self.request("POST", f"/api/v1/alerts/{int(alert_id)}/ack", actor=actor)
        return _parse(AlertResponse, data)

    async def evaluate_alerts(self) -> list[AlertResponse]:
        return _parse(list[AlertResponse], await self.request("POST", "/api/v1/alerts/evaluate"))

    async def get_server_limits(self, ref: str) -> ServerLimitsResponse:
        path = f"{TOOLSERVERS}/servers/{_segment(ref)}/limits"
        return _parse(ServerLimitsResponse, await self.request("GET", path))

    async def set_server_limits(
        self, ref: str, data: ServerLimitsSpec | dict[str, Any], *, actor: str
    ) -> ServerLimitsResponse:
        body = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
        path = f"{TOOLSERVERS}/servers/{_segment(ref)}/limits"
        return _parse(ServerLimitsResponse, await self.request("PUT", path, json=body, actor=actor))

    async def set_tool_auto_disable(
        self, ref: str, after: int | None, *, actor: str, server_ref: str | None = None
    ) -> ServerToolResponse:
        path = f"{TOOLSERVERS}/tools/{_segment(ref)}/auto-disable"
        data = await self.request(
            "PUT", path, json={"after": after}, params={"server": server_ref}, actor=actor
        )
        return _parse(ServerToolResponse, data)

    async def trim_suggestions(self, days: int = 30) -> TrimReport:
        data = await self.request("GET", f"{TOOLSERVERS}/trim", params={"days": days})
        return _parse(TrimReport, data)

    async def disable_unused_tools(self, days: int = 30, *, actor: str) -> TrimResult:
        data = await self.request(
            "POST", f"{TOOLSERVERS}/trim/disable", params={"days": days}, actor=actor
        )
        return _parse(TrimResult, data)
