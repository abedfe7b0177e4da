"""Health checks and boot counting as the guest shows them: shell the scenarios add to
their scripts, and the host's reading of what it reported.

The guest's health units (units/sysroot-health-*) run beside the test driver, which
starts after multi-user.target; so a script first waits for them to settle
(wait_units), then reports `sysroot admin health status --json` (health_report), the
boot loader's counting state on disk (boot_state) and what the units logged.
"""

from __future__ import annotations

import re

from vmtest.qemu import BootResult
from vmtest.verdict import expect

HEALTH = r"""
# until each unit is active or failed, or inactive with no job left (skipped, or its
# job failed with a dependency): the health units run beside this script
wait_units() {
    for unit in "$@"; do
        n=0
        while [ $n -lt 1200 ]; do
            state=$(systemctl show -P ActiveState "$unit")
            case $state in active|failed) break ;; esac
            if [ "$state" = inactive ] && [ -z "$(systemctl list-jobs --no-legend "$unit")" ]; then
                break
            fi
            sleep 0.5
            n=$((n + 1))
        done
        result "unit.$unit" "$(systemctl show -P ActiveState "$unit")"
    done
}
health_report() {
python3 - <<'PY'
import json, subprocess, sys
argv = ["sysroot", "admin", "health", "status", "--json"]
p = subprocess.run(argv, capture_output=True, text=True)
print(f"R: health_rc={p.returncode}")
if p.returncode:
    print("R: health_error=" + p.stderr.strip().replace("\n", " | "))
    sys.exit(0)
s = json.loads(p.stdout)
c = s["counting"]
print(f"R: counting={c['state']}")
print("R: counting_deployment=" + (c.get("deployment") or "none").rsplit("/", 1)[-1])
print(f"R: counting_tries_left={c.get('tries_left')}")
for d in s["deployments"]:
    n = f"{d['checksum']}.{d['serial']}"
    print(f"R: health.{n}={d['health']}")
    print(f"R: failed_boot.{n}={d['failed_boot'] or 'none'}")
    failed = d["failed_checks"]
    names = [f"{f['name']}:{f['kind']}:{f['outcome']}" for f in failed]
    print(f"R: failed_checks.{n}=" + ",".join(names))
    if failed and failed[0]["tail"]:
        print(f"R: failed_tail.{n}=" + failed[0]["tail"][-1])
    if d["intervention"]:
        print(f"R: intervention.{n}=" + d["intervention"]["reason"])
PY
}
# the boot loader's side: entry file names (systemd-boot counts in them), grubenv
boot_state() {
    result entries "$(ls /boot/loader/entries 2>/dev/null | tr '\n' ' ')"
    if [ -f /boot/grub/grubenv ]; then
        result grubenv "$(grep -v '^#' /boot/grub/grubenv | tr '\n' ' ')"
    else
        result grubenv none
    fi
}
# what the health units logged this boot (one line each)
said() { journalctl -b -o cat -u "sysroot-health-$1.service" | grep -E "$2" | tail -1; }
unit_lines() {
    result mark_good "$(said green 'boot marked good')"
    result fell_back "$(said check 'fell back')"
    result red_said "$(said red 'reboot|intervention')"
    result motd "$(head -1 /run/motd.d/boot-status 2>/dev/null)"
}
"""

# A boot of a machine under test: the health units settle (a failed check: the red
# unit decides, and reboots while tries remain, which ends this script), then all of it
# is reported.
SETTLE_AND_REPORT = r"""
wait_units sysroot-health-check.service
if [ "$(systemctl show -P ActiveState sysroot-health-check.service)" = failed ]; then
    wait_units sysroot-health-red.service
else
    wait_units sysroot-health-green.service
fi
unit_lines
status_report
health_report
boot_state
"""

# greenboot's directories, as an administrator fills them (in /etc: the merge carries
# them into every new deployment). Each red.d run leaves a line in the stateroot's /var
# (shared by all deployments, so the count survives the fall-back).
RED_LOG = "/var/lib/vmtest/red.log"
RED_SCRIPT = f"""
mkdir -p /etc/greenboot/red.d /var/lib/vmtest
cat > /etc/greenboot/red.d/50-vmtest-log.sh <<'SH'
#!/bin/sh
echo "$(cat /proc/sys/kernel/random/boot_id) release=$(cat /usr/share/vmtest/release)" >> {RED_LOG}
SH
chmod +x /etc/greenboot/red.d/50-vmtest-log.sh
"""


def check_script(kind: str, name: str, body: str) -> str:
    """Shell that installs the health check /etc/greenboot/check/KIND.d/NAME."""
    return f"""
mkdir -p /etc/greenboot/check/{kind}.d
cat > /etc/greenboot/check/{kind}.d/{name} <<'SH'
#!/bin/sh
{body}
SH
chmod +x /etc/greenboot/check/{kind}.d/{name}
"""


def max_attempts(n: int) -> str:
    return f"""
mkdir -p /etc/greenboot
echo 'GREENBOOT_MAX_BOOT_ATTEMPTS={n}' > /etc/greenboot/greenboot.conf
"""


PREPARE_ROOT = re.compile(
    r"sysroot-prepare-root: booting deployment /ostree/deploy/\S+/deploy/(\S+)"
)


def booted_on_console(boot: BootResult) -> str:
    """CHECKSUM.SERIAL of the deployment the initrd booted, from the serial console
    (the one witness when the boot never reaches the test script); '' when none."""
    found = PREPARE_ROOT.findall(boot.log)
    return found[-1].strip() if found else ""


def expect_armed(backend: str, v: dict, tries: int, boot: BootResult) -> None:
    """The new default is counted with `tries` tries, as the boot loader will read it."""
    entries, env = v.get("entries", "").split(), v.get("grubenv", "")
    if backend == "systemd-boot":
        armed = [e for e in entries if e.endswith(f"+{tries}.conf")]
        expect(len(armed) == 1, f"no entry armed with +{tries}: {entries}", boot)
    else:
        expect(
            f"boot_counter={tries}" in env and "boot_success=0" in env,
            f"grubenv is not armed with {tries} tries: {env!r}",
            boot,
        )


def expect_blessed(backend: str, v: dict, booted: str, tries_left: int, boot: BootResult) -> None:
    """The booted deployment ran counted (with tries_left tries left when it was marked
    good), passed its checks, and counting ended: no counter on disk any more."""
    expect(v.get("unit.sysroot-health-check.service") == "active", "the health check failed", boot)
    expect(
        v.get("unit.sysroot-health-green.service") == "active",
        "the boot was not marked good",
        boot,
    )
    said = v.get("mark_good", "")
    expect(
        said.endswith(f"{booted}: boot marked good ({tries_left} tries left), boot counting ended"),
        f"mark-good did not bless {booted} with {tries_left} tries left: {said!r}",
        boot,
    )
    entries, env = v.get("entries", "").split(), v.get("grubenv", "")
    if backend == "systemd-boot":
        expect(not any("+" in e for e in entries), f"an entry still counts: {entries}", boot)
        expect(v.get("counting") == "off", f"counting is {v.get('counting')!r}", boot)
    else:
        expect(
            "boot_success=1" in env and "boot_counter" not in env,
            f"grubenv is not blessed: {env!r}",
            boot,
        )
        expect(v.get("counting") == "blessed", f"counting is {v.get('counting')!r}", boot)
    expect(v.get(f"health.{booted}") == "healthy", f"{booted} is not healthy: {v}", boot)
