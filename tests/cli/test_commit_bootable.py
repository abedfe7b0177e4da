"""`commit --bootable` against the oracle: ostree.linux and ostree.bootable in the
commit metadata, the same commit checksum with other metadata around them, and the
same refusals when the tree holds no kernel or several."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.sysroots import make_os_tree


def _tree(root: Path, kind: str) -> Path:
    if kind == "kernel":
        return make_os_tree(root)
    if kind == "kernel-no-initramfs":
        return make_os_tree(root, initramfs=None)
    make_os_tree(root, no_kernel=True)
    if kind == "no-usr-lib-modules":
        return root
    (root / "usr/lib/modules").mkdir()
    if kind == "empty-modules":
        return root
    (root / "usr/lib/modules/6.1.0").mkdir()
    if kind == "modules-without-vmlinuz":
        (root / "usr/lib/modules/6.1.0/modules.dep").write_text("")
        return root
    if kind == "two-kernels":
        for v in ("6.1.0", "6.2.0"):
            (root / f"usr/lib/modules/{v}").mkdir(exist_ok=True)
            (root / f"usr/lib/modules/{v}/vmlinuz").write_bytes(v.encode())
        return root
    if kind == "legacy-only":
        make_os_tree(root, legacy=True)
        return root
    raise AssertionError(kind)


def _repos(tmp_path, ostree):
    repos = []
    for name in ("theirs", "ours"):
        repo = tmp_path / name
        ostree("init", f"--repo={repo}", "--mode=archive")
        repos.append(repo)
    return repos


KINDS = [
    "kernel",
    "kernel-no-initramfs",
    "no-usr-lib-modules",
    "empty-modules",
    "modules-without-vmlinuz",
    "two-kernels",
    "legacy-only",
]


@pytest.mark.parametrize("kind", KINDS)
def test_bootable_as_ostree(ostree, sysroot, tmp_path, kind):
    tree = _tree(tmp_path / "tree", kind)
    theirs, ours = _repos(tmp_path, ostree)
    args = ["commit", "-b", "os", "-s", "s", "--timestamp=@1000", "--bootable", tree]
    a = ostree(f"--repo={theirs}", *args, check=False)
    b = sysroot(f"--repo={ours}", *args, check=False)
    assert (b.returncode, b.stdout, b.stderr) == (a.returncode, a.stdout, a.stderr)
    if a.returncode == 0:
        raw = ostree.out(f"--repo={ours}", "show", "--raw", "os")
        assert "'ostree.bootable': <true>" in raw and "'ostree.linux': <'6.1.0'>" in raw
    else:  # nothing moved
        assert not (ours / "refs/heads/os").exists()


@pytest.mark.parametrize(
    "extra",
    [
        ["--add-metadata-string=version=42"],
        ["--add-metadata-string=a=1", "--add-metadata-string=b=2", "--add-metadata=x=<1>"],
        ["--bind-ref=zz", "--add-metadata-string=version=1"],
        ["--add-metadata-string=ostree.linux=mine"],  # ours is replaced, in place
        ["--no-bindings"] + [f"--add-metadata-string=k{i}=v" for i in range(12)],  # a resize
    ],
)
def test_bootable_metadata_order_gives_ostrees_checksum(ostree, sysroot, tmp_path, extra):
    tree = _tree(tmp_path / "tree", "kernel")
    theirs, ours = _repos(tmp_path, ostree)
    args = ["commit", "-b", "os", "-s", "s", "--timestamp=@1000", "--bootable", *extra, tree]
    a = ostree.out(f"--repo={theirs}", *args)
    b = sysroot.out(f"--repo={ours}", *args)
    assert a == b
    assert ostree.out(f"--repo={ours}", "show", "--raw", b) == ostree.out(
        f"--repo={theirs}", "show", "--raw", a
    )
