"""The scenarios: each boots a machine and asserts what the guest itself reports.

Scenarios 1-3 run in order on one machine (a later one, asked for alone, first runs
the earlier ones as its setup); scenario 4 (power cuts) starts from a fresh disk.
A failed check raises ScenarioFailed with the evidence; the runner prints the serial
log of the boot that failed.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmtest.disk import OS, BaseDisk
from vmtest.qemu import BootResult, Machine, mark


class ScenarioFailed(Exception):
    def __init__(self, message: str, boot: BootResult | None = None):
        super().__init__(message)
        self.boot = boot


# Guest side: the deployment list as `sysroot admin status --json` gives it.
STATUS = r"""
status_report() {
python3 - "$@" <<'PY'
import json, subprocess, sys
p = subprocess.run(["sysroot", "admin", "status", "--json"], capture_output=True, text=True)
print(f"R: status_rc={p.returncode}")
if p.returncode:
    print("R: status_error=" + p.stderr.strip().replace("\n", " | "))
    sys.exit(0)
ds = json.loads(p.stdout)["deployments"]
names = [f"{d['checksum']}.{d['serial']}" for d in ds]
print("R: deployments=" + ",".join(names))
for flag in ("booted", "rollback", "pending"):
    print(f"R: {flag}=" + next((n for n, d in zip(names, ds) if d[flag]), "none"))
PY
}
"""

SYSTEM_FACTS = STATUS + r"""
yes_no() { if "$@"; then echo yes; else echo no; fi; }
writable() { touch "$1/.vmtest" 2>/dev/null && rm -f "$1/.vmtest"; }
same_inode() { test "$(stat -c %d:%i "$1")" = "$(stat -c %d:%i "$2")"; }
status_report
result cmdline "$(cat /proc/cmdline)"
result root_source "$(findmnt -n -o SOURCE /)"
result var_source "$(findmnt -n -o SOURCE /var)"
result ostree_booted "$(yes_no test -e /run/ostree-booted)"
deploy=$(findmnt -n -o SOURCE / | sed -n 's/.*\[\(.*\)\]$/\1/p')
result root_is_deployment "$(yes_no same_inode / "/sysroot$deploy")"
result usr_writable "$(yes_no writable /usr)"
result sysroot_writable "$(yes_no writable /sysroot)"
result etc_writable "$(yes_no writable /etc)"
stamp=$(cat /proc/sys/kernel/random/uuid)
echo "$stamp" > /var/.vmtest-stamp
stateroot_stamp=$(cat /sysroot/ostree/deploy/testos/var/.vmtest-stamp)
result var_is_stateroot "$(yes_no test "$stateroot_stamp" = "$stamp")"
result local_conf "$(cat /etc/vmtest/local.conf)"
result defaults_conf "$(cat /etc/vmtest/defaults.conf)"
result release "$(cat /usr/share/vmtest/release)"
journalctl -b -o cat -u sysroot-prepare-root.service > /run/prepare-root.log
result prepare_root "$(grep -o 'booting deployment .*' /run/prepare-root.log | tail -1)"
result remount "$(systemctl is-active sysroot-remount.service)"
result boot_fstype "$(findmnt -n -o FSTYPE /boot)"
"""


def expect(cond: bool, message: str, boot: BootResult) -> None:
    if not cond:
        raise ScenarioFailed(message, boot)


def expect_equal(values: dict, key: str, want: str, boot: BootResult) -> None:
    got = values.get(key)
    expect(got == want, f"{key}: expected {want!r}, guest reported {got!r}", boot)


def finished(boot: BootResult) -> dict:
    expect(boot.rc is not None, "the guest never ran the test script "
           f"(qemu ran {boot.seconds:.0f} s)", boot)
    expect(boot.rc == 0, f"the test script failed in the guest (exit {boot.rc})", boot)
    return boot.values()


def deployment_of(values: dict, key: str) -> str:
    """The commit checksum of deployment `key` (booted, rollback...) in values."""
    return values.get(key, "none").split(".")[0]


@dataclass
class Context:
    disk: BaseDisk
    machine: Machine
    log: object


def check_booted_system(ctx: Context, v: dict, boot: BootResult, commit: str) -> None:
    expect("ostree=" in v.get("cmdline", ""), "no ostree= in /proc/cmdline", boot)
    expect_equal(v, "status_rc", "0", boot)
    expect(f"/ostree/deploy/{OS}/deploy/{commit}." in v.get("root_source", ""),
           f"/ is {v.get('root_source')!r}, not a deployment of {commit[:12]}", boot)
    expect_equal(v, "root_is_deployment", "yes", boot)
    expect(deployment_of(v, "booted") == commit,
           f"sysroot admin status marks {v.get('booted')!r} booted, not commit {commit[:12]}",
           boot)
    expect(v.get("booted") == v.get("deployments", "").split(",")[0],
           "the booted deployment is not the default one", boot)
    expect_equal(v, "ostree_booted", "yes", boot)
    expect_equal(v, "usr_writable", "no", boot)
    expect_equal(v, "etc_writable", "yes", boot)
    expect_equal(v, "sysroot_writable", "no", boot)  # sysroot.readonly=true
    expect_equal(v, "var_is_stateroot", "yes", boot)
    expect(f"/ostree/deploy/{OS}/var" in v.get("var_source", ""),
           f"/var is {v.get('var_source')!r}, not the stateroot's var", boot)
    expect(v.get("prepare_root", "").startswith("booting deployment /ostree/deploy/"),
           "the initrd's sysroot-prepare-root left no 'booting deployment' line", boot)
    expect_equal(v, "remount", "active", boot)
    want_fs = "vfat" if ctx.disk.backend == "systemd-boot" else "ext4"
    expect_equal(v, "boot_fstype", want_fs, boot)


def scenario_1(ctx: Context) -> str:
    boot = ctx.machine.boot(SYSTEM_FACTS)
    v = finished(boot)
    check_booted_system(ctx, v, boot, ctx.disk.commit1)
    expect_equal(v, "release", "1", boot)
    return f"booted commit 1 through firmware and boot loader in {boot.seconds:.0f} s"


def scenario_2(ctx: Context) -> str:
    boot = ctx.machine.boot(STATUS + f"""
