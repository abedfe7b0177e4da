"""sysroot reset REF COMMIT: point an existing ref at another commit.

As ostree 2022.7: REF must already exist (a local ref, or REMOTE:REF), COMMIT is any
revision (`REF^`, an abbreviated checksum...), extra words are ignored. One
difference, deliberately: ostree also takes a full checksum of a commit the repository
does not have, which leaves a ref nothing can check out; sysroot refuses it.
"""

from __future__ import annotations

from sysroot.cli.main import add_repo_option, open_repo
from sysroot.errors import NotFoundError, SysrootError
from sysroot.formats.objects import ObjectType


def register(sub) -> None:
    p = sub.add_parser("reset", help="Reset a REF to a previous COMMIT")
    add_repo_option(p)
    p.add_argument("words", nargs="*", metavar="REF COMMIT")
    p.set_defaults(func=run)


def run(args) -> int:
    if len(args.words) < 2:
        raise SysrootError("A REF and COMMIT argument is required")
    ref, target = args.words[:2]
    with open_repo(args) as repo:
        if ref not in repo.list_refs():
            raise SysrootError(f"Invalid ref '{ref}'")
        checksum = repo.resolve_rev(target)
        if not repo.has_object(ObjectType.COMMIT, checksum):
            raise NotFoundError(f"Commit {checksum} not found in the repository")
        with repo.transaction() as tx:
            tx.set_ref(ref, checksum)
    return 0
