"""sysroot commit: ostree commit's options over CommitBuilder."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from sysroot.cli.main import add_repo_option, open_repo
from sysroot.cli.refusals import REFUSED, refusal
from sysroot.errors import SysrootError, UsageError
from sysroot.formats.ghash import ghash_order
from sysroot.formats.gvariant import Variant, make_dict
from sysroot.formats.gvariant_text import parse_text
from sysroot.formats.objects import ObjectType, is_checksum
from sysroot.formats.sizes import SIZES_KEY, ObjectSize, encode_object_sizes
from sysroot.sign import detached, dummy, ed25519, gpg
from sysroot.store.commit import CommitBuilder, MetadataItems
from sysroot.store.commitmods import CommitModifier, PathFilter, PathnameFilter, check_utf8
from sysroot.store.repo import validate_ref_name
from sysroot.util import run as run_mod
from sysroot.util.datetimes import parse_date


# ostree commit's options that sysroot refuses on purpose, with the reason given.
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
    p.add_argument(
        "--add-metadata-string",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Add a string to the commit's metadata (may be repeated)",
    )
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
    p.add_argument(
        "--base", metavar="REV", help="Start from the given commit as a base (no modifiers apply)"
    )
    p.add_argument(
        "-e", "--editor", action="store_true", help="Use an editor to write the commit message"
    )
    p.add_argument(
        "--add-detached-metadata-string",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Add a key/value pair to detached metadata",
    )
    p.add_argument(
        "--mode-ro-executables",
        action="store_true",
        help="Ensure executable files are not writable",
    )
    p.add_argument("--statoverride", metavar="PATH", help="File of permission changes")
    p.add_argument("--skip-list", metavar="PATH", help="File of paths to skip")
    p.add_argument(
        "--generate-sizes",
        action="store_true",
        help="Generate size information along with commit metadata",
    )
    p.add_argument(
        "--table-output", action="store_true", help="Output more information in a KEY: VALUE format"
    )
    p.add_argument(
        "--gpg-sign",
        action="append",
        default=[],
        metavar="KEY-ID",
        help="GPG Key ID to sign the commit with",
    )
    p.add_argument("--gpg-homedir", metavar="HOMEDIR", help="GPG Homedir for keyrings")
    p.add_argument(
        "--sign", action="append", default=[], metavar="KEY_ID", help="Sign the commit with"
    )
    p.add_argument(
        "--sign-type",
        default=ed25519.NAME,
        metavar="NAME",
        help="Signature type to use (defaults to 'ed25519')",
    )
    p.add_argument("--fsync", metavar="POLICY", help="Specify how to invoke fsync()")
    # ostree's hidden spelling of --fsync=no
    p.add_argument("--disable-fsync", action="store_true", help=argparse.SUPPRESS)
    # Performance options of ostree: the result is the same without them.
    p.add_argument(
        "--link-checkout-speedup",
        action="store_true",
        help="Accepted; has no effect (the commit is the same without it)",
    )
    p.add_argument(
        "-I",
        "--devino-canonical",
        action="store_true",
        help="Accepted; has no effect (the commit is the same without it)",
    )
    p.add_argument(
        "--tar-pathname-filter",
        metavar="REGEX,REPLACEMENT",
        help="When loading tar archives, use REGEX,REPLACEMENT against path names",
    )
    p.add_argument(
        "--selinux-policy", metavar="PATH", help="Refused: " + REFUSED["commit --selinux-policy"]
    )
    p.add_argument(
        "-P",
        "--selinux-policy-from-base",
        action="store_true",
        help="Refused: " + REFUSED["commit --selinux-policy-from-base"],
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
        # like ostree, the filter is read only when a tar layer needs it
        rename = None
        if args.tar_pathname_filter is not None:
            rename = PathnameFilter.parse(args.tar_pathname_filter)
        builder.add_tarball(value, autocreate_parents=args.tar_autocreate_parents, rename=rename)
    elif kind == "ref":
        builder.add_commit(repo.resolve_rev(value))
    else:
        raise UsageError(f"Invalid tree type specification '{kind}'")


def _parse_boolean(text: str) -> bool:
    """ostree's ot_parse_boolean, for --fsync."""
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no", "none"):
        return False
    raise SysrootError(f"Invalid boolean argument '{text}'")


def _read_lines(path: str) -> list[str]:
    """A statoverride or skip-list file: UTF-8, split on newlines, empty lines dropped
    (nothing else is trimmed: ostree matches the rest of the line as it is)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise SysrootError(f"openat({path}): {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SysrootError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    return [line for line in text.split("\n") if line]


def _path_filter(args) -> PathFilter | None:
    if args.statoverride is None and args.skip_list is None:
        return None
    rules = PathFilter()
    if args.statoverride is not None:
        for line in _read_lines(args.statoverride):
            rules.add_statoverride_line(line)
    if args.skip_list is not None:
        for line in _read_lines(args.skip_list):
            rules.add_skip(line)
    return rules


def _check_used(rules: PathFilter | None) -> None:
    """ostree's check after the layers: every mode addition and skip entry matched.
    The unmatched paths go to stderr, one a line, in ostree's (hash table) order."""
    if rules is None:
        return
    for what, paths in (
        ("statoverride", rules.unmatched_adds()),
        ("skip-list", rules.unmatched_skips()),
    ):
        if paths:
            for path in paths:
                print(f"Unmatched {what} path: {path}", file=sys.stderr)
            raise SysrootError(f"Unmatched {what} paths")


