"""The scenarios: each boots a machine and asserts what the guest itself reports (and,
for the power cuts, what the host finds on the disk once qemu stopped: hostcheck.py).

Scenarios 1-3 run in order on one machine (a later one, asked for alone, first runs
the earlier ones as its setup); scenarios 4 (power cuts), 5 (a wrong ostree=) and 6
(a staged upgrade over HTTP) each start from a fresh disk. Boot counting and health
checks are checked where these boots already happen (2, 3, 6: healthguest.py); the
failure paths are health_scenarios.py. A failed check raises ScenarioFailed with the
evidence; the runner prints the serial log of the boot that failed.
"""

from __future__ import annotations

import os

from vmtest.disk import COUNTING_TRIES, OS
from vmtest.healthguest import (
    HEALTH,
    SETTLE_AND_REPORT,
    check_script,
    expect_armed,
    expect_blessed,
)
from vmtest.hostcheck import HostReport, check_disk
from vmtest.qemu import BootResult, mark
from vmtest.serve import serving
from vmtest.timing import Stage
from vmtest.verdict import (
    STATUS,
    Context,
    deployment_of,
    expect,
    expect_equal,
    finished,
    first_values,
)

REQUIRED_CHECK = "40-vmtest-local-conf.sh"  # passes: prints the machine's local.conf
# what it printed this boot, from the journal (the runner's SYSROOT_CHECK field, on its
# output lines and on its result entry, "Script '...' SUCCESS")
CHECK_OUTPUT = f"""
result check_said "$(journalctl -b -o cat SYSROOT_CHECK={REQUIRED_CHECK} | grep ^local= | tail -1)"
"""
WANTED_CHECK = "50-vmtest-wanted.sh"  # fails: a warning, the boot is good all the same
SYSTEM_FACTS = (
    STATUS
    + r"""
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
)


def check_booted_system(ctx: Context, v: dict, boot: BootResult, commit: str) -> None:
    expect("ostree=" in v.get("cmdline", ""), "no ostree= in /proc/cmdline", boot)
    expect_equal(v, "status_rc", "0", boot)
    expect(
        f"/ostree/deploy/{OS}/deploy/{commit}." in v.get("root_source", ""),
        f"/ is {v.get('root_source')!r}, not a deployment of {commit[:12]}",
        boot,
    )
    expect_equal(v, "root_is_deployment", "yes", boot)
    expect(
        deployment_of(v, "booted") == commit,
        f"sysroot admin status marks {v.get('booted')!r} booted, not commit {commit[:12]}",
        boot,
    )
    expect(
        v.get("booted") == v.get("deployments", "").split(",")[0],
        "the booted deployment is not the default one",
        boot,
    )
    expect_equal(v, "ostree_booted", "yes", boot)
    expect_equal(v, "usr_writable", "no", boot)
    expect_equal(v, "etc_writable", "yes", boot)
    expect_equal(v, "sysroot_writable", "no", boot)  # sysroot.readonly=true
    expect_equal(v, "var_is_stateroot", "yes", boot)
    expect(
        f"/ostree/deploy/{OS}/var" in v.get("var_source", ""),
        f"/var is {v.get('var_source')!r}, not the stateroot's var",
        boot,
    )
    expect(
        v.get("prepare_root", "").startswith("booting deployment /ostree/deploy/"),
        "the initrd's sysroot-prepare-root left no 'booting deployment' line",
        boot,
    )
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
    boot = ctx.machine.boot(
        STATUS
        + HEALTH
        + check_script("required", REQUIRED_CHECK, "cat /etc/vmtest/local.conf && exit 0")
        + f"""
echo "local=edited-by-admin" > /etc/vmtest/local.conf
sysroot admin deploy --os={OS} {OS}/next
status_report
boot_state
action reboot
"""
    )
    v = finished(boot)
    expect(
        deployment_of(v, "pending") == ctx.disk.commit2,
        f"after the deploy, commit 2 is not pending: {v}",
        boot,
    )
    expect_armed(ctx.disk.backend, v, COUNTING_TRIES, boot)
    # the good upgrade: it boots counted, its checks pass, the counter goes
    boot = ctx.machine.boot(SYSTEM_FACTS + HEALTH + SETTLE_AND_REPORT + CHECK_OUTPUT)
    v = finished(boot)
    check_booted_system(ctx, v, boot, ctx.disk.commit2)
    expect_blessed(ctx.disk.backend, v, v["booted"], COUNTING_TRIES - 1, boot)
    expect_equal(v, "check_said", "local=edited-by-admin", boot)  # it ran, in this /etc
    expect_equal(v, f"failed_checks.{v['booted']}", "", boot)
    expect_equal(v, "local_conf", "local=edited-by-admin", boot)
    expect_equal(v, "defaults_conf", "value=2", boot)
    expect_equal(v, "release", "2", boot)
    expect(deployment_of(v, "rollback") == ctx.disk.commit1, "commit 1 is not the rollback", boot)
    return (
        "commit 2 booted counted after reboot, checks passed, counter gone; /etc edit kept, "
        "new default arrived, 1 is rollback"
    )


def scenario_3(ctx: Context) -> str:
    boot = ctx.machine.boot(
        STATUS
        + HEALTH
        + """
sysroot admin rollback
status_report
boot_state
action reboot
"""
    )
    v = finished(boot)
    # a rollback to a deployment that is not the booted one arms counting too
    expect_armed(ctx.disk.backend, v, COUNTING_TRIES, boot)
    boot = ctx.machine.boot(SYSTEM_FACTS + HEALTH + SETTLE_AND_REPORT)
    v = finished(boot)
    check_booted_system(ctx, v, boot, ctx.disk.commit1)
    expect_blessed(ctx.disk.backend, v, v["booted"], COUNTING_TRIES - 1, boot)
    expect_equal(v, "release", "1", boot)
    expect_equal(v, "local_conf", "local=edited-by-admin", boot)
    expect(deployment_of(v, "rollback") == ctx.disk.commit2, "commit 2 is not the rollback", boot)
    return (
        "after admin rollback (armed) and reboot: commit 1 again, blessed, commit 2 is the rollback"
    )


# Power cuts: after each cut the host checks the disk (hostcheck.py: fsck, boot
# invariant), then the next boot checks what the cut left (status before anything
# else, then the next admin command, cleanup, then status), then deploys the
# commit it is not running and is killed at one moment of it. The moments are phases
# of the deploy seen on disk: a watcher in the guest starts the deploy, follows its
# writes with inotify, and at the phase waits a set time and freezes the deploy
# (SIGSTOP, within microseconds of the write; a shell poll, tried first, was slower
# than the step from the first boot entry to the commit point), then prints a mark on
# which the host kills qemu. The cut after the commit point does not freeze the deploy
# but waits a second, so that the commit point is on disk.
DEPLOY_DIR = f"/ostree/deploy/{OS}/deploy"
# The phases, as WATCHER's matches() tells them:
# - checkout: the staging directory appeared, the checkout is being written;
# - origin: the origin file appeared: /etc merged, the tree is synced and renamed next;
# - boot-entries: the first write under /boot or ostree/boot.* (ostree/lock excluded);
# - new-default: the commit point: /boot/loader swapped, or a new default entry.
# (phase, seconds after the phase is seen, freeze the deploy then?)
CUTS = (
    ("checkout", 2.0, True),
    ("origin", 0.0, True),
    ("boot-entries", 0.0, True),
    ("new-default", 1.0, False),
)
WATCHER = r"""
import ctypes, os, select, signal, struct, subprocess, sys, time
phase, settle, freeze, deploy_dir = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_CLOEXEC)
MASK = 0x100 | 0x80 | 0x200 | 0x40  # create, moved to, delete, moved from
dirs = {}
for d in (deploy_dir, "/boot", "/boot/loader/entries", "/ostree"):
    wd = libc.inotify_add_watch(fd, d.encode(), MASK)
    if wd >= 0:
        dirs[wd] = d

