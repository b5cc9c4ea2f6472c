"""Entry point of the dashboard."""

from __future__ import annotations

import os

from app.tui.app import DEFAULT_REFRESH_S

# Seconds between refreshes of the live tables; raise it on slow links.
REFRESH_ENV = "TOOLDECK_TUI_REFRESH_S"


def refresh_interval() -> float:
    try:
        return max(0.5, float(os.environ.get(REFRESH_ENV, DEFAULT_REFRESH_S)))
    except ValueError:
        return DEFAULT_REFRESH_S


def run(*, data_dir: str | None = None, read_only: bool = False) -> int:
    from app.config import load_settings
    from app.tui.app import TooldeckApp

    settings = load_settings(data_dir, {"data_dir": data_dir})
    TooldeckApp(settings, read_only=read_only, refresh_interval=refresh_interval()).run()
    return 0
