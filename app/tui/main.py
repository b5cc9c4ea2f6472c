"""Entry point of the dashboard."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.ops.attach import OperationsServer


def run(
    *,
    data_dir: str | None = None,
    read_only: bool = False,
    serve: OperationsServer | None = None,
) -> int:
    """Run the dashboard; its exit status (1 after an unexpected error, whose traceback is in
    the dashboard's log file, as is every other log line while the dashboard has the screen).

    `serve`: how the dashboard serves its operations to the CLI while it supervises."""
    from app.core.logfile import logging_to_file
    from app.core.settings import load_settings
    from app.tui.app import TooldeckApp

    settings = load_settings(data_dir, {"data_dir": data_dir})
    # TOOLDECK_TUI_REFRESH_S: seconds between refreshes of the live tables (a setting, so a bad
    # value stops start-up with a clear line and `tooldeck config` lists it).
    app = TooldeckApp(
        settings,
        read_only=read_only,
        refresh_interval=settings.tui_refresh_s,
        serve=serve,
    )
    with logging_to_file(settings):
        app.run()
    return app.return_code or 0
