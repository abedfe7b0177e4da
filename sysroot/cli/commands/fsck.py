"""sysroot fsck: ostree fsck's options over sysroot.store.fsck."""

from __future__ import annotations

import sys

from sysroot.cli.main import add_repo_option, open_repo
from sysroot.errors import SysrootError
from sysroot.store.fsck import fsck


def register(sub) -> None:
    p = sub.add_parser("fsck", help="Check the repository for consistency")
    add_repo_option(p)
    p.add_argument("-q", "--quiet", action="store_true", help="Only print error messages")
    p.add_argument(
        "-a",
        "--all",
        action="store_true",
        help="Don't stop on first error (always the case: every problem is shown)",
    )
    p.add_argument(
        "--delete",
        action="store_true",
        help="Remove corrupted objects and mark the commits using them partial",
    )
    p.add_argument("--verify-bindings", action="store_true", help="Verify ref bindings")
    p.add_argument(
        "--verify-back-refs",
        action="store_true",
        help="Verify back-references (implies --verify-bindings)",
    )
    p.add_argument(
        "--add-tombstones", action="store_true", help="Add tombstones for missing commits"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    repo = open_repo(args)

    def info(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    info("Validating refs...")
    info("Enumerating commits...")
    report = fsck(
        repo,
        delete=args.delete,
        verify_bindings=args.verify_bindings,
        verify_back_refs=args.verify_back_refs,
        add_tombstones=args.add_tombstones,
    )
    info(f"Verifying content integrity of {report.n_commits} commit objects...")
    deleted = set(report.deleted)
    for problem in report.problems:
        print(problem, file=sys.stderr)
        if problem.name in deleted:
            print(
                f"Deleted corrupted object {problem.name[0]}.{problem.name[1].type_name}",
                file=sys.stderr,
            )
    for checksum in report.marked_partial:
        print(f"Marking commit as partial: {checksum}", file=sys.stderr)
    for checksum in report.tombstoned:
        info(f"Adding tombstone for commit {checksum}")
    if report.partial:
        info(f"{len(report.partial)} partial commits not verified")
    if report.problems:
        raise SysrootError("Repository corruption encountered")
    if report.fsck_partial:
        raise SysrootError(
            f"{len(report.fsck_partial)} partial commits from fsck-detected corruption",
            hint="pull them again to repair them",
        )
    info(f"object fsck of {report.n_commits} commits completed successfully - no errors found.")
    return 0
