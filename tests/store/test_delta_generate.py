"""static-delta generate and reindex against ostree 2022.7 on the tree of
shared/docs/static-deltas.md's experiment: hundreds of small text files (some edited:
bsdiff), a 512 KiB binary with a local edit (rollsum), a 128 KiB binary with a byte
flipped every 2 KiB (bsdiff), a modified .xz (sent whole), a new 5 MB file (fallback),
an executable with an xattr, symlinks, an empty file.

Object order inside parts follows GLib's hash tables in ostree, so part bytes differ;
what must agree: the objects, the fallbacks, the op counts per kind, the blob sizes,
every bsdiff patch and rollsum op stream byte for byte, sizes within 10%, and each
tool must apply the other's delta."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from pathlib import Path

import pytest

from sysroot.formats import rollsum
from sysroot.formats import static_delta as sd
from sysroot.formats.objects import ObjectType
from sysroot.sign import ed25519
from sysroot.store import static_delta as store_sd

DUMMY = {"OSTREE_DUMMY_SIGN_ENABLED": "1"}


def _tree_v1(root: Path) -> None:
    rnd = random.Random(19)
    words = [rnd.randbytes(4).hex() for _ in range(400)]
    for i in range(300):
        d = root / f"share/d{i % 15}"
        d.mkdir(parents=True, exist_ok=True)
        lines = [" ".join(rnd.choices(words, k=8)) for _ in range(rnd.randint(20, 60))]
        (d / f"f{i}.txt").write_text("\n".join(lines) + "\n")
    (root / "big.bin").write_bytes(rnd.randbytes(512 * 1024))
    (root / "flips.bin").write_bytes(rnd.randbytes(128 * 1024))
    import lzma

    (root / "data.xz").write_bytes(lzma.compress(rnd.randbytes(20_000)))
    tool = root / "bin/tool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o755)
    os.setxattr(tool, "user.test", b"val")
    (root / "empty").write_bytes(b"")
    os.symlink("bin/tool", root / "tool-link")
    (root / "lib").mkdir()
    (root / "lib/libfoo.so.1").write_bytes(rnd.randbytes(40_000))


def _tree_v2(root: Path) -> None:
    rnd = random.Random(20)
    for i in range(0, 300, 10):
        p = root / f"share/d{i % 15}/f{i}.txt"
        p.write_text(p.read_text().replace("a", "A", 3) + "edited\n")
    big = bytearray((root / "big.bin").read_bytes())
    big[300_000:300_200] = rnd.randbytes(200)
    (root / "big.bin").write_bytes(bytes(big))
    flips = bytearray((root / "flips.bin").read_bytes())
    for i in range(0, len(flips), 2048):
        flips[i] ^= 0xFF
    (root / "flips.bin").write_bytes(bytes(flips))
    import lzma

    (root / "data.xz").write_bytes(lzma.compress(rnd.randbytes(20_000)))
    (root / "new.dat").write_bytes(rnd.randbytes(5_000_000))
    # 1 MB minus less than its header: a fallback at --min-fallback-size=1 only because
    # ostree counts the content stream (header + data), not the file
    (root / "edge.dat").write_bytes(rnd.randbytes(999_990))
    os.symlink("new.dat", root / "new-link")
    # renamed and changed: paired by the stem before the first '.' (ostree's fuzzy pass)
    lib = bytearray((root / "lib/libfoo.so.1").read_bytes())
    for i in range(0, len(lib), 1000):
        lib[i] ^= 0x0F
    (root / "lib/libfoo.so.1").unlink()
    (root / "lib/libfoo.so.2").write_bytes(bytes(lib))


@pytest.fixture(scope="module")
def src(tmp_path_factory, ostree):
    base = tmp_path_factory.mktemp("dgen")
    tree = base / "tree"
    _tree_v1(tree)
    repo = base / "repo"
    ostree("init", f"--repo={repo}", "--mode=bare-user")
    ostree(f"--repo={repo}", "commit", "-b", "main", "-s", "v1", "--timestamp=@1000", tree)
    _tree_v2(tree)
    ostree(f"--repo={repo}", "commit", "-b", "main", "-s", "v2", "--timestamp=@2000", tree)
    c1 = ostree.out(f"--repo={repo}", "rev-parse", "main^")
    c2 = ostree.out(f"--repo={repo}", "rev-parse", "main")
    return {"base": base, "repo": repo, "c1": c1, "c2": c2}


def _gen(tool, src, out: Path, *args: str, env=None):
    out.mkdir(parents=True, exist_ok=True)
    return tool(
        f"--repo={src['repo']}",
        "static-delta",
        "generate",
        f"--filename={out / 'superblock'}",
        *args,
        env=env,
    )


def _load(out: Path) -> store_sd.LoadedDelta:
    return store_sd.load_path(str(out / "superblock"))


def _profile(delta: store_sd.LoadedDelta) -> dict:
    """What both generators must agree on, whatever the object order."""
    sb = delta.superblock
    counts = dict.fromkeys(sd.OpCode, 0)
    objects = []
    blob = 0
    for i, part in enumerate(sb.parts):
        p = store_sd.part_payload(delta, i)
        blob += len(p.blob)
        objects += part.objects
        for op in sd.iter_ops(p.ops, part.objects):
            counts[op.code] += 1
    return {
        "objects": sorted(objects),
        "fallbacks": sorted((f.checksum, f.size, f.usize) for f in sb.fallbacks),
        "ops": counts,
        "blob": blob,
        "usize": sum(p.usize for p in sb.parts),
        "nparts": len(sb.parts),
        "commit": sb.commit_bytes,
        "from": sb.from_,
    }


def _size(delta: store_sd.LoadedDelta) -> int:
    return sum(p.size for p in delta.superblock.parts)


CASES = {
    "scratch": ["--empty", "--min-fallback-size=0"],
    "fromto": [],
    "nobsdiff": ["--disable-bsdiff"],
    "nofallback": ["--min-fallback-size=0"],
    "chunked": ["--empty", "--max-chunk-size=1", "--min-fallback-size=0"],
    "bsdiff0": ["--max-bsdiff-size=0", "--min-fallback-size=1"],
}


def _both(ostree, sysroot, src, case: str) -> Path:
    """The case's deltas, by ostree (theirs/) and by sysroot (ours/); made once per
    module, by whichever test asks first."""
    out = src["base"] / "cmp" / case
    if not all((out / who / "superblock").exists() for who in ("theirs", "ours")):
        shutil.rmtree(out, ignore_errors=True)
        args = [f"--to={src['c2']}", *CASES[case]]
        _gen(ostree, src, out / "theirs", *args)
        _gen(sysroot, src, out / "ours", *args)
    return out


@pytest.mark.parametrize("case", CASES)
def test_same_delta_as_ostree(ostree, sysroot, src, case):
    out = _both(ostree, sysroot, src, case)
    theirs, ours = _load(out / "theirs"), _load(out / "ours")
    assert _profile(ours) == _profile(theirs)
    assert abs(_size(ours) - _size(theirs)) <= _size(theirs) // 10, (_size(ours), _size(theirs))
    meta = ours.superblock.metadata
    assert list(meta) == [sd.ENDIANNESS_KEY] and meta[sd.ENDIANNESS_KEY].value == ord("l")
    if case == "fromto":
        counts = _profile(ours)["ops"]
        assert counts[sd.OpCode.BSPATCH] == 32 and len(ours.superblock.fallbacks) == 1


def _ops_by_object(delta: store_sd.LoadedDelta) -> dict[str, list]:
    """Per modified object: its ops with blob ranges replaced by the blob bytes, so two
    deltas with different blob layouts compare equal when they encode the same."""
    out: dict[str, list] = {}
    for i, part in enumerate(delta.superblock.parts):
        p = store_sd.part_payload(delta, i)
        idx, cur, source = 0, [], False
        for op in sd.iter_ops(p.ops, part.objects):
            c, a = op.code, op.args
            if c is sd.OpCode.SET_READ_SOURCE:
                cur.append(("r", p.blob[a[0] : a[0] + 32]))
                source = True
            elif c is sd.OpCode.UNSET_READ_SOURCE:
                if cur:
                    cur.append(("R",))
                source = False
            elif c is sd.OpCode.WRITE:
                cur.append(("w", a) if source else ("w", p.blob[a[1] : a[1] + a[0]]))
            elif c is sd.OpCode.BSPATCH:
                cur.append(("B", p.blob[a[0] : a[0] + a[1]]))
            elif c is sd.OpCode.OPEN:
                cur.append(("o", a[2]))
            elif c is sd.OpCode.CLOSE:
                out[part.objects[idx][1]] = cur
                cur, idx = [], idx + 1
            else:
                idx += 1
    return out


def test_bsdiff_and_rollsum_ops_byte_identical(ostree, sysroot, src):
    out = _both(ostree, sysroot, src, "fromto")
    theirs, ours = _ops_by_object(_load(out / "theirs")), _ops_by_object(_load(out / "ours"))
    # the trailing 'R' of a bsdiff object lands after its 'c': compare up to the 'c'
    assert theirs.keys() == ours.keys() and len(ours) == 33
    assert ours == theirs
    kinds = sorted("B" if any(o[0] == "B" for o in v) else "rollsum" for v in ours.values())
    assert kinds.count("rollsum") == 1


def _repo_with_c1(ostree, src, path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    ostree("init", f"--repo={path}", "--mode=bare-user")
    ostree(f"--repo={path}", "pull-local", src["repo"], src["c1"])
    return path


def _objects(repo: Path) -> set[str]:
    return {str(p.relative_to(repo)) for p in (repo / "objects").rglob("*.*")}


@pytest.mark.parametrize("case", ["nofallback", "inline", "swapped", "chunked"])
def test_ostree_applies_our_delta(ostree, sysroot, src, case):
    extra = {
        "nofallback": [],
        "inline": ["--inline"],
        "swapped": ["--swap-endianness"],
        "chunked": ["--max-chunk-size=1"],
    }[case]
    out = src["base"] / "apply" / case
    _gen(sysroot, src, out, f"--to={src['c2']}", "--min-fallback-size=0", *extra)
    path = out / "superblock"
    if case == "inline":
        assert sorted(os.listdir(out)) == ["superblock"]  # one self-contained file
        path = path.rename(out / "single.delta")
    if case == "chunked":
        assert len(_load(out).superblock.parts) > 1
    for tool in ("ostree", "sysroot"):
        target = _repo_with_c1(ostree, src, src["base"] / f"apply-{case}-{tool}")
        (ostree if tool == "ostree" else sysroot)(
            f"--repo={target}", "static-delta", "apply-offline", path
        )
        ostree(f"--repo={target}", "refs", "--create=main", src["c2"])
        ostree(f"--repo={target}", "fsck")
        assert _objects(target) >= _objects(src["repo"]) - {
            o for o in _objects(src["repo"]) if o.endswith(".commitmeta")
        }


def test_ostree_shows_our_delta_in_repo(ostree, sysroot, src, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(src["repo"], repo, symlinks=True)
    sysroot(f"--repo={repo}", "static-delta", "generate", f"--from={src['c1']}", src["c2"])
    shown = ostree.out(f"--repo={repo}", "static-delta", "show", f"{src['c1']}-{src['c2']}")
    assert "bspatch=32" in shown and "Number of fallback entries: 1" in shown
    listed = ostree.out(f"--repo={repo}", "static-delta", "list")
    assert listed == f"{src['c1']}-{src['c2']}"
    # -n: an existing delta is left alone
    before = (repo / sd.DeltaName(src["c1"], src["c2"]).relpath / "superblock").read_bytes()
    r = sysroot(f"--repo={repo}", "static-delta", "generate", "-n", f"--to={src['c2']}")
    assert r.stdout == f"Delta {src['c1']}-{src['c2']} already exists.\n".encode()
    after = (repo / sd.DeltaName(src["c1"], src["c2"]).relpath / "superblock").read_bytes()
    assert after == before


def test_signed_delta(ostree, sysroot, src, tmp_path):
    dummy = tmp_path / "dummy"
    _gen(sysroot, src, dummy, src["c2"], "--sign-type=dummy", "--sign=deadbeef", env=DUMMY)
    sb = str(dummy / "superblock")
    verify = [f"--repo={src['repo']}", "static-delta", "verify", "--sign-type=dummy", sb]
    r = ostree(*verify, "deadbeef", env=DUMMY)
    assert r.stdout == b"Verification OK\n"
    assert ostree(*verify, "other", env=DUMMY, check=False).returncode != 0
    shown = ostree(f"--repo={src['repo']}", "static-delta", "show", sb, check=False)
    assert b"Signed: yes" in shown.stdout

    secret = ed25519.generate_secret_key()
    public = ed25519.encode_key(secret[32:])
    ed = tmp_path / "ed"
    _gen(sysroot, src, ed, src["c2"], f"--sign={ed25519.encode_key(secret)}")
    sb = str(ed / "superblock")
    verify = [f"--repo={src['repo']}", "static-delta", "verify", sb]
    assert sysroot.out(*verify, public) == "Verification OK"
    other = ed25519.encode_key(ed25519.generate_secret_key()[32:])
    assert sysroot(*verify, other, check=False).returncode != 0
    # the signature covers the unsigned superblock, which ostree parses as ever
    inner, sigs = sd.unwrap_signed((ed / "superblock").read_bytes())
    assert sigs is not None and sd.parse_superblock(inner).to == src["c2"]


def test_reindex_and_summary_match_ostree(ostree, sysroot, src, tmp_path):
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    shutil.copytree(src["repo"], theirs, symlinks=True)
    ostree(f"--repo={theirs}", "static-delta", "generate", "--empty", f"--to={src['c1']}")
    ostree(f"--repo={theirs}", "static-delta", "generate", f"--to={src['c2']}")
    shutil.copytree(theirs, ours, symlinks=True)  # the same superblocks (timestamps)
    ostree(f"--repo={theirs}", "static-delta", "reindex")
    sysroot(f"--repo={ours}", "static-delta", "reindex")

    def indexes(repo: Path) -> dict[str, bytes]:
        d = repo / "delta-indexes"
        return {str(p.relative_to(d)): p.read_bytes() for p in d.rglob("*.index")}

    assert indexes(ours) == indexes(theirs) and len(indexes(ours)) == 2
    assert "indexed-deltas=true" in (ours / "config").read_text()
    # a deleted delta's index goes; --to only touches that TO's index
    for repo, tool in ((theirs, ostree), (ours, sysroot)):
        tool(f"--repo={repo}", "static-delta", "delete", src["c1"])
        tool(f"--repo={repo}", "static-delta", "reindex", f"--to={src['c2']}")
    assert indexes(ours) == indexes(theirs) and len(indexes(ours)) == 2
    for repo, tool in ((theirs, ostree), (ours, sysroot)):
        tool(f"--repo={repo}", "static-delta", "reindex")
    assert indexes(ours) == indexes(theirs) and len(indexes(ours)) == 1
    # summary -u brings the indexes up to date first, as ostree's does
    ostree(f"--repo={theirs}", "static-delta", "generate", "--empty", f"--to={src['c1']}")
    sysroot(f"--repo={ours}", "static-delta", "generate", "--empty", f"--to={src['c1']}")
    ostree(f"--repo={theirs}", "summary", "-u")
    sysroot(f"--repo={ours}", "summary", "-u")
    assert indexes(ours).keys() == indexes(theirs).keys() and len(indexes(ours)) == 2
    shown = ostree.out(f"--repo={ours}", "summary", "--view")
    assert f"{src['c1']}-{src['c2']}" in shown and "ostree.static-deltas" in shown


@pytest.mark.parametrize(
    "args, message",
    [
        (["--to=" + "0" * 64], "0000"),
        (["--to=nosuchref"], "nosuchref"),
        (["--from=" + "1" * 64, "--to=main"], "1111"),
        (["--empty", "--from=main", "--to=main"], "--empty"),
        ([], "TO"),
        (["--to=main", "--max-chunk-size=x"], "--max-chunk-size"),
        (["--to=main", "--set-endianness=q"], "endianness"),
        (["--to=main", "--sign-type=nope", "--sign=k"], "not implemented"),
        (["--to=main", "--sign=notakey"], "ed25519"),
        (["--to=main", "--filename=/nonexistent/dir/superblock"], "/nonexistent/dir"),
    ],
)
def test_bad_arguments_write_nothing(sysroot, src, tmp_path, args, message):
    repo = tmp_path / "repo"
    shutil.copytree(src["repo"], repo, symlinks=True)
    r = sysroot(f"--repo={repo}", "static-delta", "generate", *args, check=False)
    err = r.stderr.decode()
    assert r.returncode != 0 and len(err.strip().splitlines()) == 1, err
    assert message in err
    assert not (repo / "deltas").exists() or not any((repo / "deltas").iterdir())


def test_no_parent_without_empty(ostree, sysroot, src, tmp_path):
    for tool in (ostree, sysroot):
        r = tool(f"--repo={src['repo']}", "static-delta", "generate", src["c1"], check=False)
        assert r.returncode == 1 and f"Commit {src['c1']} has no parent" in r.stderr.decode()


def test_rollsum_cut_matches_bupsplit_byte_loop():
    rnd = random.Random(3)
    for n in (0, 1, 63, 64, 65, 5000, 40_000, 70_000):
        data = rnd.randbytes(n)
        cutter = rollsum.Cutter(data)
        for start in {0, 1, n // 3, n, *range(0, n, 97)}:
            assert cutter.find(start) == rollsum.find_cut_reference(data, start)
    zeros = bytes(100_000)  # never cuts: fixed 32 KiB chunks
    assert [c.length for c in rollsum.chunks(zeros)] == [32768, 32768, 32768, 1696]


def test_part_checksums_and_objects_are_checked(ostree, sysroot, src):
    """Each part file hashes to its header checksum and lists only TO's new objects."""
    out = _both(ostree, sysroot, src, "chunked") / "ours"
    d = _load(out)
    for i, part in enumerate(d.superblock.parts):
        data = (out / str(i)).read_bytes()
        assert hashlib.sha256(data).hexdigest() == part.checksum and len(data) == part.size
        assert all(
            t in (ObjectType.FILE, ObjectType.DIR_TREE, ObjectType.DIR_META)
            for t, _ in part.objects
        )