echo "local=edited-by-admin" > /etc/vmtest/local.conf
sysroot admin deploy --os={OS} {OS}/next
status_report
action reboot
""")
    v = finished(boot)
    expect(deployment_of(v, "pending") == ctx.disk.commit2,
           f"after the deploy, commit 2 is not pending: {v}", boot)
    boot = ctx.machine.boot(SYSTEM_FACTS)
    v = finished(boot)
    check_booted_system(ctx, v, boot, ctx.disk.commit2)
    expect_equal(v, "local_conf", "local=edited-by-admin", boot)
    expect_equal(v, "defaults_conf", "value=2", boot)
    expect_equal(v, "release", "2", boot)
    expect(deployment_of(v, "rollback") == ctx.disk.commit1, "commit 1 is not the rollback",
           boot)
    return "commit 2 booted after reboot; /etc edit kept, new default arrived, 1 is rollback"


def scenario_3(ctx: Context) -> str:
    boot = ctx.machine.boot(STATUS + """
sysroot admin rollback
status_report
action reboot
""")
    finished(boot)
    boot = ctx.machine.boot(SYSTEM_FACTS)
    v = finished(boot)
    check_booted_system(ctx, v, boot, ctx.disk.commit1)
    expect_equal(v, "release", "1", boot)
    expect_equal(v, "local_conf", "local=edited-by-admin", boot)
    expect(deployment_of(v, "rollback") == ctx.disk.commit2, "commit 2 is not the rollback",
           boot)
    return "after admin rollback and reboot: commit 1 again, commit 2 is the rollback"


# Power cuts: each boot checks what the previous cut left (status before anything
# else, then the next admin command, cleanup, then status and fsck), then deploys the
# commit it is not running and is killed at one moment of it. The moments are phases
# the guest sees on disk (a timer alone landed every cut in the checkout, which is most
# of a deploy's time): the guest polls for its phase, prints a mark, and the host kills
# qemu the phase's delay (CUTS) after seeing it.
DEPLOY_DIR = f"/ostree/deploy/{OS}/deploy"
PHASES = {
    # the staging directory appeared: the checkout is being written
    "checkout": f'[ "$(ls -a {DEPLOY_DIR})" != "$deploy0" ]',
    # the origin file appeared: /etc merged, the tree is synced and renamed next
    "origin": f'[ "$(ls {DEPLOY_DIR} | grep -c "[.]origin$")" != "$origins0" ]',
    # the first boot-side write: loader.N or ostree/boot.N (grub2), an entry (systemd-boot);
    # ostree/lock comes and goes with every admin command, so only boot.* names count
    "boot-entries": '[ "$(boot_files)" != "$boot0" ]',
    # the commit point: /boot/loader swapped (grub2) or a new default entry (systemd-boot)
    "new-default": '[ "$(default_entry)" != "$default0" ]',
}
# (phase, seconds from the guest's mark to the cut)
CUTS = (("checkout", 2.0), ("origin", 0.0), ("boot-entries", 0.0), ("new-default", 1.0))
CHECK_SCRIPT = STATUS + """
status_report
sysroot admin cleanup; result cleanup_rc $?
status_report
sysroot fsck > /run/fsck.out 2>&1; result fsck_rc $?
tail -3 /run/fsck.out
"""
DEPLOY_SCRIPT = CHECK_SCRIPT + """
boot_files() { ls -a /boot /boot/loader/entries; ls /ostree | grep '^boot'; }
default_entry() { readlink /boot/loader; ls /boot/loader/entries | grep -e '-9999-.*[.]conf$'; }
running=$(findmnt -n -o SOURCE / | sed -n 's/.*deploy\\/\\([0-9a-f]*\\)\\.[0-9]*\\]$/\\1/p')
if [ "$running" = @COMMIT1@ ]; then target=@COMMIT2@; else target=@COMMIT1@; fi
result deploy_commit "$target"
sync
deploy0=$(ls -a @DEPLOY_DIR@)
origins0=$(ls @DEPLOY_DIR@ | grep -c "[.]origin$")
boot0=$(boot_files)
default0=$(default_entry)
sysroot admin deploy --os=@OS@ "$target" & pid=$!
{ set +x; } 2>/dev/null  # the poll is too busy to trace on a serial console
until @PHASE_TEST@; do
    kill -0 $pid 2>/dev/null || { result phase_missed yes; break; }
    sleep 0.02
