"""``python -m benchmarks [NAME ...]``: run the benchmarks (every ``benchmarks/bench_*.py``) and print figures.

Each benchmark module has ``run() -> dict`` which starts what it needs in the test lab, prints its
figures as it goes, and returns them; the last line printed is one JSON object of all figures.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    chosen = argv or names
    unknown = [n for n in chosen if n not in names]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    if not chosen:
        print("no benchmarks yet")
        return 0
    figures: dict[str, object] = {}
    for name in chosen:
        print(f"== benchmark: {name}", flush=True)
        module = importlib.import_module(f"benchmarks.bench_{name}")
        figures.update(module.run())
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
