"""Scenario 9: a booted guest installs its OS onto a blank disk, which then boots alone.

Boot 1 (the back end's disk, plus a blank disk the guest finds by its serial):
`sysroot install to-disk` of the booted ref from the guest's own repository, with the
kernel arguments the test disks carry. On one run the busy-disk guard is checked
first, for real (the host's kernel has no device-mapper, the Debian guest's has): a
linear dm device over the blank disk, the install refuses with one line naming the
holder and changes nothing, the dm device goes. Then, in the same boot,
the osmet install (issue 17): `sysroot osmet unpack --osmet-dir DIR` onto one more
blank disk, DIR on a read-only disk holding an osmet file the host packed from a metal
image of the same commit (vmtest/osmet_files.py), the objects from the guest's own
repository. Boot 2: a new machine (fresh firmware variables) with the installed disk as
its only system disk comes up on that commit; boot 3 the same with the disk osmet
wrote.

The runs: grub2 installs onto a 512-byte-sector disk (with the guard check) and
unpacks onto a 4K-native one (logical and physical blocks of 4096 on the virtio
device), systemd-boot the other way round: both back ends, each way, and 4K once each.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from vmtest.disk import KARGS, OS
from vmtest.healthguest import HEALTH, SETTLE_AND_REPORT
from vmtest.osmet_files import OsmetFiles, build_osmet
from vmtest.qemu import BootResult, Drive, Machine
from vmtest.scenarios import SYSTEM_FACTS, check_booted_system
from vmtest.timing import Stage
from vmtest.verdict import Context, expect, expect_equal, finished

TARGET_SERIAL = "vmtest-target"  # the guest's /dev/disk/by-id/virtio-vmtest-target
TARGET_MIB = 4096
OSMET_SERIAL = "vmtest-osmet"  # the osmet target: /dev/disk/by-id/virtio-vmtest-osmet
FILES_SERIAL = "vmtest-osmet-files"  # the read-only disk with the osmet file
HOLDER = "vmtest-hold"  # the dm device of the busy-disk check
INSTALL_TIMEOUT = 1800  # seconds for the boot that installs (TCG: minutes of copying)


@dataclass(frozen=True)
class InstallRun:
    sector_size: int  # the blank disk's logical (and physical) sector size
    busy_check: bool  # check the guard against a dm holder first
    osmet_sector_size: int  # the osmet target's (and the packed image's) sector size


RUNS = {
    "grub2": InstallRun(sector_size=512, busy_check=True, osmet_sector_size=4096),
    "systemd-boot": InstallRun(sector_size=4096, busy_check=False, osmet_sector_size=512),
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
# the table as `R: KEY=LABEL SECTORSIZE PARTITIONS` of the disk in $1
TABLE = r"""
table() {
    sfdisk --json "$2" | python3 -c '
import json, sys
t = json.load(sys.stdin)["partitiontable"]
print("R: %s=%s %s %d" % (sys.argv[1], t["label"], t.get("sectorsize", 512), len(t["partitions"])))
' "$1"
}
"""
OSMET = r"""
otarget=$(readlink -f /dev/disk/by-id/virtio-@OSMET_SERIAL@)
result osmet_target "$otarget"
result osmet_target_sector "$(blockdev --getss "$otarget")"
blank_at() { cmp -s -n 1048576 "$1" /dev/zero && ! blkid -p "$1" > /dev/null 2>&1; }
result osmet_blank_before "$(yes_no blank_at "$otarget")"
mkdir -p /run/osmet-files
mount -o ro /dev/disk/by-id/virtio-@FILES_SERIAL@ /run/osmet-files; result files_mount_rc $?
t0=$(cut -d' ' -f1 /proc/uptime)
sysroot osmet unpack --osmet-dir=/run/osmet-files "$otarget" > /run/osmet.out 2>&1
result osmet_rc $?
t1=$(cut -d' ' -f1 /proc/uptime)
result osmet_seconds "$(echo "$t0 $t1" | awk '{printf "%.0f", $2 - $1}')"
tail -5 /run/osmet.out
result osmet_chose "$(grep -o '[^/ ]*\.osmet' /run/osmet.out | head -1)"
table osmet_table "$otarget"
result osmet_root_uuid "$(blkid -s UUID -o value "$(lsblk -nrpo NAME "$otarget" | tail -1)")"
umount /run/osmet-files
sync
"""


def install_script(backend: str, plan: InstallRun) -> str:
    """The guest's script of boot 1 (the guard check only when plan asks for it)."""
    kargs = " ".join(f"--karg={k}" for k in KARGS)
    text = PREPARE + (BUSY if plan.busy_check else "") + INSTALL + TABLE + OSMET
    return (
        text.replace("@SERIAL@", TARGET_SERIAL)
        .replace("@OSMET_SERIAL@", OSMET_SERIAL)
        .replace("@FILES_SERIAL@", FILES_SERIAL)
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


def check_osmet(
    v: dict, backend: str, plan: InstallRun, files: OsmetFiles, boot: BootResult
) -> None:
    """What boot 1 reported of the osmet install: the file chosen by the disk's sector
    size, written and verified, the image's table on the disk."""
    expect(
        v.get("osmet_target", "").startswith("/dev/vd"),
        f"no osmet target disk: {v.get('osmet_target')}",
        boot,
    )
    expect(v.get("osmet_target") != v.get("target"), "the osmet target is the install's", boot)
    expect_equal(v, "osmet_target_sector", str(plan.osmet_sector_size), boot)
    expect_equal(v, "osmet_blank_before", "yes", boot)
    expect_equal(v, "files_mount_rc", "0", boot)
    expect_equal(v, "osmet_rc", "0", boot)
    expect_equal(v, "osmet_chose", files.name, boot)
    partitions = 2 if backend == "systemd-boot" else 3
    expect_equal(v, "osmet_table", f"gpt {plan.osmet_sector_size} {partitions}", boot)
    expect(bool(v.get("osmet_root_uuid")), "the osmet disk's root file system has no UUID", boot)


def boot_alone(ctx: Context, image: str, name: str, sector_size: int, root_uuid: str) -> None:
    """image as the only disk of a new machine (new firmware variables, so no boot
    entry: the firmware finds the removable-media path): commit 1 from root_uuid, the
    checks of scenario 1, healthy."""
    old = ctx.machine
    workdir = os.path.join(old.workdir, name)
    os.makedirs(workdir)
    machine = Machine(
        image,
        workdir,
        old.accel,
        lambda message: old.log(f"{name} disk: {message}"),
        old.on_boot,
        sector_size,
    )
    boot = machine.boot(SYSTEM_FACTS + HEALTH + SETTLE_AND_REPORT)
    v = finished(boot)
    check_booted_system(ctx, v, boot, ctx.disk.commit1)
    expect(
        f"root=UUID={root_uuid}" in v.get("cmdline", ""),
        f"not booted from the {name} root {root_uuid}: {v.get('cmdline')!r}",
        boot,
    )
    expect_equal(v, "release", "1", boot)
    expect_equal(v, "unit.sysroot-health-check.service", "active", boot)
    expect_equal(v, "unit.sysroot-health-green.service", "active", boot)
    expect_equal(v, f"health.{v['booted']}", "healthy", boot)


def scenario_9(ctx: Context) -> str:
    backend = ctx.disk.backend
    plan = RUNS[backend]
    old = ctx.machine
    started = time.monotonic()
    files = build_osmet(ctx.disk, plan.osmet_sector_size, ctx.log)
    if ctx.ledger is not None:
        ctx.ledger.add(Stage.BUILD, f"osmet {backend}", time.monotonic() - started)
    target = os.path.join(old.workdir, "target.img")
    osmet_target = os.path.join(old.workdir, "osmet-target.img")
    for path, size in ((target, TARGET_MIB << 20), (osmet_target, files.image_bytes)):
        with open(path, "wb") as f:
            f.truncate(size)
    boot = old.boot(
        install_script(backend, plan),
        timeout=INSTALL_TIMEOUT,
        extra=(
            Drive(target, plan.sector_size, TARGET_SERIAL),
            Drive(osmet_target, plan.osmet_sector_size, OSMET_SERIAL),
            Drive(files.files_image, 512, FILES_SERIAL, readonly=True),
        ),
    )
    v = finished(boot)
    check_install(v, backend, plan, boot)
    check_osmet(v, backend, plan, files, boot)
    boot_alone(ctx, target, "installed", plan.sector_size, v["root_uuid"])
    boot_alone(ctx, osmet_target, "osmet", plan.osmet_sector_size, v["osmet_root_uuid"])
    busy = "the guard refused a dm-held disk, then " if plan.busy_check else ""
    return (
        f"{busy}install to-disk in the guest took {v['install_seconds']} s "
        f"({plan.sector_size}-byte sectors), osmet unpack {v['osmet_seconds']} s "
        f"({plan.osmet_sector_size}-byte sectors); each disk booted commit 1 alone, healthy"
    )


SCENARIOS = {"9": scenario_9}
FRESH_DISK = {"9"}