def default_entry():
    link = os.readlink("/boot/loader") if os.path.islink("/boot/loader") else ""
    names = sorted(n for n in os.listdir("/boot/loader/entries")
                   if "-9999-" in n and n.endswith(".conf"))
    return link, names

default0 = default_entry()

def matches(d, name):
    if phase == "checkout":
        return d == deploy_dir
    if phase == "origin":
        return d == deploy_dir and name.endswith(".origin")
    if phase == "boot-entries":
        return d != deploy_dir and (d != "/ostree" or name.startswith("boot"))
    return d != deploy_dir and default_entry() != default0

proc = subprocess.Popen(sys.argv[5:])
seen = None
while seen is None and proc.poll() is None:
    if not select.select([fd], [], [], 0.5)[0]:
        continue
    buf = os.read(fd, 65536)
    while buf and seen is None:
        wd, mask, cookie, size = struct.unpack_from("iIII", buf)
        name = buf[16:16 + size].rstrip(b"\0").decode()
        buf = buf[16 + size:]
        if matches(dirs.get(wd, ""), name):
            seen = f"{dirs.get(wd)}/{name}"
if seen is None:
    print("R: phase_missed=yes", flush=True)
else:
    time.sleep(settle)
    if freeze:
        os.kill(proc.pid, signal.SIGSTOP)
    print(f"R: phase_seen={seen}", flush=True)
