"""The tries boot counting arms follow greenboot's GREENBOOT_MAX_BOOT_ATTEMPTS
(deploy/counttries.py) when the system's /etc/greenboot/greenboot.conf sets it: the
booted deployment's /etc on a booted sysroot, else the merge deployment's. The repo's
sysroot.boot-counting-tries stays the switch and the default. Checked on what each
boot loader counts: the `+N` of the systemd-boot entry name, grubenv's boot_counter.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sysroot.deploy import counttries
from sysroot.deploy import deploy as dep
from sysroot.deploy.invariant import check_boot_invariant
from sysroot.deploy.state import SysrootState
from sysroot.formats import shellvars
from tests.boot.test_boot_counting import deploy, dname, make_sysroot, names
from tests.helpers.sysroots import OSNAME


def set_attempts(sr, name: str, text: str) -> Path:
    """greenboot.conf with text in deployment name's /etc."""
    conf = Path(sr.path) / "ostree/deploy" / OSNAME / "deploy" / name / counttries.GREENBOOT_CONF
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(text)
    return conf


def sd_head(sr) -> str:
    """The counter of the default (newest) systemd-boot entry: '+N' or ''."""
    counted = [n for n in os.listdir(Path(sr.path) / "boot/loader/entries") if "+" in n]
    assert len(counted) <= 1, counted
    return "+" + counted[0].removesuffix(".conf").partition("+")[2] if counted else ""


