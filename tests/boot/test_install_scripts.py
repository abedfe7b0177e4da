"""units/install and dracut-module/install: what they put into an OS tree.

Booting with what they install is the VM tests' job (vm-tests/); here: the files land
where systemd and dracut look, the unit is enabled, and systemd itself accepts the
installed unit (`systemd-analyze verify --root`).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*argv, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)


@pytest.mark.unit
def test_units_install_into_a_tree(tmp_path):
    assert run(ROOT / "units/install", tmp_path).returncode == 0
    unit = tmp_path / "usr/lib/systemd/system/sysroot-remount.service"
    wants = tmp_path / "usr/lib/systemd/system/local-fs.target.wants/sysroot-remount.service"
    helper = tmp_path / "usr/lib/sysroot/sysroot-remount"
    assert unit.read_bytes() == (ROOT / "units/sysroot-remount.service").read_bytes()
    assert os.readlink(wants) == "../sysroot-remount.service" and wants.resolve() == unit
    assert os.access(helper, os.X_OK)
    verify = run("systemd-analyze", "verify", f"--root={tmp_path}", unit)
    assert verify.returncode == 0, verify.stderr
    # installing twice (an upgrade of the tree) is fine and changes nothing
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert run(ROOT / "units/install", tmp_path).returncode == 0
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


@pytest.mark.unit
def test_dracut_module_install_into_a_tree(tmp_path):
    assert run(ROOT / "dracut-module/install", tmp_path).returncode == 0
    mod = tmp_path / "usr/lib/dracut/modules.d/50sysroot"
    assert sorted(p.name for p in mod.iterdir()) == [
        "module-setup.sh",
        "sysroot-prepare-root.service",
        "sysroot-prepare-root.sh",
    ]
    assert os.access(mod / "sysroot-prepare-root.sh", os.X_OK)
    # dracut sources module-setup.sh and calls these: check() is 255, "only when asked
    # for" (not in every initramfs of a host that has it); it needs systemd in the initrd
    probe = run(
        "bash", "-c", f'. "{mod}/module-setup.sh"; check; echo $?; depends; declare -F install'
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["255", "systemd", "install"]
    # and the conf file that asks for it, as dracut reads conf files (bash)
    conf = tmp_path / "usr/lib/dracut/dracut.conf.d/50-sysroot.conf"
    asked = run("bash", "-c", f'add_dracutmodules=" base "; . "{conf}"; echo "$add_dracutmodules"')
    assert asked.stdout.split() == ["base", "sysroot"]
    for script in ("sysroot-prepare-root.sh",):
        assert run("sh", "-n", mod / script).returncode == 0


@pytest.mark.unit
def test_install_scripts_want_a_destination():
    for script in ("units/install", "dracut-module/install"):
        proc = run(ROOT / script)
        assert proc.returncode == 2
        assert proc.stderr.startswith("usage: ")
