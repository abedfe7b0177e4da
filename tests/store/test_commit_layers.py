"""`sysroot commit --tree=tar=|ref=|dir=` layers against the real `ostree commit`.

Tarballs come from GNU tar, from Python's tarfile and from hand-made member lists that
pin down libostree's rules (missing parents, root metadata, hardlinks, pax xattrs).
Layers are overlaid in order; file<->directory replacement is an error in both tools.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import COMMIT_ARGS
from tests.helpers.twins import CommitTwins, commit_twins, run_sysroot
from tests.store.test_commit_oracle import MODES, make_extra_shapes

R, D, L, S = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE


@dataclass
class M:
    """A tar member to write: name, type, then what that type needs."""

    name: str
    type: bytes = R
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    link: str = ""
    pax: dict | None = None


def write_tar(path: Path, members: list[M], fmt=tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(path, "w", format=fmt) as t:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type, info.mode, info.uid, info.gid = m.type, m.mode, m.uid, m.gid
            info.linkname = m.link
            if m.pax:
                info.pax_headers = m.pax
            info.size = len(m.data) if m.type == R else 0
            t.addfile(info, io.BytesIO(m.data) if m.type == R else None)
    return path


ROOT = M("./", D, mode=0o755)
TIMESTAMP = "@1700000000"


@pytest.fixture
def pair(tmp_path, ostree):
    """A fresh pair, for tests that change the config or look at the whole repo."""
    return lambda mode="archive": commit_twins(ostree, tmp_path, mode, TIMESTAMP)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, ostree):
    """One pair per mode for the module; tests using it only add their own branches."""
    cache: dict[str, CommitTwins] = {}

    def get(mode: str = "archive") -> CommitTwins:
        if mode not in cache:
            cache[mode] = commit_twins(ostree, tmp_path_factory.mktemp("pairs"), mode, TIMESTAMP)
        return cache[mode]

    return get


def branch_absent(p: CommitTwins, branch: str) -> None:
    for repo in (p.o, p.s):
        assert not (repo / "refs/heads" / branch).exists()


@pytest.fixture(scope="module")
def src_tree(tmp_path_factory) -> Path:
    """make_extra_shapes plus a few top-level entries and xattrs; read-only."""
    root = make_extra_shapes(tmp_path_factory.mktemp("src") / "tree")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "usr/bin/tool", 0o755)
    os.setxattr(root / "usr/bin/tool", "user.z", b"1")
    os.setxattr(root / "usr/bin/tool", "user.a", b"2")
    os.link(root / "usr/bin/tool", root / "usr/bin/tool-link")
    os.chmod(root, 0o750)
    return root


def gnu_tar(out: Path, src: Path, options: list[str], members: list[str]) -> Path:
    subprocess.run(
        ["tar", *options, "-C", str(src), "-cf", str(out), *members],
        check=True,
        capture_output=True,
    )
    return out


# ---------------------------------------------------------------- GNU tar and tarfile


@pytest.mark.parametrize("mode", MODES)
def test_gnu_tar_with_xattrs_matches(shared, tmp_path, src_tree, mode):
    tarball = gnu_tar(
        tmp_path / "x.tar", src_tree, ["--format=posix", "--xattrs", "--xattrs-include=*"], ["."]
    )
    p = shared(mode)
    p.same("-b", "gnu-xattrs", *COMMIT_ARGS, f"--tree=tar={tarball}")
    p.fsck_like_ostree()


@pytest.mark.parametrize(
    "variant",
    [
        (["--format=gnu", "-z"], "x.tar.gz"),
        (["--format=ustar", "-J"], "x.tar.xz"),
        (["--format=posix", "-j", "--numeric-owner"], "x.tar.bz2"),
    ],
    ids=["gnu-gzip", "ustar-xz", "posix-bzip2"],
)
def test_gnu_tar_formats_and_compression_match(shared, tmp_path, variant):
    args, name = variant
    src = tmp_path / "src"
    (src / "etc/d").mkdir(parents=True)
    (src / "etc/d/conf").write_text("x = 1\n")
    (src / "etc/big").write_bytes(os.urandom(300_000))
    os.symlink("d/conf", src / "etc/link")
    os.link(src / "etc/d/conf", src / "etc/hard")
    os.chown(src / "etc/d", 12, 34)
    tarball = gnu_tar(tmp_path / name, src, args, ["."])
    shared().same("-b", f"format-{name}", f"--tree=tar={tarball}")


def test_tar_without_root_entry(shared, tmp_path, src_tree):
    """Members "usr/..." etc. without "./": the root has no metadata unless parents are
    autocreated (then 0755 root:root)."""
    tarball = gnu_tar(tmp_path / "x.tar", src_tree, [], ["usr", "extras"])
    p = shared("bare-user")
    err = p.both_fail("-b", "noroot", f"--tree=tar={tarball}")
    assert "empty tree" in err
    branch_absent(p, "noroot")
    p.same("-b", "noroot", "--tar-autocreate-parents", f"--tree=tar={tarball}")


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
def test_python_tarfile_archives_match(shared, tmp_path, src_tree, fmt):
    tarball = tmp_path / "py.tar.gz"
    with tarfile.open(tarball, "w:gz", format=fmt) as t:
        t.add(src_tree, arcname=".")  # hardlinks become LNKTYPE members
    with tarfile.open(tmp_path / "noroot.tar", "w", format=fmt) as t:
        for name in sorted(os.listdir(src_tree)):
            t.add(src_tree / name, arcname=name)
    p = shared("bare-user")
    p.same("-b", f"py-{fmt}", f"--tree=tar={tarball}")
    p.same(
        "-b",
        f"py-noroot-{fmt}",
        "--tar-autocreate-parents",
        f"--tree=tar={tmp_path / 'noroot.tar'}",
    )
    p.fsck()


# ---------------------------------------------------------------- libostree's tar rules


CASES = {
    # Missing parents, autocreated: the root and each directory on the path get 0755
    # and the member's uid/gid, even "a" which the archive had already given 0700.
    "autocreate-resets-parents": [
        M("a/", D, mode=0o700, uid=5, gid=6),
        M("a/b/f", data=b"x", uid=1000, gid=2000),
        M("c/d", data=b"y", uid=7, gid=8),
    ],
    "root-entry-last": [
        M("a/f", data=b"x"),
        M("a", D, mode=0o700, uid=3, gid=3),
        M("./", D, mode=0o750, uid=1, gid=1),
    ],
    "repeated-dir-entry": [
        ROOT,
        M("a", D, mode=0o700, uid=3, gid=3),
        M("a/f", data=b"x"),
        M("a", D, mode=0o711, uid=4, gid=4),
    ],
    "hardlink-before-target": [ROOT, M("h", L, link="f"), M("f", data=b"x")],
    "hardlink-follows-replacement": [
        ROOT,
        M("f", data=b"x"),
        M("h", L, link="f"),
        M("f", data=b"yy", mode=0o600),
    ],
    "hardlink-to-symlink": [ROOT, M("s", S, mode=0o777, link="tgt"), M("h", L, link="s")],
    "hardlink-new-parent": [
        ROOT,
        M("f", data=b"x"),
        M("d/h", L, mode=0o600, uid=9, gid=9, link="./f"),
    ],
    "dot-components": [M(".", D, mode=0o700), M("./a/./b", data=b"x")],
    "double-slash": [M("./", D, mode=0o700), M("a//b", data=b"x")],
    "only-a-subdir": [M("a/", D, mode=0o700, uid=5, gid=5)],
    "empty-archive": [],
    "mode-bits": [
        M("./", D, mode=0o1777),
        M("f", data=b"x", mode=0o6777),
        M("s", S, mode=0o644, link="f"),
    ],
    "pax-xattrs": [
        M(
            "./",
            D,
            mode=0o755,
            pax={
                "SCHILY.xattr.user.zz": "1",
                "SCHILY.xattr.user.aa": "2",
                "SCHILY.xattr.user.empty": "",
            },
        ),
        M("f", pax={"SCHILY.xattr.user.bin": b"\x00\xff\x01".decode("utf-8", "surrogateescape")}),
        M(
            "g",
            pax={
                "LIBARCHIVE.xattr.user.b%3Dx": base64.b64encode(b"\x00\x01").decode(),
                "SCHILY.xattr.user.c": "3",
            },
        ),
        M(
            "dup",
            pax={
                "SCHILY.xattr.user.d": "1",
                "LIBARCHIVE.xattr.user.d": base64.b64encode(b"2").decode(),
            },
        ),
        M("r", pax={"RHT.security.selinux": "system_u:object_r:etc_t:s0"}),
        M("s", S, mode=0o777, link="f", pax={"SCHILY.xattr.user.s": "v"}),
        M("d", D, mode=0o755, pax={"SCHILY.xattr.security.selinux": "x_t\x00"}),
    ],
    "owners": [
        M("./", D, mode=0o1777, uid=3, gid=4, pax={"SCHILY.xattr.user.r": "1"}),
        M("f", data=b"x", mode=0o6775, uid=3, gid=4),
        M("d", D, mode=0o2775, uid=3, gid=4),
        M("d/g", data=b"x", mode=0o664, uid=3, gid=4),
        M("s", S, mode=0o777, uid=3, gid=4, link="f"),
        M("e/x", data=b"x", mode=0o664, uid=5, gid=6),
    ],
}
NEEDS_AUTOCREATE = {
    "autocreate-resets-parents",
    "root-entry-last",
    "hardlink-new-parent",
    "dot-components",
    "double-slash",
    "only-a-subdir",
    "empty-archive",
    "owners",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tar_rules_match(shared, tmp_path, case):
    tarball = write_tar(tmp_path / "x.tar", CASES[case])
    p = shared("archive")
    if case in NEEDS_AUTOCREATE:
        p.both_fail("-b", f"rule-{case}", f"--tree=tar={tarball}")
        branch_absent(p, f"rule-{case}")
    else:
        p.same("-b", f"rule-{case}", f"--tree=tar={tarball}")
    p.same("-b", f"rule-{case}-auto", "--tar-autocreate-parents", f"--tree=tar={tarball}")


@pytest.mark.parametrize("mode", ["bare-user", "bare-user-only"])
def test_tar_modifiers_match(shared, tmp_path, mode):
    """The modifier applies to archive entries but not to autocreated parents, and
    --canonical-permissions (unlike for directories) keeps pax xattrs."""
    owners = write_tar(tmp_path / "owners.tar", CASES["owners"])
    xattrs = write_tar(tmp_path / "xattrs.tar", [m for m in CASES["pax-xattrs"] if m.type != S])
    p = shared(mode)
    for args in (
        ["--owner-uid=77"],
        ["--owner-gid=88"],
        ["--canonical-permissions"],
        ["--no-xattrs"],
    ):
        p.same("-b", "mod-owners", "--tar-autocreate-parents", *args, f"--tree=tar={owners}")
        p.same("-b", "mod-xattrs", *args, f"--tree=tar={xattrs}")
    p.fsck()


def test_tar_xattrs_ignore_disable_xattrs_config(pair, tmp_path):
    tarball = write_tar(tmp_path / "x.tar", CASES["pax-xattrs"])
    p = pair("archive")
    for repo in (p.o, p.s):
        p.ostree("config", f"--repo={repo}", "set", "core.disable-xattrs", "true")
    checksum = p.same("-b", "main", f"--tree=tar={tarball}")
    listing = p.ostree.out("ls", f"--repo={p.s}", "-X", checksum, "/f")
    assert "user.bin" in listing


REFUSED = {
    "dotdot": [ROOT, M("a/../f", data=b"x")],
    "fifo": [ROOT, M("f", tarfile.FIFOTYPE)],
    "chardev": [ROOT, M("f", tarfile.CHRTYPE)],
    "blockdev": [ROOT, M("f", tarfile.BLKTYPE)],
    "hardlink-missing": [ROOT, M("h", L, link="nope")],
    "hardlink-chain": [ROOT, M("h2", L, link="h1"), M("h1", L, link="f"), M("f", data=b"x")],
    "hardlink-to-dir": [ROOT, M("d", D), M("h", L, link="d")],
    "dir-replaced-by-file": [ROOT, M("a", D), M("a/x", data=b"x"), M("a", data=b"x")],
    "file-as-root": [M("./", data=b"x")],
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_tar_refusals_match(shared, tmp_path, case):
    tarball = write_tar(tmp_path / "x.tar", REFUSED[case])
    p = shared("archive")
    p.both_fail("-b", f"refused-{case}", "--tar-autocreate-parents", f"--tree=tar={tarball}")
    branch_absent(p, f"refused-{case}")


@pytest.mark.parametrize(
    "members",
    [
        [ROOT, M("/etc/f", data=b"x")],
        [ROOT, M("f", data=b"x"), M("h", L, link="/f")],
    ],
    ids=["absolute-member", "absolute-hardlink"],
)
def test_absolute_tar_paths_are_refused(tmp_path, members):
    """ostree strips a leading "/"; we refuse such archives rather than guess."""
    tarball = write_tar(tmp_path / "x.tar", members)
    run_sysroot("init", f"--repo={tmp_path / 'r'}", "--mode=archive")
    rc, _, err = run_sysroot(
        "commit",
        f"--repo={tmp_path / 'r'}",
        "-b",
        "main",
        "--tar-autocreate-parents",
        f"--tree=tar={tarball}",
    )
    assert rc != 0 and "Absolute path" in err and len(err.splitlines()) == 1, err
    assert os.listdir(tmp_path / "r/refs/heads") == []


@pytest.mark.parametrize("case", ["file-then-dir", "file-under-file"])
def test_tar_conflicts_that_crash_ostree_are_refused(tmp_path, case):
    """ostree 2022.7 aborts on an assertion for these; we report the conflict."""
    members = {
        "file-then-dir": [ROOT, M("a", data=b"x"), M("a", D)],
        "file-under-file": [ROOT, M("a/", D), M("a/f", data=b"x"), M("a/f/x", data=b"x")],
    }[case]
    tarball = write_tar(tmp_path / "x.tar", members)
    run_sysroot("init", f"--repo={tmp_path / 'r'}", "--mode=archive")
    rc, _, err = run_sysroot(
        "commit",
        f"--repo={tmp_path / 'r'}",
        "-b",
        "main",
        "--tar-autocreate-parents",
        f"--tree=tar={tarball}",
    )
    assert rc != 0 and "Can't replace file with directory" in err, err


@pytest.mark.parametrize(
    "content",
    [b"", b"not a tar archive at all" * 50, "truncated"],
    ids=["empty-file", "garbage", "truncated"],
)
def test_damaged_tarballs_are_refused(shared, tmp_path, content):
    tarball = tmp_path / "x.tar.gz"
    if content == "truncated":
        src = tmp_path / "src"
        src.mkdir()
        (src / "f").write_bytes(os.urandom(100_000))
        gnu_tar(tarball, src, ["-z"], ["."])
        tarball.write_bytes(tarball.read_bytes()[:50_000])
    else:
        tarball.write_bytes(content)
    p = shared("archive")
    err = p.both_fail("-b", "damaged", f"--tree=tar={tarball}")
    if content:
        assert str(tarball) in err
    # (libarchive and we read a zero-length file as an empty archive: no root metadata.)
    branch_absent(p, "damaged")


# ---------------------------------------------------------------- layering


@pytest.fixture(scope="module")
def layer_dirs(tmp_path_factory) -> dict[str, Path]:
    """A: base tree; B: overlaps A compatibly; C: turns A's file into a directory and
    A's directory into a file. Read-only."""
    base = tmp_path_factory.mktemp("layers")
    a, b, c = base / "A", base / "B", base / "C"
    (a / "x").mkdir(parents=True)
    (a / "d/sub").mkdir(parents=True)
    (a / "x/f").write_text("a\n")
    (a / "d/sub/g").write_text("a\n")
    (a / "filething").write_text("file\n")
    os.setxattr(a / "x/f", "user.layer", b"A")
    os.chmod(a, 0o700)
    os.chown(a, 1, 1)
    (b / "x").mkdir(parents=True)
    (b / "newdir").mkdir()
    (b / "x/f").write_text("b\n")
    (b / "x/f2").write_text("b\n")
    (b / "newdir/n").write_text("n\n")
    os.chmod(b, 0o750)
    os.chown(b, 2, 2)
    os.chown(b / "x", 3, 3)
    (c / "filething").mkdir(parents=True)
    (c / "d").write_text("now a file\n")
    return {"A": a, "B": b, "C": c}


