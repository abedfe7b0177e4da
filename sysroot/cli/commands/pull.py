"""sysroot pull: ostree pull's options over sysroot.pull.pull."""

from __future__ import annotations

import sys

from sysroot.cli.common import allow_intermixed
from sysroot.cli.main import add_repo_option, open_repo
from sysroot.cli.refusals import refusal
from sysroot.errors import UsageError
from sysroot.store.repo import parse_refspec


def register(sub) -> None:
    p = sub.add_parser("pull", help="Download data from remote repository")
    allow_intermixed(p)
    add_repo_option(p)
    p.add_argument("remote", metavar="REMOTE", help="Remote name (or REMOTE:REF)")
    p.add_argument(
        "refs",
        nargs="*",
        metavar="BRANCH",
        help="Refs, REF@CHECKSUM (set REF to that commit) or commit checksums "
        "(default: the remote's branches)",
    )
    p.add_argument(
        "--commit-metadata-only", action="store_true", help="Fetch only the commit metadata"
    )
    p.add_argument("--cache-dir", metavar="DIR", help="Accepted for compatibility; unused")
    p.add_argument(
        "-L",
        "--localcache-repo",
        action="append",
        default=[],
        metavar="REPO",
        help="Add REPO as local cache source for objects during this pull",
    )
    p.add_argument("--disable-fsync", action="store_true", help="Do not invoke fsync()")
    p.add_argument(
        "--per-object-fsync",
        action="store_true",
        help="Accepted for compatibility; objects are flushed at commit",
    )
    p.add_argument("--disable-static-deltas", action="store_true", help="Do not use static deltas")
    p.add_argument(
        "--require-static-deltas",
        action="store_true",
        help="Require static deltas",
    )
    p.add_argument(
        "--mirror",
        action="store_true",
        help="Write refs suitable for a mirror and fetch all refs if none provided",
    )
    p.add_argument("--subpath", action="append", metavar="PATH", help="Not supported")
    p.add_argument(
        "--untrusted", action="store_true", help="Verify checksums of local sources (always done)"
    )
    p.add_argument(
        "--http-trusted",
        action="store_true",
        help="Accepted for compatibility; HTTP objects are still verified",
    )
    p.add_argument(
        "--bareuseronly-files",
        action="store_true",
        help="Reject regular files with mode outside of 0775 (world writable, suid, etc.)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="Only print information on what will be downloaded (requires static deltas)",
    )
    p.add_argument(
        "--depth",
        type=int,
        default=0,
        metavar="DEPTH",
        help="Traverse DEPTH parents (-1=infinite) (default: 0)",
    )
    p.add_argument(
        "--url",
        metavar="URL",
        help="Pull objects from this URL instead of the one from the remote config",
    )
    p.add_argument(
        "--http-header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Add NAME=VALUE as HTTP header to all requests",
    )
    p.add_argument(
        "--update-frequency",
        type=int,
        default=0,
        metavar="FREQUENCY",
        help="Progress update interval in milliseconds (0=250ms on a terminal)",
    )
    p.add_argument(
        "--network-retries",
        type=int,
        default=5,
        metavar="N",
        help="How many times each download is retried upon error (default: 5)",
    )
    p.add_argument(
        "--connections",
        type=int,
        default=8,
        metavar="N",
        help="Parallel HTTP connections (default: 8)",
    )
    p.add_argument(
        "-T",
        "--timestamp-check",
        action="store_true",
        help="Require fetched commits to have newer timestamps",
    )
    p.add_argument(
        "--timestamp-check-from-rev",
        metavar="REV",
        help="Require fetched commits to have newer timestamps than given rev",
    )
    p.add_argument(
        "--disable-verify-bindings",
        action="store_true",
        help="Accepted for compatibility; bindings are not verified",
    )
    p.set_defaults(func=run)


def _headers(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"Invalid --http-header={item}: expected NAME=VALUE")
        out[name] = value
    return out


def run(args) -> int:
    from sysroot.pull.fetch import FetchOptions
    from sysroot.pull.progress import Progress
    from sysroot.pull.pull import PullOptions, pull

    # ostree's own checks, in its words
    if args.dry_run and not args.require_static_deltas:
        raise UsageError("--dry-run requires --require-static-deltas")
    if args.require_static_deltas and args.disable_static_deltas:
        raise UsageError("--disable-static-deltas and --require-static-deltas exclude each other")
    if args.subpath:
        raise refusal("pull --subpath")
    if args.depth < -1:
        raise UsageError(f"Invalid --depth={args.depth}: use -1 for the whole history")
    if args.network_retries < 0 or args.connections < 1:
        raise UsageError("--network-retries must be >= 0 and --connections >= 1")
    remote, sep, ref = args.remote.partition(":")
    refs = ([ref] if sep else []) + list(args.refs)
    if not remote or (sep and not ref):
        raise UsageError(f"Invalid remote or refspec '{args.remote}'")
    if sep:
        parse_refspec(args.remote)  # as ostree: no REF@CHECKSUM in REMOTE:REF
    progress = Progress(sys.stderr, interval=(args.update_frequency or 250) / 1000)
    options = PullOptions(
        depth=args.depth,
        commit_metadata_only=args.commit_metadata_only,
        mirror=args.mirror,
        bareuseronly_files=args.bareuseronly_files,
        url=args.url,
        verify_bindings=not args.disable_verify_bindings,
        timestamp_check=args.timestamp_check,
        timestamp_check_from_rev=args.timestamp_check_from_rev,
        fetch=FetchOptions(
            connections=args.connections,
            retries=args.network_retries,
            headers=_headers(args.http_header),
        ),
        progress=progress,
        localcache_repos=tuple(args.localcache_repo),
        disable_static_deltas=args.disable_static_deltas,
        require_static_deltas=args.require_static_deltas,
        dry_run=args.dry_run,
    )
    with open_repo(args) as repo:
        if args.disable_fsync:
            repo.config.set("core", "fsync", "false")  # this process only; never saved
        result = pull(repo, remote, refs, options)
    print(result.summary_line())
    return 0
