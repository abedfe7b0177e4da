"""What a system needs beside the Python package: the systemd units (finalize,
remount, health checks, automatic updates), the journal catalog and the dracut module
with the conf file that asks for it. They ship inside the package (sysroot/_data links
to the source tree's units/ and dracut-module/, so wheels carry them) and are put in
place by the same install scripts an OS image build runs, with the units' ExecStart
pointed at the entry point pip made instead of /usr/bin/sysroot.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from importlib import resources

from sysroot.errors import SysrootError, UsageError
from sysroot.util.run import clean_env, run

# what a unit's ExecStart can carry without quoting (units/install checks it too)
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9/._+-]*")


def data_dir() -> str:
    """The installed data: units/ and dracut-module/ (a real directory: the package
    is installed from a wheel or a source tree, never a zip)."""
    path = str(resources.files("sysroot").joinpath("_data"))
    for part in ("units/install", "dracut-module/install"):
        if not os.path.isfile(os.path.join(path, part)):
            raise SysrootError(f"{os.path.join(path, part)}: missing from this installation")
    return path


def current_entry_point() -> str | None:
    """The `sysroot` program this process was started as, else the one on PATH."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "sysroot" and os.path.isfile(argv0):
        return os.path.abspath(argv0)
    return shutil.which("sysroot")


def install_system_files(root: str, entry_point: str) -> None:
    """Install units, catalog and dracut module into the tree at root (/ for this
    machine), the units running entry_point (its path as seen from inside root)."""
    if not _PLAIN_PATH.fullmatch(entry_point):
        raise UsageError(
            f"{entry_point!r}: the entry point must be an absolute path of letters, "
            "digits and /._+- (a unit's ExecStart carries it)"
        )
    if not os.path.isdir(root):
        raise UsageError(f"{root}: no such directory")
    data = data_dir()
    env = clean_env({"SYSROOT_BIN": entry_point})
    run(["sh", os.path.join(data, "units", "install"), root], env=env)
    run(["sh", os.path.join(data, "dracut-module", "install"), root], env=env)
