"""sysroot checkout: ostree checkout's options over checkout_tree()."""

from __future__ import annotations

import sys

from sysroot.cli.main import add_repo_option, open_repo
from sysroot.cli.refusals import REFUSED, refusal
from sysroot.errors import SysrootError, UsageError

_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no", "none")


def register(sub) -> None:
    p = sub.add_parser("checkout", help="Check out a commit into a filesystem tree")
    add_repo_option(p)
    p.add_argument("commit", metavar="COMMIT")
    p.add_argument(
        "destination",
        nargs="?",
        metavar="DESTINATION",
        help="Directory to create (default: COMMIT as given)",
    )
    p.add_argument(
        "-U",
        "--user-mode",
        action="store_true",
        help="Do not change file ownership or initialize extended attributes",
    )
    p.add_argument(
        "--disable-cache",
        action="store_true",
        help="Accepted for compatibility: no uncompressed object cache is used",
    )
    p.add_argument("--subpath", metavar="PATH", help="Checkout sub-directory PATH")
    p.add_argument(
        "--union", action="store_true", help="Keep existing directories, overwrite existing files"
    )
    p.add_argument(
        "--union-add", action="store_true", help="Keep existing files/directories, only add new"
    )
    p.add_argument(
        "--union-identical",
        action="store_true",
        help="When layering checkouts, error out if a file would be replaced "
        "with a different version, but add new files and directories",
    )
    p.add_argument(
        "--allow-noent", action="store_true", help="Do nothing if specified path does not exist"
    )
    p.add_argument(
        "--from-stdin", action="store_true", help="Process many checkouts from standard input"
    )
    p.add_argument("--from-file", metavar="FILE", help="Process many checkouts from input file")
    p.add_argument("--fsync", metavar="POLICY", help="Flush the checkout to disk (true/false)")
    p.add_argument(
        "-H",
        "--require-hardlinks",
        action="store_true",
        help="Do not fall back to full copies if hardlinking fails",
    )
    p.add_argument(
        "-C",
        "--force-copy",
        action="store_true",
        help="Never hardlink (but may reflink if available)",
    )
    p.add_argument(
        "-M",
        "--bareuseronly-dirs",
        action="store_true",
        help="Suppress mode bits outside of 0775 for directories",
    )
    p.add_argument(
        "--whiteouts", action="store_true", help="Process 'whiteout' (Docker style) entries"
    )
    p.add_argument(
        "--process-passthrough-whiteouts",
        action="store_true",
        help="Enable overlayfs whiteout extraction into char 0:0 devices",
    )
    p.add_argument("--skip-list", metavar="PATH", help="File containing list of files to skip")
    for option in ("--selinux-policy", "--selinux-prefix"):
        p.add_argument(option, metavar="PATH", help="Refused: " + REFUSED[f"checkout {option}"])
    p.set_defaults(func=run)


def _overwrite_mode(args):
    from sysroot.store.checkout import OverwriteMode

    given = (
        ("--union", OverwriteMode.UNION_FILES, args.union),
        ("--union-add", OverwriteMode.ADD_FILES, args.union_add),
        ("--union-identical", OverwriteMode.UNION_IDENTICAL, args.union_identical),
    )
    chosen = [(flag, mode) for flag, mode, on in given if on]
    if len(chosen) > 1:
        raise UsageError(f"Cannot specify both {chosen[0][0]} and {chosen[1][0]}")
    return chosen[0][1] if chosen else OverwriteMode.NONE


def _parse_bool(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise UsageError(f"Invalid boolean argument '{text}'")


def options_from_args(args, subpath: str | None):
    from sysroot.store.checkout import CheckoutOptions

    return CheckoutOptions(
        user_mode=args.user_mode,
        overwrite=_overwrite_mode(args),
        subpath=subpath or "/",
        require_hardlinks=args.require_hardlinks,
        force_copy=args.force_copy,
        bareuseronly_dirs=args.bareuseronly_dirs,
        allow_noent=args.allow_noent,
        fsync=_parse_bool(args.fsync) if args.fsync is not None else False,
        process_whiteouts=args.whiteouts,
        passthrough_whiteouts=args.process_passthrough_whiteouts,
        skip=_skip_list(args.skip_list) if args.skip_list else frozenset(),
    )


def _skip_list(path: str) -> frozenset[str]:
    """The paths of a --skip-list file, one per line (absolute, as ostree matches them)."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return frozenset(line.rstrip("\n") for line in f if line.strip())


def run(args) -> int:
    for option, given in (
        ("--selinux-policy", args.selinux_policy),
        ("--selinux-prefix", args.selinux_prefix),
    ):
        if given:
            raise refusal(f"checkout {option}")
    from sysroot.store.checkout import checkout_tree  # imported here: keeps startup lean

    repo = open_repo(args)
    if args.from_stdin or args.from_file:
        # COMMIT is then the destination; input is NUL-separated REV, SUBPATH pairs
        destination = args.commit
        if args.from_stdin:
            data = sys.stdin.buffer.read()
        else:
            try:
                with open(args.from_file, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise SysrootError(f"{args.from_file}: {e.strerror}") from None
        fields = data.split(b"\0")
        for i in range(0, len(fields) - 1, 2):
            rev = fields[i].decode("utf-8", "surrogateescape")
            if not rev:
                break
            subpath = fields[i + 1].decode("utf-8", "surrogateescape")
            commit = repo.resolve_rev(rev)
            try:
                checkout_tree(repo, commit, destination, options_from_args(args, subpath))
            except SysrootError as e:
                raise SysrootError(f"Processing tree {commit}: {e}") from None
        return 0
    options = options_from_args(args, args.subpath)
    checkout_tree(repo, args.commit, args.destination or args.commit, options)
    return 0
