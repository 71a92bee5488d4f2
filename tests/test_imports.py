"""Import hygiene: no import cycle among simxray's modules, and every module imports on its own.

The static check reads every module's import statements (module level and inside
functions alike, ``if TYPE_CHECKING:`` blocks excepted) and fails on a cycle among the
module-level ones: such a cycle breaks or depends on import order.  Cycles made only
through imports inside functions are listed by :func:`import_graph` for review but pass.
The dynamic check imports each module in a fresh interpreter (slow tier).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "simxray"


def module_names() -> dict[str, Path]:
    """{dotted module name: file} of every simxray module (packages as their __init__)."""
    out = {}
    for f in sorted(ROOT.rglob("*.py")):
        parts = list(f.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module, module: str, is_pkg: bool, known: set[str]):
    """Yield (target module, module_level) for every simxray import in ``tree``."""
    package = module if is_pkg else module.rpartition(".")[0]

    def resolve(level: int, name: str | None) -> str:
        if level == 0:
            return name or ""
        base = package.split(".")
        base = base[: len(base) - (level - 1)]
        return ".".join(base + ([name] if name else []))

    def walk(nodes, top: bool):
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                continue
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in known:
                        yield a.name, top
            elif isinstance(node, ast.ImportFrom):
                mod = resolve(node.level, node.module)
                for a in node.names:
                    sub = f"{mod}.{a.name}"
                    if sub in known:
                        yield sub, top
                    elif mod in known:
                        yield mod, top
            inner_top = top and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            children = [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)]
            if children:
                yield from walk(children, inner_top)

    yield from walk(tree.body, True)


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module-level edges, all edges including imports inside functions)."""
    mods = module_names()
    known = set(mods)
    top: dict[str, set[str]] = {m: set() for m in mods}
    every: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        tree = ast.parse(f.read_text(), str(f))
        for target, at_top in _imports(tree, m, f.name == "__init__.py", known):
            if target == m:
                continue
            every[m].add(target)
            if at_top:
                top[m].add(target)
    return top, every


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def _without_parent_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop a package's imports of its own submodules' parents: ``pkg/__init__`` importing
    ``pkg.x`` while ``pkg.x`` imports ``pkg`` is the usual re-export, not a layering cycle."""
    return {m: {t for t in ts if not (m.startswith(t + ".") or t.startswith(m + "."))}
            for m, ts in graph.items()}


def test_graph_finds_a_planted_cycle():
    """The checker itself: a three-module cycle and a re-export pair are told apart."""
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "p": {"p.x"}, "p.x": {"p"}}
    assert cycles(g) == [["a", "b", "c"], ["p", "p.x"]]
    assert cycles(_without_parent_packages(g)) == [["a", "b", "c"]]
    tree = ast.parse("from . import saving\nfrom .npe import NPEModel\n"
                     "if TYPE_CHECKING:\n    from .fit import x\n"
                     "def f():\n    from ..io import modeldir\n")
    known = {"simxray.inference.saving", "simxray.inference.npe", "simxray.inference.fit",
             "simxray.io.modeldir", "simxray.io"}
    got = sorted(_imports(tree, "simxray.inference.diagnostics", False, known))
    assert got == [("simxray.inference.npe", True), ("simxray.inference.saving", True),
                   ("simxray.io.modeldir", False)]


def test_no_import_cycle_at_module_level():
    top, _ = import_graph()
    assert len(top) > 50                                       # the whole package was read
    found = cycles(_without_parent_packages(top))
    assert not found, f"import cycles among module-level imports: {found}"


def test_model_layers_are_acyclic_even_through_function_imports():
    """npe, diagnostics, saving and the model-directory layer form no cycle at all (issue 13:
    npe → diagnostics → saving → npe was hidden by imports inside functions)."""
    _, every = import_graph()
    layer = {"simxray.inference.npe", "simxray.inference.npe_net", "simxray.inference.diagnostics",
             "simxray.inference.saving", "simxray.io.modeldir", "simxray.inference.emulator",
             "simxray.events.ppad"}
    for comp in cycles(_without_parent_packages(every)):
        assert not (set(comp) & layer), f"cycle through the model layers: {comp}"
    assert not (every["simxray.io.modeldir"] - {"simxray.errors", "simxray.provenance"})


@pytest.mark.slow
def test_every_module_imports_in_a_fresh_interpreter():
    mods = [m for m in module_names() if not m.endswith("__main__")]

    def run(m: str) -> tuple[str, int, str]:
        p = subprocess.run([sys.executable, "-c", f"import {m}"], capture_output=True, text=True,
                           timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        return m, p.returncode, (p.stderr.strip().splitlines() or [""])[-1]

    with ThreadPoolExecutor(2) as pool:
        bad = [r for r in pool.map(run, mods) if r[1] != 0]
    assert not bad, bad