def grub_counter(sr) -> str:
    return subprocess.run(
        ["grub-editenv", str(Path(sr.layout.boot) / "grub/grubenv"), "list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def armed(sr, bootloader: str) -> int | None:
    """The tries the live default was armed with (None: not counted)."""
    if bootloader == "systemd-boot":
        head = sd_head(sr)
        return int(head[1:]) if head else None
    env = dict(line.split("=", 1) for line in grub_counter(sr).splitlines())
    return int(env["boot_counter"]) if env.get("boot_success") == "0" else None


BOTH = pytest.mark.parametrize("bootloader", ["systemd-boot", "grub2"])


# ---------------------------------------------------------------- offline: merge /etc
@BOTH
def test_greenboot_conf_of_the_merge_deployment_sets_the_tries(tmp_path, ostree, bootloader):
    sr, c = make_sysroot(tmp_path / "sr", ostree, bootloader, 3)
    deploy(sr, 1)
    set_attempts(sr, dname(c, 1), "# greenboot\nGREENBOOT_MAX_BOOT_ATTEMPTS=5\n")
    deploy(sr, 2)
    assert armed(sr, bootloader) == 5
    if bootloader == "systemd-boot":
        assert "ostree-2-9999-testos+5.conf" in os.listdir(Path(sr.path) / "boot/loader/entries")
    else:
        assert grub_counter(sr) == "boot_counter=5\nboot_success=0\n"
    assert check_boot_invariant(sr.path) == []


@BOTH
def test_without_greenboot_conf_the_repo_key_decides(tmp_path, ostree, bootloader):
    sr, c = make_sysroot(tmp_path / "sr", ostree, bootloader, 2)
    deploy(sr, 1)
    set_attempts(sr, dname(c, 1), "DISABLED_HEALTHCHECKS=( a.sh )\n")  # does not say
    deploy(sr, 2)
    assert armed(sr, bootloader) == 2


@BOTH
def test_counting_off_ignores_greenboot_conf(tmp_path, ostree, bootloader):
    sr, c = make_sysroot(tmp_path / "sr", ostree, bootloader, None)
    deploy(sr, 1)
    set_attempts(sr, dname(c, 1), "GREENBOOT_MAX_BOOT_ATTEMPTS=5\n")
    deploy(sr, 2)
    if bootloader == "systemd-boot":
        assert sd_head(sr) == ""
    else:
        assert not (Path(sr.layout.boot) / "grub/grubenv").exists()


@BOTH
@pytest.mark.parametrize(
    ("value", "tries", "warning"),
    [
        (
            "12",
            9,
            "GREENBOOT_MAX_BOOT_ATTEMPTS=12 is more than the 9 tries boot counting "
            "supports; arming 9",
        ),
        ("9" * 5000, 9, "is more than the 9 tries"),
        (
            "0",
            3,
            "GREENBOOT_MAX_BOOT_ATTEMPTS='0' is not a positive integer; "
            "using sysroot.boot-counting-tries",
        ),
        ("-1", 3, "is not a positive integer"),
        ("abc", 3, "is not a positive integer"),
        ("'4'", 4, None),  # quoted as bash allows
        ("$(echo 7)", 3, None),  # never run: the line is ignored (the health checks warn)
    ],
)
def test_bad_or_large_values(tmp_path, ostree, capfd, bootloader, value, tries, warning):
    sr, c = make_sysroot(tmp_path / "sr", ostree, bootloader, 3)
    deploy(sr, 1)
    conf = set_attempts(sr, dname(c, 1), f"GREENBOOT_MAX_BOOT_ATTEMPTS={value}\n")
    capfd.readouterr()
    deploy(sr, 2)
    assert armed(sr, bootloader) == tries
    err = capfd.readouterr().err
    if warning is None:
        assert "warning" not in err
    else:
        (line,) = err.splitlines()  # one line
        assert line.startswith(f"warning: {conf}: ") and warning in line
    assert check_boot_invariant(sr.path) == []


def test_offline_symlink_is_not_followed(tmp_path, ostree, capfd):
    """An offline tree's absolute symlink would point into this system's /etc."""
    sr, c = make_sysroot(tmp_path / "sr", ostree, "systemd-boot", 3)
    deploy(sr, 1)
    outside = tmp_path / "host-greenboot.conf"
    outside.write_text("GREENBOOT_MAX_BOOT_ATTEMPTS=7\n")
    conf = set_attempts(sr, dname(c, 1), "")
    conf.unlink()
    conf.symlink_to(outside)
    capfd.readouterr()
    deploy(sr, 2)
    assert armed(sr, "systemd-boot") == 3
    assert capfd.readouterr().err == (
        f"warning: {conf}: a symlink, not followed; using the defaults\n"
    )


# ---------------------------------------------------------------- booted: the running /etc
@pytest.mark.parametrize("booted", [True, False])
def test_booted_etc_wins_over_the_merge_deployment(tmp_path, ostree, monkeypatch, booted):
    """c2 is the default (the merge deployment offline), c1 runs: booted, c1's /etc
    is the running system's and decides."""
    sr, c = make_sysroot(tmp_path / "sr", ostree, "systemd-boot", 3)
    deploy(sr, 1)
    deploy(sr, 2)
    set_attempts(sr, dname(c, 1), "GREENBOOT_MAX_BOOT_ATTEMPTS=4\n")
    set_attempts(sr, dname(c, 2), "GREENBOOT_MAX_BOOT_ATTEMPTS=6\n")
    if booted:
        real_load = SysrootState._load

        def load_booted(self):
            real_load(self)
            self.booted = next((d for d in self.deployments if d.name == dname(c, 1)), None)

        monkeypatch.setattr(SysrootState, "_load", load_booted)
    deploy(sr, 3)
    assert names(sr)[0] == dname(c, 3)
    assert armed(sr, "systemd-boot") == (4 if booted else 6)


# ---------------------------------------------------------------- the reader alone
def test_greenboot_attempts_reader(tmp_path):
    root = tmp_path / "root"
    assert counttries.greenboot_attempts(str(root)) == (None, [])  # no file: silently
    conf = root / counttries.GREENBOOT_CONF
    conf.parent.mkdir(parents=True)
    conf.write_text('export GREENBOOT_MAX_BOOT_ATTEMPTS="2" # two\nX=$(reboot)\n')
    assert counttries.greenboot_attempts(str(root)) == (2, [])
    conf.write_text("GREENBOOT_MAX_BOOT_ATTEMPTS=1\nGREENBOOT_MAX_BOOT_ATTEMPTS=08\n")
    assert counttries.greenboot_attempts(str(root)) == (8, [])  # the last one, as bash
    conf.write_bytes(b"#" * (shellvars.MAX_SIZE + 1))
    n, warnings = counttries.greenboot_attempts(str(root))
    assert n is None and warnings == [
        f"{conf}: larger than {shellvars.MAX_SIZE} bytes; using the defaults"
    ]


@pytest.mark.parametrize("booted", [True, False])
def test_booted_etc_decides_for_another_stateroot(tmp_path, ostree, monkeypatch, booted):
    """A first deployment of another stateroot: booted, the running /etc (c1's) still
    decides; offline that stateroot has no merge deployment, so the repo key does."""
    sr, c = make_sysroot(tmp_path / "sr", ostree, "systemd-boot", 3)
    deploy(sr, 1)
    set_attempts(sr, dname(c, 1), "GREENBOOT_MAX_BOOT_ATTEMPTS=4\n")
    sr.os_init("other")
    if booted:
        real_load = SysrootState._load

        def load_booted(self):
            real_load(self)
            self.booted = next((d for d in self.deployments if d.name == dname(c, 1)), None)

        monkeypatch.setattr(SysrootState, "_load", load_booted)
    sr.deploy(f"{OSNAME}/2", dep.DeployOptions(osname="other"))
    assert [d.osname for d in sr.load().deployments] == ["other", OSNAME]
    assert armed(sr, "systemd-boot") == (4 if booted else 3)
