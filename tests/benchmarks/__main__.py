"""`make bench`: run every `bench_*.py` module here, each through its `main()`.

`python -m tests.benchmarks [NAME ...]` runs only the named ones (`supervisor`, `usage`, ...).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import tests.benchmarks as package


def main(argv: list[str]) -> int:
    names = sorted(
        info.name
        for info in pkgutil.iter_modules(package.__path__)
        if info.name.startswith("bench_")
    )
    wanted = {f"bench_{name.removeprefix('bench_')}" for name in argv}
    failed = 0
    for name in names:
        if wanted and name not in wanted:
            continue
        print(f"== {name}", flush=True)
        began = time.monotonic()
        module = importlib.import_module(f"tests.benchmarks.{name}")
        try:
            module.main()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failed += 1
            print(f"   {name} failed: {type(exc).__name__}: {exc}", flush=True)
        print(f"   ({time.monotonic() - began:.1f} s)\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
