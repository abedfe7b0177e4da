"""sysroot export COMMIT: the commit's tree as a tar stream (sysroot/store/export.py).

Where ostree 2022.7 misbehaves, sysroot does not: a revision that does not resolve
leaves no output file behind (ostree leaves an empty archive), `-o PATH` appears only
complete (written to a temporary name, then renamed), and a `--subpath` naming a file
is one error line (ostree aborts on an assertion).
"""

from __future__ import annotations

import sys

from sysroot.cli.main import add_repo_option, open_repo
from sysroot.errors import SysrootError
from sysroot.store.export import export_tar
from sysroot.store.tree import TreeReader
from sysroot.util.fsutil import atomic_output


def register(sub) -> None:
    p = sub.add_parser("export", help="Stream COMMIT to stdout in tar format")
    add_repo_option(p)
    p.add_argument("rev", nargs="?", metavar="COMMIT")
    p.add_argument("--no-xattrs", action="store_true", help="Skip output of extended attributes")
    p.add_argument("--subpath", default="/", metavar="PATH", help="Checkout sub-directory PATH")
    p.add_argument(
        "--prefix", default="", metavar="PATH", help="Add PATH as prefix to archive pathnames"
    )
    p.add_argument("-o", "--output", metavar="PATH", help="Output to PATH")
    p.set_defaults(func=run)


def run(args) -> int:
    if not args.rev:
        raise SysrootError("A COMMIT argument is required")
    with open_repo(args) as repo:
        checksum = repo.resolve_rev(args.rev)
        reader = TreeReader(repo, checksum)
        mtime = repo.load_commit(checksum).timestamp
        reader.resolve(args.subpath)  # a missing path fails before any output
        if args.output:
            with atomic_output(args.output) as out:
                export_tar(reader, out, subpath=args.subpath, prefix=args.prefix, mtime=mtime)
        else:
            export_tar(
                reader, sys.stdout.buffer, subpath=args.subpath, prefix=args.prefix, mtime=mtime
            )
            sys.stdout.buffer.flush()
    return 0
