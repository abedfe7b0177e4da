"""sysroot refs and rev-parse."""

from __future__ import annotations

from sysroot.cli.main import add_repo_option, open_repo
from sysroot.errors import NotFoundError, UsageError
from sysroot.formats.objects import is_checksum


def register(sub) -> None:
    p = sub.add_parser("refs", help="List refs, or create and delete them")
    add_repo_option(p)
    p.add_argument("prefixes", nargs="*", metavar="PREFIX")
    p.add_argument("--delete", action="store_true", help="Delete the refs matching PREFIX")
    p.add_argument("--create", metavar="NEWREF", help="Create NEWREF pointing at the given ref")
    p.add_argument("--list", action="store_true", help="Do not strip the prefix when listing")
    p.add_argument("-A", "--alias", action="store_true", help="Accepted; aliases are listed too")
    p.add_argument("--force", action="store_true", help="Overwrite an existing ref on --create")
    p.set_defaults(func=run_refs)

    p = sub.add_parser("rev-parse", help="Output the target of a rev")
    add_repo_option(p)
    p.add_argument("revs", nargs="+", metavar="REV")
    p.add_argument("--single", action="store_true", help="Rev must be a single commit")
    p.set_defaults(func=run_rev_parse)


def run_refs(args) -> int:
    repo = open_repo(args)
    if args.create:
        if len(args.prefixes) != 1:
            raise UsageError("refs --create requires exactly one existing ref or checksum")
        target = repo.resolve_rev(args.prefixes[0])
        if not args.force and repo.resolve_rev(args.create, allow_noent=True) is not None:
            raise UsageError(f"--create specified but ref {args.create} already exists")
        if is_checksum(args.create):
            raise UsageError(f"Invalid ref name {args.create}")
        with repo.transaction() as tx:
            tx.set_ref(args.create, target)
        return 0
    prefixes = args.prefixes or [None]
    for prefix in prefixes:
        refs = repo.list_refs(prefix)
        if args.delete:
            if prefix is None:
                raise UsageError("refs --delete requires a prefix")
            if not refs:
                raise NotFoundError(f"Refspec '{prefix}' not found")
            for name in refs:
                repo.write_ref(name, None)
            continue
        for name in refs:
            shown = name
            if prefix and not args.list and name.startswith(prefix.rstrip("/") + "/"):
                shown = name[len(prefix.rstrip("/")) + 1:]
            print(shown)
    return 0


def run_rev_parse(args) -> int:
    repo = open_repo(args)
    for rev in args.revs:
        print(repo.resolve_rev(rev))
    return 0
