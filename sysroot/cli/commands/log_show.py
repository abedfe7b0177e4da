"""sysroot log and show: print commits and other objects exactly as ostree 2022.7 does.

Unlike ostree, every metadata object is checked before it is printed (its checksum, and
that it is GVariant in normal form), so a damaged repository gives one clear error
instead of garbage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from sysroot.cli.main import add_repo_option, open_repo
from sysroot.errors import (
    CorruptObjectError,
    FormatError,
    NotFoundError,
    SysrootError,
    UsageError,
)
from sysroot.formats import gvariant
from sysroot.formats.gvariant_text import print_value
from sysroot.formats.objects import (
    Commit,
    ObjectType,
    content_checksum,
    is_checksum,
    sha256_hex,
)
from sysroot.formats.sizes import commit_object_sizes
from sysroot.util.units import format_size

HISTORY_END = "<< History beyond this commit not fetched >>\n"


def register(sub) -> None:
    p = sub.add_parser("log", help="Show log starting at commit or ref")
    add_repo_option(p)
    p.add_argument("rev", nargs="?", metavar="REV")
    p.add_argument("ignored", nargs="*", help=argparse.SUPPRESS)  # ostree ignores extras
    p.add_argument("--raw", action="store_true", help="Show raw variant data")
    p.set_defaults(func=run_log)

    p = sub.add_parser("show", help="Output a metadata object")
    add_repo_option(p)
    p.add_argument("object", nargs="?", metavar="OBJECT")
    p.add_argument("ignored", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--print-related", action="store_true", help='Show the "related" commits')
    p.add_argument(
        "--print-variant-type",
        metavar="TYPE",
        help="Read OBJECT (in this case a filename) as a GVariant of type TYPE",
    )
    p.add_argument("--print-metadata-key", metavar="KEY", help="Print string value of metadata key")
    p.add_argument(
        "--print-detached-metadata-key",
        metavar="KEY",
        help="Print string value of detached metadata key",
    )
    p.add_argument(
        "--list-metadata-keys", action="store_true", help="List the available metadata keys"
    )
    p.add_argument(
        "--list-detached-metadata-keys",
        action="store_true",
        help="List the available detached metadata keys",
    )
    p.add_argument(
        "--print-hex",
        action="store_true",
        help="For byte array valued keys, output an unquoted hexadecimal string",
    )
    p.add_argument("--print-sizes", action="store_true", help="Show the commit size metadata")
    p.add_argument("--raw", action="store_true", help="Show raw variant data")
    p.add_argument(
        "-B",
        "--no-byteswap",
        action="store_true",
        help="Do not automatically convert variant data from big endian",
    )
    p.add_argument(
        "--gpg-homedir",
        metavar="HOMEDIR",
        help="Accepted for compatibility; signatures are not verified",
    )
    p.add_argument(
        "--gpg-verify-remote",
        metavar="REMOTE",
        help="Accepted for compatibility; signatures are not verified",
    )
    p.set_defaults(func=run_show)


def _write(text: str) -> None:
    out = getattr(sys.stdout, "buffer", None)
    if out is None:  # a text-only stream (e.g. redirected by a caller)
        sys.stdout.write(text)
    else:
        out.write(text.encode("utf-8", "surrogateescape"))
    sys.stdout.flush()


# ------------------------------------------------------------------ loading


def _variant_type(objtype: ObjectType) -> str:
    """The GVariant type of a metadata object (the only kind shown here)."""
    sig = objtype.gvariant_type
    assert sig is not None, f"{objtype} objects are not GVariants"
    return sig


def load_metadata(repo, objtype: ObjectType, checksum: str) -> tuple[bytes, Any]:
    """The bytes and decoded value of a metadata object, checked against its name."""
    data = repo.read_metadata(objtype, checksum)
    name = objtype.type_name
    actual = sha256_hex(data)
    if actual != checksum:
        raise CorruptObjectError(checksum, name, f"content has checksum {actual}")
    sig = _variant_type(objtype)
    try:
        value = gvariant.decode(sig, data)
    except FormatError as e:
        raise CorruptObjectError(checksum, name, str(e)) from None
    if gvariant.encode(sig, value) != data:
        raise CorruptObjectError(checksum, name, "not in GVariant normal form")
    return data, value


def _load_commit(repo, checksum: str) -> tuple[Commit, Any]:
    data, value = load_metadata(repo, ObjectType.COMMIT, checksum)
    try:
        return Commit.parse(data), value
    except FormatError as e:
        raise CorruptObjectError(checksum, "commit", str(e)) from None


def _metadata_dict(repo, checksum: str, detached: bool) -> dict:
    if not detached:
        return _load_commit(repo, checksum)[0].metadata
    meta = repo.load_commitmeta(checksum)
    if meta is None:
        raise NotFoundError(f"No detached metadata for commit {checksum}")
    return meta


# ------------------------------------------------------------------ formatting


def _indented(text: str) -> str:
    """Each line of text indented by four spaces; a last line without newline gets one."""
    lines = text.split("\n")
    out = "".join(f"    {line}\n" for line in lines[:-1])
    if lines[-1]:
        out += f"    {lines[-1]}\n"
    return out


def format_date(timestamp: int) -> str:
    # GLib reads the stored uint64 as a signed number: dates before 1970 work
    signed = timestamp - (1 << 64) if timestamp >= 1 << 63 else timestamp
    try:
        d = dt.datetime.fromtimestamp(signed, dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise SysrootError(f"Failed to read commit: Invalid timestamp: {timestamp}") from None
    # GLib's %Y is not zero-padded
    return f"{d.year}-{d:%m-%d %H:%M:%S} +0000"


def format_commit(checksum: str, commit: Commit) -> str:
    """`ostree show`/`log` text for one commit."""
    return f"commit {checksum}\n" + _commit_details(commit)


def _commit_details(commit: Commit) -> str:
    out = []
    if commit.parent:
        out.append(f"Parent:  {commit.parent}\n")
    out.append(f"ContentChecksum:  {commit.content_checksum}\n")
    out.append(f"Date:  {format_date(commit.timestamp)}\n")
    version = commit.metadata.get("version")
    if version is not None and version.signature == "s":
        out.append(f"Version: {version.value}\n")
    out.append("\n" + _indented(commit.subject) if commit.subject else "(no subject)\n")
    if commit.body:
        out.append("\n" + _indented(commit.body))
    out.append("\n")
    return "".join(out)


def _format_raw(objtype: ObjectType, checksum: str, value: Any, swap: bool) -> str:
    text = print_value(_variant_type(objtype), value, byteswap=swap)
    return f"{objtype.type_name} {checksum}\n{text}\n"


# ------------------------------------------------------------------ commands


def run_log(args) -> int:
    if not args.rev:
        raise UsageError("A rev argument is required")
    repo = open_repo(args)
    checksum = repo.resolve_rev(args.rev)
    first = True
    while checksum:
        try:
            commit, value = _load_commit(repo, checksum)
        except NotFoundError:
            if first:
                raise
            _write(HISTORY_END)
            break
        if args.raw:
            _write(_format_raw(ObjectType.COMMIT, checksum, value, True))
        else:
            _write(f"commit {checksum}\n")  # (before a date that cannot be shown, as ostree)
            _write(_commit_details(commit))
        checksum = commit.parent
        first = False
    return 0


def run_show(args) -> int:
    if not args.object:
        raise UsageError("An object argument is required")
    rev = args.object
    if args.print_variant_type:
        return _show_variant_file(rev, args.print_variant_type)
    repo = open_repo(args)
    key = args.print_detached_metadata_key or args.print_metadata_key
    if key is not None:
        meta = _metadata_dict(
            repo, repo.resolve_rev(rev), args.print_detached_metadata_key is not None
        )
        value = meta.get(key)
        if value is None:
            raise NotFoundError(f"No such metadata key '{key}'")
        if args.print_hex and value.signature == "ay":
            _write(value.value.hex() + "\n")
        else:
            _write(print_value(value.signature, value.value, byteswap=not args.no_byteswap) + "\n")
    elif args.list_metadata_keys or args.list_detached_metadata_keys:
        meta = _metadata_dict(repo, repo.resolve_rev(rev), args.list_detached_metadata_keys)
        keys = sorted((k for k, _ in meta.items()), key=lambda k: k.encode())
        _write("".join(f"{k}\n" for k in keys))
    elif args.print_related:
        commit, _ = _load_commit(repo, repo.resolve_rev(rev))
        _write("".join(f"{name} {csum.hex()}\n" for name, csum in commit.related))
    elif args.print_sizes:
        _show_sizes(repo, repo.resolve_rev(rev))
    elif not is_checksum(rev):
        _show_object(repo, ObjectType.COMMIT, repo.resolve_rev(rev), args)
    else:
        for objtype in (ObjectType.COMMIT, ObjectType.DIR_META, ObjectType.DIR_TREE):
            if repo.has_object(objtype, rev):
                _show_object(repo, objtype, rev, args)
                break
        else:
            _show_file(repo, rev)
    return 0


def _show_object(repo, objtype: ObjectType, checksum: str, args) -> None:
    if objtype is ObjectType.COMMIT:
        commit, value = _load_commit(repo, checksum)
    else:
        _, value = load_metadata(repo, objtype, checksum)
    out = f"{objtype.type_name} {checksum}\n"
    # ostree 2022.7: -B prints the unswapped variant *and* the usual details
    if args.no_byteswap or args.raw:
        out += print_value(_variant_type(objtype), value, byteswap=not args.no_byteswap) + "\n"
    _write(out)
    if objtype is ObjectType.COMMIT and (args.no_byteswap or not args.raw):
        _write(_commit_details(commit))


def _show_file(repo, checksum: str) -> None:
    try:
        info = repo.load_file(checksum)
    except NotFoundError:
        # ostree's wording differs between archive and bare repositories
        where = "" if repo.mode.is_archive else f"Opening content object {checksum}: "
        raise NotFoundError(f"{where}Couldn't find file object '{checksum}'") from None
    header = info.header
    actual = content_checksum(header, repo.iter_payload(checksum) if header.is_regular else ())
    if actual != checksum:
        raise CorruptObjectError(checksum, "file", f"content has checksum {actual}")
    out = [f"Object: {checksum}\nType: file\nFile Type: "]
    if header.is_symlink:
        out.append(f"symlink\nTarget: {header.symlink_target}\n")
    else:
        out.append(f"regular\nSize: {info.size}\n")
    out.append(f"Mode: 0{header.mode:04o}\nUid: {header.uid}\nGid: {header.gid}\n")
    xattrs = print_value("a(ayay)", list(header.xattrs))
    out.append(f"Extended Attributes: {{ {xattrs} }}\n")
    _write("".join(out))


def _show_sizes(repo, checksum: str) -> None:
    commit, _ = _load_commit(repo, checksum)
    total = [0, 0, 0]
    needed = [0, 0, 0]
    for size in commit_object_sizes(commit):
        total = [total[0] + size.archived, total[1] + size.unpacked, total[2] + 1]
        if not repo.has_object(size.objtype, size.checksum):
            needed = [needed[0] + size.archived, needed[1] + size.unpacked, needed[2] + 1]
    _write(
        f"Compressed size (needed/total): {format_size(needed[0])}/{format_size(total[0])}\n"
        f"Unpacked size (needed/total): {format_size(needed[1])}/{format_size(total[1])}\n"
        f"Number of objects (needed/total): {needed[2]}/{total[2]}\n"
    )


def _show_variant_file(path: str, sig: str) -> int:
    try:
        t = gvariant.parse_type(sig)
    except FormatError:
        raise UsageError(f"Invalid GVariant type string '{sig}'") from None
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SysrootError(f"openat({path}): {e.strerror}") from None
    try:
        value = gvariant.decode(t, data)
    except FormatError as e:
        raise FormatError(f"{path}: not a valid GVariant of type {sig}: {e}") from None
    _write(print_value(t, value, byteswap=True) + "\n")
    return 0