def test_commit_signatures_travel_in_the_superblock(ostree, sysroot, src, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(src["repo"], repo, symlinks=True)
    c2 = src["c2"]
    ostree(f"--repo={repo}", "sign", "--sign-type=dummy", c2, "sekrit", env=DUMMY)
    deltas = {}
    for who, tool in (("theirs", ostree), ("ours", sysroot)):
        out = tmp_path / who
        out.mkdir()
        tool(
            f"--repo={repo}",
            "static-delta",
            "generate",
            "--min-fallback-size=0",
            "--inline",
            f"--filename={out / 'superblock'}",
            c2,
        )
        deltas[who] = _load(out).superblock
    key = f"{sd.DeltaName(src['c1'], c2).relpath}/commitmeta"
    theirs, ours = deltas["theirs"].metadata, deltas["ours"].metadata
    assert list(ours) == list(theirs) and key in ours
    assert ours[key].value == theirs[key].value
    target = _repo_with_c1(ostree, src, tmp_path / "target")
    ostree(f"--repo={target}", "static-delta", "apply-offline", tmp_path / "ours/superblock")
    assert (target / "objects" / c2[:2] / f"{c2[2:]}.commitmeta").exists()


def test_archive_source_repo(ostree, sysroot, src, tmp_path):
    """From an archive repository: the same delta as ostree's from it (fallback sizes
    are the .filez sizes there), and it applies."""
    archive = tmp_path / "archive"
    ostree("init", f"--repo={archive}", "--mode=archive")
    ostree(f"--repo={archive}", "pull-local", "--depth=1", src["repo"], "main")
    mirror = dict(src, repo=archive)
    for who, tool in (("theirs", ostree), ("ours", sysroot)):
        _gen(tool, mirror, tmp_path / who, f"--to={src['c2']}", "--min-fallback-size=1")
    theirs, ours = _load(tmp_path / "theirs"), _load(tmp_path / "ours")
    assert _profile(ours) == _profile(theirs) and len(ours.superblock.fallbacks) == 2
    fb = {f.checksum: f.size for f in ours.superblock.fallbacks}
    for csum, size in fb.items():
        assert (archive / "objects" / csum[:2] / f"{csum[2:]}.filez").stat().st_size == size


def test_damaged_object_fails_and_writes_nothing(ostree, sysroot, src, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(src["repo"], repo, symlinks=True)
    ls = ostree.out(f"--repo={repo}", "ls", "-C", "-d", src["c2"], "/share/d0")
    tree = ls.split()[4]  # the dirtree checksum of /share/d0, new in c2
    path = repo / "objects" / tree[:2] / f"{tree[2:]}.dirtree"
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-1] + b"\x01")
    r = sysroot(f"--repo={repo}", "static-delta", "generate", src["c2"], check=False)
    err = r.stderr.decode()
    assert r.returncode != 0 and len(err.strip().splitlines()) == 1 and tree in err, err
    assert not (repo / "deltas").exists()
