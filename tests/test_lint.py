"""Linters run as tests: a missing linter is a failure, not a skip."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON_TREES = ("sysroot", "tests", "bench", "vm-tests")


def test_ruff_check_is_clean():
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *PYTHON_TREES],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_is_clean():
    # one layout for all Python: a diff shows what changed, not who typed it
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *PYTHON_TREES],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------- mypy
# Strict (every function typed, no implicit Any) where the interfaces are the product;
# mypy's default mode for the rest. pyproject.toml's [tool.mypy] says which is which.
MYPY_STRICT_PACKAGES = ("formats", "store", "deploy", "boot", "health", "install", "osmet")


def test_mypy_is_clean():
    # the whole package, with pyproject.toml's configuration (found from the repo root)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_config_is_strict_per_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["packages"] == ["sysroot"]
    overrides = config["overrides"]
    # `strict = true` in an override switches strict mode on for every module
    # (python/mypy#11401): the strict packages get --strict's flags one by one instead
    assert not any("strict" in o for o in overrides), "per-module strict = true leaks"
    strict = [o for o in overrides if o.get("disallow_untyped_defs")]
    assert len(strict) == 1
    assert sorted(strict[0]["module"]) == sorted(f"sysroot.{p}.*" for p in MYPY_STRICT_PACKAGES)
    for flag in (
        "disallow_any_generics",
        "disallow_subclassing_any",
        "disallow_untyped_calls",
        "disallow_incomplete_defs",
        "check_untyped_defs",
        "disallow_untyped_decorators",
        "warn_return_any",
        "no_implicit_reexport",
        "strict_equality",
        "extra_checks",
    ):
        assert strict[0].get(flag) is True, flag
    assert config["warn_unused_ignores"] is True and config["warn_redundant_casts"] is True


# ---------------------------------------------------------------- shellcheck
SHELL_TREES = ("dracut-module", "units", "vm-tests")
DIALECTS = {"sh": "sh", "dash": "sh", "bash": "bash"}


def shell_dialect(path: Path) -> str | None:
    """The shellcheck dialect named by the file's #! line, or None if it is no shell script."""
    with open(path, "rb") as f:
        first = f.readline(256)
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    if words and os.path.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-")]
    return DIALECTS.get(os.path.basename(words[0])) if words else None


def shell_scripts() -> tuple[dict[str, list[str]], list[str]]:
    """dialect -> scripts (relative paths) under SHELL_TREES, found by their #! line so a new
    script is covered without being listed; and the *.sh files that have no shell #! line.
    Hidden directories (vm-tests/.cache: images, a guest root) and __pycache__ are skipped."""
    by_dialect: dict[str, list[str]] = {}
    unknown: list[str] = []
    for tree in SHELL_TREES:
        for dirpath, dirnames, filenames in os.walk(ROOT / tree):
            dirnames[:] = sorted(
                d for d in dirnames if not d.startswith(".") and d != "__pycache__"
            )
            for name in sorted(filenames):
                path = Path(dirpath, name)
                if path.is_symlink() or not path.is_file():
                    continue
                rel = str(path.relative_to(ROOT))
                dialect = shell_dialect(path)
                if dialect:
                    by_dialect.setdefault(dialect, []).append(rel)
                elif name.endswith(".sh"):
                    unknown.append(rel)
    return by_dialect, unknown


def test_shell_scripts_are_found_by_their_shebang():
    # guards against a finder that silently finds nothing (and a shellcheck test that passes)
    by_dialect, unknown = shell_scripts()
    assert unknown == [], f"*.sh files without a #!/bin/sh or #!/bin/bash line: {unknown}"
    assert "dracut-module/50sysroot/sysroot-prepare-root.sh" in by_dialect["sh"]
    assert "vm-tests/guest/vmtest-driver" in by_dialect["sh"]
    assert "dracut-module/50sysroot/module-setup.sh" in by_dialect["bash"]


