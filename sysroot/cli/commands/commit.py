"""sysroot commit: ostree commit's options over CommitBuilder."""

from __future__ import annotations

import argparse

from sysroot.cli.main import add_repo_option, open_repo
from sysroot.errors import SysrootError, UsageError
from sysroot.formats.ghash import ghash_order
from sysroot.formats.gvariant import Variant
from sysroot.formats.gvariant_text import parse_text
from sysroot.formats.objects import ObjectType, is_checksum
from sysroot.store.commit import CommitBuilder, MetadataItems
from sysroot.store.commitmods import CommitModifier, check_utf8
from sysroot.store.repo import validate_ref_name
from sysroot.util.datetimes import parse_date


def register(sub) -> None:
    p = sub.add_parser("commit", help="Commit a new revision")
    add_repo_option(p)
    p.add_argument("path", nargs="?", help="Directory to commit (same as --tree=dir=PATH)")
    p.add_argument("-b", "--branch", help="Branch (ref) to commit to")
    p.add_argument("-s", "--subject", default="", help="One-line subject")
    p.add_argument("-m", "--body", default="", help="Full description")
    p.add_argument("-F", "--body-file", help="Commit message from FILE")
    p.add_argument("--parent", help='Parent commit checksum, or "none"')
    p.add_argument("--orphan", action="store_true", help="Create a commit without a ref")
    p.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="dir=PATH|tar=FILE|ref=REF",
        help="Overlay the given tree (repeatable; later layers win)",
    )
    p.add_argument("--add-metadata-string", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--add-metadata",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Metadata in GVariant text format",
    )
    p.add_argument(
        "--keep-metadata",
        action="append",
        default=[],
        metavar="KEY",
        help="Keep metadata KEY from the parent commit",
    )
    p.add_argument("--timestamp", help="Override the timestamp of the commit")
    p.add_argument(
        "--bootable",
        action="store_true",
        help="Flag this commit as a bootable OSTree (e.g. contains a Linux kernel)",
    )
    p.add_argument("--no-xattrs", action="store_true", help="Do not import extended attributes")
    p.add_argument("--owner-uid", type=_id, help="Set file ownership user id")
    p.add_argument("--owner-gid", type=_id, help="Set file ownership group id")
    p.add_argument(
        "--canonical-permissions",
        action="store_true",
        help="Canonicalize permissions (uid/gid 0, no g+w/o+w/suid) and drop xattrs",
    )
    p.add_argument(
        "--skip-if-unchanged",
        action="store_true",
        help="If the contents are unchanged from the previous commit, do nothing",
    )
    p.add_argument(
        "--consume", action="store_true", help="Consume (delete) the content after commit"
    )
    p.add_argument(
        "--no-bindings",
        action="store_true",
        help="Do not add ref and collection bindings to the commit",
    )
    p.add_argument(
        "--bind-ref",
        action="append",
        default=[],
        metavar="REF",
        help="Add a ref to the ref binding (repeatable)",
    )
    p.add_argument(
        "--tar-autocreate-parents",
        action="store_true",
        help="When loading tar archives, automatically create parent directories",
    )
    p.set_defaults(func=run)


def _id(text: str) -> int:
    """A uid or gid: it is stored as a 32-bit unsigned number."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid id '{text}'") from None
    if not 0 <= value < 1 << 32:
        raise argparse.ArgumentTypeError(f"id {value} out of range")
    return value


def _key_value(text: str, option: str) -> tuple[str, str]:
    check_utf8(text, "metadata", option)
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"Missing '=' in KEY=VALUE metadata '{text}' for {option}")
    return key, value


def _metadata(
    args, repo, branch: str | None, parent: str | None
) -> tuple[MetadataItems, MetadataItems]:
    """(the given and kept items, the bindings): --bootable's go between the two.
    A list, not a dict: the order is part of the checksum and ostree keeps duplicate
    keys. ostree's order: all strings, all variants, the kept keys, then the bindings."""
    meta: MetadataItems = []
    for kv in args.add_metadata_string:
        key, value = _key_value(kv, "--add-metadata-string")
        meta.append((key, Variant("s", value)))
    for kv in args.add_metadata:
        key, value = _key_value(kv, "--add-metadata")
        try:
            meta.append((key, parse_text(value)))
        except SysrootError as e:
            raise UsageError(
                f"--add-metadata {key}: invalid GVariant text '{value}': {e}"
            ) from None
    if args.keep_metadata:
        if parent is None:
            raise UsageError(
                "Either --branch or --parent must be specified when using --keep-metadata"
            )
        # Where the parent repeats a key, ostree (through a GVariantDict) keeps the last.
        parent_meta = dict(repo.load_commit(parent).metadata.items())
        for key in args.keep_metadata:
            if key not in parent_meta:
                raise SysrootError(f"Missing metadata key '{key}' from commit '{parent}'")
            meta.append((key, parent_meta[key]))
    bindings: MetadataItems = []
    if not args.no_bindings:
        # Sorted by bytes like strcmp; ostree keeps a duplicate -b/--bind-ref as given.
        refs = sorted([*([branch] if branch else []), *args.bind_ref], key=str.encode)
        bindings.append(("ostree.ref-binding", Variant("as", refs)))
        collection = repo.config.get("core", "collection-id")
        if collection:
            bindings.append(("ostree.collection-binding", Variant("s", collection)))
    return meta, bindings


