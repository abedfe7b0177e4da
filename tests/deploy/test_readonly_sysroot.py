"""`[sysroot] readonly=true`: the physical root is mounted read-only for everyone, and
`sysroot admin` writes through a private mount namespace of its own
(sysroot/util/mounts.py). Run in a mount namespace of the test's own (unshare), where the
test sysroot is bind-mounted read-only as sysroot-prepare-root leaves /sysroot.
"""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.sysroots import OSNAME, make_os_tree

SCRIPT = r"""
set -u
sr=$1
mount --bind "$sr" "$sr"
mount -o remount,bind,ro "$sr"
touch "$sr/ostree/.probe" 2>/dev/null && echo before=writable || echo before=read-only
"$PYTHON" -m sysroot admin deploy --sysroot="$sr" --os=testos testos/x > /dev/null
echo "deploy_rc=$?"
touch "$sr/ostree/.probe" 2>/dev/null && echo after=writable || echo after=read-only
"$PYTHON" -m sysroot admin status --sysroot="$sr" --json | grep -c '"checksum"' | sed 's/^/count=/'
"""


def test_admin_writes_to_a_read_only_sysroot_without_making_it_writable(make_sysroot, tmp_path):
    sr = make_sysroot(by="sysroot")
    sr.commit(make_os_tree(tmp_path / "tree"))
    sr.admin("deploy", f"--os={OSNAME}", f"{OSNAME}/x")
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", SCRIPT, "t", str(sr.path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHON": sys.executable, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    values = dict(line.split("=", 1) for line in proc.stdout.split())
    assert values == {
        "before": "read-only",
        "deploy_rc": "0",
        "after": "read-only",
        "count": "2",
    }, proc.stderr
