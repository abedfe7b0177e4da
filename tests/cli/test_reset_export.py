"""`reset` and `export` against the oracle."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest


def _tree(root: Path) -> Path:
    (root / "a/b").mkdir(parents=True)
    (root / "a/one").write_bytes(b"same\n")
    os.chmod(root / "a/one", 0o4755)
    (root / "a/two").write_bytes(b"x" * 300_000)
    (root / "a/empty").write_bytes(b"")
    os.symlink("one", root / "a/lnk")
    os.symlink("t" * 150, root / "a/longlink")
    (root / "a" / ("n" * 120)).write_bytes(b"long name\n")
    deep = root / ("d" * 90) / ("e" * 30)
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"deep\n")
    os.chown(root / "a/b", 7, 8)
    return root


@pytest.fixture
def repos(tmp_path, ostree):
    """Two archive repos with the same two commits on `m` and one on `other`."""
    tree = _tree(tmp_path / "tree")
    out = []
    for name in ("theirs", "ours"):
        repo = tmp_path / name
        ostree("init", f"--repo={repo}", "--mode=archive")
        for subject in ("1", "2"):
            ostree(f"--repo={repo}", "commit", "-b", "m", "-s", subject, "--timestamp=@1000", tree)
        ostree(
            f"--repo={repo}", "commit", "-b", "other", "-s", "o", "--timestamp=@2000", tree / "a"
        )
        out.append(repo)
    return out


def _refs(repo: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((repo / "refs/heads").iterdir())}


@pytest.mark.parametrize(
    "words",
    [["m", "m^"], ["m", "other"], ["m"], [], ["nosuch", "m"], ["m", "nosuchrev"], ["m", "m^^"]],
)
def test_reset_as_ostree(ostree, sysroot, repos, words):
    theirs, ours = repos
    a = ostree(f"--repo={theirs}", "reset", *words, check=False)
    b = sysroot(f"--repo={ours}", "reset", *words, check=False)
    assert b.returncode == a.returncode
    assert _refs(ours) == _refs(theirs)
    if a.returncode:
        last = a.stderr.decode().strip().splitlines()[-1]
        assert b.stderr.decode().strip() == last
    else:
        assert b.stdout == a.stdout == b""


def test_reset_refuses_a_commit_the_repo_lacks(sysroot, repos):
    _, ours = repos
    before = _refs(ours)
    proc = sysroot(f"--repo={ours}", "reset", "m", "a" * 64, check=False)
    assert proc.returncode == 1 and proc.stderr.count(b"\n") == 1
    assert b"not found" in proc.stderr
    assert _refs(ours) == before


def _members(data: bytes) -> list[tuple]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        out = []
        for m in tar.getmembers():
            payload = tar.extractfile(m).read() if m.isreg() else b""
            out.append(
                (
                    m.name,
                    m.type,
                    m.mode,
                    m.uid,
                    m.gid,
                    m.mtime,
                    m.size,
                    m.linkname,
                    m.uname,
                    m.gname,
                    payload,
                )
            )
        return out


@pytest.mark.parametrize(
    "options",
    [[], ["--subpath=/a"], ["--subpath=a", "--prefix=pfx"], ["--prefix=root/"], ["--no-xattrs"]],
)
def test_export_as_ostree(ostree, sysroot, repos, tmp_path, options):
    theirs, ours = repos
    ostree(f"--repo={theirs}", "export", "m", *options, f"--output={tmp_path / 'a.tar'}")
    sysroot(f"--repo={ours}", "export", "m", *options, f"--output={tmp_path / 'b.tar'}")
    a, b = (tmp_path / "a.tar").read_bytes(), (tmp_path / "b.tar").read_bytes()
    assert _members(b) == _members(a)
    # to stdout as well
    assert _members(sysroot(f"--repo={ours}", "export", "m", *options).stdout) == _members(a)


def test_export_errors(ostree, sysroot, repos, tmp_path):
    theirs, ours = repos
    for words, message in (
        ([], b"error: A COMMIT argument is required"),
        (["nosuch"], b"error: Refspec 'nosuch' not found"),
        (["m", "--subpath=/nonexist"], b"error: No such file or directory: /nonexist"),
    ):
        out = tmp_path / "out.tar"
        a = ostree(f"--repo={theirs}", "export", *words, check=False)
        b = sysroot(f"--repo={ours}", "export", *words, f"--output={out}", check=False)
        assert a.returncode == b.returncode == 1
        assert message in a.stderr and b.stderr.strip() == message
        assert not out.exists()  # no half archive (ostree leaves one)
    b = sysroot(f"--repo={ours}", "export", "m", "--subpath=/a/one", check=False)
    assert b.returncode == 1 and b.stderr == b"error: --subpath=/a/one: not a directory\n"
