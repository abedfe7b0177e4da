"""Which osmet file of a directory fits a disk: the first, by name, made for this
architecture and the disk's logical sector size (coreos-installer takes the first in
directory order; sorting makes the choice the same on every machine)."""

from __future__ import annotations

import os

from sysroot.errors import SysrootError
from sysroot.formats.osmet import Header, read_header

SUFFIX = ".osmet"


def find_osmet(directory: str, architecture: str, sector_size: int) -> tuple[str, Header]:
    try:
        names = sorted(os.listdir(directory))
    except OSError as e:
        raise SysrootError(f"{directory}: {e.strerror}") from None
    seen = []
    for name in names:
        path = os.path.join(directory, name)
        if not name.endswith(SUFFIX) or not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as f:
                header = read_header(f)
        except SysrootError as e:
            raise SysrootError(f"{path}: {e}") from None
        except OSError as e:
            raise SysrootError(f"{path}: {e.strerror}") from None
        if header.os_architecture == architecture and header.sector_size == sector_size:
            return path, header
        seen.append(f"{name} ({header.os_architecture}, {header.sector_size})")
    raise SysrootError(
        f"{directory}: no osmet file for {architecture} with {sector_size}-byte sectors"
        + (f" (there are {', '.join(seen)})" if seen else "")
    )