_EDITOR_HELP = (
    "\n# Please enter the commit message for your changes. The first line will\n"
    "# become the subject, and the remainder the body. Lines starting\n"
    "# with '#' will be ignored, and an empty message aborts the commit."
)


def _editor() -> str:
    """ostree's choice: $OSTREE_EDITOR, $VISUAL (not on a dumb terminal), $EDITOR, vi."""
    dumb = os.environ.get("TERM", "dumb") in ("", "dumb")
    editor = os.environ.get("OSTREE_EDITOR")
    if editor is None and not dumb:
        editor = os.environ.get("VISUAL")
    if editor is None:
        editor = os.environ.get("EDITOR")
    if editor is None:
        if dumb:
            raise SysrootError("Terminal is dumb, but EDITOR unset")
        editor = "vi"
    return editor


def _edit_message(branch: str | None, subject: str) -> tuple[str, str]:
    """--editor: (subject, body) from the user's editor, run on ostree's template.
    ostree's template never shows the -m body (it reads it only after the editor)."""
    editor = _editor()
    template = _EDITOR_HELP
    if branch:
        template += f"\n#\n# Branch: {branch}"
    if subject:
        template += f"\n{subject}"
    template += "\n"
    fd, path = tempfile.mkstemp()
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(template)
        proc = run_mod.run(
            ["/bin/sh", "-c", f"{editor} {shlex.quote(path)}"],
            check=False,
            capture=False,
            inherit_stdin=True,
        )
        if proc.returncode != 0:
            # ostree's words, with its missing separator
            raise SysrootError(
                f"There was a problem with the editor '{editor}'"
                f"Child process exited with code {proc.returncode}"
            )
        with open(path, "rb") as f:
            output = f.read().decode("utf-8", "replace")
    finally:
        os.unlink(path)
    return _parse_message(output)


def _parse_message(text: str) -> tuple[str, str]:
    """The first line that is neither a comment nor blank is the subject; the body
    starts at the next such line and keeps its inner blank lines; trailing space goes."""
    subject: str | None = None
    body: list[str] | None = None
    for raw in text.split("\n"):
        line = raw.rstrip(" \t\n\r\f\v")
        if line.startswith("#"):
            continue
        if not line and body is None:
            continue
        if subject is None:
            subject = line
        elif body is None:
            body = [line]
        else:
            body.append(line)
    if not subject:
        raise SysrootError("Aborting commit due to empty commit subject.")
    return subject, "\n".join(body).rstrip(" \t\n\r\f\v") if body else ""


def _detached_strings(args) -> MetadataItems:
    """--add-detached-metadata-string, as ostree parses it: an empty key is allowed,
    a repeated key is written twice (the a{sv} is built as given)."""
    meta: MetadataItems = []
    for kv in args.add_detached_metadata_string:
        check_utf8(kv, "metadata", "--add-detached-metadata-string")
        key, sep, value = kv.partition("=")
        if not sep:
            raise SysrootError(f"Missing '=' in KEY=VALUE metadata '{kv}'")
        meta.append((key, Variant("s", value)))
    return meta


@dataclass(frozen=True)
class _Signing:
    """--sign's keys for --sign-type's engine, checked before anything is written."""

    metadata_key: str  # where the engine's signatures go in the detached metadata
    keys: list[bytes]
    sign: Callable[[bytes, bytes], bytes]  # (commit bytes, key) -> signature


def _signing_keys(args) -> _Signing:
    if not args.sign:
        return _Signing(detached.KEY_ED25519, [], ed25519.sign)
    if args.sign_type == dummy.NAME:  # ostree's test engine: the key is the signature
        dummy.require_enabled()
        keys = [dummy.key_bytes(k) for k in args.sign]
        return _Signing(dummy.METADATA_KEY, keys, lambda _data, key: key)
    if args.sign_type != ed25519.NAME:
        raise SysrootError("Requested signature type is not implemented")
    return _Signing(
        detached.KEY_ED25519, [ed25519.parse_secret_key(k) for k in args.sign], ed25519.sign
    )


def _detached(args, tx, checksum: str, strings: MetadataItems, signing: _Signing) -> None:
    """Detached metadata as ostree builds it: the given strings, then each GPG
    signature, then each --sign signature, appended. Appending goes through a
    GVariantDict: a repeated key keeps its last value, the order becomes GLib's."""
    if not (strings or args.gpg_sign or signing.keys):
        return
    if not (args.gpg_sign or signing.keys):
        tx.write_commitmeta(checksum, make_dict(strings))
        return
    meta: detached.Metadata = dict(strings)
    data = tx.read_metadata(ObjectType.COMMIT, checksum)
    for key_id in args.gpg_sign:
        sig = gpg.sign_detached(data, key_id, args.gpg_homedir)
        meta = detached.append_signature(meta, detached.KEY_GPG, sig)
    for key in signing.keys:
        meta = detached.append_signature(meta, signing.metadata_key, signing.sign(data, key))
    tx.write_commitmeta(checksum, meta)


