"""sysroot prune: ostree prune's options over sysroot.store.prune."""

from __future__ import annotations

from sysroot.cli.main import add_repo_option, open_repo
from sysroot.errors import UsageError
from sysroot.store.prune import PruneOptions, delete_commit, prune, prune_static_deltas
from sysroot.util.datetimes import parse_date


def register(sub) -> None:
    p = sub.add_parser("prune", help="Search for unreachable objects")
    add_repo_option(p)
    p.add_argument(
        "--no-prune", action="store_true", help="Only display unreachable objects; don't delete"
    )
    p.add_argument("--refs-only", action="store_true", help="Only compute reachability via refs")
    p.add_argument(
        "--depth",
        type=_int,
        default=-1,
        metavar="DEPTH",
        help="Only traverse DEPTH parents for each commit (default: -1=infinite)",
    )
    p.add_argument("--delete-commit", metavar="COMMIT", help="Specify a commit to delete")
    p.add_argument(
        "--keep-younger-than",
        metavar="DATE",
        help="Prune all commits older than the specified date",
    )
    p.add_argument(
        "--static-deltas-only",
        action="store_true",
        help="Change the behavior of delete-commit to prune only static deltas",
    )
    p.add_argument(
        "--retain-branch-depth",
        action="append",
        default=[],
        metavar="BRANCH=DEPTH",
        help="Additionally retain BRANCH=DEPTH commits",
    )
    p.add_argument(
        "--only-branch",
        action="append",
        default=[],
        metavar="BRANCH",
        help="Only prune BRANCH (may be specified multiple times)",
    )
    p.add_argument(
        "--commit-only", action="store_true", help="Only traverse and delete commit objects."
    )
    p.set_defaults(func=run)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"Cannot parse integer value '{text}' for --depth") from None


def run(args) -> int:
    options = PruneOptions(
        refs_only=args.refs_only,
        depth=args.depth,
        keep_younger_than=(
            None if args.keep_younger_than is None else parse_date(args.keep_younger_than)
        ),
        retain_branch_depth=dict(_branch_depth(bd) for bd in args.retain_branch_depth),
        only_branches=tuple(args.only_branch),
        commit_only=args.commit_only,
        no_prune=args.no_prune,
    )
    if args.delete_commit and args.no_prune:
        raise UsageError("Cannot specify both --delete-commit and --no-prune")
    if args.static_deltas_only and not args.delete_commit:
        raise UsageError("--static-deltas-only requires --delete-commit")
    repo = open_repo(args)
    if args.delete_commit:
        if args.static_deltas_only:
            with repo.lock(exclusive=True):
                prune_static_deltas(repo, args.delete_commit)
        else:
            delete_commit(repo, args.delete_commit)
    for line in prune(repo, options).summary():
        print(line)
    return 0


def _branch_depth(text: str) -> tuple[str, int]:
    branch, eq, depth = text.partition("=")
    if not eq:
        raise UsageError(f"Invalid value {text}, must specify BRANCH=DEPTH")
    try:
        return branch, int(depth)
    except ValueError:
        raise UsageError(f"Invalid depth {depth}") from None
