"""The system files inside the wheel, and `sysroot install system-files` putting them
onto a system root with the units running the entry point pip made.

The wheel is built from this checkout (pip, setuptools in its isolated build
environment) and installed with `pip install --target` into a directory of the test's
own; its `bin/sysroot` runs from there (its package first on the path), so what is
installed is what the wheel carries, not this checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sysroot.util.run import clean_env
from tests.conftest import one_error_line

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ["units", "dracut-module"]


def source_files() -> set[str]:
    return {
        str(p.relative_to(ROOT))
        for top in SHIPPED
        for p in (ROOT / top).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(base), str(ROOT)], check=True)
    (wheel,) = base.glob("sysroot-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert {"sysroot/_data/" + f for f in source_files()} <= names
    target = base / "target"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    return target


def run_installed(target: Path, *args: str) -> subprocess.CompletedProcess:
    env = clean_env({"PYTHONPATH": str(target)})
    return subprocess.run([str(target / "bin/sysroot"), *args], capture_output=True, env=env)


def test_the_wheel_installs_units_catalog_and_dracut_module(installed, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    r = run_installed(installed, "install", "system-files", f"--root={root}")
    assert r.returncode == 0, r.stderr.decode()
    entry = str(installed / "bin/sysroot")
    assert r.stdout.decode() == (
        f"Installed units (running {entry}), journal catalog and dracut module\n"
    )
    unitdir = root / "usr/lib/systemd/system"
    finalize = (unitdir / "sysroot-finalize-staged.service").read_text()
    assert f"ExecStop={entry} admin finalize-staged\n" in finalize
    for unit in unitdir.glob("sysroot-*"):
        if unit.is_file():
            assert "/usr/bin/sysroot" not in unit.read_text(), unit
            original = (ROOT / "units" / unit.name).read_text()
            assert unit.read_text() == original.replace("/usr/bin/sysroot", entry)
    assert (root / "usr/lib/systemd/catalog/sysroot.catalog").read_bytes() == (
        ROOT / "units/sysroot.catalog"
    ).read_bytes()
    assert (unitdir / "timers.target.wants/sysroot-auto-update.timer").is_symlink()
    assert (root / "usr/lib/dracut/modules.d/50sysroot/module-setup.sh").is_file()
    assert (root / "usr/lib/dracut/dracut.conf.d/50-sysroot.conf").is_file()
    assert os.access(root / "usr/lib/sysroot/sysroot-remount", os.X_OK)


@pytest.mark.parametrize(
    "entry", ["relative/sysroot", "/opt/my sysroot/bin/sysroot", "/x;reboot", "/a|b"]
)
def test_an_entry_point_a_unit_cannot_carry_is_refused(installed, tmp_path, entry):
    root = tmp_path / "root"
    root.mkdir()
    r = run_installed(
        installed, "install", "system-files", f"--root={root}", f"--entry-point={entry}"
    )
    assert r.returncode != 0
    assert "entry point must be an absolute path" in one_error_line(r)
    assert list(root.iterdir()) == []


def test_units_install_refuses_such_a_path_too(tmp_path):
    for bad in ("relative", "/a b", "/a|b", "/a&b"):
        r = subprocess.run(
            ["sh", str(ROOT / "units/install"), str(tmp_path)],
            capture_output=True,
            env=clean_env({"SYSROOT_BIN": bad}),
        )
        assert r.returncode == 2 and b"SYSROOT_BIN" in r.stderr
        assert list(tmp_path.iterdir()) == []