def _refs_for(p: CommitTwins, layer_dirs) -> None:
    if not p.has_layer_refs:
        for name in ("A", "B", "C"):
            p.same("-b", name, str(layer_dirs[name]))
        p.has_layer_refs = True


@pytest.mark.parametrize(
    "layers",
    [
        ["dir=A", "dir=B"],
        ["ref=A", "dir=B"],
        ["ref=A", "ref=B"],
        ["dir=B", "ref=A"],
        ["ref=B", "ref=A", "dir=B"],
        ["dir=A", "ref=B", "tar=T"],
    ],
    ids=lambda layers: "+".join(layers),
)
def test_layers_match(shared, layer_dirs, tmp_path, layers):
    p = shared("archive")
    _refs_for(p, layer_dirs)
    tarball = write_tar(
        tmp_path / "t.tar",
        [
            M("./", D, mode=0o711, uid=8, gid=9),
            M("x/f", data=b"from tar\n"),
            M("x/new", data=b"new\n"),
        ],
    )
    specs = []
    for layer in layers:
        kind, name = layer.split("=")
        value = {"dir": str(layer_dirs.get(name)), "ref": name, "tar": str(tarball)}[kind]
        specs.append(f"--tree={kind}={value}")
    checksum = p.same("-b", "layers/" + "_".join(layers).replace("=", "-"), *COMMIT_ARGS, *specs)
    # The last layer's root metadata wins; later files win over earlier ones.
    last_kind, last_name = layers[-1].split("=")
    root = p.ostree.out("ls", f"--repo={p.s}", "-d", checksum, "/").split()[:3]
    if last_kind == "tar":
        assert root == ["d00711", "8", "9"]
    else:
        expected = p.ostree.out("ls", f"--repo={p.s}", "-d", last_name, "/").split()[:3]
        assert root == expected
    p.fsck()


