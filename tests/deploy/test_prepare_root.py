"""The initramfs side of booting a deployment: dracut-module/50sysroot/sysroot-prepare-root.

The script runs here for real, against a sysroot that `sysroot admin deploy` wrote, in a
private mount namespace of its own (unshare) with its own /run and a kernel command line
bound over /proc/cmdline: the same mount calls as in the initrd, without a VM. What the
VM tests (vm-tests/) add is the real initrd, boot loader and switch-root around it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers.sysroots import OSNAME, make_os_tree
from tests.helpers.tools import in_mount_namespace

SCRIPT = Path(__file__).resolve().parents[2] / "dracut-module/50sysroot/sysroot-prepare-root.sh"

# Runs inside the namespace. $1: physical root, $2: kernel command line, $3: probe script.
HARNESS = r"""
set -u
phys=$1
mount -t tmpfs tmpfs /run
printf '%s\n' "$2" > /run/cmdline
mount --bind /run/cmdline /proc/cmdline
mount --bind "$phys" "$phys"
findmnt -rn -o TARGET,OPTIONS > /run/mounts-before
sh "$PREPARE" "$phys" > /run/out 2>&1
rc=$?
echo "rc=$rc"
sed 's/^/out: /' /run/out
findmnt -rn -o TARGET,OPTIONS > /run/mounts-after
cmp -s /run/mounts-before /run/mounts-after && echo "mounts=unchanged" || echo "mounts=changed"
test -e /run/ostree-booted && echo "booted_mark=yes" || echo "booted_mark=no"
[ "$rc" = 0 ] && sh -c "$3" probe "$phys"
exit 0
"""

# After a successful run: what the new root looks like from outside.
PROBE = r"""
p=$1
same() { [ "$(stat -c %d:%i "$1")" = "$(stat -c %d:%i "$2")" ] && echo yes || echo no; }
echo "root_is_deployment=$(same "$p" "$p/sysroot/ostree/deploy/testos/deploy/$DEPLOY")"
echo "var_is_stateroot=$(same "$p/var" "$p/sysroot/ostree/deploy/testos/var")"
echo "physroot_at_sysroot=$(test -d "$p/sysroot/ostree/repo/objects" && echo yes || echo no)"
touch "$p/usr/.probe" 2>/dev/null && echo usr_writable=yes || echo usr_writable=no
touch "$p/etc/.probe" 2>/dev/null && echo etc_writable=yes || echo etc_writable=no
touch "$p/var/.probe" 2>/dev/null && echo var_writable=yes || echo var_writable=no
touch "$p/sysroot/.probe" 2>/dev/null && echo sysroot_writable=yes || echo sysroot_writable=no
rm -f "$p/etc/.probe" "$p/var/.probe" "$p/sysroot/.probe"
"""


def prepare_root(
    physroot: Path, cmdline: str, deploy: str = "", cwd: Path | None = None
) -> tuple[dict, list[str]]:
    """Run the script in a new mount namespace (in cwd); return the probe's values and its
    output."""
    env = {**os.environ, "PREPARE": str(SCRIPT), "DEPLOY": deploy}
    proc = subprocess.run(
        in_mount_namespace(HARNESS, str(physroot), cmdline, PROBE),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr
    values, out = {}, []
    for line in proc.stdout.splitlines():
        if line.startswith("out: "):
            out.append(line[5:])
        elif "=" in line:
            k, _, v = line.partition("=")
            values[k] = v
    return values, out


@pytest.fixture
def deployed(make_sysroot, tmp_path):
    """A sysroot with one deployment of a tree shaped like a real OS (sysroot/, var/)."""
    sr = make_sysroot(by="sysroot")
    tree = make_os_tree(tmp_path / "tree")
    for d in ("sysroot", "var", "boot", "usr/share"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    sr.commit(tree)
    sr.admin("deploy", f"--os={OSNAME}", f"{OSNAME}/x")
    entry = next((sr.path / "boot/loader/entries").glob("*.conf")).read_text()
    options = next(line for line in entry.splitlines() if line.startswith("options "))
    bootlink = next(w for w in options.split() if w.startswith("ostree=")).split("=", 1)[1]
    (deploy,) = [
        p.name
        for p in (sr.path / "ostree/deploy" / OSNAME / "deploy").iterdir()
        if not p.name.endswith(".origin")
    ]
    return sr, bootlink, deploy


@pytest.mark.parametrize("form", ["bootlink", "deployment-path"])
def test_prepares_the_deployment_as_root(deployed, form):
    sr, bootlink, deploy = deployed
    target = bootlink if form == "bootlink" else f"/ostree/deploy/{OSNAME}/deploy/{deploy}"
    values, out = prepare_root(sr.path, f"root=/dev/vda2 rw ostree={target} quiet", deploy)
    assert values["rc"] == "0", out
    assert out == [
        f"sysroot-prepare-root: booting deployment /ostree/deploy/{OSNAME}/deploy/{deploy}"
    ]
    assert values["root_is_deployment"] == "yes"
    assert values["physroot_at_sysroot"] == "yes"
    assert values["var_is_stateroot"] == "yes"
    assert values["usr_writable"] == "no"
    assert values["etc_writable"] == "yes"
    assert values["var_writable"] == "yes"
    assert values["sysroot_writable"] == "yes"
    assert values["booted_mark"] == "yes"


def test_readonly_sysroot_keeps_etc_and_var_writable(deployed):
    sr, bootlink, deploy = deployed
    sr.tool(f"--repo={sr.repo}", "config", "set", "sysroot.readonly", "true")
    values, out = prepare_root(sr.path, f"ostree={bootlink}", deploy)
    assert values["rc"] == "0", out
    assert values["sysroot_writable"] == "no"
    assert values["etc_writable"] == "yes"
    assert values["var_writable"] == "yes"
    assert values["usr_writable"] == "no"


def bad_targets(bootlink: str, deploy: str) -> dict[str, tuple[str, str]]:
    """name -> (kernel command line, what the one error line must mention)"""
    missing = "0" * 64 + ".0"
    return {
        "no ostree=": ("root=/dev/vda2 rw", "no ostree= argument"),
        "empty": ("ostree=", "no ostree= argument"),
        "relative": (f"ostree=ostree/deploy/{OSNAME}/deploy/{deploy}", "not an absolute path"),
        "missing deployment": (
            f"ostree=/ostree/deploy/{OSNAME}/deploy/{missing}",
            "does not exist",
        ),
        "missing boot link": (f"ostree={bootlink[:-1]}7", "does not exist"),
        "not a deployment": ("ostree=/ostree/repo", "not a deployment"),
        "link leading out": ("ostree=/ostree/escape", "not a deployment"),
        "stateroot itself": (f"ostree=/ostree/deploy/{OSNAME}", "not a deployment"),
    }


@pytest.mark.parametrize("case", list(bad_targets("/x/0", "d")))
def test_a_wrong_target_stops_with_one_line_and_mounts_nothing(deployed, case):
    sr, bootlink, deploy = deployed
    # an absolute link on the physical root must not lead the script to the initrd's files
    (sr.path / "ostree/escape").symlink_to("/usr")
    cmdline, reason = bad_targets(bootlink, deploy)[case]
    values, out = prepare_root(sr.path, cmdline, deploy)
    assert values["rc"] == "1"
    assert len(out) == 1, out
    assert out[0].startswith("sysroot-prepare-root: error: ") and reason in out[0], out
    assert values["mounts"] == "unchanged"
    assert values["booted_mark"] == "no"


def test_last_ostree_argument_wins(deployed):
    sr, bootlink, deploy = deployed
    values, out = prepare_root(sr.path, f"ostree=/nonexistent ostree={bootlink}", deploy)
    assert values["rc"] == "0", out
    assert values["root_is_deployment"] == "yes"


def test_kernel_arguments_are_not_glob_expanded(deployed, tmp_path):
    """A `*` on the kernel command line is a word, not a pattern: expanded in a directory
    that holds a file named ostree=relative, it would become a second ostree= argument
    and win over the real one."""
    sr, bootlink, deploy = deployed
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "ostree=relative").touch()
    values, out = prepare_root(sr.path, f"ostree={bootlink} * quiet", deploy, cwd=cwd)
    assert values["rc"] == "0", out
    assert values["root_is_deployment"] == "yes"
