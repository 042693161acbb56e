"""The package's shape, read from its imports: layers that point down, no import circles, click only in cli/.

Every import counts, at the top of a module or inside a function, under ``TYPE_CHECKING`` or not: an import
hidden in a function still ties the two modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import migrate

ROOT = Path(migrate.__file__).parent

#: Bottom to top. A package may import its own modules and those of any lower layer; packages of one layer do
#: not import each other (docs/architecture.md, "Layers").
LAYERS = (("core",), ("mailbox", "dns", "voip"), ("plans",), ("waves",), ("reports",), ("cli",))
LAYER = {package: n for n, packages in enumerate(LAYERS) for package in packages}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, imported module, top-level package name) for every import of a migrate module, and of click."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.append((node.lineno, full if full in MODULES else node.module, node.module.split(".")[0]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; the package imports by absolute name")
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYER) else ""


GRAPH = {m: [(line, target) for line, target, top in _imports(p) if top == "migrate"] for m, p in MODULES.items()}


def test_every_package_is_in_a_layer():
    packages = {_package(m) for m in MODULES} - {""}
    assert packages <= set(LAYER), f"packages without a layer: {sorted(packages - set(LAYER))}"


def _upward(graph: dict[str, list[tuple[int, str]]]) -> list[str]:
    wrong = []
    for module, targets in graph.items():
        mine = _package(module)
        if mine not in LAYER:
            continue  # migrate/__init__ and __main__
        for line, target in targets:
            theirs = _package(target)
            if theirs in ("", mine):
                continue
            if LAYER[theirs] >= LAYER[mine]:
                wrong.append(f"{module}:{line}: {mine} imports {target} "
                             f"({theirs} is {'a peer' if LAYER[theirs] == LAYER[mine] else 'above it'})")
    return wrong


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components: any component of two or more modules is a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in edges:
        if module not in index:
            visit(module)
    return circles


def _click_imports() -> list[str]:
    return [f"{MODULES[m].relative_to(ROOT.parent)}:{line}: {target}"
            for m, path in MODULES.items() if _package(m) != "cli" and m != "migrate.__main__"
            for line, target, top in _imports(path) if top in ("click", "rich")]


def test_imports_point_down_a_layer_never_up_or_across():
    wrong = _upward(GRAPH)
    assert not wrong, "\n".join(wrong)


def test_no_import_circles():
    circles = _circles({m: {t for _line, t in targets if t in MODULES and t != m} for m, targets in GRAPH.items()})
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_only_the_command_line_imports_click_and_rich():
    wrong = _click_imports()
    assert not wrong, "the library never imports click or rich: " + ", ".join(wrong)


def test_the_checks_see_an_upward_import_a_circle_and_a_function_level_import(tmp_path):
    """The readers themselves, on sample code: each kind of violation is found."""
    sample = tmp_path / "sample.py"
    sample.write_text("import click\n\ndef f():\n    from migrate.waves.runner import start\n")
    assert [(t, top) for _line, t, top in _imports(sample)] == [("click", "click"), ("migrate.waves.runner", "migrate")]
    assert _upward({"migrate.plans.planner": [(3, "migrate.waves.runner")]}) == [
        "migrate.plans.planner:3: plans imports migrate.waves.runner (waves is above it)"]
    assert _upward({"migrate.voip.checks": [(5, "migrate.mailbox.imap")]})[0].endswith("(mailbox is a peer)")
    assert _upward({"migrate.waves.runner": [(9, "migrate.plans.planfiles"), (10, "migrate.core.store")]}) == []
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []
