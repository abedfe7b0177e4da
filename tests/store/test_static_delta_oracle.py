"""static-delta list/show/delete/apply-offline against ostree 2022.7, on deltas ostree
generates: from scratch, FROM-TO with bsdiff and rollsum, --disable-bsdiff, --inline,
--filename; and hostile deltas (truncated, flipped, rewritten parts) that must fail in
one line and store nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest

from sysroot.formats import gvariant, leb128
from sysroot.formats import static_delta as sd
from sysroot.formats.objects import bswap32
from sysroot.sign import ed25519
from tests.conftest import make_rich_tree

MB = 1_000_000


def _v2(root: Path) -> None:
    """Slight changes (bsdiff), a local edit in a big file (rollsum), new files."""
    for name in ("usr/bin/tool", "etc/config"):
        p = root / name
        if p.exists() and not p.is_symlink():
            p.write_bytes(p.read_bytes() + b"# changed\n")
    big = bytearray((root / "big.bin").read_bytes())
    for i in range(0, len(big), 4096):
        big[i] ^= 0x5A  # one byte in every 4 KiB: bsdiff, not rollsum
    (root / "big.bin").write_bytes(bytes(big))
    roll = bytearray((root / "roll.bin").read_bytes())
    roll[200_000:200_100] = os.urandom(100)  # one local edit: rollsum
    (root / "roll.bin").write_bytes(bytes(roll))
    (root / "new").mkdir()
    (root / "new/file.txt").write_text("brand new\n" * 50)
    os.symlink("file.txt", root / "new/link")
    (root / "new/huge.dat").write_bytes(os.urandom(MB + 500_000))  # a fallback by default


@pytest.fixture(scope="module")
def src(tmp_path_factory, ostree):
    """A bare-user repo with commits A (main^) and B (main) and ostree's deltas."""
    base = tmp_path_factory.mktemp("deltas")
    tree = make_rich_tree(base / "tree")
    rnd = __import__("random").Random(7)
    (tree / "big.bin").write_bytes(rnd.randbytes(200_000))
    (tree / "roll.bin").write_bytes(rnd.randbytes(524_288))
    repo = base / "src"
    ostree("init", f"--repo={repo}", "--mode=bare-user")
    ostree(f"--repo={repo}", "commit", "-b", "main", "-s", "A", "--timestamp=@1000", tree)
    _v2(tree)
    ostree(f"--repo={repo}", "commit", "-b", "main", "-s", "B", "--timestamp=@2000", tree)
    a = ostree.out(f"--repo={repo}", "rev-parse", "main^")
    b = ostree.out(f"--repo={repo}", "rev-parse", "main")
    gen = [f"--repo={repo}", "static-delta", "generate"]
    ostree(*gen, "--empty", f"--to={a}", "--min-fallback-size=0")
    ostree(*gen, f"--from={a}", f"--to={b}", "--min-fallback-size=1")  # with a fallback
    out = base / "out"
    for name, extra in {
        "offline": [],
        "nobsdiff": ["--disable-bsdiff"],
        "chunked": ["--max-chunk-size=1"],
        "inline": ["--inline"],
        "swapped": ["--swap-endianness"],  # big-endian header integers, 'B'
    }.items():
        (out / name).mkdir(parents=True)
        ostree(
            *gen,
            f"--from={a}",
            f"--to={b}",
            "--min-fallback-size=0",
            f"--filename={out / name / 'superblock'}",
            *extra,
        )
    (out / "inline/superblock").rename(out / "inline/single.delta")
    return {"repo": repo, "a": a, "b": b, "out": out, "base": base}


def _objects(repo: Path) -> dict[str, bytes]:
    """Every object file, name -> sha256 of its bytes (symlinks: of their target)."""
    found = {}
    for dirpath, _, files in os.walk(repo / "objects"):
        for f in files:
            p = Path(dirpath, f)
            data = os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
            found[str(p.relative_to(repo))] = hashlib.sha256(data).digest()
    return found


def _refs(repo: Path) -> list[str]:
    return sorted(str(p.relative_to(repo)) for p in (repo / "refs").rglob("*") if p.is_file())


def _twins(ostree, base: Path, name: str, mode: str = "bare-user", with_a: str | None = None):
    pair = []
    for who in ("theirs", "ours"):
        r = base / f"{name}-{who}"
        shutil.rmtree(r, ignore_errors=True)
        ostree("init", f"--repo={r}", f"--mode={mode}")
        pair.append(r)
    if with_a:
        for r in pair:
            ostree(f"--repo={r}", "pull-local", str(with_a[0]), with_a[1])
    return pair


# ---------------------------------------------------------------- list / show


def test_list_matches_ostree(ostree, sysroot, src, tmp_path):
    repo = src["repo"]
    theirs = ostree(f"--repo={repo}", "static-delta", "list")
    ours = sysroot(f"--repo={repo}", "static-delta", "list")
    assert ours.stdout == theirs.stdout and len(theirs.stdout.splitlines()) == 2
    ostree("init", f"--repo={tmp_path}/empty", "--mode=archive")
    theirs = ostree(f"--repo={tmp_path}/empty", "static-delta", "list")
    ours = sysroot(f"--repo={tmp_path}/empty", "static-delta", "list")
    assert ours.stdout == theirs.stdout == b"(No static deltas)\n"


def test_indexes_matches_ostree(ostree, sysroot, src, tmp_path):
    repo = tmp_path / "indexed"
    shutil.copytree(src["repo"], repo, symlinks=True)
    for step in ("before", "after"):
        theirs = ostree(f"--repo={repo}", "static-delta", "indexes")
        ours = sysroot(f"--repo={repo}", "static-delta", "indexes")
        assert ours.stdout == theirs.stdout
        if step == "before":
            assert ours.stdout == b"(No static deltas indexes)\n"
            ostree(f"--repo={repo}", "summary", "-u")  # writes delta-indexes/
            (repo / "delta-indexes/zz").mkdir()
            (repo / "delta-indexes/zz/junk.index").write_bytes(b"")
            for index in (repo / "delta-indexes").glob("*/*.index"):  # not an index
                shutil.copy(index, index.with_suffix(".tmp"))
    assert sorted(ours.stdout.split()) == sorted({src["a"].encode(), src["b"].encode()})


def _show_args(src) -> list[str]:
    a, b, out = src["a"], src["b"], src["out"]
    return [
        a,  # from scratch
        f"{a}-{b}",  # bsdiff, rollsum, a fallback
        f"{src['repo']}/deltas/{sd.mbase64(a)[:2]}/{sd.mbase64(a)[2:]}/superblock",  # by path
        str(out / "inline/single.delta"),  # parts inline
        str(out / "offline/superblock"),  # parts not in the repo: fails at part 0
        str(out / "swapped/superblock"),  # Endianness: big
        b,  # no such delta
        "nosuchrev",
        f"{a}-{b[:10]}",
    ]


@pytest.mark.parametrize("which", range(9))
def test_show_matches_ostree(ostree, sysroot, src, which):
    arg = _show_args(src)[which]
    theirs = ostree(f"--repo={src['repo']}", "static-delta", "show", arg, check=False)
    ours = sysroot(f"--repo={src['repo']}", "static-delta", "show", arg, check=False)
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout)
    assert len(ours.stderr.splitlines()) == (1 if ours.returncode else 0), ours.stderr
    if which == 5:
        assert b"Endianness: big\n" in ours.stdout
    if which == 1:
        assert b"Number of fallback entries: 1\n" in ours.stdout
        assert b"bspatch=0 " not in ours.stdout and b"setread=0 " not in ours.stdout


# ---------------------------------------------------------------- apply-offline


@pytest.mark.parametrize(
    "case",
    ["scratch", "scratch-archive", "offline", "nobsdiff", "chunked", "inline-file", "swapped"],
)
def test_apply_offline_matches_ostree(ostree, sysroot, src, case):
    repo, a, b, out = src["repo"], src["a"], src["b"], src["out"]
    scratch = f"{repo}/deltas/{sd.mbase64(a)[:2]}/{sd.mbase64(a)[2:]}"
    if case.startswith("scratch"):
        mode = "archive" if case.endswith("archive") else "bare-user"
        pair, path, target = _twins(ostree, src["base"], case, mode), scratch, a
    else:
        pair = _twins(ostree, src["base"], case, with_a=(repo, a))
        path = str(out / "inline/single.delta") if case == "inline-file" else str(out / case)
        target = b
    theirs, ours = pair
    ostree(f"--repo={theirs}", "static-delta", "apply-offline", path)
    proc = sysroot(f"--repo={ours}", "static-delta", "apply-offline", path)
    assert proc.stdout == proc.stderr == b""
    assert _objects(ours) == _objects(theirs)
    assert f"objects/{target[:2]}/{target[2:]}.commit" in _objects(ours)
    assert _refs(ours) == _refs(theirs) == []
    ostree(f"--repo={ours}", "fsck")
    # a second apply finds everything present and changes nothing
    sysroot(f"--repo={ours}", "static-delta", "apply-offline", path)
    assert _objects(ours) == _objects(theirs)


def test_apply_offline_refuses_fallbacks_and_a_missing_source(ostree, sysroot, src):
    repo, a, b = src["repo"], src["a"], src["b"]
    ab = f"{repo}/deltas/{sd.mbase64(a)[:2]}/{sd.mbase64(a)[2:]}-{sd.mbase64(b)}"
    theirs, ours = _twins(ostree, src["base"], "fallback", with_a=(repo, a))
    before = _objects(ours)
    t = ostree(f"--repo={theirs}", "static-delta", "apply-offline", ab, check=False)
    o = sysroot(f"--repo={ours}", "static-delta", "apply-offline", ab, check=False)
    assert t.returncode and o.returncode
    assert (
        o.stderr
        == b"error: Cannot execute delta offline: contains nonempty http fallback entries\n"
    )
    assert _objects(ours) == _objects(theirs) == before
    # a FROM-TO delta into a repository without FROM
    theirs, ours = _twins(ostree, src["base"], "nosource")
    path = str(src["out"] / "offline")
    t = ostree(f"--repo={theirs}", "static-delta", "apply-offline", path, check=False)
    o = sysroot(f"--repo={ours}", "static-delta", "apply-offline", path, check=False)
    assert t.returncode and o.returncode
    assert o.stderr == (
        f"error: Commit {a}, which is the delta source, is not in repository\n".encode()
    )
    assert _objects(ours) == _objects(theirs) == {}


def test_delete_matches_ostree(ostree, sysroot, src):
    a, b = src["a"], src["b"]
    pair = []
    for who in ("theirs", "ours"):
        r = src["base"] / f"delete-{who}"
        shutil.rmtree(r, ignore_errors=True)
        shutil.copytree(src["repo"], r, symlinks=True)
        pair.append(r)
    theirs, ours = pair
    for name in (f"{a}-{b}", f"{a}-{b}", "nosuchrev", a):
        t = ostree(f"--repo={theirs}", "static-delta", "delete", name, check=False)
        o = sysroot(f"--repo={ours}", "static-delta", "delete", name, check=False)
        assert (o.returncode, o.stdout) == (t.returncode, t.stdout)
        assert [d[1:] for d in sorted(os.walk(ours / "deltas"))] == [
            d[1:] for d in sorted(os.walk(theirs / "deltas"))
        ]


# ---------------------------------------------------------------- hostile deltas


def _encode_ops(ops: list[sd.Op]) -> bytes:
    return b"".join(bytes([op.code]) + b"".join(leb128.encode(a) for a in op.args) for op in ops)


def _rewrite(delta_dir: Path, mutate) -> None:
    """Re-encode part 0 uncompressed after mutate(objects, modes, xattrs, blob, ops)
    returns new (modes, xattrs, blob, ops), with a matching checksum in the superblock:
    only the interpreter can catch what mutate did."""
    sb_type = sd._SUPERBLOCK_READ_TYPE
    fields = list(gvariant.decode(sb_type, (delta_dir / "superblock").read_bytes()))
    payload = sd.decompress_part((delta_dir / "0").read_bytes(), None)
    modes, xattrs, blob, ops = gvariant.decode(sd.PART_PAYLOAD_TYPE, payload)
    header = sd.parse_superblock((delta_dir / "superblock").read_bytes()).parts[0]
    new = mutate(header.objects, modes, xattrs, bytearray(blob), sd.iter_ops(ops, header.objects))
    part = b"\0" + gvariant.encode(sd.PART_PAYLOAD_TYPE, new)
    (delta_dir / "0").write_bytes(part)
    v, _, _, usize, objs = fields[6][0]
    fields[6] = [(v, hashlib.sha256(part).digest(), len(part), usize, objs), *fields[6][1:]]
    (delta_dir / "superblock").write_bytes(gvariant.encode(sb_type, tuple(fields)))


def _first(ops: list[sd.Op], code: sd.OpCode) -> int:
    return next(i for i, op in enumerate(ops) if op.code is code)


def _unknown_opcode(objects, modes, xattrs, blob, ops):
    return modes, xattrs, bytes(blob), b"\x01" + _encode_ops(ops)


def _truncated_varint(objects, modes, xattrs, blob, ops):
    return modes, xattrs, bytes(blob), _encode_ops(ops) + b"r\xff"


