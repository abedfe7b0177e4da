"""`summary` decides as ostree 2022.7 does: -u updates (and signs, only then), else
--view views; signing options alone are "no option", -u with --view does not view,
--view with a signing option views and signs nothing."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def repos(tmp_path: Path, ostree) -> dict[str, Path]:
    out = {}
    for name in ("theirs", "ours"):
        out[name] = tmp_path / name
        ostree("init", f"--repo={out[name]}", "--mode=archive")
    return out


CASES = [
    ("--gpg-sign=0123456789ABCDEF",),
    ("--sign=AAAA", "--sign-type=dummy"),
    ("-u", "--view"),
]


@pytest.mark.parametrize("args", CASES, ids=[" ".join(c) for c in CASES])
def test_like_ostree(repos, ostree, sysroot, args: tuple[str, ...]) -> None:
    theirs = ostree("summary", f"--repo={repos['theirs']}", *args, check=False)
    ours = sysroot("summary", f"--repo={repos['ours']}", *args, check=False)
    assert (ours.returncode, ours.stdout, ours.stderr) == (
        theirs.returncode,
        theirs.stdout,
        theirs.stderr,
    )
    assert sorted(p.name for p in repos["ours"].iterdir()) == sorted(
        p.name for p in repos["theirs"].iterdir()
    )


def test_view_with_a_signing_option_signs_nothing(repos, ostree, sysroot) -> None:
    for name in ("theirs", "ours"):
        ostree("summary", f"--repo={repos[name]}", "-u")
    theirs = ostree("summary", f"--repo={repos['theirs']}", "--view", "--gpg-sign=0123456789ABCDEF")
    ours = sysroot("summary", f"--repo={repos['ours']}", "--view", "--gpg-sign=0123456789ABCDEF")
    assert theirs.returncode == ours.returncode == 0
    assert b"Repository Mode" in ours.stdout
    assert not (repos["ours"] / "summary.sig").exists()
    assert not (repos["theirs"] / "summary.sig").exists()
