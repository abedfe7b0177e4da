"""health/ sits beside deploy/: it may import util, formats, store, boot, deploy and errors,
never cli or pull (nor sign, which pull brings) — checked on the source and on what an
import of the package actually loads."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "sysroot" / "health"
ALLOWED = ("sysroot.util", "sysroot.formats", "sysroot.store", "sysroot.boot", "sysroot.deploy")
ALLOWED_EXACT = ("sysroot.errors",)


def test_imports_in_the_source():
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name == "sysroot" or not name.startswith("sysroot."):
                    continue
                ok = name in ALLOWED_EXACT or name.startswith(("sysroot.health",) + ALLOWED)
                assert ok, f"{path.name} imports {name}"


def test_what_an_import_loads():
    code = "import sys, sysroot.health; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    bad = [m for m in loaded if m.startswith(("sysroot.cli", "sysroot.pull", "sysroot.sign"))]
    assert bad == []
