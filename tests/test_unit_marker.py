"""The `unit` marker is honest (tests/helpers/unit.py): the unit tests pass as an
unprivileged user with no ostree on PATH, and a unit test that starts ostree (or
another tool it must not need) fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from tests.helpers import unit

ROOT = Path(__file__).resolve().parent.parent
BIN_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def _path_without_ostree(shadow: Path) -> str:
    """A PATH of one directory linking every program of the usual ones but ostree."""
    shadow.mkdir()
    for d in BIN_DIRS:
        for name in os.listdir(d) if os.path.isdir(d) else ():
            if name != "ostree" and not (shadow / name).exists():
                os.symlink(os.path.join(d, name), shadow / name)
    return str(shadow)


def _as_nobody(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", *argv],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        **kw,
    )


def _python_for_nobody() -> tuple[str, dict[str, str]]:
    """An interpreter nobody may start (the tests start it again, as sys.executable),
    with what it needs in the environment. This venv's may live in root's home: then
    the system's Python of the same version, given the venv's packages."""
    probe = _as_nobody(["/bin/sh", "-c", 'exec "$0" -c pass', sys.executable])
    if probe.returncode == 0:
        return sys.executable, {}
    system = "/usr/bin/python3"
    version = subprocess.run(
        [system, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.strip()
    assert version == str(sys.version_info[:2]), f"no Python nobody can run ({version})"
    paths = sysconfig.get_paths()
    return system, {"PYTHONPATH": os.pathsep.join([str(ROOT), paths["purelib"], paths["platlib"]])}


def test_unit_tests_pass_as_nobody_without_ostree():
    assert os.geteuid() == 0, "the suite runs as root (to become nobody here)"
    base = Path(tempfile.mkdtemp(prefix="unit-as-nobody-"))  # not under root's 0700 tmp
    try:
        path = _path_without_ostree(base / "bin")
        (base / "tmp").mkdir()
        shutil.chown(base / "tmp", "nobody", "nogroup")
        os.chmod(base, 0o755)
        python, extra = _python_for_nobody()
        env = {
            "PATH": f"{Path(python).parent}:{path}",
            "HOME": str(base / "tmp"),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            **extra,
        }
        proc = _as_nobody(
            [
                python,
                "-m",
                "pytest",
                "-m",
                "unit",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--basetemp={base / 'tmp/pytest'}",
                "tests",
            ],
            cwd=ROOT,
            env=env,
            timeout=300,
        )
        assert shutil.which("ostree", path=path) is None
        tail = proc.stdout[-3000:] + proc.stderr[-2000:]
        assert proc.returncode == 0, tail
        m = re.search(r"(\d+) passed", proc.stdout)
        assert m and int(m.group(1)) >= 100, tail
        assert " failed" not in proc.stdout and " error" not in proc.stdout, tail
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.unit
@pytest.mark.parametrize(
    "argv",
    [
        ["ostree", "--version"],
        ["/usr/bin/ostree", "--version"],
        "ostree --version",
        ["strace", "-o", "/dev/null", "true"],
        ["mount", "-t", "tmpfs", "tmpfs", "/mnt"],
        ["mkfs.vfat", "/dev/null"],
    ],
)
def test_a_unit_test_that_starts_a_forbidden_tool_fails(argv, monkeypatch):
    """Within a unit test (this one) the guard is on: the tool does not even start."""
    with pytest.raises(pytest.fail.Exception, match="a unit test started"):
        subprocess.run(argv, shell=isinstance(argv, str), capture_output=True)


@pytest.mark.unit
def test_other_programs_start_in_a_unit_test():
    assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0
    assert unit.command_name(["/usr/bin/ostree"]) == "ostree"
    assert unit.command_name(["x"], executable="/usr/bin/strace") == "strace"
    assert not unit.is_forbidden("python3") and not unit.is_forbidden("mountpoint")


def test_outside_unit_tests_ostree_runs(ostree):
    assert ostree("--version").returncode == 0


def test_a_stale_listed_name_fails_the_collection(monkeypatch):
    class Item:
        path = ROOT / "tests/formats/test_keyfile.py"
        name = originalname = "test_that_was_renamed"

        def add_marker(self, marker):
            pass

    monkeypatch.setitem(unit.LISTED, "tests/formats/test_keyfile.py", ("test_gone",))
    with pytest.raises(pytest.UsageError, match="test_gone"):
        unit.mark_listed([Item()], str(ROOT))
