"""sysroot init: create a repository."""

from __future__ import annotations

from sysroot.cli.main import add_repo_option
from sysroot.errors import UsageError
from sysroot.store.modes import RepoMode
from sysroot.store.repo import Repo


def register(sub) -> None:
    p = sub.add_parser("init", help="Initialize a new empty repository")
    add_repo_option(p)
    p.add_argument("--mode", default="bare",
                   help="bare, bare-user, bare-user-only or archive (archive-z2)")
    p.add_argument("--collection-id", metavar="COLLECTION-ID", default=None)
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    path = getattr(args, "repo", None) or os.environ.get("OSTREE_REPO")
    if not path:
        raise UsageError("init: --repo=PATH must be specified")
    try:
        mode = RepoMode.parse(args.mode)
    except Exception:
        raise UsageError(f"Invalid mode '{args.mode}' (expected bare, bare-user, "
                         "bare-user-only or archive)") from None
    Repo.create(path, mode, collection_id=args.collection_id).close()
    return 0
