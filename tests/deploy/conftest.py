"""Fixtures for `admin` tests: throw-away sysroots made by either tool, pairs of identical
sysroots driven by the two tools (tests/helpers/twins.py), and a test OS tree; the rest
is in tests/helpers/sysroots.py.

Deployment roots carry the immutable flag (both tools set it), so every test's tmp_path
is swept for deployment directories afterwards and the flag is cleared; otherwise
pytest could not remove its temporary directories.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.sysroots import (
    OSNAME,
    Sysroot,
    assert_dicts_equal,
    clear_immutable_under,
    init_sysroot,
    make_os_tree,
    snapshot,
)
from tests.helpers.twins import SysrootTwins


@pytest.fixture(autouse=True)
def _mutable_afterwards(tmp_path):
    yield
    clear_immutable_under(tmp_path)


@pytest.fixture
def make_sysroot(tmp_path, ostree, sysroot):
    """make_sysroot(name, by="ostree"|"sysroot", osnames=...) -> Sysroot whose .tool is
    the tool that created it."""

    def make(name: str = "sr", by: str = "ostree", osnames=(OSNAME,)) -> Sysroot:
        tool = ostree if by == "ostree" else sysroot
        sr = init_sysroot(tmp_path / name, tool, ostree, osnames)
        sr.name = name
        return sr

    return make


@pytest.fixture
def pair(make_sysroot, ostree, sysroot) -> SysrootTwins:
    a = make_sysroot("a", by="ostree")
    b = make_sysroot("b", by="sysroot")
    # init-fs and os-init of both tools make the same sysroot
    assert_dicts_equal(snapshot(a.path), snapshot(b.path), "after init-fs, os-init")
    return SysrootTwins(a, b, ostree, sysroot)


@pytest.fixture
def os_tree(tmp_path) -> Path:
    return make_os_tree(tmp_path / "tree")
