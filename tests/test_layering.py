"""sysroot/ reads bottom-up: each package imports only the packages below it, no module
takes part in an import circle, and the packages held to it import nothing inside a
function but the deliberate lazy imports listed here with their reason.

The layers, lowest first: errors, util, formats, store, sign, pull, boot, deploy,
health (it reads the sysroot's layout), install (beside health), cli.
Imports under `if TYPE_CHECKING:` (annotations only) never run, so they do not make
a circle; they still count for the direction between packages.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "sysroot"

_BASE = {"errors", "util"}
# package -> the packages (and top-level modules) it may import
ALLOWED = {
    "errors": set(),
    "util": {"errors"},
    "formats": _BASE,
    "store": _BASE | {"formats"},
    "sign": _BASE | {"formats", "store"},
    "pull": _BASE | {"formats", "store", "sign"},
    "boot": _BASE | {"formats", "store", "sign", "pull"},
    "deploy": _BASE | {"formats", "store", "sign", "pull", "boot"},
    "health": _BASE | {"formats", "store", "sign", "pull", "boot", "deploy"},
    # beside health: partitions a disk and installs on it (sysroot install), from a
    # local repository or a remote (pull, and sign for its keys)
    "install": _BASE | {"formats", "store", "sign", "pull", "boot", "deploy"},
    # beside install, above it: packs the images install makes, unpacks onto its disks
    "osmet": _BASE | {"formats", "store", "sign", "pull", "boot", "deploy", "install"},
    # "": sysroot/__init__ (the version)
    "cli": _BASE
    | {"formats", "store", "sign", "pull", "boot", "deploy", "health", "install", "osmet", ""},
}
# packages whose modules may import only at the top (the lazy ones listed below)
NO_LAZY_IMPORTS = {
    "util",
    "formats",
    "store",
    "sign",
    "pull",
    "boot",
    "deploy",
    "health",
    "install",
    "osmet",
}
# (module, imported module): lazy on purpose, each with its reason at the import
LAZY_ALLOWED = {
    ("sysroot.deploy.deploy", "sysroot.sign.verify"),  # the cryptography package
    ("sysroot.deploy.upgrade", "sysroot.pull.pull"),  # the HTTP fetcher, and sign/ with it
}


@dataclass(frozen=True)
class Import:
    target: str  # a sysroot module (a package's __init__ is named by the package)
    in_function: bool
    type_checking: bool  # under `if TYPE_CHECKING:`


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(path: Path, known: set[str]) -> list[Import]:
    """The sysroot modules path imports, relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    me = _module_name(path)
    package = me if path.stem == "__init__" else me.rpartition(".")[0]
    out: list[Import] = []

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # `from sysroot.store import repo` names a module, `from x import Name` x
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            names = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                in_function = True
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                type_checking = True
            for child in ast.iter_child_nodes(node):
                visit(child, in_function, type_checking)
        out.extend(
            Import(n, in_function, type_checking)
            for n in names
            if n == "sysroot" or n.startswith("sysroot.")
        )

    visit(tree, False, False)
    return out


def _layer(module: str) -> str:
    """The package (or top-level module) a sysroot module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@functools.cache
def _graph() -> dict[str, list[Import]]:
    modules = _modules()
    return {m: _imports(p, set(modules)) for m, p in modules.items()}


def upward_imports(graph: dict[str, list[Import]]) -> list[str]:
    bad = []
    for module, imports in graph.items():
        layer = _layer(module)
        if layer not in ALLOWED:
            continue  # sysroot/__init__, __main__, demo: entry points above everything
        for imp in imports:
            target = _layer(imp.target)
            if target != layer and target not in ALLOWED[layer]:
                bad.append(f"{module} imports {imp.target} ({layer} may not import {target})")
    return bad


def circles(graph: dict[str, list[Import]]) -> dict[str, set[str]]:
    """The modules on an import circle, each with what it imports on one: peel off,
    again and again, those that import nothing left (Kahn's algorithm), then those
    that nothing left imports."""
    below = {
        m: {i.target for i in imports if not i.type_checking and i.target in graph} - {m}
        for m, imports in graph.items()
    }
    while True:
        ready = [m for m, e in below.items() if not e]
        if not ready:
            break
        for m in ready:
            del below[m]
        for e in below.values():
            e.difference_update(ready)
    # then peel off from the top what nothing left imports, so only circles remain
    while True:
        imported = set().union(*below.values())
        top = [m for m in below if m not in imported]
        if not top:
            return below
        for m in top:
            del below[m]


def lazy_imports(graph: dict[str, list[Import]]) -> set[tuple[str, str]]:
    return {
        (m, i.target)
        for m, imports in graph.items()
        if _layer(m) in NO_LAZY_IMPORTS
        for i in imports
        if i.in_function
    }


def test_every_package_is_placed_in_a_layer():
    packages = {p.name for p in SRC.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(ALLOWED), sorted(packages - set(ALLOWED))


def test_packages_import_only_downward():
    assert upward_imports(_graph()) == []


def test_no_import_circle():
    left = circles(_graph())
    assert not left, f"import circle among: {sorted(left)}"


def test_no_import_inside_a_function_but_the_listed_lazy_ones():
    found = lazy_imports(_graph())
    assert found <= LAZY_ALLOWED, sorted(found - LAZY_ALLOWED)


def test_the_checks_see_a_planted_upward_import_and_circle(tmp_path):
    """The checks themselves: an upward import, a circle and a lazy import, planted in
    a copy of the graph, are each reported."""
    graph = dict(_graph())
    graph["sysroot.formats.objects"] = graph["sysroot.formats.objects"] + [
        Import("sysroot.store.repo", True, False)
    ]
    assert any("formats may not import store" in b for b in upward_imports(graph))
    assert "sysroot.formats.objects" in circles(graph)
    assert ("sysroot.formats.objects", "sysroot.store.repo") in lazy_imports(graph)
