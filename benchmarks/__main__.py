"""``python -m benchmarks [NAME ...]``: run the benchmarks (every ``benchmarks/bench_*.py``) and print figures.

Each benchmark module has ``run()``, which starts what it needs in the test lab, prints its figures for people as
it goes, and returns its records: a list of dicts, each govmigrate's figure beside its anchor's from the same run
(:func:`benchmarks.figures.compare`), or one dict of figures. As each benchmark ends, each of its records is
printed as one JSON line (``{"bench": ..., ...}``), so a long run that fails late keeps what it measured.

govmigrate's modules are byte-compiled first, as they are when pip installs the package: the checkout's editable
install is not, and where ``PYTHONDONTWRITEBYTECODE`` is set (as on this machine) Python never writes the cache
itself, so every command measured would first compile govmigrate's own modules from source (about 0.1 s each).
"""

from __future__ import annotations

import compileall
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
    compileall.compile_dir(here.parent / "migrate", quiet=1)
    for name in chosen:
        print(f"== benchmark: {name}", flush=True)
        module = importlib.import_module(f"benchmarks.bench_{name}")
        records = module.run()
        for record in records if isinstance(records, list) else [{"bench": name, **records}]:
            print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
