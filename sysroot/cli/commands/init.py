"""sysroot init: create a repository, with `ostree init`'s rules.

Like ostree: --repo is required (no $OSTREE_REPO fallback), the parent directory must
exist, and initializing an existing repository succeeds without changing it.
"""

from __future__ import annotations

import os

from sysroot.cli.main import add_repo_option
from sysroot.errors import SysrootError, UsageError
from sysroot.store.modes import RepoMode
from sysroot.store.refs import validate_collection_id
from sysroot.store.repo import Repo


def register(sub) -> None:
    p = sub.add_parser("init", help="Initialize a new empty repository")
    add_repo_option(p)
    p.add_argument(
        "--mode",
        default="bare",
        help="Initialize repository in given mode (bare, bare-user, bare-user-only, archive)",
    )
    p.add_argument(
        "--collection-id",
        metavar="COLLECTION-ID",
        default=None,
        help="Globally unique ID for this repository as an collection of refs "
        "for redistribution to other repositories",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    path = getattr(args, "repo", None)
    if not path:
        raise UsageError("Command requires a --repo argument")
    try:
        mode = RepoMode.parse(args.mode)
    except SysrootError:
        # ostree's own wording, odd as it is for a command-line option
        raise UsageError(f"Invalid mode '{args.mode}' in repository configuration") from None
    if args.collection_id is not None:
        validate_collection_id(args.collection_id)
    try:
        os.mkdir(path, 0o775)
    except FileExistsError:
        pass
    except OSError as e:
        raise SysrootError(f"Creating repo: mkdirat({path}): {e.strerror}") from None
    if not os.path.isdir(path):
        raise SysrootError(f"Creating repo: {path}: Not a directory")
    if os.path.isdir(os.path.join(path, "objects")):
        Repo.open(path).close()  # an existing repository is left as it is
        return 0
    Repo.create(path, mode, collection_id=args.collection_id).close()
    return 0
