"""Scenario 9: a booted guest installs its OS onto a blank disk, which then boots alone.

Boot 1 (the back end's disk, plus a blank disk the guest finds by its serial):
`sysroot install to-disk` of the booted ref from the guest's own repository, with the
kernel arguments the test disks carry. On one run the busy-disk guard is checked
first, for real (the host's kernel has no device-mapper, the Debian guest's has): a
linear dm device over the blank disk, the install refuses with one line naming the
holder and changes nothing, the dm device goes. Boot 2: a new machine (fresh firmware
variables) with the installed disk as its only system disk comes up on that commit.

The runs: grub2 on a 512-byte-sector disk (with the guard check), systemd-boot on a
4K-native disk (logical and physical blocks of 4096 on the virtio device): both back
ends, and 4K once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from vmtest.disk import KARGS, OS
from vmtest.healthguest import HEALTH, SETTLE_AND_REPORT
from vmtest.qemu import BootResult, Drive, Machine
from vmtest.scenarios import SYSTEM_FACTS, check_booted_system
from vmtest.verdict import Context, expect, expect_equal, finished

TARGET_SERIAL = "vmtest-target"  # the guest's /dev/disk/by-id/virtio-vmtest-target
TARGET_MIB = 4096
HOLDER = "vmtest-hold"  # the dm device of the busy-disk check
INSTALL_TIMEOUT = 1800  # seconds for the boot that installs (TCG: minutes of copying)


@dataclass(frozen=True)
class InstallRun:
    sector_size: int  # the blank disk's logical (and physical) sector size
    busy_check: bool  # check the guard against a dm holder first


RUNS = {
    "grub2": InstallRun(sector_size=512, busy_check=True),
    "systemd-boot": InstallRun(sector_size=4096, busy_check=False),
}

PREPARE = r"""
yes_no() { if "$@"; then echo yes; else echo no; fi; }
target=$(readlink -f /dev/disk/by-id/virtio-@SERIAL@)
result target "$target"
result target_sector "$(blockdev --getss "$target")"
deploy=$(findmnt -n -o SOURCE / | sed -n 's/.*\[\(.*\)\]$/\1/p')
ref=$(sed -n 's/^refspec=//p' "/sysroot$deploy.origin")
result ref "$ref"
install_to_disk() {
    sysroot install to-disk "$target" --source-repo=/sysroot/ostree/repo --ref="$ref" \
        --bootloader=@BACKEND@ --stateroot=@OS@ @KARGS@
}
# nothing on the disk: a zero first MiB, and no signature blkid knows
blank() { cmp -s -n 1048576 "$target" /dev/zero && ! blkid -p "$target" > /dev/null 2>&1; }
result blank_before "$(yes_no blank)"
"""
BUSY = r"""
modprobe dm-mod 2> /dev/null
dmsetup create @HOLDER@ --table "0 $(blockdev --getsz "$target") linear $target 0"
result dm_create_rc $?
install_to_disk > /run/busy.out 2> /run/busy.err; result busy_rc $?
grep -v '^+ ' /run/busy.err > /run/busy.msg  # the driver's set -x traces the function too
result busy_err_lines "$(grep -c . /run/busy.msg)"
result busy_err "$(head -1 /run/busy.msg)"
result busy_untouched "$(yes_no blank)"
dmsetup remove @HOLDER@; result dm_remove_rc $?
"""
INSTALL = r"""
t0=$(cut -d' ' -f1 /proc/uptime)
install_to_disk > /run/install.out 2>&1; result install_rc $?
t1=$(cut -d' ' -f1 /proc/uptime)
result install_seconds "$(echo "$t0 $t1" | awk '{printf "%.0f", $2 - $1}')"
tail -5 /run/install.out
sfdisk --json "$target" | python3 -c '
import json, sys
t = json.load(sys.stdin)["partitiontable"]
print("R: table=%s %s %d" % (t["label"], t.get("sectorsize", 512), len(t["partitions"])))
'
result root_uuid "$(blkid -s UUID -o value "$(lsblk -nrpo NAME "$target" | tail -1)")"
sync
"""


def install_script(backend: str, plan: InstallRun) -> str:
    """The guest's script of boot 1 (the guard check only when plan asks for it)."""
    kargs = " ".join(f"--karg={k}" for k in KARGS)
    text = PREPARE + (BUSY if plan.busy_check else "") + INSTALL
    return (
        text.replace("@SERIAL@", TARGET_SERIAL)
        .replace("@BACKEND@", backend)
        .replace("@OS@", OS)
        .replace("@KARGS@", kargs)
        .replace("@HOLDER@", HOLDER)
    )


