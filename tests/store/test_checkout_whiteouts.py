"""checkout --whiteouts, --process-passthrough-whiteouts and --skip-list against the
oracle: the same trees come out (files, devices, modes), and SELinux is refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest


def _snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            rel = str(p.relative_to(root))
            data = p.read_bytes() if stat.S_ISREG(st.st_mode) else b""
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_rdev, data)
    return out


@pytest.fixture
def layers(tmp_path, ostree):
    """A bare repo: `base` (a/x, a/y, a/sub/s, b/z), `upper` whiting out a/x and a/sub
    and making b opaque, `passthrough` with an overlayfs whiteout."""
    t = tmp_path
    for rel, text in {
        "base/a/x": "x",
        "base/a/y": "y",
        "base/a/sub/s": "s",
        "base/b/z": "z",
        "upper/a/.wh.x": "",
        "upper/a/.wh.sub": "",
        "upper/a/new": "n",
        "upper/b/.wh..wh..opq": "",
        "upper/b/fresh": "f",
        "upper/-early": "e",
        "passthrough/d/.ostree-wh.gone": "",
        "passthrough/d/keep": "k",
    }.items():
        (t / rel).parent.mkdir(parents=True, exist_ok=True)
        (t / rel).write_text(text)
    os.chmod(t / "passthrough/d/.ostree-wh.gone", 0o600)
    repo = t / "repo"
    ostree("init", f"--repo={repo}", "--mode=bare")
    for name in ("base", "upper", "passthrough"):
        ostree("commit", f"--repo={repo}", "-b", name, "-s", name, t / name)
    return repo


@pytest.mark.parametrize(
    "steps",
    [
        [("base", []), ("upper", ["--union", "--whiteouts"])],
        [("base", []), ("upper", ["--union"])],  # without the option: plain files
        [("passthrough", ["--process-passthrough-whiteouts"])],
        [("passthrough", [])],
    ],
)
def test_whiteouts_as_ostree(ostree, sysroot, layers, tmp_path, steps):
    for tool, dest in ((ostree, tmp_path / "theirs"), (sysroot, tmp_path / "ours")):
        for ref, options in steps:
            tool("checkout", f"--repo={layers}", *options, ref, dest)
    assert _snapshot(tmp_path / "ours") == _snapshot(tmp_path / "theirs")


def test_skip_list_as_ostree(ostree, sysroot, layers, tmp_path):
    skip = tmp_path / "skip"
    skip.write_text("/a/y\n/a/sub\nb/z\n/b/z\n")  # a directory and a relative path: kept
    for tool, dest in ((ostree, tmp_path / "theirs"), (sysroot, tmp_path / "ours")):
        tool("checkout", f"--repo={layers}", f"--skip-list={skip}", "base", dest)
    assert _snapshot(tmp_path / "ours") == _snapshot(tmp_path / "theirs")
    assert not (tmp_path / "ours/a/y").exists() and (tmp_path / "ours/a/sub/s").exists()


def test_selinux_is_refused_in_one_line(sysroot, layers, tmp_path):
    proc = sysroot(
        "checkout", f"--repo={layers}", "--selinux-policy=/", "base", tmp_path / "x", check=False
    )
    assert proc.returncode == 2 and proc.stderr.startswith(b"error: --selinux-policy")
    assert not (tmp_path / "x").exists()
