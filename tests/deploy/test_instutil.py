"""`admin instutil`, ostree 2022.7's hidden commands for installers, against ostree:
set-kargs gives the first deployment new kernel arguments through a boot swap;
selinux-ensure-labeled does nothing where the deployment has no SELinux policy (and
sysroot, which does no labelling, refuses where it has one); grub2-generate is refused
(tests/cli/test_ostree_surface.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import one_error_line
from tests.helpers.sysroots import OSNAME, boot_state, make_os_tree
from tests.helpers.twins import SysrootTwins

OS = f"--os={OSNAME}"
REF = f"{OSNAME}/x"


@pytest.fixture
def deployed(pair: SysrootTwins, tmp_path) -> SysrootTwins:
    """Two deployments of one commit, the first with root=, quiet and console=."""
    pair.commit(make_os_tree(tmp_path / "t"), version="1.0")
    pair.admin("deploy", OS, "--karg=root=/dev/sda1", "--karg=quiet", REF)
    pair.admin("deploy", OS, "--karg=root=/dev/sda2", "--karg-append=console=tty0", REF)
    pair.assert_same()
    return pair


@pytest.mark.parametrize(
    "args",
    [
        # the first deployment's arguments, --replace in place, --append, then ARGS
        ["--merge", "--replace=root=/dev/vda", "--append=console=ttyS0", "foo", "bar=1"],
        # without --merge none of them: ostree= goes last
        ["a=1", "a=2"],
        [],
        # a replaced key keeps the first value's position and loses the others
        ["--replace=zz=1", "--replace=zz", "--append=console=tty0"],
        # this machine's command line (BOOT_IMAGE= and initrd= left out) wins over --merge
        ["--import-proc-cmdline", "x"],
        ["--import-proc-cmdline", "--merge", "y"],
    ],
)
def test_set_kargs_like_ostree(deployed: SysrootTwins, args):
    deployed.admin("instutil", "set-kargs", *args)
    deployed.assert_same()
    # and again on what that wrote (a=1 a=2, then --merge: all of a's values replaced)
    deployed.admin("instutil", "set-kargs", "--merge", "--replace=a=3", "--append=a=4", *args)
    deployed.assert_same()


def test_set_kargs_refusals(deployed: SysrootTwins, pair: SysrootTwins):
    before = boot_state(pair.b.path)
    # ostree writes "with space" as two words into the entry; sysroot refuses the word
    line = one_error_line(pair.b.admin("instutil", "set-kargs", "with space", check=False))
    assert "with space" in line
    line = one_error_line(pair.b.admin("instutil", "set-kargs", "--nope", check=False))
    assert "--nope" in line
    assert boot_state(pair.b.path) == before


def test_set_kargs_without_deployments(pair: SysrootTwins):
    pair.admin("instutil", "set-kargs", "x=1", expect_ok=False)
    line = one_error_line(pair.b.admin("instutil", "set-kargs", "x=1", check=False))
    assert line == "error: Unable to find a deployment in sysroot"


def _first_deployment(sr) -> str:
    return sr.ostree.out("admin", "--print-current-dir", f"--sysroot={sr.path}")


def test_selinux_ensure_labeled_without_a_policy_like_ostree(deployed: SysrootTwins):
    for args in ([], ["/usr", ""]):
        ra, rb = deployed.admin("instutil", "selinux-ensure-labeled", *args, same_stdout=False)
        for proc, sr in ((ra, deployed.a), (rb, deployed.b)):
            said = f"No SELinux policy found in deployment '{_first_deployment(sr)}'\n"
            assert proc.stdout.decode() == said
    deployed.assert_same()


def test_selinux_ensure_labeled_with_a_policy_is_refused(deployed: SysrootTwins):
    sr = deployed.b
    config = Path(_first_deployment(sr), "etc/selinux/config")
    config.parent.mkdir()
    config.write_text("SELINUX=enforcing\nSELINUXTYPE=targeted\n")
    before = boot_state(sr.path)
    line = one_error_line(sr.admin("instutil", "selinux-ensure-labeled", check=False))
    assert line == (
        "error: selinux-ensure-labeled: sysroot does no SELinux labelling "
        "(label the tree with setfiles or restorecon)"
    )
    assert boot_state(sr.path) == before
