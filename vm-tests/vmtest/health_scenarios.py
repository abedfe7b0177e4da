"""Health checks and automatic rollback on real boots (each on a fresh disk, both back
ends): a deployment whose required check fails is tried GREENBOOT_MAX_BOOT_ATTEMPTS
times and then left by the boot loader for good (7); a deployment that never reaches
userspace is left by the boot loader alone, and when the deployment it falls back to
fails its checks too, the machine stays up for a human (8).

The good upgrade, a failing wanted check and the staged path are checked where those
boots already happen: scenarios 2, 3 and 6.
"""

from __future__ import annotations

from vmtest.disk import COUNTING_TRIES, OS
from vmtest.healthguest import (
    HEALTH,
    RED_LOG,
    RED_SCRIPT,
    SETTLE_AND_REPORT,
    booted_on_console,
    check_script,
    expect_armed,
    max_attempts,
)
from vmtest.qemu import BootResult
from vmtest.verdict import STATUS, Context, expect, expect_equal, finished, first_values

# the guest runs this on every boot after the setup: report, and on a boot whose red
# unit reboots the machine, wait for that reboot (the script must not power off first)
WATCH = (
    STATUS
    + HEALTH
    + SETTLE_AND_REPORT
    + f"""
result release "$(cat /usr/share/vmtest/release)"
result red_log "$(cat {RED_LOG} 2>/dev/null | cut -d' ' -f2 | tr '\\n' ' ')"
if [ "$(systemctl show -P ActiveState sysroot-health-red.service)" = active ]; then
    action none
    mark red-reboots
    sleep 600
fi
"""
)

FAIL_ON_RELEASE_2 = check_script(
    "required",
    "50-vmtest-release.sh",
    """release=$(cat /usr/share/vmtest/release)
if [ "$release" = 2 ]; then
    echo "<3>vmtest: release $release is not fit to run"
    exit 1
fi
echo "vmtest: release $release is fine\"""",
)
REBOOTED = "reboot: Restarting system"  # the kernel's last line on a reboot
ATTEMPTS_7 = 2  # not greenboot's default 3: the count must come from greenboot.conf


def deploy_next(*options: str) -> str:
    return f"""
sysroot admin deploy --os={OS} {" ".join(options)} {OS}/next; result deploy_rc $?
status_report
boot_state
action reboot
"""


def setup_boot(ctx: Context, script: str, tries: int) -> dict:
    """The first boot: the setup script deploys commit 2 and reboots; it must be the
    pending default, armed with `tries`."""
    boot = ctx.machine.boot(STATUS + HEALTH + script)
    v = finished(boot)
    expect_equal(v, "deploy_rc", "0", boot)
    expect(
        v.get("pending", "").split(".")[0] == ctx.disk.commit2,
        f"commit 2 is not pending: {v}",
        boot,
    )
    expect_armed(ctx.disk.backend, v, tries, boot)
    return v


def boots_until_finished(ctx: Context, script: str, most: int) -> list[BootResult]:
    """Boot until a boot's script finishes (the machine stayed up), at most `most`."""
    boots = []
    for _ in range(most):
        boot = ctx.machine.boot(script)
        boots.append(boot)
        ctx.log(f"boot {ctx.machine.boots}: booted {booted_on_console(boot)[:12] or 'nothing'}")
        if boot.rc is not None:
            break
    return boots


def tries_of(boots: list[BootResult], deployment: str) -> int:
    return sum(1 for b in boots if booted_on_console(b) == deployment)


def boots_until_fall_back(
    ctx: Context, script: str, deployment: str, tries: int
) -> list[BootResult]:
    """Boot until the machine stays up; before that, `deployment` must have booted
    exactly `tries` times (the boot loader's count, seen on the console)."""
    boots = boots_until_finished(ctx, script, tries + 2)
    tried = tries_of(boots, deployment)
    expect(tried == tries, f"{deployment} booted {tried} times, not {tries}", boots[-1])
    return boots


def expect_red_reboot(boot: BootResult) -> None:
    """The boot's required check failed, the red unit ran red.d and rebooted the machine
    (the test driver would have powered it off: the console tells the two apart)."""
    v = boot.values()
    expect(
        v.get("unit.sysroot-health-check.service") == "failed",
        f"the health check did not fail: {v}",
        boot,
    )
    expect(
        "run the red.d scripts" in boot.log and REBOOTED in boot.log and boot.rc is None,
        "the failed boot did not end in a reboot by the red unit",
        boot,
    )


def expect_fallback(v: dict, failed: str, booted_commit: str, boot: BootResult) -> None:
    """The boot loader fell back to booted_commit and the next userspace boot made it
    permanent: booted is the default, the failed deployment follows, marked failed."""
    booted = v.get("booted", "")
    expect(booted.split(".")[0] == booted_commit, f"{booted!r} booted, not the fall-back", boot)
    expect(
        v.get("deployments", "").split(",")[:2] == [booted, failed],
        f"the fall-back is not the default with {failed} after it: {v.get('deployments')}",
        boot,
    )
    expect(
        f"{failed} failed to boot" in v.get("fell_back", "")
        and "which is now the default" in v.get("fell_back", ""),
        f"check-fallback did not report the fall-back: {v.get('fell_back')!r}",
        boot,
    )
    expect(v.get(f"failed_boot.{failed}", "none") != "none", f"{failed} is not marked failed", boot)


