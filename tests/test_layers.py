"""The core runs without the TUI: importing it must not load textual."""

from __future__ import annotations

import subprocess
import sys


def test_core_does_not_import_textual() -> None:
    code = (
        "import sys, app.ops.facade, app.cli, app.ops.bootstrap, storage.db, storage.models, "
        "storage.queries; "
        "loaded = [m for m in sys.modules if m == 'textual' or m.startswith('textual.')]; "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