def _sizes(tx) -> MetadataItems:
    sizes = [
        ObjectSize(checksum, objtype, archived, unpacked)
        for checksum, (objtype, archived, unpacked) in (tx.object_sizes or {}).items()
    ]
    if not sizes:  # ostree adds the key only when it has entries (not in bare repos)
        return []
    return [(SIZES_KEY, Variant("aay", encode_object_sizes(sizes)))]


def _ostree_has_modifier(args) -> bool:
    """Whether ostree's commit makes a commit modifier for these options (its ref=
    layers are then walked object by object)."""
    return bool(
        args.no_xattrs
        or args.canonical_permissions
        or args.generate_sizes
        or args.mode_ro_executables
        or args.consume
        or args.devino_canonical
        or args.owner_uid is not None
        or args.owner_gid is not None
        or args.statoverride is not None
        or args.skip_list is not None
    )


def _refuse(args) -> None:
    for option, given in (
        ("--selinux-policy", args.selinux_policy is not None),
        ("--selinux-policy-from-base", args.selinux_policy_from_base),
    ):
        if given:
            raise refusal(f"commit {option}")


def run(args) -> int:
    _refuse(args)
    # --fsync=yes cannot turn on what core.fsync=false turned off (as ostree)
    disable_fsync = args.fsync is not None and not _parse_boolean(args.fsync)
    disable_fsync = disable_fsync or args.disable_fsync
    rules = _path_filter(args)
    strings = _detached_strings(args)
    repo = open_repo(args)
    if disable_fsync:  # for this process only, as ostree_repo_set_disable_fsync
        repo.config.set("core", "fsync", "false")
    # As in ostree: --tree layers if any (a PATH is then ignored), else PATH, else ".".
    trees = list(args.tree) or [f"dir={args.path or '.'}"]
    if not args.branch and not args.orphan:
        raise UsageError("A branch must be specified with --branch, or use --orphan")
    signing = _signing_keys(args)
    subject = args.subject
    body = args.body
    if args.body_file and not args.editor:
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
    base = repo.resolve_rev(args.base) if args.base is not None else None
    if args.editor:
        subject, body = _edit_message(args.branch, subject)
    timestamp = parse_date(args.timestamp) if args.timestamp else None
    modifier = CommitModifier(
        skip_xattrs=args.no_xattrs,
        canonical_permissions=args.canonical_permissions,
        owner_uid=args.owner_uid,
        owner_gid=args.owner_gid,
        consume=args.consume,
        ro_executables=args.mode_ro_executables,
        path_filter=rules,
    )
    given, bindings = _metadata(args, repo, args.branch, parent)

    try:
        with repo.transaction() as tx:
            if args.generate_sizes:
                tx.object_sizes = {}
            builder = CommitBuilder(tx, modifier, walk_commits=_ostree_has_modifier(args))
            if base is not None:
                builder.add_commit(base, modify=False)
            for spec in trees:
                _add_layer(builder, repo, spec, args)
            _check_used(rules)
            metadata = given + bindings
            if args.bootable:
                metadata = _with_bootable(metadata, builder.kernel_version())
            tree, meta = builder.seal()
            if args.skip_if_unchanged and parent and repo.has_object(ObjectType.COMMIT, parent):
                old = repo.load_commit(parent)
                if (old.root_tree, old.root_meta) == (tree, meta):
                    raise _Unchanged
            if args.generate_sizes:
                metadata = metadata + _sizes(tx)
            checksum = builder.write(
                subject=subject,
                body=body,
                parent=parent,
                metadata=metadata,
                timestamp=timestamp,
            )
            _detached(args, tx, checksum, strings, signing)
            if args.branch:
                tx.set_ref(args.branch, checksum)
    except _Unchanged:
        assert parent is not None  # raised only when the parent has the same tree
        checksum = parent
        # ostree prints uninitialized stats here (a bug); nothing was committed: zeros
        tx.stats = dict.fromkeys(tx.stats, 0)
    builder.consume_sources()
    if args.table_output:
        _print_table(checksum, tx.stats)
    else:
        print(checksum)
    return 0


def _print_table(checksum: str, stats: dict[str, int]) -> None:
    """ostree's --table-output. Content Cache Hits counts hard links into the repo
    that --link-checkout-speedup reused; sysroot has no such cache: always 0."""
    print(f"Commit: {checksum}")
    print(f"Metadata Total: {stats['metadata_total']}")
    print(f"Metadata Written: {stats['metadata']}")
    print(f"Content Total: {stats['content_total']}")
    print(f"Content Written: {stats['content']}")
    print("Content Cache Hits: 0")
    print(f"Content Bytes Written: {stats['content_bytes']}")
