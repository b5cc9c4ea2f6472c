"""The facade's gateway profiles: create, read, update, delete, and a preview of what a
profile's clients would see (its tools, their count and the context their list costs)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.changes import Change
from app.core.errors import Conflict, NotFound
from app.core.profiles import (
    ProfileCreate,
    ProfileFields,
    ProfilePreview,
    ProfileResponse,
    ProfileTool,
    ProfileUpdate,
    Selection,
    estimate_tokens,
)
from app.core.tool_names import NameTable
from app.ops.base import OpsBase, validated
from app.ops.gateway_port import catalogue_listing
from storage.models import GatewayProfile, ServerTool, ToolServer

PROFILE_PATH = "/mcp/profiles/"


def profile_response(row: GatewayProfile) -> ProfileResponse:
    response = ProfileResponse.model_validate(row)
    response.endpoint = PROFILE_PATH + row.name
    return response


class ProfileOperations(OpsBase):
    """Gateway profiles: named sets of servers and tools with their own endpoint."""

    async def list_profiles(self) -> list[ProfileResponse]:
        async with self.db.read() as session:
            rows = (
                (await session.execute(select(GatewayProfile).order_by(GatewayProfile.name)))
                .scalars()
                .all()
            )
            return [profile_response(row) for row in rows]

    async def get_profile(self, name: str) -> ProfileResponse:
        async with self.db.read() as session:
            return profile_response(await self._profile(session, name))

    async def create_profile(
        self, data: ProfileCreate | dict[str, Any], *, actor: str
    ) -> ProfileResponse:
        spec = validated(ProfileCreate, data)
        async with self.db.session() as session:
            if await _find(session, spec.name) is not None:
                raise Conflict(f"a profile named {spec.name!r} already exists", field="name")
            row = GatewayProfile(**spec.model_dump(), created_by=actor)
            session.add(row)
            try:
                await session.flush()
            except IntegrityError:
                raise Conflict(
                    f"a profile named {spec.name!r} already exists", field="name"
                ) from None
            response = profile_response(row)
        self.changes.publish(Change.PROFILES, None)
        return response

    async def update_profile(
        self, name: str, data: ProfileUpdate | dict[str, Any], *, actor: str
    ) -> ProfileResponse:
        update = validated(ProfileUpdate, data)
        async with self.db.session() as session:
            row = await self._profile(session, name)
            if update.name is not None and update.name != row.name:
                if await _find(session, update.name) is not None:
                    raise Conflict(f"a profile named {update.name!r} already exists", field="name")
            for field, value in update.model_dump(exclude_unset=True).items():
                if value is not None or field == "description":
                    setattr(row, field, value)
            await session.flush()
            response = profile_response(row)
        self.changes.publish(Change.PROFILES, None)
        return response

    async def delete_profile(self, name: str, *, actor: str) -> None:
        async with self.db.session() as session:
            row = await self._profile(session, name)
            await session.delete(row)
        self.changes.publish(Change.PROFILES, None)

    async def preview_profile(self, name: str) -> ProfilePreview:
        profile = await self.get_profile(name)
        return await self._preview(profile.name, profile.servers, profile.tools)

    async def preview_profile_draft(self, data: ProfileFields | dict[str, Any]) -> ProfilePreview:
        draft = validated(ProfileFields, data)
        return await self._preview("draft", draft.servers, draft.tools)

    async def _preview(self, name: str, servers: list[str], tools: list[str]) -> ProfilePreview:
        """From the stored tool catalogue: tools of servers that never ran are not known yet."""
        selection = Selection(servers, tools)
        query = (
            select(ServerTool, ToolServer.name)
            .join(ToolServer, ToolServer.id == ServerTool.server_id)
            .where(ToolServer.enabled.is_(True))
            .order_by(ToolServer.name, ServerTool.name)
        )
        async with self.db.read() as session:
            rows = (await session.execute(query)).all()
            server_names = (await session.execute(select(ToolServer.name))).scalars().all()
        names = NameTable(self.settings.gateway_separator, self.settings.gateway_max_name_length)
        chosen: list[ProfileTool] = []
        listing: list[dict[str, Any]] = []
        for tool, server_name in rows:
            if not selection.has_tool(server_name, tool.name):
                continue
            offered = tool.enabled and (tool.is_available or not tool.bypass_when_unavailable)
            exposed = names.expose(server_name, tool.name)
            chosen.append(
                ProfileTool(
                    server_name=server_name,
                    name=tool.name,
                    exposed_name=exposed,
                    title=tool.display_name,
                    description=tool.description,
                    enabled=offered,
                    is_available=tool.is_available,
                )
            )
            if offered:
                listing.append({**catalogue_listing(tool), "name": exposed})
        serialized = json.dumps({"tools": listing}, separators=(",", ":"), ensure_ascii=False)
        offered_tools = [tool for tool in chosen if tool.enabled]
        return ProfilePreview(
            profile=name,
            servers=[server for server in sorted(server_names) if selection.has_server(server)],
            tools=chosen,
            tool_count=len(offered_tools),
            estimated_tokens=estimate_tokens(serialized),
            unmatched=selection.unmatched(
                list(server_names), [(server_name, tool.name) for tool, server_name in rows]
            ),
        )

    async def _profile(self, session: AsyncSession, name: str) -> GatewayProfile:
        row = await _find(session, name)
        if row is None:
            raise NotFound(f"no profile {name!r}")
        return row


async def _find(session: AsyncSession, name: str) -> GatewayProfile | None:
    query = select(GatewayProfile).where(
        (GatewayProfile.name == name) | (GatewayProfile.id == name)
    )
    return (await session.execute(query)).scalars().first()
