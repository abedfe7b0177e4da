"""sysroot commit: ostree commit's options over CommitBuilder."""

from __future__ import annotations

import datetime as dt
import re

from sysroot.cli.main import add_repo_option, open_repo
from sysroot.errors import SysrootError, UsageError
from sysroot.formats.gvariant import Variant
from sysroot.formats.gvariant_text import parse_text
from sysroot.store.commit import CommitBuilder, CommitModifier


def register(sub) -> None:
    p = sub.add_parser("commit", help="Commit a new revision")
    add_repo_option(p)
    p.add_argument("path", nargs="?", help="Directory to commit (same as --tree=dir=PATH)")
    p.add_argument("-b", "--branch", help="Branch (ref) to commit to")
    p.add_argument("-s", "--subject", default="", help="One-line subject")
    p.add_argument("-m", "--body", default="", help="Full description")
    p.add_argument("-F", "--body-file", help="Commit message from FILE")
    p.add_argument("--parent", help="Parent commit checksum, or \"none\"")
    p.add_argument("--orphan", action="store_true", help="Create a commit without a ref")
    p.add_argument("--tree", action="append", default=[], metavar="dir=PATH|tar=FILE|ref=REF",
                   help="Overlay the given tree (repeatable; later layers win)")
    p.add_argument("--add-metadata-string", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--add-metadata", action="append", default=[], metavar="KEY=VALUE",
                   help="Metadata in GVariant text format")
    p.add_argument("--keep-metadata", action="append", default=[], metavar="KEY",
                   help="Keep metadata KEY from the parent commit")
    p.add_argument("--timestamp", help="Override the timestamp of the commit")
    p.add_argument("--no-xattrs", action="store_true", help="Do not import extended attributes")
    p.add_argument("--owner-uid", type=int, help="Set file ownership user id")
    p.add_argument("--owner-gid", type=int, help="Set file ownership group id")
    p.add_argument("--canonical-permissions", action="store_true",
                   help="Canonicalize permissions (uid/gid 0, no g+w/o+w/suid) and drop xattrs")
    p.add_argument("--skip-if-unchanged", action="store_true",
                   help="If the contents are unchanged from the previous commit, do nothing")
    p.add_argument("--consume", action="store_true",
                   help="Consume (delete) the content after commit")
    p.add_argument("--no-bindings", action="store_true",
                   help="Do not add ref and collection bindings to the commit")
    p.add_argument("--bind-ref", action="append", default=[], metavar="REF",
                   help="Add a ref to the ref binding (repeatable)")
    p.add_argument("--tar-autocreate-parents", action="store_true",
                   help="Accepted for compatibility: parent directories are always created")
    p.set_defaults(func=run)


_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def parse_timestamp(text: str) -> int:
    """The date forms scripts pass to `ostree commit --timestamp`."""
    s = text.strip()
    if re.fullmatch(r"@-?\d+", s):
        return int(s[1:])
    tz = dt.UTC
    m = re.fullmatch(r"(.*?)\s*(Z|UTC|[+-]\d{2}:?\d{2})", s)
    if m and m.group(1):
        s, zone = m.group(1), m.group(2)
        if zone not in ("Z", "UTC"):
            sign = -1 if zone[0] == "-" else 1
            digits = zone[1:].replace(":", "")
            tz = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    for fmt in _DATE_FORMATS:
        try:
            return int(dt.datetime.strptime(s, fmt).replace(tzinfo=tz).timestamp())
        except ValueError:
            continue
    raise UsageError(f"Could not parse '{text}'")


def _key_value(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"Missing '=' in KEY=VALUE metadata '{text}' for {option}")
    return key, value


def _metadata(args, repo, branch: str | None) -> dict[str, Variant]:
    # Order matters for the checksum: ostree adds all strings, then all variants,
    # then the bindings.
    meta: dict[str, Variant] = {}
    for kv in args.add_metadata_string:
        key, value = _key_value(kv, "--add-metadata-string")
        meta[key] = Variant("s", value)
    for kv in args.add_metadata:
        key, value = _key_value(kv, "--add-metadata")
        meta[key] = parse_text(value)
    if not args.no_bindings:
        refs = sorted({*([branch] if branch else []), *args.bind_ref}, key=str.encode)
        meta["ostree.ref-binding"] = Variant("as", refs)
        collection = repo.config.get("core", "collection-id")
        if collection:
            meta["ostree.collection-binding"] = Variant("s", collection)
    return meta


def run(args) -> int:
    repo = open_repo(args)
    trees = list(args.tree)
    if args.path:
        trees.insert(0, f"dir={args.path}")
    if not trees:
        raise UsageError("commit: a directory or --tree must be specified")
    if not args.branch and not args.orphan:
        raise UsageError("commit: a branch must be specified with --branch, or use --orphan")
    body = args.body
    if args.body_file:
        with open(args.body_file, encoding="utf-8") as f:
            body = f.read()
    if args.branch:
        from sysroot.store.repo import validate_ref_name

        validate_ref_name(args.branch)
    if args.parent is not None:
        parent = None if args.parent == "none" else repo.resolve_rev(args.parent)
    elif args.branch:
        parent = repo.resolve_rev(args.branch, allow_noent=True)
    else:
        parent = None
    timestamp = parse_timestamp(args.timestamp) if args.timestamp else None
    modifier = CommitModifier(
        skip_xattrs=args.no_xattrs,
        canonical_permissions=args.canonical_permissions,
        owner_uid=args.owner_uid,
        owner_gid=args.owner_gid,
        consume=args.consume,
    )
    metadata = _metadata(args, repo, args.branch)
    if args.keep_metadata:
        if parent is None:
            raise UsageError("commit: --keep-metadata requires a parent commit")
        parent_meta = repo.load_commit(parent).metadata
        for key in args.keep_metadata:
            if key in parent_meta and key not in metadata:
                metadata[key] = parent_meta[key]

    with repo.transaction() as tx:
        builder = CommitBuilder(tx, modifier)
        for spec in trees:
            kind, sep, value = spec.partition("=")
            if not sep or not value:
                raise UsageError(f"Missing type in tree specification '{spec}'")
            if kind == "dir":
                builder.add_directory(value)
            elif kind == "tar":
                builder.add_tarball(value)
            elif kind == "ref":
                builder.add_commit(repo.resolve_rev(value))
            else:
                raise UsageError(f"Invalid tree type specification '{kind}'")
        tree, meta = builder.seal()
        if args.skip_if_unchanged and parent:
            old = repo.load_commit(parent)
            if (old.root_tree, old.root_meta) == (tree, meta):
                print(parent)
                return 0
        checksum = builder.write(subject=args.subject, body=body, parent=parent,
                                 metadata=metadata, timestamp=timestamp)
        if args.branch:
            tx.set_ref(args.branch, checksum)
    if not checksum:
        raise SysrootError("commit failed")
    print(checksum)
    return 0
