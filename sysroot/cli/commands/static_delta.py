"""sysroot static-delta: list, show, delete and apply-offline ostree's static deltas,
with ostree 2022.7's spelling and output. generate, verify, indexes and reindex are
refused for now (sysroot/cli/refusals.py says why)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sysroot.cli.main import add_repo_option, open_repo
from sysroot.cli.refusals import refusal
from sysroot.errors import FormatError, SysrootError, UsageError
from sysroot.formats import static_delta as sd
from sysroot.formats.objects import is_checksum
from sysroot.sign import delta as delta_sign
from sysroot.sign import ed25519
from sysroot.store import static_delta as store_sd
from sysroot.util.units import format_size

REFUSED_VERBS = ("generate", "reindex")


def register(sub) -> None:
    p = sub.add_parser("static-delta", help="Static delta related commands")
    add_repo_option(p)
    p.set_defaults(func=_no_command)
    vsub = p.add_subparsers(dest="delta_command", metavar="COMMAND", parser_class=type(p))
    for name, help, func in (
        ("list", "List static delta files", run_list),
        ("show", "Dump information on a delta", run_show),
        ("delete", "Remove a delta", run_delete),
        ("indexes", "List static delta indexes", run_indexes),
        ("verify", "Verify static delta signatures", run_verify),
        ("apply-offline", "Apply static delta file", run_apply_offline),
    ):
        v = vsub.add_parser(name, help=help)
        add_repo_option(v)
        v.add_argument("words", nargs="*", metavar="ARG")
        v.set_defaults(func=func)
    for name in ("apply-offline", "verify"):
        vsub.choices[name].add_argument(
            "--sign-type", metavar="NAME", help="Signature type to use (defaults to 'ed25519')"
        )
    for name in REFUSED_VERBS:
        v = vsub.add_parser(name, help=f"Refused: {name} is not implemented yet")
        add_repo_option(v)
        v.add_argument("words", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        v.set_defaults(func=lambda args, name=name: _refuse(name))


def _refuse(name: str) -> int:
    raise refusal(f"static-delta {name}")


def _no_command(args) -> int:
    raise UsageError("No command specified")


def _parse_name(text: str) -> sd.DeltaName:
    """A delta name as ostree takes it: full checksums only ("Invalid rev" otherwise)."""
    try:
        return sd.DeltaName.parse(text)
    except FormatError:
        bad = next(p for p in text.split("-", 1) if not is_checksum(p)) if text else text
        raise SysrootError(f"Invalid rev {bad}") from None


def _print_names(names: Sequence[object], none: str) -> int:
    print("\n".join(map(str, names)) if names else none)
    return 0


def run_list(args) -> int:
    with open_repo(args) as repo:
        return _print_names(store_sd.list_deltas(repo), "(No static deltas)")


def run_indexes(args) -> int:
    with open_repo(args) as repo:
        return _print_names(store_sd.list_indexes(repo), "(No static deltas indexes)")


def _sized(n: int) -> str:
    return f"{n} ({format_size(n)})"


def run_show(args) -> int:
    if not args.words:
        raise SysrootError("DELTA must be specified")
    arg = args.words[0]
    with open_repo(args) as repo:
        if "/" in arg:
            loaded = store_sd.load_path(arg)
        else:
            loaded = store_sd.load_named(repo, _parse_name(arg))
        sb = loaded.superblock
        # as ostree 2022.7: the part files are read from the repository's directory for
        # the delta, even when the superblock was named by path, and even if it carries
        # its parts inline (so `show` of an --inline delta fails at its first part)
        delta = store_sd.LoadedDelta(sb, f"{repo.path}/{sb.name.relpath}", sb.name.relpath)
        out = sys.stdout
        endian = {None: "invalid", False: "little", True: "big"}[sb.big_endian]
        out.write(f"Delta: {arg}\nSigned: {'yes' if sb.signed else 'no'}\n")
        out.write(f"From: {sb.from_}\n" if sb.from_ else "From <scratch>\n")
        out.write(f"To: {sb.to}\nEndianness: {endian}\nTimestamp: {sb.timestamp}\n")
        out.write(f"Number of parents: {sb.n_parents}\n")
        out.write(f"Number of fallback entries: {len(sb.fallbacks)}\n")
        for fb in sb.fallbacks:
            out.write(f"  {fb.checksum}\n")
        fb_size = sum(f.size for f in sb.fallbacks)
        fb_usize = sum(f.usize for f in sb.fallbacks)
        out.write(f"Total Fallback Size: {_sized(fb_size)}\n")
        out.write(f"Total Fallback Uncompressed Size: {_sized(fb_usize)}\n")
        out.write(f"Number of parts: {len(sb.parts)}\n")
        for i, part in enumerate(sb.parts):
            out.write(
                f"PartMeta{i}: nobjects={len(part.objects)} size={part.size} usize={part.usize}\n"
            )
            out.flush()  # what is known is printed before a part can fail, as ostree
            p = store_sd.part_payload(delta, i, inline=False, check=False)
            ops = sd.iter_ops(p.ops, part.objects)
            counts = {code: 0 for code in sd.OpCode}
            for op in ops:
                counts[op.code] += 1
            out.write(
                f"PartPayload{i}: nmodes={len(p.modes)} nxattrs={len(p.xattrs)} "
                f"blobsize={len(p.blob)} opsize={len(p.ops)}\n"
            )
            c = [counts[code] for code in sd.OpCode]
            out.write(
                f"PartPayloadOps{i}: openspliceclose={c[0]} open={c[1]} write={c[2]} "
                f"setread={c[3]} unsetread={c[4]} close={c[5]} bspatch={c[6]}\n"
            )
        size = sum(p.size for p in sb.parts)
        usize = sum(p.usize for p in sb.parts)
        out.write(f"Total Part Size: {_sized(size)}\n")
        out.write(f"Total Part Uncompressed Size: {_sized(usize)}\n")
        out.write(f"Total Size: {_sized(size + fb_size)}\n")
        out.write(f"Total Uncompressed Size: {_sized(usize + fb_usize)}\n")
    return 0


def run_delete(args) -> int:
    if not args.words:
        raise SysrootError("DELTA must be specified")
    name = _parse_name(args.words[0])
    with open_repo(args) as repo:
        store_sd.delete_delta(repo, name)
    return 0


def _superblock_bytes(repo, arg: str) -> bytes:
    """The superblock file of DELTA: a path if it holds '/', else a delta name."""
    if "/" in arg:
        return store_sd.load_path(arg).raw
    return store_sd.load_named(repo, _parse_name(arg)).raw


def run_verify(args) -> int:
    if not args.words:
        raise SysrootError("DELTA must be specified")
    sign_type = args.sign_type or ed25519.NAME
    delta_sign.check_type(sign_type)
    with open_repo(args) as repo:
        data = _superblock_bytes(repo, args.words[0])
    try:
        delta_sign.verify(data, sign_type, args.words[1:])
    except UsageError:
        raise
    except SysrootError:
        print("Verification fails", flush=True)
        raise
    print("Verification OK")
    return 0


def run_apply_offline(args) -> int:
    if not args.words:
        raise SysrootError("PATH must be specified")
    path, keys = args.words[0], args.words[1:]
    sign_type = args.sign_type or ed25519.NAME
    with open_repo(args) as repo:
        loaded = store_sd.load_path(path)
        if loaded.superblock.signed:
            # as 2022.7: with keys the signature must verify; without, it is applied
            # unverified unless the repository requires verified deltas
            if keys:
                delta_sign.verify(loaded.raw, sign_type, keys)
            elif repo.config.get_bool("core", "sign-verify-deltas", False):
                raise SysrootError("Key is mandatory to check delta signature")
        store_sd.apply_offline(repo, loaded)
    return 0