with open("/dev/ttyS0", "w") as tty:
    tty.write("@@VMT-MARK cut-now\n")
sys.exit(proc.wait())
"""
# What needs the running system stays in the guest; the whole-repository fsck, the
# boot invariant and the layout are checked on the host (hostcheck.py) once qemu stopped.
CHECK_SCRIPT = (
    STATUS
    + """
result uptime_start "$(cut -d' ' -f1 /proc/uptime)"
status_report
sysroot admin cleanup; result cleanup_rc $?
status_report
result uptime_checked "$(cut -d' ' -f1 /proc/uptime)"
"""
)
DEPLOY_SCRIPT = (
    CHECK_SCRIPT
    + """
running=$(findmnt -n -o SOURCE / | sed -n 's/.*deploy\\/\\([0-9a-f]*\\)\\.[0-9]*\\]$/\\1/p')
if [ "$running" = @COMMIT1@ ]; then target=@COMMIT2@; else target=@COMMIT1@; fi
result deploy_commit "$target"
sync
python3 - @CUT@ @DEPLOY_DIR@ sysroot admin deploy --os=@OS@ "$target" <<'PY'
"""
    + WATCHER
    + """PY
result deploy_rc $?
mark deploy-done
"""
)


def check_after_cut(before: dict, boot: BootResult, host: HostReport) -> str:
    """The boot after a cut runs the old default or a new deployment of the commit that
    was being deployed; status and cleanup are clean, and its status lists the
    deployments the host read off the disk the cut left. Returns 'old' or 'new'."""
    v = first_values(boot)
    expect(boot.rc is not None or boot.killed, "the guest never ran the test script", boot)
    expect(v.get("status_rc") == "0", f"status failed after a power cut: {v}", boot)
    expect_equal(v, "cleanup_rc", "0", boot)
    expect(
        v.get("deployments") == ",".join(host.deployments),
        f"after the cut the guest's status lists {v.get('deployments')!r}, the host "
        f"read {','.join(host.deployments)!r} off the disk",
        boot,
    )
    booted = v.get("booted", "none")
    old_default = before["deployments"].split(",")[0]
    known = set(before["deployments"].split(","))
    is_new = booted.split(".")[0] == before["deploy_commit"] and booted not in known
    expect(
        booted == old_default or is_new,
        f"after the cut the guest runs {booted}: neither the old default {old_default} "
        f"nor a new deployment of {before['deploy_commit']}",
        boot,
    )
    expect(
        booted == v.get("deployments", "").split(",")[0],
        "the booted deployment is not the default one",
        boot,
    )
    return "new" if is_new else "old"


def guest_check_timing(values: dict) -> str:
    """When the guest's checks (CHECK_SCRIPT) began and how long they took, for the log."""
    try:
        start, end = float(values["uptime_start"]), float(values["uptime_checked"])
    except (KeyError, ValueError):
        return "the guest's checks did not finish"
    return f"the guest's checks began {start:.0f} s after boot and took {end - start:.0f} s"


def check_on_host(ctx: Context, boot: BootResult, *, after_cut: bool, cleaned: bool) -> HostReport:
    """fsck, boot invariant and layout of the disk the boot left, natively on the host."""
    machine = ctx.machine
    ctx.log(f"boot {machine.boots}: {guest_check_timing(first_values(boot))}")
    report = check_disk(
        machine.image,
        ctx.disk.backend,
        os.path.join(machine.workdir, f"hostcheck-{machine.boots}"),
        after_cut=after_cut,
        cleaned=cleaned,
    )
    if ctx.ledger is not None:
        ctx.ledger.add(Stage.HOST_CHECK, ctx.job, report.seconds["total"])
    ctx.log(
        f"host check of the disk after boot {machine.boots}"
        f"{' (cut)' if after_cut else ''}: {report.timing()}"
    )
    expect(
        not report.problems,
        f"on the host, the disk after boot {machine.boots} fails: " + "; ".join(report.problems),
        boot,
    )
    return report