def test_autocreated_tar_parents_reset_the_root_of_earlier_layers(shared, layer_dirs, tmp_path):
    tarball = write_tar(tmp_path / "t.tar", [M("new/deep/f", data=b"x", uid=1000, gid=2000)])
    p = shared("archive")
    p.both_fail("-b", "reset", f"--tree=dir={layer_dirs['A']}", f"--tree=tar={tarball}")
    branch_absent(p, "reset")
    checksum = p.same(
        "-b",
        "reset",
        "--tar-autocreate-parents",
        f"--tree=dir={layer_dirs['A']}",
        f"--tree=tar={tarball}",
    )
    root = p.ostree.out("ls", f"--repo={p.s}", "-d", checksum, "/").split()[:3]
    assert root == ["d00755", "1000", "2000"]


@pytest.mark.parametrize(
    "layers",
    [
        ["dir=A", "dir=C"],
        ["dir=C", "dir=A"],
        ["ref=A", "ref=C"],
        ["ref=C", "dir=A"],
    ],
    ids=lambda layers: "+".join(layers),
)
def test_file_directory_conflicts_fail_in_both(shared, layer_dirs, layers):
    p = shared("archive")
    _refs_for(p, layer_dirs)
    specs = []
    for layer in layers:
        kind, name = layer.split("=")
        specs.append(f"--tree={kind}={layer_dirs[name] if kind == 'dir' else name}")
    err = p.both_fail("-b", "conflict", *specs)
    assert "Can't replace" in err
    branch_absent(p, "conflict")


@pytest.mark.parametrize(
    "modifier",
    [
        ["--owner-uid=9"],
        ["--canonical-permissions"],
        ["--no-xattrs"],
        ["--owner-gid=0", "--consume"],
    ],
    ids=["owner-uid", "canonical", "no-xattrs", "owner-gid-consume"],
)
def test_ref_layers_are_rewritten_by_modifiers(shared, layer_dirs, modifier):
    p = shared("bare-user")
    _refs_for(p, layer_dirs)
    branch = "rewritten/" + "".join(modifier).replace("=", "-").strip("-")
    p.same("-b", branch, *modifier, "--tree=ref=A", "--tree=ref=B")
    p.fsck()


def test_ref_layers_keep_xattrs_despite_disable_xattrs(pair, layer_dirs):
    """core.disable-xattrs drops xattrs read from disk, not those of a stored tree."""
    p = pair("archive")
    _refs_for(p, layer_dirs)
    for repo in (p.o, p.s):
        p.ostree("config", f"--repo={repo}", "set", "core.disable-xattrs", "true")
    kept = p.same("-b", "kept", "--tree=ref=A")
    assert "user.layer" in p.ostree.out("ls", f"--repo={p.s}", "-X", kept, "/x/f")
    dropped = p.same("-b", "dropped", f"--tree=dir={layer_dirs['A']}")
    assert "user.layer" not in p.ostree.out("ls", f"--repo={p.s}", "-X", dropped, "/x/f")
    p.same("-b", "owner", "--owner-uid=0", "--tree=ref=A")


