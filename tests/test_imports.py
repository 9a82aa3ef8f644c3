"""No import circle in the package: statically (the graph of every import statement, lazy ones
included) and at run time (each module imported first in a fresh interpreter state)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "videoattn"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules its import statements run (anywhere in the file, lazy
    imports inside functions included): the module named, the submodules ``from X import a``
    names, and the packages whose ``__init__`` that import runs first (not the importer's own)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                mod = ".".join([*base, node.module] if node.module else base)
                targets |= {mod} | {f"{mod}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        runs = set()
        for t in targets & set(modules):
            runs |= {t} | (_parents(t) & set(modules))
        graph[name] = {t for t in runs if t != name and t not in _parents(name)}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path ``a -> b -> ... -> a``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return path[path.index(w) :] + [w]
            if w not in state and (found := visit(w)):
                return found
        path.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "videoattn.models.build" in graph["videoattn.models.convert"]  # the graph sees real imports
    assert "videoattn.models" in graph["videoattn.engine.config"]  # ... and the package __init__ they run
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


_IMPORT_EACH = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for m in [m for m in sys.modules if m == "videoattn" or m.startswith("videoattn.")]:
        del sys.modules[m]
    try:
        importlib.import_module(name)
    except Exception as err:
        failed.append(f"{name}: {type(err).__name__}: {err}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_each_module_imports_first():
    """Each module imported first, with no other module of the package loaded before it."""
    names = [n for n in _modules() if not n.endswith("__main__")]
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, *names], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ----------------------------------------------------------------------------- the registry is the modules' contract
# the code that builds, loads, trains and runs models; the converters of official checkpoints (models/convert.py)
# and their recognition (checkpoint.py) name the official sources (tsm, tam, action) by nature
CONTRACT_CODE = ("models", "engine", "deploy", "explain.py", "summary.py", "cli.py", "config.py", "schema.py")
OFFICIAL_SOURCES = ("models/convert.py",)
# known before the backbone contract: the official parameter groups keep ACTION-Net's layers apart
KNOWN = {("engine/optim.py", "Action")}


def _docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, kinds) and node.body and isinstance(node.body[0], ast.Expr)
    }


def module_names_outside_the_registry() -> list[tuple[str, int, str]]:
    """``(file, line, name)`` for each registry name (a string in code, docstrings aside) or
    registered class (a name, an import) in the contract code (:data:`CONTRACT_CODE`)."""
    from videoattn.attention.registry import _REGISTRY

    names = set(_REGISTRY)
    classes = {spec.cls.__name__ for spec in _REGISTRY.values()}
    files = [p for part in CONTRACT_CODE for p in sorted((PACKAGE / part).rglob("*.py")) or [PACKAGE / part]]
    found = []
    for path in files:
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in OFFICIAL_SOURCES:
            continue
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in docs:
                found.append((rel, node.lineno, node.value))
            elif isinstance(node, ast.Name) and node.id in classes:
                found.append((rel, node.lineno, node.id))
            elif isinstance(node, ast.ImportFrom):
                found += [(rel, node.lineno, a.name) for a in node.names if a.name in classes]
    return found


def test_no_module_is_named_outside_the_registry_and_the_backbone_files():
    """The grep of the module contract (issue 14), for every registry row, the stem / conv ones included."""
    found = module_names_outside_the_registry()
    assert {(f, n) for f, _, n in found} == KNOWN, [x for x in found if (x[0], x[2]) not in KNOWN]  # KNOWN: seen
