"""sysroot ls and cat: look inside a commit without checking it out.

Output is byte-for-byte what `ostree ls` / `ostree cat` print, including how odd
paths (`a//b`, trailing `/`) resolve.
"""

from __future__ import annotations

import stat
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sysroot.cli.main import add_repo_option, open_repo
from sysroot.errors import SysrootError

if TYPE_CHECKING:
    from sysroot.store.tree import TreeEntry, TreeReader


def register(sub) -> None:
    p = sub.add_parser("ls", help="List file paths")
    add_repo_option(p)
    p.add_argument("rev", metavar="COMMIT")
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument(
        "-d", "--dironly", action="store_true", help="Do not recurse into directory arguments"
    )
    p.add_argument("-R", "--recursive", action="store_true", help="Print directories recursively")
    p.add_argument("-C", "--checksum", action="store_true", help="Print checksum")
    p.add_argument("-X", "--xattrs", action="store_true", help="Print extended attributes")
    p.add_argument(
        "--nul-filenames-only", action="store_true", help="Print only filenames, NUL separated"
    )
    p.set_defaults(func=run_ls)

    p = sub.add_parser("cat", help="Concatenate contents of files")
    add_repo_option(p)
    p.add_argument("rev", metavar="COMMIT")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=run_cat)


def _open(args) -> TreeReader:
    from sysroot.store.tree import TreeReader  # imported here: keeps startup lean

    repo = open_repo(args)
    return TreeReader(repo, repo.resolve_rev(args.rev))


def _walk(reader: TreeReader, entry: TreeEntry, depth: int) -> Iterator[TreeEntry]:
    """Entries below entry, depth-first in ostree's order; depth < 0 means unlimited."""
    stack = [iter(reader.children(entry))]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
            continue
        yield child
        if child.is_dir and (depth < 0 or len(stack) < depth):
            stack.append(iter(reader.children(child)))


def _format(reader: TreeReader, entry: TreeEntry, args) -> bytes:
    path = entry.path
    if args.nul_filenames_only:
        return path.encode("utf-8", "surrogateescape") + b"\0"
    target = ""
    if entry.is_dir:
        meta = reader.dirmeta(entry.checksum)
        uid, gid, mode, size, xattrs = meta.uid, meta.gid, meta.mode, 0, meta.xattrs
        kind = "d"
    else:
        info = reader.file_info(entry.checksum, path)
        h = info.header
        uid, gid, mode, xattrs = h.uid, h.gid, h.mode, h.xattrs
        if h.is_symlink:
            kind, size, target = "l", 0, h.symlink_target
        else:
            kind, size = "-", info.size
    parts = [f"{kind}0{mode & ~stat.S_IFMT(mode):04o} {uid} {gid} {size:6d} "]
    if args.checksum:
        if entry.is_dir:
            parts.append(f"{entry.tree} ")
        parts.append(f"{entry.checksum} ")
    if args.xattrs:
        from sysroot.formats.gvariant_text import print_value

        parts.append("{ " + print_value("a(ayay)", list(xattrs)) + " } ")
    parts.append(path)
    if target:
        parts.append(f" -> {target}")
    parts.append("\n")
    return "".join(parts).encode("utf-8", "surrogateescape")


def run_ls(args) -> int:
    reader = _open(args)
    out = sys.stdout.buffer
    for arg in args.paths or ["/"]:
        try:
            entry = reader.resolve(arg)
        except SysrootError as e:
            raise SysrootError(f"Inspecting path '{arg}': {e}") from None
        out.write(_format(reader, entry, args))
        if entry.is_dir and (args.recursive or not args.dironly):
            for child in _walk(reader, entry, -1 if args.recursive else 1):
                out.write(_format(reader, child, args))
    out.flush()
    return 0


def run_cat(args) -> int:
    reader = _open(args)
    out = sys.stdout.buffer
    for arg in args.paths:
        entry = reader.follow_symlinks(reader.resolve(arg))
        for chunk in reader.read_file(entry):
            out.write(chunk)
    out.flush()
    return 0