def test_bare_user_only_canonicalizes_pulled_ref_layers(pair, ostree, tmp_path):
    """A non-canonical commit pulled into bare-user-only is rewritten when layered."""
    src_repo = tmp_path / "src-repo"
    tree = tmp_path / "t"
    (tree / "d").mkdir(parents=True)
    (tree / "d/f").write_text("x\n")
    os.chown(tree / "d", 5, 5)
    os.chown(tree / "d/f", 5, 5)
    os.chmod(tree / "d", 0o770)
    ostree("init", f"--repo={src_repo}", "--mode=archive")
    ostree("commit", f"--repo={src_repo}", "-b", "A", str(tree))
    p = pair("bare-user-only")
    for repo in (p.o, p.s):
        ostree("pull-local", f"--repo={repo}", str(src_repo), "A")
    checksum = p.same("-b", "main", "--tree=ref=A")
    assert p.ostree.out("ls", f"--repo={p.s}", "-d", checksum, "/d").split()[:3] == [
        "d00750",
        "0",
        "0",
    ]
    p.fsck_like_ostree()


def test_consume_only_removes_directory_layers(pair, layer_dirs, tmp_path):
    p = pair("bare")
    _refs_for(p, layer_dirs)
    tarball = write_tar(tmp_path / "t.tar", [ROOT, M("t", data=b"t")])
    copies = {}
    for tool in ("o", "s"):
        copies[tool] = tmp_path / f"B-{tool}"
        shutil.copytree(layer_dirs["B"], copies[tool])
    o = p.ostree.out(
        "commit",
        f"--repo={p.o}",
        "-b",
        "main",
        "--consume",
        "--timestamp=@1",
        "--tree=ref=A",
        f"--tree=dir={copies['o']}",
        f"--tree=tar={tarball}",
    )
    rc, s, err = run_sysroot(
        "commit",
        f"--repo={p.s}",
        "-b",
        "main",
        "--consume",
        "--timestamp=@1",
        "--tree=ref=A",
        f"--tree=dir={copies['s']}",
        f"--tree=tar={tarball}",
    )
    assert rc == 0, err
    assert o == s
    assert not copies["o"].exists() and not copies["s"].exists()
    assert tarball.exists()