def scenario_4(ctx: Context) -> str:
    disk = ctx.disk
    template = (
        DEPLOY_SCRIPT.replace("@COMMIT1@", disk.commit1)
        .replace("@COMMIT2@", disk.commit2)
        .replace("@OS@", OS)
        .replace("@DEPLOY_DIR@", DEPLOY_DIR)
    )
    outcomes: list[str] = []
    before = host = None
    for phase, delay, freeze in CUTS:
        script = template.replace("@CUT@", f"{phase} {delay:g} {int(freeze)}")
        boot = ctx.machine.boot(script, kill_after=mark("cut-now"))
        if before is not None and host is not None:
            outcomes.append(check_after_cut(before, boot, host))  # what the previous cut left
        before = first_values(boot)
        expect(boot.killed, f"the guest was not cut at phase {phase}", boot)
        expect(
            "phase_missed" not in before,
            f"the deploy ended before phase {phase} was seen, the cut came too late",
            boot,
        )
        host = check_on_host(ctx, boot, after_cut=True, cleaned=False)
    boot = ctx.machine.boot(CHECK_SCRIPT)
    v = finished(boot)
    assert before is not None and host is not None
    outcomes.append(check_after_cut(before, boot, host))
    # a cut after the commit point must boot the new deployment
    expect(
        outcomes[-1] == "new",
        "a cut 1 s after the new default was written booted the old deployment",
        boot,
    )
    # the state the last cleanup left, after a clean power-off
    final = check_on_host(ctx, boot, after_cut=False, cleaned=True)
    expect(
        v.get("deployments") == ",".join(final.deployments),
        f"after cleanup the guest's status lists {v.get('deployments')!r}, the host "
        f"read {','.join(final.deployments)!r}",
        boot,
    )
    cut_note = ", ".join(
        f"{phase}+{delay:g}s: {outcome}"
        for (phase, delay, _), outcome in zip(CUTS, outcomes, strict=True)
    )
    return (
        f"{len(CUTS)} power cuts during deploys; the boot after each ran the old or the "
        f"new default, status/cleanup clean in the guest, fsck/boot invariant clean on "
        f"the host after each cut and after the last cleanup ({cut_note})"
    )


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
    boot = ctx.machine.boot("true\n", kill_after=PREPARE_ROOT_ERROR, kill_delay=30, timeout=600)
    errors = [
        line.split(PREPARE_ROOT_ERROR, 1)[1].strip()
        for line in boot.log.splitlines()
        if PREPARE_ROOT_ERROR in line
    ]
    expect(bool(errors), "no sysroot-prepare-root error on the console", boot)
    expect(
        "does not exist" in errors[0] and "000000000000.0" in errors[0],
        f"unexpected error line: {errors[0]!r}",
        boot,
    )
    expect("@@VMT-BEGIN" not in boot.log, "the system booted into a root after the error", boot)
    expect(
        "initrd-switch-root.target" not in boot.log,
        "the initrd switched root after the error",
        boot,
    )
    return f"a wrong ostree= stopped the boot with: {errors[0]}"