def _short_blob(objects, modes, xattrs, blob, ops):
    return modes, xattrs, bytes(blob[: len(blob) // 2]), _encode_ops(ops)


def _bspatch_past_end(objects, modes, xattrs, blob, ops):
    offset = ops[_first(ops, sd.OpCode.BSPATCH)].args[0]
    blob[offset : offset + 8] = (1 << 30).to_bytes(8, "little")  # ctrl0: 1 GiB of diff
    return modes, xattrs, bytes(blob), _encode_ops(ops)


def _write_past_object(objects, modes, xattrs, blob, ops):
    i = _first(ops, sd.OpCode.OPEN)
    m, x, size = ops[i].args
    ops[i] = sd.Op(sd.OpCode.OPEN, (m, x, size - 1))
    return modes, xattrs, bytes(blob), _encode_ops(ops)


def _flipped_content(objects, modes, xattrs, blob, ops):
    # the last 'S' of a non-empty regular file: flip the first byte of its data
    i = max(
        n
        for n, op in enumerate(ops)
        if op.code is sd.OpCode.OPEN_SPLICE_AND_CLOSE
        and len(op.args) == 4
        and op.args[2]
        and stat.S_ISREG(bswap32(modes[op.args[0]][2]))
    )
    blob[ops[i].args[3]] ^= 0xFF
    return modes, xattrs, bytes(blob), _encode_ops(ops)


def _bad_mode_index(objects, modes, xattrs, blob, ops):
    i = _first(ops, sd.OpCode.OPEN)
    ops[i] = sd.Op(sd.OpCode.OPEN, (10**6, *ops[i].args[1:]))
    return modes, xattrs, bytes(blob), _encode_ops(ops)


def _one_object_too_many(objects, modes, xattrs, blob, ops):
    return modes, xattrs, bytes(blob), _encode_ops(ops) + b"c"


def _flip_file(name: str, at: int):
    def corrupt(d: Path) -> None:
        data = bytearray((d / name).read_bytes())
        data[at if at >= 0 else len(data) + at] ^= 0x01
        (d / name).write_bytes(bytes(data))

    return corrupt


def _truncate_file(name: str, keep: int):
    def corrupt(d: Path) -> None:
        (d / name).write_bytes((d / name).read_bytes()[:keep])

    return corrupt


def _compression(d: Path) -> None:
    (d / "0").write_bytes(b"g" + (d / "0").read_bytes()[1:])


HOSTILE = {
    "superblock-truncated-10": _truncate_file("superblock", 10),
    "superblock-truncated-half": lambda d: _truncate_file(
        "superblock", len((d / "superblock").read_bytes()) // 2
    )(d),
    "superblock-empty": _truncate_file("superblock", 0),
    "superblock-framing": _flip_file("superblock", -1),
    "superblock-commit-byte": _flip_file("superblock", 120),
    "part-flipped": _flip_file("0", 1000),
    "part-truncated": _truncate_file("0", 5000),
    "part-missing": lambda d: (d / "0").unlink(),
    "part-compression": _compression,
    "unknown-opcode": lambda d: _rewrite(d, _unknown_opcode),
    "truncated-varint": lambda d: _rewrite(d, _truncated_varint),
    "blob-offsets": lambda d: _rewrite(d, _short_blob),
    "bspatch-out-of-bounds": lambda d: _rewrite(d, _bspatch_past_end),
    "write-past-object": lambda d: _rewrite(d, _write_past_object),
    "content-mismatch": lambda d: _rewrite(d, _flipped_content),
    "mode-index": lambda d: _rewrite(d, _bad_mode_index),
    "extra-close": lambda d: _rewrite(d, _one_object_too_many),
}


# what the one line must say: the first thing wrong, not a later consequence
REASON = {
    "superblock-truncated-10": "Invalid delta superblock",
    "superblock-truncated-half": "Invalid delta superblock",
    "superblock-empty": "Invalid delta superblock",
    "superblock-framing": "Invalid delta superblock",
    "superblock-commit-byte": "Corrupted commit object",
    "part-flipped": "Checksum mismatch in static delta part",
    "part-truncated": "Checksum mismatch in static delta part",
    "part-missing": "not found",
    "part-compression": "Checksum mismatch in static delta part",
    "unknown-opcode": "Unknown opcode 1 at offset 0",
    "truncated-varint": "Unexpected EOF reading varint",
    "blob-offsets": "Invalid offset/length",
    "bspatch-out-of-bounds": "bspatch: diff data would write past the new file",
    "write-past-object": "writes past the end of its object",
    "content-mismatch": "Corrupted file object",
    "mode-index": "Invalid mode/xattr index",
    "extra-close": "more operations than objects",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_delta_fails_in_one_line_storing_nothing(ostree, sysroot, src, case):
    repo, a = src["repo"], src["a"]
    delta = src["base"] / f"hostile-{case}"
    shutil.rmtree(delta, ignore_errors=True)
    shutil.copytree(src["out"] / "offline", delta)
    HOSTILE[case](delta)
    (target,) = _twins(ostree, src["base"], f"h-{case}", with_a=(repo, a))[1:]
    ostree(f"--repo={target}", "refs", "--create=keep", a)
    before, refs = _objects(target), _refs(target)
    proc = sysroot(f"--repo={target}", "static-delta", "apply-offline", delta, check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert REASON[case] in err
    assert _objects(target) == before and _refs(target) == refs
    assert not [p for p in (target / "tmp").iterdir() if p.name.startswith("staging-")]
    ostree(f"--repo={target}", "fsck")
    if case != "bspatch-out-of-bounds":  # 2022.7 has no bounds check there (it aborts)
        theirs = ostree(f"--repo={target}", "static-delta", "apply-offline", delta, check=False)
        assert theirs.returncode != 0


# ---------------------------------------------------------------- signatures


def test_detached_metadata_and_signed_superblocks(ostree, sysroot, src):
    """A delta of a signed commit carries the signature (written with the commit); a
    signed superblock applies unverified without keys unless sign-verify-deltas is on,
    as 2022.7 does."""
    base, a = src["base"], src["a"]
    env = {**os.environ, "OSTREE_DUMMY_SIGN_ENABLED": "1"}
    repo = base / "signed-src"
    shutil.rmtree(repo, ignore_errors=True)
    ostree("init", f"--repo={repo}", "--mode=archive")
    ostree(f"--repo={repo}", "pull-local", "--depth=0", src["repo"], a)
    ostree(f"--repo={repo}", "sign", "--sign-type=dummy", a, "secret", env=env)
    out = base / "signed-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    ostree(
        f"--repo={repo}",
        "static-delta",
        "generate",
        "--empty",
        f"--to={a}",
        "--min-fallback-size=0",
        "--sign-type=dummy",
        "--sign=secret",
        f"--filename={out / 'superblock'}",
        env=env,
    )
    assert (out / "superblock").read_bytes().startswith(b"OSTSGNDT")
    theirs, ours = _twins(ostree, base, "signed")
    ostree(f"--repo={theirs}", "static-delta", "apply-offline", out)
    sysroot(f"--repo={ours}", "static-delta", "apply-offline", out)
    objs = _objects(ours)
    assert objs == _objects(theirs)
    assert f"objects/{a[:2]}/{a[2:]}.commitmeta" in objs
    ostree(f"--repo={ours}", "fsck")
    shown = sysroot(f"--repo={ours}", "static-delta", "show", out / "superblock", check=False)
    assert b"Signed: yes\n" in shown.stdout
    strict, _ = _twins(ostree, base, "signed-strict")
    ostree(f"--repo={strict}", "config", "set", "core.sign-verify-deltas", "true")
    o = sysroot(f"--repo={strict}", "static-delta", "apply-offline", out, check=False)
    t = ostree(f"--repo={strict}", "static-delta", "apply-offline", out, check=False)
    assert o.returncode == t.returncode == 1
    assert o.stderr == b"error: Key is mandatory to check delta signature\n"
    assert _objects(strict) == {}


def test_apply_offline_bsdiff_and_rollsum_into_an_archive_repo(ostree, sysroot, src):
    """ostree 2022.7 aborts here ('o' asserts a bare mode); sysroot writes .filez objects
    through its normal path: the result equals ostree's pull-local of the same commit."""
    repo, a, b = src["repo"], src["a"], src["b"]
    theirs, ours = _twins(ostree, src["base"], "archive", "archive", with_a=(repo, a))
    ostree(f"--repo={theirs}", "pull-local", repo, b)
    sysroot(f"--repo={ours}", "static-delta", "apply-offline", src["out"] / "offline")
    assert set(_objects(ours)) == set(_objects(theirs))
    ostree(f"--repo={ours}", "fsck")


def _signed_delta(ostree, src) -> Path:
    """A scratch delta of A, its superblock signed with the dummy key `secret`."""
    out = src["base"] / "dummy-signed"
    if not (out / "superblock").exists():
        out.mkdir(exist_ok=True)
        ostree(
            f"--repo={src['repo']}",
            "static-delta",
            "generate",
            "--empty",
            f"--to={src['a']}",
            "--min-fallback-size=0",
            "--sign-type=dummy",
            "--sign=secret",
            f"--filename={out / 'superblock'}",
            env={**os.environ, "OSTREE_DUMMY_SIGN_ENABLED": "1"},
        )
    return out


@pytest.mark.parametrize(
    "keys, enabled, unsigned",
    [
        (["secret"], True, False),
        (["wrong"], True, False),
        (["wrong", "secret"], True, False),
        (["secret"], False, False),
        (["secret"], True, True),
    ],
)
def test_verify_dummy_matches_ostree(ostree, sysroot, src, keys, enabled, unsigned):
    delta = _signed_delta(ostree, src)
    a = src["a"]
    path = (
        f"{src['repo']}/deltas/{sd.mbase64(a)[:2]}/{sd.mbase64(a)[2:]}/superblock"
        if unsigned
        else str(delta / "superblock")
    )
    env = {**os.environ, "OSTREE_DUMMY_SIGN_ENABLED": "1" if enabled else "0"}
    args = [f"--repo={src['repo']}", "static-delta", "verify", "--sign-type=dummy", path, *keys]
    theirs = ostree(*args, check=False, env=env)
    ours = sysroot(*args, check=False, env=env)
    assert (ours.returncode, ours.stdout, ours.stderr) == (
        theirs.returncode,
        theirs.stdout,
        theirs.stderr,
    )


@pytest.mark.parametrize("key", ["secret", "wrong"])
def test_apply_offline_with_keys_matches_ostree(ostree, sysroot, src, key):
    delta = _signed_delta(ostree, src)
    env = {**os.environ, "OSTREE_DUMMY_SIGN_ENABLED": "1"}
    theirs, ours = _twins(ostree, src["base"], f"keyed-{key}")
    args = ["static-delta", "apply-offline", "--sign-type=dummy", delta, key]
    t = ostree(f"--repo={theirs}", *args, check=False, env=env)
    o = sysroot(f"--repo={ours}", *args, check=False, env=env)
    assert (o.returncode, o.stdout, o.stderr) == (t.returncode, t.stdout, t.stderr)
    assert _objects(ours) == _objects(theirs)
    assert bool(_objects(ours)) is (key == "secret")


def test_ed25519_signed_superblock(ostree, sysroot, src, tmp_path):
    """Debian's 2022.7 has no ed25519: the superblock is wrapped here as §2.6 says, then
    verified and applied by sysroot; the objects equal ostree's apply of the unsigned
    delta."""
    a = src["a"]
    scratch = src["repo"] / "deltas" / sd.mbase64(a)[:2] / sd.mbase64(a)[2:]
    delta = tmp_path / "ed-delta"
    shutil.copytree(scratch, delta)
    inner = (scratch / "superblock").read_bytes()
    secret, other = ed25519.generate_secret_key(), ed25519.generate_secret_key()
    sig = ed25519.sign(inner, secret)
    magic = int.from_bytes(sd.SIGNED_MAGIC, "little")  # `t` written big-endian
    sigs = {"ostree.sign.ed25519": gvariant.Variant("aay", [sig])}
    (delta / "superblock").write_bytes(gvariant.encode(sd.SIGNED_TYPE, (magic, inner, sigs)))
    public, wrong = (ed25519.encode_key(k[32:]) for k in (secret, other))
    repo = f"--repo={src['repo']}"
    ok = sysroot(repo, "static-delta", "verify", delta, public)
    assert ok.stdout == b"Verification OK\n"
    bad = sysroot(repo, "static-delta", "verify", delta, wrong, check=False)
    assert bad.returncode == 1 and bad.stdout == b"Verification fails\n"
    assert bad.stderr.startswith(b"error: signature: ed25519: no valid ed25519 signatures")
    theirs, ours = _twins(ostree, src["base"], "ed25519")
    ostree(f"--repo={theirs}", "static-delta", "apply-offline", scratch)
    o = sysroot(f"--repo={ours}", "static-delta", "apply-offline", delta, wrong, check=False)
    assert o.returncode == 1 and _objects(ours) == {}
    sysroot(f"--repo={ours}", "static-delta", "apply-offline", delta, public)
    assert _objects(ours) == _objects(theirs)
