"""ls and cat against the real ostree: byte-identical output, same errors.

The repos (every mode, written by ostree and by sysroot) are the ones the checkout
tests build. Our CLI runs in-process for the big option matrix and as a real
process for a few end-to-end cases.
"""

from __future__ import annotations

import pytest

from sysroot.cli.main import main
from tests.store.test_checkout import shared_repos

LS_CASES = [  # (options, paths): every option, alone and combined, on dirs, files, links
    ([], []),
    (["-R"], []),
    (["-R", "-C", "-X"], []),
    (["-d"], ["/", "/usr/bin"]),
    (["-R", "--nul-filenames-only"], ["/usr"]),
    (["-C"], ["/usr/bin", "/usr/bin/tool", "/link-to-tool"]),
    (["-X", "-d"], ["/owned", "/readonly/sub", "/ünïcødé-ñame", "/tmp", "/usr/share"]),
    ([], ["usr/share", "/owned/f"]),
    (["-C", "-X"], ["/usr/bin/tool", "/", "/dangling"]),
]
# paths ostree resolves oddly or not at all: errors must match too
LS_BAD_PATHS = ["/nonexist", "usr//bin", "/usr/bin/", "/usr/bin/tool/x", ".", "./usr", ""]
CAT_PATHS = [
    ["/link-to-tool"],
    ["usr/share/big"],
    [
        "/usr/bin/tool",
        "/ünïcødé-ñame",
        "/owned/f",
        "/a",
        "/B",
        "/empty-file",
        "/usr/share/doc/readme",
        "/readonly/sub/inside",
        "/link-to-tool",
    ],
]
CAT_BAD_PATHS = [
    "/usr/bin",
    "/dangling",
    "/abs-link",
    "/nonexist",
    "usr//bin/tool",
    "/usr/bin/tool/x",
    "/",
]


@pytest.fixture(scope="session")
def repos(tmp_path_factory, ostree, sysroot):
    return shared_repos(tmp_path_factory, ostree, sysroot)


def ours(capsysbinary, *args) -> tuple[int, bytes, bytes]:
    capsysbinary.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsysbinary.readouterr()
    return rc, out, err


def theirs(ostree, *args) -> tuple[int, bytes, bytes]:
    proc = ostree(*args, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def assert_same(expected, actual, what):
    rc_e, out_e, err_e = expected
    rc_a, out_a, err_a = actual
    assert (rc_e == 0) == (rc_a == 0), f"{what}: exit {rc_a}, ostree {rc_e}: {err_a!r}"
    assert out_a == out_e, what
    assert err_a == err_e, what


@pytest.mark.parametrize("writer", ["ostree", "sysroot"])
def test_ls_matches_ostree(repos, ostree, capsysbinary, mode, writer):
    repo = repos.get(mode, writer)
    for opts, paths in LS_CASES:
        args = ["ls", f"--repo={repo}", *opts, "t", *paths]
        expected = theirs(ostree, *args)
        assert expected[0] == 0 and expected[1]
        assert_same(expected, ours(capsysbinary, *args), " ".join(args))


@pytest.mark.parametrize("writer", ["ostree", "sysroot"])
def test_cat_matches_ostree(repos, ostree, capsysbinary, mode, writer):
    repo = repos.get(mode, writer)
    for paths in CAT_PATHS:
        args = ["cat", f"--repo={repo}", "t", *paths]
        expected = theirs(ostree, *args)
        assert expected[0] == 0
        assert_same(expected, ours(capsysbinary, *args), " ".join(args))


def test_errors_match_ostree(repos, ostree, capsysbinary, mode):
    repo = repos.get(mode)
    if mode == "bare":  # path resolution does not depend on the mode: all cases once
        cases = [["ls", f"--repo={repo}", "t", p] for p in LS_BAD_PATHS]
        cases += [["ls", f"--repo={repo}", "t", "/usr", "/nonexist", "/tmp"]]  # stops midway
        cases += [["cat", f"--repo={repo}", "t", p] for p in CAT_BAD_PATHS]
        cases += [["ls", f"--repo={repo}", "nosuchref"], ["cat", f"--repo={repo}", "nosuch", "/a"]]
    else:  # symlinks are stored differently in each mode: following them must not differ
        cases = [["cat", f"--repo={repo}", "t", p] for p in ("/dangling", "/abs-link")]
        cases += [["ls", f"--repo={repo}", "t", "/usr/bin/tool/x"]]
    for args in cases:
        expected = theirs(ostree, *args)
        assert expected[0] != 0
        actual = ours(capsysbinary, *args)
        assert_same(expected, actual, " ".join(args))
        assert actual[2].startswith(b"error: ") and actual[2].count(b"\n") == 1


def test_ls_cat_subprocess(repos, ostree, sysroot):
    """The real `sysroot` process, not just main(): same bytes on stdout."""
    repo = repos.get("bare-user")
    for args in (
        ["ls", f"--repo={repo}", "-R", "-C", "-X", "t"],
        ["ls", f"--repo={repo}", "-R", "--nul-filenames-only", "t", "/usr"],
        ["cat", f"--repo={repo}", "t", "/usr/share/big", "/link-to-tool"],
    ):
        assert sysroot(*args).stdout == ostree(*args).stdout
    res = sysroot("ls", f"--repo={repo}", "t", "/nonexist", check=False)
    assert res.returncode == 1
    assert res.stderr == ostree("ls", f"--repo={repo}", "t", "/nonexist", check=False).stderr


def test_ls_second_commit(repos, ostree, capsysbinary):
    """A tree where a file became a symlink and a directory changed mode."""
    repo = repos.get("archive")
    args = ["ls", f"--repo={repo}", "-R", "-C", "-X", "t2"]
    assert_same(theirs(ostree, *args), ours(capsysbinary, *args), " ".join(args))


@pytest.mark.parametrize("repo_mode", ["bare", "bare-user", "archive"])
def test_ls_xattr_values_print_like_ostree(ostree, capsysbinary, tmp_path, repo_mode):
    """Byte-string xattr values: NUL-terminated, non-ASCII, quotes, control bytes."""
    import os

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("a\n")
    for name, value in [
        ("user.nul", b"hello\0"),
        ("user.quote", b'it\'s "q"\0'),
        ("user.uni", "ünï\n".encode() + b"\0"),
        ("user.ctl", b"a\x01b\0"),
        ("user.hi", b"\xff\xfe\0"),
        ("user.one", b"\0"),
        ("user.bin", b"\x00\x01\x02"),
    ]:
        os.setxattr(tree / "f", name, value)
    os.setxattr(tree, "user.dir", b"d\0")
    repo = tmp_path / "repo"
    ostree("init", f"--repo={repo}", f"--mode={repo_mode}")
    ostree("commit", f"--repo={repo}", "-b", "t", tree)
    args = ["ls", f"--repo={repo}", "-X", "-C", "t"]
    expected = theirs(ostree, *args)
    assert b"user.quote" in expected[1]
    assert_same(expected, ours(capsysbinary, *args), " ".join(args))
