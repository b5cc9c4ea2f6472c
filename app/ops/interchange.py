"""The facade's import and export of MCP client configurations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import interchange
from app.core.errors import Conflict, InvalidInput
from app.core.events import EventKind
from app.core.schemas import (
    CONFLICT_POLICIES,
    EXPORT_FORMATS,
    MASK,
    ConflictPolicy,
    ExportFormat,
    ImportItem,
    ImportReport,
    ToolServerCreate,
)
from app.governance.audit import change_details, created_details, snapshot
from app.ops.base import keep_masked, keep_masked_fields, validated, with_placement
from app.ops.servers import ServerOperations
from storage.models import ToolServer
from storage.queries import add_event


class InterchangeOperations(ServerOperations):
    """MCP client configurations in and out."""

    # ---- import and export -------------------------------------------------------------
    # An import never replaces a built-in: built-ins belong to this installation (seeded from
    # MCP_SERVERS; the calculator's command follows this interpreter). Under "overwrite" a
    # built-in's entry is skipped with that reason, visibly; "rename" imports it beside.

    async def import_servers(
        self,
        document: Any,
        *,
        dry_run: bool = False,
        on_conflict: ConflictPolicy = "skip",
        actor: str,
    ) -> ImportReport:
        if on_conflict not in CONFLICT_POLICIES:
            raise InvalidInput(f"use one of {', '.join(CONFLICT_POLICIES)}", field="on_conflict")
        parsed = interchange.parse_document(document)
        # Every entry is validated before the database is touched: a bad one stops the import.
        specs = [
            self._import_spec(entry, {"name": entry.name, **entry.fields})
            for entry in parsed.entries
        ]
        names = [entry.name for entry in parsed.entries]
        async with self.db.session() as session:
            rows = await session.execute(select(ToolServer).where(ToolServer.name.in_(names)))
            existing = {row.name: row for row in rows.scalars()}
            # A renamed entry must not take a name that exists or that a later entry brings.
            taken = set((await session.execute(select(ToolServer.name))).scalars()) | set(names)
            items = [
                await self._import_one(
                    session,
                    entry,
                    spec,
                    existing.get(entry.name),
                    on_conflict=on_conflict,
                    taken=taken,
                    actor=actor,
                    write=not dry_run,
                )
                for entry, spec in zip(parsed.entries, specs, strict=True)
            ]
        if not dry_run:
            for item in items:
                if item.server_id and item.action in ("create", "rename", "overwrite"):
                    await self._intent_changed(item.server_id)
        actions = [item.action for item in items]
        return ImportReport(
            dry_run=dry_run,
            on_conflict=on_conflict,
            sections=parsed.sections,
            items=items,
            created=actions.count("create") + actions.count("rename"),
            overwritten=actions.count("overwrite"),
            unchanged=actions.count("unchanged"),
            skipped=actions.count("skip"),
        )

    async def export_servers(
        self,
        names: Sequence[str] | None = None,
        *,
        format: ExportFormat = "claude",
        include_secrets: bool = False,
    ) -> dict[str, Any]:
        if format not in EXPORT_FORMATS:
            raise InvalidInput(f"use one of {', '.join(EXPORT_FORMATS)}", field="format")
        if names:
            servers = [
                await self.get_server(ref, reveal=include_secrets) for ref in dict.fromkeys(names)
            ]
        else:
            servers = await self.list_servers(reveal=include_secrets)
        return interchange.export_document(servers, format)

    @staticmethod
    def _import_spec(entry: interchange.ImportEntry, data: dict[str, Any]) -> ToolServerCreate:
        try:
            return validated(ToolServerCreate, data)
        except InvalidInput as exc:
            # Name the entry and the key as the document spells it, not our field names.
            key = "type" if exc.field == "transport" else exc.field
            field = f"{entry.path}.{key}" if key else entry.path
            raise InvalidInput(exc.message, field=field) from None

    async def _import_one(
        self,
        session: AsyncSession,
        entry: interchange.ImportEntry,
        spec: ToolServerCreate,
        row: ToolServer | None,
        *,
        on_conflict: ConflictPolicy,
        taken: set[str],
        actor: str,
        write: bool,
    ) -> ImportItem:
        item = ImportItem(
            source_name=entry.source_name,
            name=entry.name,
            action="create",
            transport=spec.transport,
            warnings=list(entry.warnings),
        )
        if row is not None and (
            on_conflict == "skip" or (row.is_builtin and on_conflict == "overwrite")
        ):
            item.action, item.server_id = "skip", row.id
            kind = "a built-in server" if row.is_builtin else "a server"
            item.reason = f"{kind} with this name exists"
            if on_conflict == "overwrite":
                item.reason = "a built-in server: an import never replaces it"
            return item
        if row is not None and on_conflict == "overwrite":
            return self._import_overwrite(session, entry, spec, row, item, actor=actor, write=write)
        if row is not None:
            item.action, item.reason = "rename", f"{entry.name} exists"
            item.name = interchange.unique_name(entry.name, taken)
            taken.add(item.name)
        values = with_placement(spec.model_dump() | {"name": item.name}, self.settings)
        for field in ("env", "headers"):
            values[field] = self._import_masked(
                values[field], {}, f"{entry.path}.{field}", item.warnings
            )
        for field in ("url", "args"):
            if MASK in str(values.get(field) or ""):
                item.warnings.append(
                    f"{entry.path}.{field}: masked in the document: set it after import"
                )
        if not write:
            return item
        created = ToolServer(**values, is_builtin=False, created_by=actor)
        session.add(created)
        try:
            await session.flush()
        except IntegrityError:
            raise Conflict(
                f"a server named {item.name!r} appeared during the import: nothing was imported",
                field=entry.path,
            ) from None
        message = f"created {item.name} (imported"
        message += f" from {entry.source_name!r})" if entry.source_name != item.name else ")"
        add_event(session, created.id, EventKind.CREATED, message, actor, created_details(values))
        item.server_id = created.id
        return item

    def _import_overwrite(
        self,
        session: AsyncSession,
        entry: interchange.ImportEntry,
        spec: ToolServerCreate,
        row: ToolServer,
        item: ImportItem,
        *,
        actor: str,
        write: bool,
    ) -> ImportItem:
        # The document replaces what it can express; Tooldeck's own settings (display name,
        # timeouts, max failures, ...) stay as they are.
        replacing = spec.model_dump(include=set(interchange.DEFINITION_FIELDS))
        if "enabled" in entry.fields:
            replacing["enabled"] = spec.enabled
        for field in ("env", "headers"):
            replacing[field] = self._import_masked(
                replacing[field], getattr(row, field) or {}, f"{entry.path}.{field}", item.warnings
            )
        replacing |= keep_masked_fields(
            {field: replacing[field] for field in ("url", "args") if field in replacing}, row
        )
        current = {field: getattr(row, field) for field in ToolServerCreate.model_fields}
        merged = self._import_spec(entry, {**current, **replacing})
        changed = [
            field
            for field, value in merged.model_dump().items()
            if field != "name" and getattr(row, field) != value
        ]
        item.server_id = row.id
        if not changed:
            item.action = "unchanged"
            return item
        item.action, item.reason = "overwrite", f"differs in {', '.join(changed)}"
        if write:
            before = snapshot(row, changed)
            for field in changed:
                setattr(row, field, getattr(merged, field))
            if "enabled" in changed and row.enabled:
                row.disabled_reason = None
                row.consecutive_failures = 0
            message = f"changed {', '.join(changed)} (imported from {entry.source_name!r})"
            details = change_details(before, snapshot(row, changed), changed)
            add_event(session, row.id, EventKind.UPDATED, message, actor, details)
        return item

    @staticmethod
    def _import_masked(
        values: dict[str, str], old: dict[str, str], path: str, warnings: list[str]
    ) -> dict[str, str]:
        """An imported masked value keeps the server's current one; without one it is left out."""
        # A document exported without secrets says "********": importing that literally would run
        # the server with a wrong key, so it is dropped and named instead.
        dropped = [key for key, value in values.items() if value == MASK and key not in old]
        if dropped:
            warnings.append(
                f"{path}: {', '.join(dropped)} masked in the document: left out, set after import"
            )
        return keep_masked({key: value for key, value in values.items() if key not in dropped}, old)
