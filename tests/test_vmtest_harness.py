"""The parts of the VM test harness (vm-tests/vmtest) that need no VM: the build cache
and reading a guest's results off its serial console. The boots themselves are
vm-tests/run's job."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "vm-tests"))

from vmtest import cache  # noqa: E402
from vmtest.qemu import PREAMBLE, parse_console  # noqa: E402

CONSOLE = """\
[    3.1] Linux version 6.1.0
@@VMT-BEGIN
@@VMT: + status_report
@@VMT: R: booted=abc.0
[   40.2] some kernel message
@@VMT: R: cmdline=root=UUID=x ostree=/ostree/deploy/os/deploy/abc.0
@@VMT: plain output
@@VMT-END rc=0
"""


def test_console_results_are_read_between_the_markers():
    result = parse_console(CONSOLE, killed=False, seconds=1.0)
    assert result.rc == 0
    assert result.values() == {"booted": "abc.0",
                               "cmdline": "root=UUID=x ostree=/ostree/deploy/os/deploy/abc.0"}
    assert "plain output" in result.output


def test_a_guest_that_never_finished_has_no_exit_status():
    result = parse_console(CONSOLE.split("@@VMT-END")[0], killed=True, seconds=1.0)
    assert result.rc is None and result.killed


def test_preamble_defines_the_script_helpers():
    for helper in ("mark()", "result()", "action()"):
        assert helper in PREAMBLE


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("SYSROOT_VM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_product_is_built_once_per_key_and_old_versions_go(cache_root, tmp_path):
    builds = []

    def build(path):
        builds.append(path)
        Path(path).mkdir()
        (Path(path) / "content").write_text(str(len(builds)))

    first = cache.cached("thing", "0123456789abcdef", build, log=lambda m: None)
    again = cache.cached("thing", "0123456789abcdef", build, log=lambda m: None)
    assert first == again and len(builds) == 1
    assert builds[0].endswith(".building")  # built under a temporary name
    newer = cache.cached("thing", "fedcba9876543210", build, log=lambda m: None)
    assert len(builds) == 2
    assert sorted(p.name for p in cache_root.iterdir()) == [Path(newer).name]


def test_an_interrupted_build_is_never_taken_for_a_product(cache_root):
    def failing(path):
        Path(path).mkdir()
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.cached("thing", "0123456789abcdef", failing, log=lambda m: None)
    built = []
    cache.cached("thing", "0123456789abcdef", lambda p: (built.append(p), Path(p).mkdir()),
                 log=lambda m: None)
    assert built  # rebuilt, not reused


def test_the_key_follows_the_inputs(tmp_path):
    tree = tmp_path / "inputs"
    tree.mkdir()
    (tree / "a").write_text("1")
    key1 = cache.hash_inputs("recipe", trees=[str(tree)])
    assert cache.hash_inputs("recipe", trees=[str(tree)]) == key1
    (tree / "a").write_text("2")
    key2 = cache.hash_inputs("recipe", trees=[str(tree)])
    assert key2 != key1
    assert cache.hash_inputs("other recipe", trees=[str(tree)]) != key2
    single = cache.hash_inputs("recipe", trees=[str(tree / "a")])  # a file as a tree
    (tree / "a").write_text("3")
    assert cache.hash_inputs("recipe", trees=[str(tree / "a")]) != single
