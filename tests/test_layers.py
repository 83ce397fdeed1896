"""The layering of docs/ARCHITECTURE.md, checked: an AST scan of every ``import`` under
``nasscale/`` (inside functions too, and a facade's lazy ``_LAZY`` table) finds no import
circle and no package importing one above it; optuna appears only in ``search/``, torch not in
the torch-free layers, and the CLI uses only the public API: ``nasscale`` and the packages'
facades (their ``__init__``), names from their ``__all__``."""
import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "nasscale"

#: the layers, bottom first; a package may import only its own layer and those below
LAYERS = [("errors", "units", "reports"), ("specs",), ("grammar",), ("costs", "modules"),
          ("scaling",), ("zoo",), ("weights",), ("latency",), ("budgets",), ("transfer",),
          ("scoring", "supernet"), ("pruning", "export"), ("search",), ("__init__",),
          ("cli", "__main__")]
LEVEL = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
TORCH_FREE = ("errors", "units", "specs", "grammar", "costs")


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(("nasscale", *path.relative_to(ROOT).with_suffix("").parts))
        mods[name.removesuffix(".__init__")] = path
    return mods


def _graph():
    """Modules, their edges to other nasscale modules, and the top-level packages they import.
    ``from nasscale.x import y`` is an edge to ``nasscale.x.y`` when that is a module."""
    mods = _modules()
    edges = {m: set() for m in mods}
    external = {m: set() for m in mods}
    for m, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods
                         else node.module for a in node.names]
            elif (isinstance(node, ast.Assign) and path.name == "__init__.py"
                  and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets)):
                names = [v.value for v in node.value.values]  # imported on first use
            else:
                continue
            for n in names:
                external[m].add(n.split(".")[0])
                while n and n not in mods:
                    n = n.rpartition(".")[0]
                if n and n != m:
                    edges[m].add(n)
    return mods, edges, external


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _circles(edges) -> list[list[str]]:
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_every_package_has_a_layer():
    mods, _, _ = _graph()
    assert {_package(m) for m in mods} <= set(LEVEL), "a new package needs its layer here"


def test_no_import_circle():
    _, edges, _ = _graph()
    assert _circles(edges) == []


def test_no_package_imports_one_above_it():
    mods, edges, _ = _graph()
    up = sorted({(a, b) for a in mods for b in edges[a]
                 if LEVEL[_package(b)] > LEVEL[_package(a)]})
    assert up == []


def test_optuna_only_in_search_and_torch_not_in_the_torch_free_layers():
    mods, _, external = _graph()
    assert sorted(m for m in mods if "optuna" in external[m] and _package(m) != "search") == []
    # costs.fvcore_count is the cross-check on the built module: torch by nature
    assert sorted(m for m in mods if "torch" in external[m] and _package(m) in TORCH_FREE
                  and m != "nasscale.costs.fvcore_count") == []


def _facade(module: str) -> bool:
    """``nasscale`` or one of its packages' facades (``nasscale.X``, X a package or a module
    directly under ``nasscale/``), not a module inside a package."""
    return module == "nasscale" or module.count(".") == 1


def test_the_cli_uses_only_the_public_api():
    wrong = []
    for path in sorted((ROOT / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                wrong += [(path.name, a.name) for a in node.names
                          if a.name.startswith(("nasscale.", "optuna", "torch"))]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mod = node.module
                if mod.startswith("nasscale.cli") or not mod.startswith("nasscale"):
                    if mod.split(".")[0] in ("optuna", "torch"):
                        wrong.append((path.name, mod))
                    continue
                if not _facade(mod):
                    wrong.append((path.name, mod))
                    continue
                public = getattr(importlib.import_module(mod), "__all__", None)
                wrong += [(path.name, f"{mod}.{a.name}") for a in node.names
                          if public is not None and a.name not in public
                          and not _facade(f"{mod}.{a.name}")]
    assert wrong == [], "the CLI imports these internals; export them from the facade"
