"""Entry point of the dashboard."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.ops.attach import OperationsServer


def run(
    *,
    data_dir: str | None = None,
    read_only: bool = False,
    serve: OperationsServer | None = None,
) -> int:
    """`serve`: how the dashboard serves its operations to the CLI while it supervises."""
    from app.core.settings import load_settings
    from app.ops.attach import dashboard_facade
    from app.tui.app import TooldeckApp

    settings = load_settings(data_dir, {"data_dir": data_dir})
    # TOOLDECK_TUI_REFRESH_S: seconds between refreshes of the live tables (a setting, so a bad
    # value stops start-up with a clear line and `tooldeck config` lists it).
    TooldeckApp(
        settings,
        read_only=read_only,
        refresh_interval=settings.tui_refresh_s,
        core=partial(dashboard_facade, serve=serve),
    ).run()
    return 0
