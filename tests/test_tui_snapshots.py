"""Snapshot tests of every dashboard screen on the demo fleet (pytest-textual-snapshot).

120x36 for each screen and 80x24 for the main one, with the demo's fixed clock and no cursor
blink. The shots are the ones `make screenshots` writes for the README. After an intended
change of the look: `pytest tests/test_tui_snapshots.py --snapshot-update`, then look at the
report before committing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.screenshots import SHOTS, Shot, build_demo_home, copy_home, demo_app, driver


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo fleet, built once; each test runs on its own copy."""
    home = tmp_path_factory.mktemp("demo-template")
    asyncio.run(build_demo_home(home))
    return home


COMPARED = list(SHOTS)


@pytest.mark.parametrize("shot", COMPARED, ids=[shot.name for shot in COMPARED])
def test_screen(
    shot: Shot, demo_template: Path, tmp_path: Path, snap_compare: Callable[..., Any]
) -> None:
    home = copy_home(demo_template, tmp_path / "demo")
    app = demo_app(home, shot)
    assert snap_compare(
        app, terminal_size=shot.size, run_before=driver(shot.keys, shot.link, shot.gateway)
    )