def test_shellcheck_is_clean():
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed (apt-get install -y shellcheck)"
    by_dialect, _ = shell_scripts()
    assert by_dialect, "no shell scripts found"
    report = []
    for dialect, scripts in sorted(by_dialect.items()):
        # --norc: a ~/.shellcheckrc must not change the verdict
        proc = subprocess.run(
            [shellcheck, "--norc", "-s", dialect, "--", *scripts],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            report.append(
                f"shellcheck -s {dialect} (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
    assert not report, "\n".join(report)


# ---------------------------------------------------------- process starting
# Only sysroot/util/run.py starts external commands (one door: stdin closed, stable
# environment, failures reported the same way). Anything else that starts a process must be
# allowed here, by file and by exactly what it uses, with the reason.
PROCESS_ALLOWED: dict[str, set[str]] = {
    "sysroot/util/run.py": {"subprocess"},
    # The pull's fetch workers: forked copies of this Python process (no external command,
    # nothing run.py could run), each running threads that fetch objects; see its docstring.
    # (multiprocessing.process: for the type of its processes, BaseProcess)
    "sysroot/pull/workers.py": {
        "multiprocessing",
        "multiprocessing.connection",
        "multiprocessing.process",
    },
}
PROCESS_MODULES = ("subprocess", "multiprocessing", "_posixsubprocess")
PROCESS_FUNCTIONS = {
    "os": (
        "system",
        "popen",
        "fork",
        "forkpty",
        "posix_spawn",
        "posix_spawnp",
        "exec",
        "spawn",
    ),  # exec and spawn: every os.exec* and os.spawn*
    "pty": ("spawn", "fork"),
    "asyncio": ("create_subprocess_exec", "create_subprocess_shell", "subprocess"),
    "concurrent.futures": ("ProcessPoolExecutor",),
}


def _process_module(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in PROCESS_MODULES)


def _process_function(module: str, attr: str) -> bool:
    names = PROCESS_FUNCTIONS.get(module, ())
    return attr in names or (module == "os" and attr.startswith(("exec", "spawn")))


def process_uses(source: str, filename: str) -> list[tuple[int, str]]:
    """(line, what) for each way the module starts processes: an import of subprocess or
    multiprocessing (in any form, also through __import__ or importlib.import_module with a
    literal name), and any use of os.system/popen/fork/exec*/spawn*, pty.spawn/fork, asyncio's
    subprocesses or ProcessPoolExecutor, also under another name (import os as o,
    from os import fork)."""
    tree = ast.parse(source, filename)
    aliases: dict[str, str] = {}  # local name -> module it is bound to
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _process_module(a.name):
                    found.append((node.lineno, a.name))
                if a.asname:
                    aliases[a.asname] = a.name
                else:  # import concurrent.futures binds "concurrent", used as a.b.c
                    aliases[a.name.split(".")[0]] = a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if _process_module(node.module):
                    found.append((node.lineno, node.module))
                elif _process_function(node.module, a.name):
                    found.append((node.lineno, full))
                else:
                    aliases[a.asname or a.name] = full
        elif isinstance(node, ast.Call) and node.args:
            func, arg = node.func, node.args[0]
            name = (
                func.id
                if isinstance(func, ast.Name)
                else (func.attr if isinstance(func, ast.Attribute) else "")
            )
            if (
                name in ("__import__", "import_module")
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and _process_module(arg.value)
            ):
                found.append((node.lineno, arg.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            module = _dotted(node.value, aliases)
            if module and _process_function(module, node.attr):
                found.append((node.lineno, f"{module}.{node.attr}"))
    return sorted(set(found))


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """The module an expression such as `os` or `concurrent.futures` names, through aliases."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    return None


def test_process_uses_are_found():
    # each form the scan must catch, and names that only look alike
    cases = {
        "import subprocess": ["subprocess"],
        "import subprocess as sp": ["subprocess"],
        "from subprocess import run": ["subprocess"],
        "import multiprocessing.pool": ["multiprocessing.pool"],
        "import os\nos.system('x')": ["os.system"],
        "import os as o\no.execvp('x', [])": ["os.execvp"],
        "import os\nos.spawnl(0, 'x')": ["os.spawnl"],
        "import os\npid = os.fork()": ["os.fork"],
        "import os\nf = os.popen": ["os.popen"],
        "from os import fork": ["os.fork"],
        "from os import posix_spawn as ps": ["os.posix_spawn"],
        "import pty\npty.spawn(['sh'])": ["pty.spawn"],
        "import asyncio\nasyncio.create_subprocess_exec('x')": ["asyncio.create_subprocess_exec"],
        "import concurrent.futures\nconcurrent.futures.ProcessPoolExecutor()": [
            "concurrent.futures.ProcessPoolExecutor"
        ],
        "from concurrent.futures import ProcessPoolExecutor": [
            "concurrent.futures.ProcessPoolExecutor"
        ],
        "__import__('subprocess')": ["subprocess"],
        "import importlib\nimportlib.import_module('subprocess')": ["subprocess"],
        "import os\nos.getpid()": [],
        "from multiprocessing import connection": ["multiprocessing"],
        "from concurrent.futures import ThreadPoolExecutor": [],
        "import pty\npty.openpty()": [],
        "system = 1\nfork = lambda: 0\nfork()": [],
    }
    for source, expected in cases.items():
        assert [what for _, what in process_uses(source, "<case>")] == expected, source


def test_only_run_py_starts_processes():
    modules = sorted((ROOT / "sysroot").rglob("*.py"))
    assert modules, "no modules under sysroot/"
    offenders = []
    for path in modules:
        rel = str(path.relative_to(ROOT))
        allowed = PROCESS_ALLOWED.get(rel, set())
        for line, what in process_uses(path.read_text(), rel):
            if what not in allowed:
                offenders.append(f"{rel}:{line}: {what}")
    assert not offenders, "processes are started through sysroot/util/run.py only:\n" + "\n".join(
        offenders
    )
    for rel in PROCESS_ALLOWED:  # an allow-list entry for a file that is gone is stale
        assert (ROOT / rel).is_file(), f"stale PROCESS_ALLOWED entry {rel}"


# ------------------------------------------------------------ command modules
# A command module imports sysroot.cli.common, sysroot.cli.main and the library, never
# another command module: what two commands share goes to sysroot/cli/common.py, and
# verbs split over modules are wired by cli/main.py (NESTED_COMMAND_MODULES).
COMMANDS_PACKAGE = "sysroot.cli.commands"
# Pending exceptions, by file and exactly what it imports (none left).
COMMAND_IMPORTS_ALLOWED: dict[str, set[str]] = {}


def command_imports(source: str, filename: str, module: str) -> list[tuple[int, str]]:
    """(line, module) for each import of sysroot.cli.commands or a module in it, other than
    `module` itself: absolute and relative imports, `from sysroot.cli.commands import x`,
    and importlib.import_module/__import__ with a literal name."""
    package = module.rpartition(".")[0]

    def inside(name: str) -> bool:
        return name == COMMANDS_PACKAGE or name.startswith(COMMANDS_PACKAGE + ".")

    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to this module's package
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            # `from pkg import x` may name a module of pkg (or the package itself)
            names = [
                f"{base}.{a.name}" if COMMANDS_PACKAGE in (base, f"{base}.{a.name}") else base
                for a in node.names
            ]
        elif isinstance(node, ast.Call) and node.args:
            func, arg = node.func, node.args[0]
            name = (
                func.id
                if isinstance(func, ast.Name)
                else (func.attr if isinstance(func, ast.Attribute) else "")
            )
            if (
                name in ("__import__", "import_module")
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
            ):
                names = [arg.value]
        found.extend((node.lineno, n) for n in names if inside(n) and n != module)
    return sorted(set(found))


def test_command_imports_are_found():
    me = f"{COMMANDS_PACKAGE}.log_show"
    cases = {
        "from sysroot.cli.commands.admin import _say_change": [f"{COMMANDS_PACKAGE}.admin"],
        "from sysroot.cli.commands import admin_upgrade": [f"{COMMANDS_PACKAGE}.admin_upgrade"],
        "import sysroot.cli.commands.summary as s": [f"{COMMANDS_PACKAGE}.summary"],
        "import sysroot.cli.commands": [COMMANDS_PACKAGE],
        "from sysroot.cli import commands": [COMMANDS_PACKAGE],
        "from . import pull_local": [f"{COMMANDS_PACKAGE}.pull_local"],
        "from .commit import parse_timestamp": [f"{COMMANDS_PACKAGE}.commit"],
        "def f():\n    from sysroot.cli.commands.refs import x": [f"{COMMANDS_PACKAGE}.refs"],
        "import importlib\nimportlib.import_module('sysroot.cli.commands.diff')": [
            f"{COMMANDS_PACKAGE}.diff"
        ],
        "from sysroot.cli.common import say_change": [],
        "from sysroot.cli.main import add_repo_option": [],
        "from .. import common": [],
        "from sysroot.cli.commands.log_show import format_commit": [],  # itself
        "import sysroot.cli.commandsx": [],
    }
    for source, expected in cases.items():
        assert [m for _, m in command_imports(source, "<case>", me)] == expected, source


def test_no_command_module_imports_another():
    paths = sorted((ROOT / "sysroot" / "cli" / "commands").glob("*.py"))
    assert len(paths) > 10, "command modules not found"
    offenders = []
    for path in paths:
        rel = str(path.relative_to(ROOT))
        module = f"{COMMANDS_PACKAGE}.{path.stem}"
        allowed = COMMAND_IMPORTS_ALLOWED.get(rel, set())
        for line, what in command_imports(path.read_text(), rel, module):
            if what not in allowed:
                offenders.append(f"{rel}:{line}: imports {what}")
    assert not offenders, (
        "command modules share code through sysroot/cli/common.py, "
        "not by importing each other:\n" + "\n".join(offenders)
    )
    for rel, names in COMMAND_IMPORTS_ALLOWED.items():  # a fixed exception must go
        module = f"{COMMANDS_PACKAGE}.{Path(rel).stem}"
        used = {what for _, what in command_imports((ROOT / rel).read_text(), rel, module)}
        assert names <= used, f"stale COMMAND_IMPORTS_ALLOWED entry {rel}: {names - used}"