# Staged upgrade from a web server on the host: the booted deployment's origin is
# pointed at the host's repository (commit 3 on testos/stable, signed with ed25519, the
# remote requiring that signature); `admin upgrade --stage` pulls it over HTTP.
UPGRADE_SETUP = """
sysroot remote add --no-gpg-verify --sign-verify=ed25519=inline:@KEY@ host @URL@
result remote_rc $?
sysroot admin set-origin host @URL@ @OS@/stable; result set_origin_rc $?
"""
STAGE_UPGRADE = (
    STATUS
    + """
status_report
sysroot admin upgrade --stage > /run/upgrade.out 2>&1; result upgrade_rc $?
cat /run/upgrade.out
status_report
result staged_file "$(test -e /run/ostree/staged-deployment && echo yes || echo no)"
result finalize_unit "$(systemctl is-active sysroot-finalize-staged.service)"
"""
)
# The same update staged by the automatic-update timer instead: policy stage, the
# timer's first run moved from an hour after boot to now (a runtime drop-in); the
# script waits for the run to end (at most 4 minutes) and reports as STAGE_UPGRADE.
TIMER_UPGRADE = (
    STATUS
    + """
status_report
mkdir -p /etc/sysroot && printf '[Updates]\\nPolicy=stage\\n' > /etc/sysroot/updates.conf
result timer_active "$(systemctl is-active sysroot-auto-update.timer)"
mkdir -p /run/systemd/system/sysroot-auto-update.timer.d
printf '[Timer]\\nOnActiveSec=2s\\n' > /run/systemd/system/sysroot-auto-update.timer.d/now.conf
systemctl daemon-reload && systemctl restart sysroot-auto-update.timer
unit=sysroot-auto-update.service
for _ in $(seq 240); do
    [ "$(systemctl show -P ExecMainExitTimestampMonotonic $unit)" != 0 ] && break
    sleep 1
done
result upgrade_rc "$(systemctl show -P ExecMainStatus $unit)"
journalctl -b -o cat -u $unit | tail -3
line=$(sysroot admin status | grep '^AutomaticUpdates:')
result auto_update_line "$(echo "$line" | sed 's/last run [^:]*:[^:]*:[^:]*: //')"
status_report
result staged_file "$(test -e /run/ostree/staged-deployment && echo yes || echo no)"
result finalize_unit "$(systemctl is-active sysroot-finalize-staged.service)"
"""
)
POWER_CUT = """
sync
mark staged
sleep 600
"""
LATE_EDIT_AND_REBOOT = (
    check_script("wanted", WANTED_CHECK, 'echo "<4>vmtest: wanted check fails"; exit 1')
    + """
echo "local=after-staging" > /etc/vmtest/local.conf
mkdir -p /var/log/journal && journalctl --flush  # keep this boot's journal for the next
action reboot
"""
)
FINALIZE_JOURNAL = r"""
journalctl -b -1 -u sysroot-finalize-staged.service -o cat > /run/finalize.log
result finalize_log "$(grep -c . /run/finalize.log)"
journalctl -b -1 -o json SYSLOG_IDENTIFIER=sysroot | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e.get("MESSAGE_ID") == "@FINALIZE_ID@" and e.get("SYSROOT_RESULT"):
        print("R: finalize_result=" + e["SYSROOT_RESULT"])
        print("R: finalize_deployment=" + e.get("SYSROOT_DEPLOYMENT", ""))
    if e.get("MESSAGE_ID") == "@PULL_ID@":
        print("R: pull_record=" + " ".join(e.get(k, "-") for k in ("SYSROOT_RESULT",
              "SYSROOT_REMOTE", "SYSROOT_REF", "SYSROOT_COMMIT")))
    if e.get("MESSAGE_ID") == "@BOOT_CONFIG_ID@":
        print("R: boot_record=" + " ".join(e.get(k, "-") for k in ("SYSROOT_RESULT",
              "SYSROOT_OPERATION", "SYSROOT_DEFAULT", "SYSROOT_DEPLOYMENT_COUNT")))
'
# the catalog explains them (journalctl -x). Debian builds the catalog database in a
# dpkg trigger, into a /var a commit does not carry, and ships no unit that rebuilds it
# at boot (Fedora's systemd-journal-catalog-update.service): done here as that unit does
journalctl --update-catalog
journalctl -b -1 -x -o short MESSAGE_ID=@BOOT_CONFIG_ID@ > /run/explained.log
result catalog_text "$(grep -c 'A configuration is written whole or not at all' /run/explained.log)"
"""


