"""sysroot diff: compare two revisions or directories, printed like ostree diff."""

from __future__ import annotations

import os

from sysroot.cli.common import allow_intermixed
from sysroot.cli.main import add_repo_option, open_repo
from sysroot.errors import NotFoundError, UsageError
from sysroot.store.diff import LocalTree, RepoTree, diff_stats, diff_trees
from sysroot.util.units import format_size


def register(sub) -> None:
    p = sub.add_parser("diff", help="Compare directory TARGETDIR against revision REV")
    allow_intermixed(p)
    add_repo_option(p)
    p.add_argument(
        "revs",
        nargs="*",
        metavar="REV_OR_DIR",
        help="A revision, or a directory given as /path or ./path; with one "
        "argument, REV^ is compared with REV",
    )
    p.add_argument("--stats", action="store_true", help="Print various statistics")
    p.add_argument("--fs-diff", action="store_true", help="Print filesystem diff")
    p.add_argument("--no-xattrs", action="store_true", help="Skip output of extended attributes")
    p.add_argument(
        "--owner-uid", type=int, metavar="UID", help="Use file ownership user id for local files"
    )
    p.add_argument(
        "--owner-gid", type=int, metavar="GID", help="Use file ownership group id for local files"
    )
    p.set_defaults(func=run)


def _is_path(arg: str) -> bool:
    # ostree's rule: only these spellings name a directory; anything else is a rev
    return arg.startswith("/") or arg.startswith("./")


def _side(repo, arg: str, args):
    if _is_path(arg):
        path = os.path.abspath(arg)
        if not os.path.isdir(path):
            if not os.path.lexists(path):
                raise NotFoundError(
                    f"Error when getting information for file “{path}”: No such file or directory"
                )
            raise UsageError(f"{path} is not a directory")
        return LocalTree(
            path, ignore_xattrs=args.no_xattrs, owner_uid=args.owner_uid, owner_gid=args.owner_gid
        )
    return RepoTree.for_commit(repo, arg)


def run(args) -> int:
    if not args.revs:
        raise UsageError("REV must be specified")
    # like ostree, extra arguments are ignored
    if len(args.revs) == 1:
        src, target = args.revs[0] + "^", args.revs[0]
    else:
        src, target = args.revs[0], args.revs[1]
    with open_repo(args) as repo:
        if args.fs_diff or not args.stats:
            a, b = _side(repo, src, args), _side(repo, target, args)
            result = diff_trees(a, b)
            # ostree prints repository paths absolute and paths on disk relative
            pa = "" if a.native else "/"
            pb = "" if b.native else "/"
            out = [f"M    {pa}{item.path}" for item in result.modified]
            out += [f"D    {pa}{path}" for path in result.removed]
            out += [f"A    {pb}{path}" for path in result.added]
            print("".join(line + "\n" for line in out), end="")
        if args.stats:
            stats = diff_stats(repo, src, target)
            print(f"[A] Object Count: {stats.a_objects}")
            print(f"[B] Object Count: {stats.b_objects}")
            print(f"Common Object Count: {stats.common_objects}")
            print(f"Common Object Size: {format_size(stats.common_size)}")
    return 0