done
mark cut-now
set -x
wait $pid; result deploy_rc $?
mark deploy-done
"""


def first_values(boot: BootResult) -> dict:
    """The script's values, each as first reported (status before the admin command)."""
    values: dict[str, str] = {}
    for line in boot.output:
        if line.startswith("R: ") and "=" in line:
            k, _, val = line[3:].partition("=")
            values.setdefault(k.strip(), val.strip())
    return values


def check_after_cut(before: dict, boot: BootResult) -> str:
    """The boot after a cut runs the old default or a new deployment of the commit that
    was being deployed; status, cleanup and fsck are clean. Returns 'old' or 'new'."""
    v = first_values(boot)
    expect(boot.rc is not None or boot.killed, "the guest never ran the test script", boot)
    expect(v.get("status_rc") == "0", f"status failed after a power cut: {v}", boot)
    expect_equal(v, "cleanup_rc", "0", boot)
    expect_equal(v, "fsck_rc", "0", boot)
    booted = v.get("booted", "none")
    old_default = before["deployments"].split(",")[0]
    known = set(before["deployments"].split(","))
    is_new = booted.split(".")[0] == before["deploy_commit"] and booted not in known
    expect(booted == old_default or is_new,
           f"after the cut the guest runs {booted}: neither the old default {old_default} "
           f"nor a new deployment of {before['deploy_commit']}", boot)
    expect(booted == v.get("deployments", "").split(",")[0],
           "the booted deployment is not the default one", boot)
    return "new" if is_new else "old"


