"""The boot invariant of a booted system with a staged deployment: the staged one is
in no boot entry until it is finalized, so the invariant (what the boot loader reads)
leaves it out instead of counting it, or crashing on its missing entry."""

from __future__ import annotations

import pytest

from sysroot.deploy import stagedrecord
from sysroot.deploy.invariant import check_boot_invariant
from sysroot.deploy.stagedrecord import DeploymentRef, StagedRecord
from sysroot.deploy.state import SysrootState
from tests.helpers.sysroots import OSNAME


@pytest.mark.parametrize("bootloader", ["none", "grub2", "systemd-boot"])
def test_invariant_leaves_the_staged_deployment_out(
    make_sysroot, os_tree, tmp_path, monkeypatch, ostree, bootloader
):
    sr = make_sysroot(by="sysroot")
    sr.commit(os_tree)  # first: ostree 2022.7 opens no repo configured for systemd-boot
    ostree(f"--repo={sr.repo}", "config", "set", "sysroot.bootloader", bootloader)
    sr.admin("deploy", f"--os={OSNAME}", f"{OSNAME}/x")
    assert check_boot_invariant(sr.path) == []
    # booted into that deployment, with a second one staged (its record in /run)
    monkeypatch.setattr(SysrootState, "_find_booted", lambda self: self.deployments[0])
    monkeypatch.setattr(stagedrecord, "RUN_DIR", str(tmp_path / "run" / "ostree"))
    (booted,) = SysrootState.load(str(sr.path)).deployments
    ref = DeploymentRef(OSNAME, booted.csum, booted.deployserial + 1, booted.bootcsum)
    stagedrecord.write_record(StagedRecord(ref))
    state = SysrootState.load(str(sr.path))
    assert state.staged is not None and len(state.deployments) == 2  # the set-up holds
    assert check_boot_invariant(sr.path) == []
