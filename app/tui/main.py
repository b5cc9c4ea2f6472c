"""Entry point of the dashboard."""

from __future__ import annotations


def run(*, data_dir: str | None = None, read_only: bool = False) -> int:
    from app.config import load_settings
    from app.tui.app import TooldeckApp

    settings = load_settings(data_dir, {"data_dir": data_dir})
    TooldeckApp(settings, read_only=read_only).run()
    return 0
