"""sysroot static-delta: generate, list, show, delete, verify, apply-offline and reindex
ostree's static deltas, with ostree 2022.7's options, spelling and output."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from sysroot.cli.main import add_repo_option, open_repo
from sysroot.errors import FormatError, SysrootError, UsageError
from sysroot.formats import static_delta as sd
from sysroot.formats.objects import is_checksum
from sysroot.sign import delta as delta_sign
from sysroot.sign import ed25519
from sysroot.store import delta_generate, delta_index
from sysroot.store import static_delta as store_sd
from sysroot.util.units import format_size


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
    _register_generate(vsub)
    v = vsub.add_parser("reindex", help="Regenerate static delta indexes")
    add_repo_option(v)
    v.add_argument("--to", metavar="REV", help="Only update delta index to revision REV")
    v.set_defaults(func=run_reindex)


def _register_generate(vsub) -> None:
    g = vsub.add_parser("generate", help="Generate static delta files")
    add_repo_option(g)
    g.add_argument("--from", dest="from_rev", metavar="REV", help="Create delta from revision REV")
    g.add_argument("--empty", action="store_true", help="Create delta from scratch")
    g.add_argument("--inline", action="store_true", help="Inline delta parts into main delta")
    g.add_argument("--to", dest="to_rev", metavar="REV", help="Create delta to revision REV")
    g.add_argument("--disable-bsdiff", action="store_true", help="Disable use of bsdiff")
    g.add_argument(
        "-n",
        "--if-not-exists",
        action="store_true",
        help="Only generate if a delta does not already exist",
    )
    g.add_argument(
        "--set-endianness", metavar="ENDIAN", help="Choose metadata endianness ('l' or 'B')"
    )
    g.add_argument(
        "--swap-endianness", action="store_true", help="Swap metadata endianness from host order"
    )
    for opt, help in (
        (
            "--min-fallback-size",
            "Minimum uncompressed size in megabytes for individual HTTP request",
        ),
        (
            "--max-bsdiff-size",
            "Maximum size in megabytes to consider bsdiff compression for input files",
        ),
        ("--max-chunk-size", "Maximum size of delta chunks in megabytes"),
    ):
        g.add_argument(opt, metavar="N", help=help)
    g.add_argument(
        "--filename",
        metavar="PATH",
        help="Write the superblock to PATH, the parts beside it (default: the repository)",
    )
    g.add_argument(
        "--sign", action="append", default=[], metavar="KEY_ID", help="Sign the delta with"
    )
    g.add_argument(
        "--sign-type", metavar="NAME", help="Signature type to use (defaults to 'ed25519')"
    )
    g.add_argument("words", nargs="*", metavar="TO")
    g.set_defaults(func=run_generate)


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


def _megabytes(option: str, text: str | None, default: int) -> int:
    if text is None:
        return default
    try:
        value = int(text, 10)
    except ValueError:
        value = -1
    if not 0 <= value <= 0xFFFFFFFF:
        raise UsageError(f"Invalid value for {option}: '{text}'")
    return value


def _big_endian(args) -> bool:
    """Host order on x86 is little; --swap-endianness makes it big."""
    if args.set_endianness is not None:
        if args.set_endianness not in ("l", "B"):
            raise UsageError(f"Invalid endianness '{args.set_endianness}'")
        return args.set_endianness == "B"
    return bool(args.swap_endianness)


def run_generate(args) -> int:
    if args.empty and args.from_rev is not None:
        raise UsageError("Cannot specify both --empty and --from=REV")
    if len(args.words) > 1 or (args.words and args.to_rev is not None):
        raise UsageError("Too many arguments")
    to_rev = args.to_rev if args.to_rev is not None else (args.words or [None])[0]
    if to_rev is None:
        raise UsageError("TO revision must be specified")
    opts = delta_generate.Options(
        inline=args.inline,
        bsdiff=not args.disable_bsdiff,
        min_fallback_size=_megabytes("--min-fallback-size", args.min_fallback_size, 4),
        max_bsdiff_size=_megabytes("--max-bsdiff-size", args.max_bsdiff_size, 128),
        max_chunk_size=_megabytes("--max-chunk-size", args.max_chunk_size, 32),
        big_endian=_big_endian(args),
        filename=args.filename,
    )
    signer = None
    if args.sign:
        signer = delta_sign.signer(args.sign_type or ed25519.NAME, args.sign)
    with open_repo(args) as repo:
        from_, to = delta_generate.resolve_endpoints(repo, args.from_rev, to_rev, args.empty)
        name = sd.DeltaName(from_, to)
        if args.if_not_exists and delta_generate.exists(repo, name):
            print(f"Delta {name} already exists.")
            return 0
        print(f"Generating static delta:\n  From: {from_ or 'empty'}\n  To:   {to}", flush=True)
        result = delta_generate.generate(repo, from_, to, opts, signer)
    st = result.stats
    for line in (
        f"new reachable: metadata={st.new_metadata} content regular={st.new_regular} "
        f"symlink={st.new_symlinks}",
        *delta_generate.iter_part_lines(st),
        f"rollsum={st.rollsum} objects",
        f"bsdiff={st.bsdiff} objects",
    ):
        print(line, file=sys.stderr)
    return 0


def run_reindex(args) -> int:
    with open_repo(args) as repo:
        to = repo.resolve_rev(args.to) if args.to is not None else None
        delta_index.reindex(repo, to)
    return 0