def scenario_4(ctx: Context) -> str:
    disk = ctx.disk
    template = DEPLOY_SCRIPT.replace("@COMMIT1@", disk.commit1).replace(
        "@COMMIT2@", disk.commit2).replace("@OS@", OS).replace("@DEPLOY_DIR@", DEPLOY_DIR)
    outcomes: list[str] = []
    before = None
    for phase, delay in CUTS:
        script = template.replace("@PHASE_TEST@", PHASES[phase])
        boot = ctx.machine.boot(script, kill_after=mark("cut-now"), kill_delay=delay)
        if before is not None:
            outcomes.append(check_after_cut(before, boot))  # what the previous cut left
        before = first_values(boot)
        expect(boot.killed, f"the guest was not cut at phase {phase}", boot)
        expect("phase_missed" not in before,
               f"the deploy ended before phase {phase} was seen, the cut came too late",
               boot)
    boot = ctx.machine.boot(CHECK_SCRIPT)
    finished(boot)
    outcomes.append(check_after_cut(before, boot))
    # a cut after the commit point must boot the new deployment
    expect(outcomes[-1] == "new", "a cut 1 s after the new default was written booted "
           "the old deployment", boot)
    cut_note = ", ".join(f"{phase}+{delay:g}s: {outcome}"
                         for (phase, delay), outcome in zip(CUTS, outcomes, strict=True))
    return (f"{len(CUTS)} power cuts during deploys; the boot after each ran the old or the "
            f"new default, status/cleanup/fsck clean ({cut_note})")


# A boot entry whose ostree= names no deployment (as a hand edit or a bug could leave it).
BREAK_ENTRIES = """
bad=/ostree/deploy/@OS@/deploy/0000000000000000000000000000000000000000000000000000000000000000.0
for f in /boot/loader/grub.cfg /boot/loader/entries/*.conf; do
    [ -f "$f" ] && sed -i "s|ostree=[^ ']*|ostree=$bad|" "$f"
done
grep -h -o "ostree=[^ ']*" /boot/loader/grub.cfg /boot/loader/entries/*.conf 2>/dev/null | sort -u
"""
PREPARE_ROOT_ERROR = "sysroot-prepare-root: error: "


def scenario_5(ctx: Context) -> str:
    boot = ctx.machine.boot(BREAK_ENTRIES.replace("@OS@", OS))
    finished(boot)
    # give the initrd 30 s after the error to (wrongly) go on into a root file system
    boot = ctx.machine.boot("true\n", kill_after=PREPARE_ROOT_ERROR, kill_delay=30,
                            timeout=600)
    errors = [line.split(PREPARE_ROOT_ERROR, 1)[1].strip()
              for line in boot.log.splitlines() if PREPARE_ROOT_ERROR in line]
    expect(bool(errors), "no sysroot-prepare-root error on the console", boot)
    expect("does not exist" in errors[0] and "000000000000.0" in errors[0],
           f"unexpected error line: {errors[0]!r}", boot)
    expect("@@VMT-BEGIN" not in boot.log, "the system booted into a root after the error",
           boot)
    expect("initrd-switch-root.target" not in boot.log, "the initrd switched root after the error",
           boot)
    return f"a wrong ostree= stopped the boot with: {errors[0]}"


SCENARIOS = {"1": scenario_1, "2": scenario_2, "3": scenario_3, "4": scenario_4,
             "5": scenario_5}
FRESH_DISK = {"4", "5"}  # scenarios 1-3 share one machine, in order