def scenario_7(ctx: Context) -> str:
    disk = ctx.disk
    v = setup_boot(
        ctx, RED_SCRIPT + max_attempts(ATTEMPTS_7) + FAIL_ON_RELEASE_2 + deploy_next(), ATTEMPTS_7
    )
    new = v["pending"]
    boots = boots_until_fall_back(ctx, WATCH, new, ATTEMPTS_7)
    last = boots[-1]
    v = finished(last)
    for boot in boots[:-1]:
        expect_red_reboot(boot)
    expect_fallback(v, new, disk.commit1, last)
    expect_equal(v, f"health.{new}", "failed", last)
    expect(
        v.get(f"failed_checks.{new}") == "50-vmtest-release.sh:required:failed"
        and "release 2 is not fit to run" in v.get(f"failed_tail.{new}", ""),
        f"the record does not name the failed check: {v.get(f'failed_checks.{new}')!r} "
        f"{v.get(f'failed_tail.{new}')!r}",
        last,
    )
    expect_equal(v, f"health.{v['booted']}", "healthy", last)
    expect_equal(v, "red_log", " ".join(["release=2"] * ATTEMPTS_7), last)
    seconds = [f"{b.seconds:.0f}" for b in boots]
    return (
        f"required check failed: commit 2 tried {ATTEMPTS_7} times (GREENBOOT_MAX_BOOT_ATTEMPTS="
        f"{ATTEMPTS_7}), red.d ran each time, the boot loader fell back to commit 1 and "
        f"the next boot made it permanent; the record names the check (boots {'/'.join(seconds)} s)"
    )


FAIL_EVERYWHERE = check_script(
    "required",
    "60-vmtest-broken.sh",
    """echo "<3>vmtest: this machine is broken on every deployment"
exit 1""",
)
# after the fall-back from the deployment that never reached userspace (release 1, no
# greenboot.conf yet): a required check that fails everywhere, one try, commit 2 again
LOOP_BREAKER_SETUP = (
    WATCH
    + f"""
if [ "$(cat /usr/share/vmtest/release)" = 1 ] && [ ! -e /etc/greenboot/greenboot.conf ]; then
{RED_SCRIPT}{max_attempts(1)}{FAIL_EVERYWHERE}{deploy_next()}
else
    sleep 20  # the loop breaker: the machine must stay up, no shutdown queued
    result shutdown_jobs "$(systemctl list-jobs --no-legend | grep -cE 'reboot|poweroff|shutdown')"
fi
"""
)
BAD_KARGS = ("--karg-append=init=/bin/false", "--karg-append=panic=1")


def scenario_8(ctx: Context) -> str:
    disk = ctx.disk
    v = setup_boot(ctx, deploy_next(*BAD_KARGS), COUNTING_TRIES)
    unbootable = v["pending"]
    boots = boots_until_fall_back(ctx, LOOP_BREAKER_SETUP, unbootable, COUNTING_TRIES)
    fallback = boots[-1]
    v = finished(fallback)
    first = first_values(fallback)
    for boot in boots[:-1]:
        expect(
            "Attempted to kill init" in boot.log and "@@VMT-BEGIN" not in boot.log,
            "a boot of the unbootable deployment reached the test script or did not panic",
            boot,
        )
    expect_fallback(first, unbootable, disk.commit1, fallback)
    expect_equal(first, "red_log", "", fallback)
    expect_armed(disk.backend, v, 1, fallback)  # the loop breaker's setup deployed again
    panics = "/".join(f"{b.seconds:.0f}" for b in boots[:-1])
    # the loop breaker: commit 2 once (counted, fails, red reboots), then the fall-back
    # fails too: red.d runs, no reboot, the state says so
    second = v["pending"]
    boots = boots_until_fall_back(ctx, LOOP_BREAKER_SETUP, second, 1)
    last = boots[-1]
    v = finished(last)
    expect_red_reboot(boots[0])
    expect_fallback(v, second, disk.commit1, last)
    booted = v["booted"]
    expect_equal(v, "unit.sysroot-health-check.service", "failed", last)
    expect_equal(v, "unit.sysroot-health-red.service", "failed", last)
    expect("manual intervention" in v.get("red_said", ""), f"red said {v.get('red_said')!r}", last)
    expect(
        bool(v.get(f"intervention.{booted}")),
        f"status has no intervention record for {booted}: {v}",
        last,
    )
    expect_equal(v, f"health.{booted}", "failed", last)
    expect_equal(v, "red_log", "release=2 release=1", last)
    expect_equal(v, "shutdown_jobs", "0", last)
    return (
        f"never reached userspace: the boot loader alone tried it {COUNTING_TRIES} times (kernel "
        f"panics, {panics} s) and fell back, the next boot made it permanent; loop breaker: "
        f"the fall-back failed its checks too, red.d ran, no reboot, status says manual "
        f"intervention ({len(boots)} more boots)"
    )


SCENARIOS = {"7": scenario_7, "8": scenario_8}
FRESH_DISK = {"7", "8"}
