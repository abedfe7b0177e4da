"""sysroot pull-local: ostree pull-local's options over store.pull_local."""

from __future__ import annotations

from sysroot.cli.common import allow_intermixed
from sysroot.cli.main import add_repo_option, open_repo
from sysroot.cli.refusals import refusal
from sysroot.errors import UsageError
from sysroot.sign.verify import local_pull_check
from sysroot.store.pull_local import pull_local
from sysroot.store.repo import Repo
from sysroot.util.units import format_size


def register(sub) -> None:
    p = sub.add_parser("pull-local", help="Copy data from SRC_REPO")
    allow_intermixed(p)
    add_repo_option(p)
    p.add_argument("src", metavar="SRC_REPO")
    p.add_argument(
        "refs",
        nargs="*",
        metavar="REF",
        help="Refs or commit checksums (default: every ref of SRC_REPO)",
    )
    p.add_argument(
        "--commit-metadata-only", action="store_true", help="Fetch only the commit metadata"
    )
    p.add_argument("--remote", metavar="REMOTE", help="Add REMOTE to refspec")
    p.add_argument("--disable-fsync", action="store_true", help="Do not invoke fsync()")
    p.add_argument(
        "--per-object-fsync",
        action="store_true",
        help="Accepted for compatibility; objects are flushed at commit",
    )
    p.add_argument(
        "--untrusted",
        action="store_true",
        help="Verify checksums of local sources (else same-mode content is hard-linked)",
    )
    p.add_argument(
        "--bareuseronly-files",
        action="store_true",
        help="Reject regular files with mode outside of 0775 (world writable, suid, etc.)",
    )
    p.add_argument(
        "--disable-verify-bindings",
        action="store_true",
        help="Accepted for compatibility; bindings are not verified",
    )
    p.add_argument(
        "--require-static-deltas",
        action="store_true",
        help="Not supported: local pulls copy objects",
    )
    p.add_argument(
        "--gpg-verify",
        action="store_true",
        help="GPG verify commits (must specify --remote); without it, the "
        "signature policy of --remote applies all the same",
    )
    p.add_argument(
        "--gpg-verify-summary",
        action="store_true",
        help="GPG verify summary (must specify --remote)",
    )
    p.add_argument(
        "--depth",
        type=int,
        default=0,
        metavar="DEPTH",
        help="Traverse DEPTH parents (-1=infinite) (default: 0)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    if args.require_static_deltas:
        raise refusal("pull-local --require-static-deltas")
    for opt in ("gpg_verify", "gpg_verify_summary"):
        if getattr(args, opt) and not args.remote:
            raise UsageError("Must specify remote name to enable gpg verification")
    if args.depth < -1:
        raise UsageError(f"Invalid --depth={args.depth}: use -1 for the whole history")
    src_path = args.src.removeprefix("file://")
    with open_repo(args) as dst, Repo.open(src_path) as src:
        if args.disable_fsync:
            dst.config.set("core", "fsync", "false")  # this process only; never saved
        # the remote's signature policy, before anything is copied
        check = local_pull_check(
            dst,
            src,
            args.remote,
            args.refs,
            force_gpg=args.gpg_verify,
            force_gpg_summary=args.gpg_verify_summary,
        )
        result = pull_local(
            src,
            dst,
            args.refs,
            remote=args.remote,
            depth=args.depth,
            commit_metadata_only=args.commit_metadata_only,
            bareuseronly_files=args.bareuseronly_files,
            verify=check,
            trusted=not args.untrusted,
        )
    print(
        f"{result.metadata} metadata, {result.content} content objects imported; "
        f"{format_size(result.content_bytes)} content written"
    )
    return 0
