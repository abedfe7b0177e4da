"""deploy/ reads bottom-up: no import circle among its modules (imports inside functions
count), and no import inside a function but the deliberate lazy ones of something heavy.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "sysroot.deploy"
# (file, imported module): lazy on purpose, each with its reason at the import
LAZY_ALLOWED = {
    ("deploy.py", "sysroot.sign.verify"),  # the cryptography package
    ("upgrade.py", "sysroot.pull.pull"),  # the HTTP fetcher, and sign/ with it
}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, inside a function) for each import of path, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def in_function(node: ast.AST) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                return True
        return False

    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = PACKAGE.split(".")[: len(PACKAGE.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # `from sysroot.deploy import staged` names a module of the package
            names = [f"{base}.{a.name}" if base == PACKAGE else base for a in node.names]
        else:
            continue
        out.extend((name, in_function(node)) for name in names)
    return out


def _modules() -> dict[str, Path]:
    return {
        p.stem: p
        for p in sorted((ROOT / "sysroot" / "deploy").glob("*.py"))
        if p.stem != "__init__"
    }


def test_no_import_circle_in_deploy():
    modules = _modules()
    assert {"admin", "operations", "state", "staged", "stagedrecord", "transaction"} <= set(modules)
    edges = {
        m: {
            name.split(".")[2]
            for name, _ in _imports(p)
            if name.startswith(PACKAGE + ".") and name.split(".")[2] in modules
        }
        - {m}
        for m, p in modules.items()
    }
    # Kahn's algorithm: what is left over lies on or above a circle
    below = {m: set(e) for m, e in edges.items()}
    while True:
        ready = [m for m, e in below.items() if not e]
        if not ready:
            break
        for m in ready:
            del below[m]
        for e in below.values():
            e.difference_update(ready)
    assert not below, f"import circle among deploy/ modules: {below}"


def test_no_import_inside_a_function_but_the_lazy_ones():
    found = {(p.name, name) for p in _modules().values() for name, inside in _imports(p) if inside}
    assert found <= LAZY_ALLOWED, sorted(found - LAZY_ALLOWED)