def check_install(v: dict, backend: str, plan: InstallRun, boot: BootResult) -> None:
    """What boot 1 reported: the guard refused while the dm device held the disk, then
    the install wrote a GPT of the disk's sector size with the back end's partitions."""
    expect(v.get("target", "").startswith("/dev/vd"), f"no target disk: {v.get('target')}", boot)
    expect_equal(v, "target_sector", str(plan.sector_size), boot)
    expect_equal(v, "ref", f"{OS}/stable", boot)
    expect_equal(v, "blank_before", "yes", boot)
    if plan.busy_check:
        expect_equal(v, "dm_create_rc", "0", boot)
        expect(v.get("busy_rc") not in (None, "0"), "the install took a disk held by dm", boot)
        expect_equal(v, "busy_err_lines", "1", boot)
        err = v.get("busy_err", "")
        expect(
            err.startswith("error: ") and "held by dm-" in err and f"({HOLDER})" in err,
            f"the refusal does not name the dm holder: {err!r}",
            boot,
        )
        expect_equal(v, "busy_untouched", "yes", boot)
        expect_equal(v, "dm_remove_rc", "0", boot)
    expect_equal(v, "install_rc", "0", boot)
    partitions = 2 if backend == "systemd-boot" else 3
    expect_equal(v, "table", f"gpt {plan.sector_size} {partitions}", boot)
    expect(bool(v.get("root_uuid")), "the new root file system has no UUID", boot)


def scenario_9(ctx: Context) -> str:
    backend = ctx.disk.backend
    plan = RUNS[backend]
    old = ctx.machine
    target = os.path.join(old.workdir, "target.img")
    with open(target, "wb") as f:
        f.truncate(TARGET_MIB << 20)
    boot = old.boot(
        install_script(backend, plan),
        timeout=INSTALL_TIMEOUT,
        extra=(Drive(target, plan.sector_size, TARGET_SERIAL),),
    )
    v = finished(boot)
    check_install(v, backend, plan, boot)
    installed = v
    # the installed disk alone, on a new machine: new firmware variables, no boot entry
    workdir = os.path.join(old.workdir, "installed")
    os.makedirs(workdir)
    machine = Machine(
        target,
        workdir,
        old.accel,
        lambda message: old.log(f"installed disk: {message}"),
        old.on_boot,
        plan.sector_size,
    )
    boot = machine.boot(SYSTEM_FACTS + HEALTH + SETTLE_AND_REPORT)
    v = finished(boot)
    check_booted_system(ctx, v, boot, ctx.disk.commit1)
    expect(
        f"root=UUID={installed['root_uuid']}" in v.get("cmdline", ""),
        f"not booted from the installed root {installed['root_uuid']}: {v.get('cmdline')!r}",
        boot,
    )
    expect_equal(v, "release", "1", boot)
    expect_equal(v, "unit.sysroot-health-check.service", "active", boot)
    expect_equal(v, "unit.sysroot-health-green.service", "active", boot)
    expect_equal(v, f"health.{v['booted']}", "healthy", boot)
    busy = "the guard refused a dm-held disk, then " if plan.busy_check else ""
    return (
        f"{busy}install to-disk in the guest took {installed['install_seconds']} s "
        f"({plan.sector_size}-byte sectors); the installed disk booted commit 1 alone, healthy"
    )


SCENARIOS = {"9": scenario_9}
FRESH_DISK = {"9"}
