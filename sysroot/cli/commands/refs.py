"""sysroot refs and rev-parse, with ostree 2022.7's output rules (the listing order and
the ref files themselves are store.refs')."""

from __future__ import annotations

import re

from sysroot.cli.main import add_repo_option, open_repo
from sysroot.errors import NotFoundError, SysrootError, UsageError
from sysroot.store.refs import (
    check_ref_parents,
    delete_collection_ref,
    delete_ref,
    list_collection_refs,
    list_refs,
    validate_collection_id,
    write_alias,
    write_collection_ref,
)
from sysroot.store.repo import parse_refspec


def register(sub) -> None:
    p = sub.add_parser("refs", help="List refs, or create and delete them")
    add_repo_option(p)
    p.add_argument("prefixes", nargs="*", metavar="PREFIX")
    p.add_argument(
        "--delete",
        action="store_true",
        help="Delete refs which match PREFIX, rather than listing them",
    )
    p.add_argument("--list", action="store_true", help="Do not remove the prefix from the refs")
    p.add_argument(
        "-A",
        "--alias",
        action="store_true",
        help="If used with --create, create an alias, otherwise just list aliases",
    )
    p.add_argument("--create", metavar="NEWREF", help="Create a new ref for an existing commit")
    p.add_argument(
        "-c", "--collections", action="store_true", help="Enable listing collection IDs for refs"
    )
    p.add_argument("--force", action="store_true", help="Overwrite existing refs when creating")
    p.set_defaults(func=run_refs)

    p = sub.add_parser("rev-parse", help="Output the target of a rev")
    add_repo_option(p)
    p.add_argument("revs", nargs="*", metavar="REV")
    p.add_argument(
        "-S",
        "--single",
        action="store_true",
        help="If the repository has exactly one commit, then print it; any other "
        "case will result in an error",
    )
    p.set_defaults(func=run_rev_parse)


def run_refs(args) -> int:
    repo = open_repo(args)
    if args.prefixes:
        if args.create and len(args.prefixes) > 1:
            raise UsageError("You must specify only 1 existing ref when creating a new ref")
        for prefix in args.prefixes:
            _do_ref(repo, args, prefix)
    elif args.delete:
        raise UsageError("At least one PREFIX is required when deleting refs")
    elif args.create:
        raise UsageError("You must specify a revision when creating a new ref")
    else:
        _do_ref(repo, args, None)
    return 0


def _do_ref(repo, args, prefix: str | None) -> None:
    if args.collections:
        return _do_collection_ref(repo, args, prefix)
    if args.create:
        assert prefix is not None  # run_refs() refuses --create without a ref
        return _create(repo, args, prefix)
    if args.delete:
        for name, _ in list_refs(repo, prefix, aliases=args.alias):
            delete_ref(repo, name)
        return None
    refs = list_refs(repo, prefix, cut=not (args.list or args.alias), aliases=args.alias)
    lines = [f"{name} -> {value}" if args.alias else name for name, value in refs]
    print("".join(line + "\n" for line in lines), end="")
    return None


def _create(repo, args, target: str) -> None:
    new = args.create
    existing = repo.resolve_rev(new, allow_noent=True)
    replacing_alias = args.alias and any(name == new for name, _ in list_refs(repo, aliases=True))
    if existing is not None and not replacing_alias and not args.force:
        raise SysrootError(f"--create specified but ref {new} already exists")
    remote, ref = parse_refspec(new)
    check_ref_parents(repo, new)
    if args.alias:
        if remote:
            raise SysrootError(f"Cannot create alias to remote ref: {remote}")
        if not any(name == target for name, _ in list_refs(repo)):
            raise NotFoundError(f"Cannot create alias to non-existent ref: {target}")
        write_alias(repo, ref, target)
    else:
        repo.write_ref(new, repo.resolve_rev(target))


def _do_collection_ref(repo, args, prefix: str | None) -> None:
    if args.create:
        new = args.create
        if repo.resolve_rev(new, allow_noent=True) is not None:
            raise SysrootError(f"--create specified but ref {new} already exists")
        checksum = repo.resolve_rev(prefix)
        cid, sep, ref = new.partition(":")
        validate_collection_id(cid)
        if not sep or not re.fullmatch(r"[\w\d][-._\w\d]*(/[\w\d][-._\w\d]*)*", ref, re.ASCII):
            raise UsageError(f"Invalid ref name {ref}")
        write_collection_ref(repo, cid, ref, checksum)
        return
    refs = list_collection_refs(repo, prefix)
    if args.delete:
        for (cid, ref), _ in refs:
            delete_collection_ref(repo, cid, ref)
        return
    print("".join(f"({cid}, {ref})\n" for (cid, ref), _ in refs), end="")


def run_rev_parse(args) -> int:
    repo = open_repo(args)
    if args.single:
        if args.revs:
            raise UsageError("Cannot specify arguments with --single")
        commits = [c for c, t in repo.list_objects() if t.type_name == "commit"]
        if not commits:
            raise NotFoundError("No commit objects found")
        if len(commits) > 1:
            raise SysrootError("Multiple commit objects found")
        print(commits[0])
        return 0
    if not args.revs:
        raise UsageError("REV must be specified")
    for rev in args.revs:
        print(repo.resolve_rev(rev), flush=True)
    return 0
