"""Shared fixtures: the real `ostree` as oracle, our CLI, and test trees.

The oracle is required, never skipped: the README's test command installs it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.helpers import unit
from tests.helpers.tools import Tool

OSTREE = shutil.which("ostree")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "unit: needs neither root nor ostree nor mounts; `pytest -m unit` runs these alone "
        "(tests/helpers/unit.py)",
    )


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unit.mark_listed(items, str(config.rootpath))


@pytest.fixture(autouse=True)
def _unit_tests_start_no_system_tools(request, monkeypatch) -> None:
    if request.node.get_closest_marker("unit") is not None:
        unit.guard_subprocesses(monkeypatch)


@pytest.fixture(scope="session")
def ostree() -> Tool:
    assert OSTREE, "the real ostree (Debian package 'ostree') is required: it is the test oracle"
    return Tool([OSTREE])


@pytest.fixture(scope="session")
def sysroot() -> Tool:
    return Tool([sys.executable, "-m", "sysroot"])


@pytest.fixture(params=["bare", "bare-user", "bare-user-only", "archive"])
def mode(request) -> str:
    return request.param


def make_rich_tree(root: Path, *, xattrs: bool = True) -> Path:
    """A tree with every shape that has tripped OSTree re-implementations."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/share/doc").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "usr/bin/tool").write_bytes(b"#!/bin/sh\necho tool\n")
    os.chmod(root / "usr/bin/tool", 0o755)
    (root / "usr/bin/suid").write_bytes(b"suid")
    os.chmod(root / "usr/bin/suid", 0o4755)
    (root / "usr/bin/sgid").write_bytes(b"sgid")
    os.chmod(root / "usr/bin/sgid", 0o2755)
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    (root / "empty-file").write_bytes(b"")
    (root / "usr/share/doc/readme").write_text("hello\n")
    os.link(root / "usr/share/doc/readme", root / "usr/share/doc/readme-hardlink")
    os.symlink("usr/bin/tool", root / "link-to-tool")
    os.symlink("does/not/exist", root / "dangling")
    os.symlink("/absolute/target", root / "abs-link")
    (root / "ünïcødé-ñame").write_text("non-ascii\n")
    # "B" < "a" in bytes but not in most locales; "a_" vs "a-" vs "a."
    for name in ("B", "a", "a_", "a-", "a.", "Z9", "z"):
        (root / name).write_text(name)
    deep = root
    for i in range(40):
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    (deep / "bottom").write_text("deep\n")
    big = root / "usr/share/big"
    with open(big, "wb") as f:
        f.write(os.urandom(1 << 20) * 10)  # 10 MiB
    (root / "usr/share/small-random").write_bytes(os.urandom(4097))
    if xattrs:
        os.setxattr(root / "usr/bin/tool", "user.test", b"value")
        os.setxattr(root / "usr/bin/tool", "user.another", b"\x00\x01binary")
        os.setxattr(root / "usr/share", "user.dir", b"dirvalue")
        os.setxattr(
            root / "link-to-tool", "user.onlink", b"l", follow_symlinks=False
        ) if _symlink_xattrs_ok() else None
    return root


def _symlink_xattrs_ok() -> bool:
    # user.* xattrs are not permitted on symlinks by Linux; keep the tree portable.
    return False


@pytest.fixture
def rich_tree(tmp_path) -> Path:
    return make_rich_tree(tmp_path / "tree")


def one_error_line(proc) -> str:
    """A failed command's single `error:` line (a `hint:` line may follow); no traceback."""
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("hint: ")]
    assert len(lines) == 1, err
    return lines[0]


COMMIT_ARGS = [
    "-s",
    "Subject",
    "--body",
    "Body text",
    "--timestamp=2021-05-04 03:02:01",
    "--add-metadata-string=version=42.1",
]
