"""The layout's promises, read from the source (no imports run): the runtime (engine/) imports
nothing of the export stage, the runtime library (Engine and what it reaches) nothing of the
build stage either, and no module of the package takes part in an import cycle. An edge is
any import, at the top or inside a function (a lazy import runs too), the packages a module's
import brings along (`from .build import precision` runs build/__init__.py), and a string that
names a module ("stylert.engine.backends.onnxrt.runner:OnnxRuntimeRunner": imported by name
later). Cross-stage hooks live in pyproject.toml's entry points, which are checked to resolve.

    python tests/test_layout.py [REPO_ROOT]     # the import graph's figures for any checkout
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"export": "stylert.export", "engine": "stylert.engine", "bench": "stylert.bench"}


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for folder, pkg in PACKAGES.items():
        for f in sorted((root / folder).rglob("*.py")):
            rel = f.relative_to(root / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = f
    return out


def imports(name: str, path: Path, known: set[str], top_level_only: bool) -> set[str]:
    """The package's modules `name` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for n in nodes:
        if isinstance(n, ast.Import):
            targets = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (n.level - 1)]
                mod = ".".join(base + ([n.module] if n.module else []))
            else:
                mod = n.module or ""
            # `from pkg import mod` imports the submodule; `from mod import name`, the module
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in n.names]
        else:
            continue
        for t in targets:
            _add(found, t, name, known)
    for n in ast.walk(tree):  # module names in strings: imported by name somewhere
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and MODULE_STRING.match(n.value):
            _add(found, n.value.split(":")[0], name, known)
    return found


MODULE_STRING = re.compile(r"^stylert(\.\w+)+(:\w+)?$")


def _add(found: set[str], target: str, name: str, known: set[str]) -> None:
    """`target` and the packages above it (importing a module runs its packages' __init__),
    except the importer itself and its own packages (always imported before it)."""
    t = target
    while t and t not in known:
        t = t.rpartition(".")[0]
    while t and t.count(".") >= 1:
        if t != name and not name.startswith(t + "."):
            found.add(t)
        t = t.rpartition(".")[0]


def graph(root: Path, top_level_only: bool) -> dict[str, set[str]]:
    mods = modules(root)
    return {m: imports(m, p, set(mods), top_level_only) for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in g:
        if v not in index:
            visit(v)
    return out


def longest_functions(root: Path, n: int = 5) -> list[tuple[int, str]]:
    rows = []
    for m, p in modules(root).items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                rows.append((node.end_lineno - node.lineno + 1, f"{m}.{node.name}"))
    return sorted(rows, reverse=True)[:n]


def report(root: Path) -> dict:
    per_pkg = defaultdict(int)
    for m in modules(root):
        per_pkg[".".join(m.split(".")[:3]) if m.startswith("stylert.engine.") and m.count(".") > 2 else ".".join(m.split(".")[:2])] += 1
    full = graph(root, top_level_only=False)
    return {"modules_per_package": dict(sorted(per_pkg.items())),
            "cycles_module_level": cycles(graph(root, top_level_only=True)),
            "cycles_any_import": cycles(full),
            "engine_imports_export": sorted(f"{m} -> {t}" for m, ts in full.items() if m.startswith("stylert.engine")
                                            for t in ts if t.startswith("stylert.export")),
            "longest_functions": longest_functions(root)}


def reach(g: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(g.get(m, ()))
    return seen


RUNTIME = ("stylert.engine", "stylert.engine.runtime")  # what services embed: `from stylert.engine import Engine`


def test_the_runtime_imports_nothing_of_the_export_stage():
    full = graph(ROOT, top_level_only=False)
    bad = sorted(f"{m} -> {t}" for m, ts in full.items() if m.startswith("stylert.engine") for t in ts
                 if t.startswith("stylert.export"))
    assert not bad, bad


def test_the_runtime_library_reaches_neither_training_nor_building():
    full = graph(ROOT, top_level_only=False)
    bad = sorted(m for start in RUNTIME for m in reach(full, start)
                 if m.startswith(("stylert.export", "stylert.engine.build", "stylert.bench")))
    assert not bad, bad


def test_no_import_cycle_between_modules():
    assert cycles(graph(ROOT, top_level_only=False)) == []


def test_entry_points_resolve_to_modules_of_the_package():
    import tomllib

    eps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    known = set(modules(ROOT))
    for group, table in eps.items():
        for name, target in table.items():
            assert target.split(":")[0] in known, (group, name, target)


def test_the_graph_sees_lazy_string_and_package_edges(tmp_path):
    (tmp_path / "engine" / "build").mkdir(parents=True)
    (tmp_path / "export").mkdir()
    (tmp_path / "bench").mkdir()
    for f in ("engine/__init__.py", "engine/build/__init__.py", "engine/build/step.py", "engine/a.py", "export/__init__.py",
              "export/m.py", "bench/__init__.py"):
        (tmp_path / f).write_text("")
    (tmp_path / "engine" / "a.py").write_text("def f():\n    from .build import step\n")  # lazy, brings build/__init__
    (tmp_path / "engine" / "build" / "__init__.py").write_text("from .. import a\n")  # closes a cycle
    (tmp_path / "engine" / "b.py").write_text('RUNNER = "stylert.export.m:Thing"\n')  # a string reference
    g = graph(tmp_path, top_level_only=False)
    assert {"stylert.engine.build", "stylert.engine.build.step"} <= g["stylert.engine.a"]
    assert "stylert.export.m" in g["stylert.engine.b"]
    assert ["stylert.engine.a", "stylert.engine.build"] in cycles(g)


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


if __name__ == "__main__":
    import json

    print(json.dumps(report(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT), indent=1))
