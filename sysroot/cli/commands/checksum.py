"""sysroot checksum PATH...: the object checksum ostree would give each path.

One path prints its checksum alone, as `ostree checksum` does. ostree 2022.7 quietly
ignores every path after the first; sysroot checksums each and, for more than one,
prints `CHECKSUM  PATH` lines as sha256sum does.
"""

from __future__ import annotations

import os

from sysroot.errors import SysrootError
from sysroot.store.localsum import path_checksum


def register(sub) -> None:
    p = sub.add_parser("checksum", help="Checksum a file or directory")
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument("--ignore-xattrs", action="store_true", help="Don't include xattrs in checksum")
    p.set_defaults(func=run)


def run(args) -> int:
    if not args.paths:
        raise SysrootError("A filename must be given")
    sums = []
    for path in args.paths:
        try:
            sums.append(path_checksum(path, ignore_xattrs=args.ignore_xattrs))
        except OSError as e:
            raise SysrootError(
                f"Error when getting information for file \u201c{os.path.abspath(path)}\u201d:"
                f" {e.strerror}"
            ) from None
    if len(sums) == 1:
        print(sums[0])
    else:
        for path, csum in zip(args.paths, sums, strict=True):
            print(f"{csum}  {path}")
    return 0
