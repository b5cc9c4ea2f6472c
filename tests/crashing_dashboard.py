"""`tooldeck` on a data dir, with `a` raising an error nobody handles (for the test of what the
dashboard does after one, in a real terminal).

    python -m tests.crashing_dashboard DATA_DIR
"""

from __future__ import annotations

import sys

from app.tui.main import run
from app.tui.screens.main import MainScreen


def broken(_screen: MainScreen) -> None:
    raise RuntimeError("a bug in a key handler")


if __name__ == "__main__":
    MainScreen.action_analytics = broken  # type: ignore[method-assign]
    sys.exit(run(data_dir=sys.argv[1]))