def scenario_6(ctx: Context) -> str:
    from sysroot.util.journal import BOOT_CONFIG_ID, FINALIZE_ID, PULL_ID

    disk = ctx.disk
    with serving(disk.update_repo) as (url, requests):

        def script(*parts: str) -> str:
            text = "".join(parts)
            return (
                text.replace("@KEY@", disk.update_key)
                .replace("@URL@", url)
                .replace("@OS@", OS)
                .replace("@FINALIZE_ID@", FINALIZE_ID)
                .replace("@PULL_ID@", PULL_ID)
                .replace("@BOOT_CONFIG_ID@", BOOT_CONFIG_ID)
            )

        def staged_ok(v: dict, boot: BootResult) -> None:
            expect_equal(v, "upgrade_rc", "0", boot)
            expect(
                deployment_of(v, "staged") == disk.commit3,
                f"status shows {v.get('staged')!r} staged, not commit 3",
                boot,
            )
            expect_equal(v, "staged_file", "yes", boot)
            expect_equal(v, "finalize_unit", "active", boot)

        # 1: stage, then cut the power before any shutdown could finalize it
        boot = ctx.machine.boot(
            script(UPGRADE_SETUP, STAGE_UPGRADE, POWER_CUT),
            kill_after=mark("staged"),
            kill_delay=0,
            network=True,
        )
        v = boot.values()
        expect_equal(v, "remote_rc", "0", boot)
        expect_equal(v, "set_origin_rc", "0", boot)
        staged_ok(v, boot)
        fetched_first = len(requests)
        # through the static delta from commit 1: its superblock and parts, and no
        # object of the tree (the commit and its signature come first, for the checks)
        superblocks = [r for r in requests if r.endswith("/superblock")]
        loose = [
            r
            for r in requests
            if r.startswith("/objects/") and not r.endswith((".commit", ".commitmeta"))
        ]
        expect(
            bool(superblocks) and not loose,
            f"the staging pull fetched {len(superblocks)} superblocks and {len(loose)} "
            f"objects: {requests[:12]}",
            boot,
        )
        # 2: the old deployment boots, nothing staged; the automatic-update timer stages
        # the update again, /etc is edited, reboot
        boot = ctx.machine.boot(script(TIMER_UPGRADE, LATE_EDIT_AND_REBOOT), network=True)
        v = finished(boot)
        expect_equal(v, "timer_active", "active", boot)  # started at boot: enabled
        line = v.get("auto_update_line", "")
        expect(
            line.startswith(f"AutomaticUpdates: stage; staged {disk.commit3}"),
            f"status says {line!r} of the timer's run",
            boot,
        )
        first = first_values(boot)
        expect(
            deployment_of(first, "booted") == disk.commit1,
            f"after the power cut {first.get('booted')!r} booted, not commit 1",
            boot,
        )
        expect_equal(first, "staged", "none", boot)
        staged_ok(v, boot)
        # 3: finalized at shutdown: commit 3 runs with the late edit and the new default
        boot = ctx.machine.boot(
            script(SYSTEM_FACTS, FINALIZE_JOURNAL, HEALTH, SETTLE_AND_REPORT), network=True
        )
        v = finished(boot)
        check_booted_system(ctx, v, boot, disk.commit3)
        # the finalization armed counting: commit 3 booted counted and was blessed, with
        # the wanted check added after staging failing (recorded, the boot still good)
        booted = v["booted"]
        expect_blessed(disk.backend, v, booted, COUNTING_TRIES - 1, boot)
        expect_equal(v, f"failed_checks.{booted}", f"{WANTED_CHECK}:wanted:failed", boot)
        expect_equal(v, f"failed_tail.{booted}", "vmtest: wanted check fails", boot)
        expect(deployment_of(v, "rollback") == disk.commit1, "commit 1 is not the rollback", boot)
        expect_equal(v, "local_conf", "local=after-staging", boot)
        expect_equal(v, "defaults_conf", "value=3", boot)
        expect_equal(v, "release", "3", boot)
        expect_equal(v, "finalize_result", "success", boot)
        expect(
            v.get("finalize_deployment", "").startswith(disk.commit3),
            f"the journal names {v.get('finalize_deployment')!r}, not commit 3",
            boot,
        )
        # the last records of the boot before: the staging pull, the finalization's write
        expect_equal(v, "pull_record", f"ok host host:{OS}/stable {disk.commit3}", boot)
        expect(
            v.get("boot_record", "").startswith(f"ok finalize-staged {OS}/{disk.commit3}."),
            f"the journal's last boot record is {v.get('boot_record')!r}",
            boot,
        )
        expect(v.get("catalog_text", "0") != "0", "journalctl -x does not explain it", boot)
    return (
        f"staged over HTTP through a static delta ({fetched_first} requests, "
        "ed25519-verified); a power cut "
        "before shutdown booted commit 1; staged again by the automatic-update timer "
        "(policy stage), /etc edited, rebooted: the "
        "finalize unit ran (journal: success, with the pull's and the boot write's records, "
        "explained by the catalog) and armed counting, commit 3 runs with the "
        "late edit and the new default, blessed with a failing wanted check recorded; "
        "commit 1 is the rollback"
    )


SCENARIOS = {
    "1": scenario_1,
    "2": scenario_2,
    "3": scenario_3,
    "4": scenario_4,
    "5": scenario_5,
    "6": scenario_6,
}
FRESH_DISK = {"4", "5", "6"}  # scenarios 1-3 share one machine, in order
