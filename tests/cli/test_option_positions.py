"""Where options may stand and what the environment says, as ostree 2022.7 has it:
`admin --sysroot=PATH VERB`, -v/--version after the command, $OSTREE_SYSROOT, and a
repository found in the current directory before $OSTREE_REPO. Each case runs both
tools on the same input."""

from __future__ import annotations

import os

import pytest

from sysroot import __version__ as sysroot_version
from sysroot.cli.main import build_parser, hoist_options


def _both(ostree, sysroot, *args, **kw):
    return ostree(*args, check=False, **kw), sysroot(*args, check=False, **kw)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["admin", "--sysroot=/s", "status"], ["admin", "status", "--sysroot=/s"]),
        (
            ["admin", "--sysroot", "/s", "status", "-V"],
            ["admin", "status", "--sysroot", "/s", "-V"],
        ),
        (
            ["admin", "--sysroot=/s", "kargs", "--os=x", "edit-in-place", "--append=a"],
            ["admin", "kargs", "edit-in-place", "--sysroot=/s", "--os=x", "--append=a"],
        ),
        (["--repo=r", "log", "main"], ["--repo=r", "log", "main"]),  # global ones stay
        (["remote", "--repo=r", "list"], ["remote", "list", "--repo=r"]),
        (["commit", "-b", "x", "--", "--sysroot=/s"], ["commit", "-b", "x", "--", "--sysroot=/s"]),
    ],
)
def test_options_before_a_verb_go_after_it(argv, expected):
    parser = build_parser(argv[argv.index(next(a for a in argv if not a.startswith("-")))])
    assert hoist_options(parser, argv) == expected


@pytest.fixture
def two_sysroots(tmp_path, ostree):
    paths = []
    for name in ("theirs", "ours"):
        path = tmp_path / name
        path.mkdir()
        ostree("admin", "init-fs", path)
        paths.append(path)
    return paths


def test_sysroot_before_the_verb(ostree, sysroot, two_sysroots):
    theirs, ours = two_sysroots
    a = ostree("admin", f"--sysroot={theirs}", "-v", "os-init", "foo")
    b = sysroot("admin", f"--sysroot={ours}", "-v", "os-init", "foo")
    assert (theirs / "ostree/deploy/foo/var").is_dir() and (ours / "ostree/deploy/foo/var").is_dir()
    assert a.stdout.decode().replace(str(theirs), "S") == b.stdout.decode().replace(str(ours), "S")
    a, b = (
        ostree("admin", f"--sysroot={theirs}", "status"),
        sysroot("admin", f"--sysroot={ours}", "status"),
    )
    assert a.stdout == b.stdout == b"No deployments.\n"


def test_ostree_sysroot_from_the_environment(ostree, sysroot, two_sysroots):
    theirs, ours = two_sysroots
    ostree("admin", "os-init", "bar", env={"OSTREE_SYSROOT": str(theirs)})
    sysroot("admin", "os-init", "bar", env={"OSTREE_SYSROOT": str(ours)})
    assert (theirs / "ostree/deploy/bar").is_dir() and (ours / "ostree/deploy/bar").is_dir()
    # --sysroot wins over the environment, in both
    ostree("admin", "os-init", "baz", f"--sysroot={theirs}", env={"OSTREE_SYSROOT": "/nonexistent"})
    sysroot("admin", "os-init", "baz", f"--sysroot={ours}", env={"OSTREE_SYSROOT": "/nonexistent"})
    assert (theirs / "ostree/deploy/baz").is_dir() and (ours / "ostree/deploy/baz").is_dir()


def test_verbose_and_version_after_the_command(ostree, sysroot, tmp_path):
    repo = tmp_path / "repo"
    ostree("init", f"--repo={repo}", "--mode=archive")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree/f").write_text("x")
    ostree("commit", f"--repo={repo}", "-b", "main", "-s", "s", tmp_path / "tree")
    for args in (["log", f"--repo={repo}", "-v", "main"], ["refs", "--verbose", f"--repo={repo}"]):
        a, b = _both(ostree, sysroot, *args)
        assert a.returncode == b.returncode == 0, b.stderr
        assert a.stdout == b.stdout
    a, b = _both(ostree, sysroot, "log", f"--repo={repo}", "main", "--version")
    assert a.returncode == b.returncode == 0
    assert b.stdout.startswith(b"sysroot:\n Version: ") and b"Refspec" not in b.stdout


def _version_shape(text: str) -> list[str]:
    """The YAML-like block of `ostree --version` with names and values blanked out."""
    lines = text.splitlines()
    assert lines[0].endswith(":") and lines[1].startswith(" Version: '"), text
    assert lines[2] == " Features:" and all(x.startswith("  - ") for x in lines[3:]), text
    return [lines[0][-1], lines[1][:11], lines[2]]


@pytest.mark.parametrize("before", [[], ["-v"], ["--verbose"]])
def test_version_alone_in_ostrees_shape(ostree, sysroot, before):
    """`sysroot --version` with no command printed the usage and exited 2: the top
    parser's own --version made it look like an option of a command."""
    a, b = _both(ostree, sysroot, *before, "--version")
    assert a.returncode == b.returncode == 0, b.stderr
    assert b.stderr == b""
    assert _version_shape(b.stdout.decode()) == _version_shape(a.stdout.decode())
    assert f" Version: '{sysroot_version}'\n".encode() in b.stdout


def test_repository_in_the_current_directory_comes_first(ostree, sysroot, tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    ostree("init", f"--repo={here}", "--mode=archive")
    ostree("init", f"--repo={there}", "--mode=bare")
    env = {"OSTREE_REPO": str(there)}
    a, b = _both(ostree, sysroot, "config", "get", "core.mode", cwd=here, env=env)
    assert a.returncode == b.returncode == 0, b.stderr
    assert a.stdout == b.stdout == b"archive-z2\n"
    # not a repository here: $OSTREE_REPO
    a, b = _both(ostree, sysroot, "config", "get", "core.mode", cwd=tmp_path, env=env)
    assert a.stdout == b.stdout == b"bare\n"


def test_no_repository_anywhere(ostree, sysroot, tmp_path):
    if os.path.isdir("/ostree/repo/objects"):  # a host that is itself an ostree system
        pytest.fail("this test needs a host without /ostree/repo")
    a, b = _both(ostree, sysroot, "refs", cwd=tmp_path, env={"OSTREE_REPO": None})
    assert a.returncode == b.returncode == 1
    assert b"error: Command requires a --repo argument" in a.stderr
    assert b.stderr.decode().splitlines()[0] == "error: Command requires a --repo argument"
    assert b"Traceback" not in b.stderr


def test_a_command_of_our_own_keeps_its_version_option(sysroot, tmp_path):
    """`build create --version=V` names the build: not the global --version."""
    proc = sysroot(
        "build", "create", "--version", "9", f"--repo={tmp_path / 'none'}", "ref", check=False
    )
    assert b"Version:" not in proc.stdout and proc.returncode != 0
    assert b"none" in proc.stderr  # it went on to open the repository
