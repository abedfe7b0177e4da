"""OSTREE_SYSROOT_DEBUG against ostree 2022.7: the same values leave a new deployment
root mutable (`mutable-deployments`) or immutable, spelled as GLib reads debug strings
(case, `_` for `-`, separators, `all` with exceptions, words that are no key)."""

from __future__ import annotations

import pytest

from tests.helpers.sysroots import OSNAME, make_os_tree


def _immutable(root) -> bool:
    """Even root cannot create a file in an immutable directory."""
    probe = root / "probe"
    try:
        probe.touch()
    except PermissionError:
        return True
    probe.unlink()
    return False


@pytest.mark.parametrize(
    "value, mutable",
    [
        ("", False),
        ("mutable-deployments", True),
        ("MUTABLE_DEPLOYMENTS", True),
        ("no-xattrs;Mutable-Deployments", True),
        ("no-xattrs, no-dtb", False),
        ("no-mutable-deployments", False),  # no key: a word containing one is not it
        ("all,test-fifreeze,no-dtb,no-xattrs", True),  # all but the three listed
        ("all:mutable-deployments:test-fifreeze", False),
    ],
)
def test_mutable_deployments_like_ostree(make_sysroot, tmp_path, ostree, sysroot, value, mutable):
    tree = make_os_tree(tmp_path / "tree")
    for by, tool in (("ostree", ostree), ("sysroot", sysroot)):
        sr = make_sysroot(f"sr-{by}", by=by)
        sr.commit(tree)
        env = {"OSTREE_SYSROOT_DEBUG": value}
        tool("admin", "deploy", f"--sysroot={sr.path}", f"--os={OSNAME}", f"{OSNAME}/x", env=env)
        parent = sr.path / "ostree/deploy" / OSNAME / "deploy"
        (root,) = [p for p in parent.iterdir() if not p.name.endswith(".origin")]
        assert _immutable(root) != mutable, by