def _with_bootable(items: MetadataItems, kernel_version: str) -> MetadataItems:
    """items plus ostree.linux and ostree.bootable. ostree adds them through a
    GVariantDict made from the metadata so far: a repeated key keeps its first place
    and its last value, and the keys come out in the GHashTable's order."""
    merged: dict[str, Variant] = {}
    for key, value in [
        *items,
        ("ostree.linux", Variant("s", kernel_version)),
        ("ostree.bootable", Variant("b", True)),
    ]:
        merged[key] = value
    return [(key, merged[key]) for key in ghash_order(merged)]


class _Unchanged(Exception):
    """Raised inside the transaction to abort it when --skip-if-unchanged applies."""


def _parent_checksum(args, repo) -> str | None:
    if args.parent is not None:
        # Like ostree: "none" or a full checksum, which need not exist locally.
        if args.parent == "none":
            return None
        if not is_checksum(args.parent):
            raise UsageError(
                f"Invalid rev {args.parent}", hint='--parent takes a full commit checksum or "none"'
            )
        return args.parent
    if args.branch and not args.orphan:
        return repo.resolve_rev(args.branch, allow_noent=True)
    return None


def _add_layer(builder: CommitBuilder, repo, spec: str, args) -> None:
    kind, sep, value = spec.partition("=")
    if not sep or not value:
        raise UsageError(f"Missing type in tree specification '{spec}'")
    if kind == "dir":
        builder.add_directory(value)
    elif kind == "tar":
        builder.add_tarball(value, autocreate_parents=args.tar_autocreate_parents)
    elif kind == "ref":
        builder.add_commit(repo.resolve_rev(value))
    else:
        raise UsageError(f"Invalid tree type specification '{kind}'")


def run(args) -> int:
    repo = open_repo(args)
    # As in ostree: --tree layers if any (a PATH is then ignored), else PATH, else ".".
    trees = list(args.tree) or [f"dir={args.path or '.'}"]
    if not args.branch and not args.orphan:
        raise UsageError("A branch must be specified with --branch, or use --orphan")
    body = args.body
    if args.body_file:
        with open(args.body_file, "rb") as f:
            raw = f.read()
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(
                f"{args.body_file}: not valid UTF-8 ({e.reason} at byte {e.start})"
            ) from None
    if args.branch:
        validate_ref_name(args.branch)
    parent = _parent_checksum(args, repo)
    timestamp = parse_date(args.timestamp) if args.timestamp else None
    modifier = CommitModifier(
        skip_xattrs=args.no_xattrs,
        canonical_permissions=args.canonical_permissions,
        owner_uid=args.owner_uid,
        owner_gid=args.owner_gid,
        consume=args.consume,
    )
    given, bindings = _metadata(args, repo, args.branch, parent)

    try:
        with repo.transaction() as tx:
            builder = CommitBuilder(tx, modifier)
            for spec in trees:
                _add_layer(builder, repo, spec, args)
            metadata = given + bindings
            if args.bootable:
                metadata = _with_bootable(metadata, builder.kernel_version())
            tree, meta = builder.seal()
            if args.skip_if_unchanged and parent and repo.has_object(ObjectType.COMMIT, parent):
                old = repo.load_commit(parent)
                if (old.root_tree, old.root_meta) == (tree, meta):
                    raise _Unchanged
            checksum = builder.write(
                subject=args.subject,
                body=body,
                parent=parent,
                metadata=metadata,
                timestamp=timestamp,
            )
            if args.branch:
                tx.set_ref(args.branch, checksum)
    except _Unchanged:
        assert parent is not None  # raised only when the parent has the same tree
        checksum = parent
    builder.consume_sources()
    print(checksum)
    return 0
