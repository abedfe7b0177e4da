"""pull-local against the real ostree: every mode pair, corruption, resume, options.

Source repositories are written by ostree; sysroot pulls from them, then ostree checks
the result (fsck, checkout, and pulling onwards with --untrusted, which re-verifies
every object sysroot wrote).
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import COMMIT_ARGS, make_rich_tree, one_error_line

RICH = "main"  # the rich tree, with setuid/setgid files and xattrs
CANON = "canon"  # the same tree committed with --canonical-permissions


def tree_signature(root: Path) -> dict[str, tuple]:
    """Everything a checkout must reproduce, per relative path."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            xattrs = tuple(
                sorted(
                    (n, os.getxattr(path, n, follow_symlinks=False))
                    for n in os.listxattr(path, follow_symlinks=False)
                )
            )
            if stat.S_ISLNK(st.st_mode):
                body = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                body = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            else:
                body = None
            out[rel] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode) if not stat.S_ISLNK(st.st_mode) else None,
                st.st_uid,
                st.st_gid,
                body,
                xattrs,
            )
    return out


def object_names(repo: Path) -> set[str]:
    return {
        str(p.relative_to(repo / "objects"))
        for p in (repo / "objects").rglob("*")
        if not p.is_dir()
    }


def init(ostree, path: Path, mode: str) -> Path:
    ostree("init", f"--repo={path}", f"--mode={mode}")
    return path


def copy_repo(src: Path, dst: Path) -> Path:
    """A private copy to damage (ostree's own pulls would hardlink the shared objects)."""
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    return dst


def assert_untouched(ostree, repo: Path) -> None:
    """A failed pull leaves no ref, no partial marker, no staging dir; fsck is clean."""
    assert ostree.out("refs", f"--repo={repo}") == ""
    assert list((repo / "state").iterdir()) == []
    assert [p.name for p in (repo / "tmp").iterdir() if p.name.startswith("staging")] == []
    ostree("fsck", f"--repo={repo}")


@pytest.fixture(scope="module")
def sources(tmp_path_factory, ostree) -> dict[str, Path]:
    """Repos in every mode made by ostree from the rich tree (big file cut to 1.5 MiB)."""
    base = tmp_path_factory.mktemp("sources")
    tree = make_rich_tree(base / "tree")
    (tree / "usr/share/big").write_bytes(os.urandom(3 << 19))  # two read chunks
    repos = {"bare": init(ostree, base / "bare", "bare")}
    ostree("commit", f"--repo={repos['bare']}", "-b", RICH, *COMMIT_ARGS, str(tree))
    ostree(
        "commit",
        f"--repo={repos['bare']}",
        "-b",
        CANON,
        "--canonical-permissions",
        *COMMIT_ARGS,
        str(tree),
    )
    for mode in ("archive", "bare-user"):
        repos[mode] = init(ostree, base / mode, mode)
        ostree("pull-local", f"--repo={repos[mode]}", str(repos["bare"]), RICH, CANON)
    repos["bare-user-only"] = init(ostree, base / "bare-user-only", "bare-user-only")
    ostree("pull-local", f"--repo={repos['bare-user-only']}", str(repos["bare"]), CANON)
    repos["tree"] = tree
    return repos


def checkout(ostree, repo: Path, ref: str, dest: Path) -> dict[str, tuple]:
    ostree("checkout", f"--repo={repo}", ref, str(dest))
    return tree_signature(dest)


PAIRS = [
    ("bare", "archive", RICH),
    ("archive", "bare", RICH),
    ("bare-user", "bare", RICH),
    ("bare", "bare-user-only", CANON),
    ("archive", "archive", RICH),
    ("bare-user-only", "bare-user", CANON),
    ("archive", "bare-user", RICH),
]


@pytest.mark.parametrize(
    ("src_mode", "dst_mode", "ref"), PAIRS, ids=[f"{s}->{d}" for s, d, _ in PAIRS]
)
def test_pull_between_modes(tmp_path, ostree, sysroot, sources, src_mode, dst_mode, ref):
    src = sources[src_mode]
    dst = init(ostree, tmp_path / "dst", dst_mode)
    ours = sysroot("pull-local", f"--repo={dst}", str(src), ref)
    ostree("fsck", f"--repo={dst}")
    commit = ostree.out("rev-parse", f"--repo={src}", ref)
    assert ostree.out("rev-parse", f"--repo={dst}", ref) == commit

    # the same objects ostree itself would have written, and the same report
    ref_dst = init(ostree, tmp_path / "oracle", dst_mode)
    theirs = ostree("pull-local", f"--repo={ref_dst}", str(src), ref)
    assert object_names(dst) == object_names(ref_dst)
    # the same report: same-mode pulls hard-link the content and count 0 bytes written
    assert ours.stdout == theirs.stdout

    # the pulled commit checks out to exactly the source's tree
    assert checkout(ostree, dst, ref, tmp_path / "co-dst") == checkout(
        ostree, src, ref, tmp_path / "co-src"
    )
    if ref == RICH and dst_mode != "bare-user-only":
        # ownership, setuid bits and xattrs included
        assert checkout(ostree, dst, ref, tmp_path / "co-2") == tree_signature(sources["tree"])

    # and ostree, verifying every object, can pull what we wrote back into the source mode
    onward = init(ostree, tmp_path / "onward", src_mode)
    ostree("pull-local", "--untrusted", f"--repo={onward}", str(dst), ref)
    ostree("fsck", f"--repo={onward}")


def test_rerun_copies_nothing(tmp_path, ostree, sysroot, sources):
    dst = init(ostree, tmp_path / "dst", "archive")
    sysroot("pull-local", f"--repo={dst}", str(sources["bare"]), RICH)
    before = {
        p: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (dst / "objects").rglob("*")
        if p.is_file()
    }
    again = sysroot.out("pull-local", f"--repo={dst}", str(sources["bare"]), RICH)
    assert again == "0 metadata, 0 content objects imported; 0 bytes content written"
    after = {
        p: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (dst / "objects").rglob("*")
        if p.is_file()
    }
    assert before == after


def _corrupt_content(repo: Path) -> str:
    """Flip a byte in the payload of the largest regular content object; its checksum."""
    objs = [p for p in (repo / "objects").rglob("*.file*") if p.is_file() and not p.is_symlink()]
    victim = max(objs, key=lambda p: p.stat().st_size)
    with open(victim, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0xFF]))
    return victim.parent.name + victim.name.split(".")[0]


def test_corrupted_content_fails_cleanly(tmp_path, ostree, sysroot, sources):
    src = copy_repo(sources["bare"], tmp_path / "src")
    bad = _corrupt_content(src)
    dst = init(ostree, tmp_path / "dst", "archive")
    line = one_error_line(sysroot("pull-local", f"--repo={dst}", str(src), check=False))
    assert f"Corrupted file object {bad}" in line
    assert_untouched(ostree, dst)
    # --untrusted ostree agrees the source is bad
    assert (
        ostree("pull-local", "--untrusted", f"--repo={dst}", str(src), check=False).returncode != 0
    )


def _inodes(repo: Path) -> dict[str, int]:
    return {
        str(p.relative_to(repo / "objects")): p.lstat().st_ino
        for p in (repo / "objects").rglob("*.file*")
    }


@pytest.mark.parametrize("mode", ["bare", "bare-user", "archive"])
def test_same_mode_content_is_hard_linked_as_ostree_does(tmp_path, ostree, sysroot, sources, mode):
    """Trusted (ostree's default) and of one mode on one file system: each content
    object is the source's file, linked, as ostree links it; --untrusted reads and
    hashes every object into a copy of its own."""
    src = copy_repo(sources[mode], tmp_path / "src")
    theirs = init(ostree, tmp_path / "theirs", mode)
    ostree("pull-local", f"--repo={theirs}", str(src), RICH)
    ours = init(ostree, tmp_path / "ours", mode)
    sysroot("pull-local", f"--repo={ours}", str(src), RICH)
    linked = _inodes(ours)
    assert linked == _inodes(theirs) and linked.items() <= _inodes(src).items()
    ostree("fsck", f"--repo={ours}")
    copied = init(ostree, tmp_path / "copied", mode)
    sysroot("pull-local", "--untrusted", f"--repo={copied}", str(src), RICH)
    mine = _inodes(copied)
    assert mine.keys() == linked.keys()
    assert not set(mine.values()) & set(_inodes(src).values())
    # an untrusted pull notices a damaged source object; a trusted one takes the
    # source as it is, as ostree does (its fsck finds it)
    bad = _corrupt_content(src)
    fresh = init(ostree, tmp_path / "fresh", mode)
    r = sysroot("pull-local", "--untrusted", f"--repo={fresh}", str(src), RICH, check=False)
    assert f"Corrupted file object {bad}" in one_error_line(r)
    assert_untouched(ostree, fresh)


def test_other_modes_are_copied(tmp_path, ostree, sysroot, sources):
    dst = init(ostree, tmp_path / "dst", "bare-user")
    sysroot("pull-local", f"--repo={dst}", str(sources["bare"]), RICH)
    assert not set(_inodes(dst).values()) & set(_inodes(sources["bare"]).values())


def test_corrupted_metadata_fails_cleanly(tmp_path, ostree, sysroot, sources):
    src = copy_repo(sources["archive"], tmp_path / "src")
    dirtrees = sorted((src / "objects").rglob("*.dirtree"), key=lambda p: -p.stat().st_size)
    victim = dirtrees[0]
    data = bytearray(victim.read_bytes())
    data[0] ^= 0x01
    victim.write_bytes(bytes(data))
    name = victim.parent.name + victim.name.split(".")[0]
    dst = init(ostree, tmp_path / "dst", "bare")
    line = one_error_line(sysroot("pull-local", f"--repo={dst}", str(src), check=False))
    assert f"Corrupted dirtree object {name}" in line
    assert_untouched(ostree, dst)


@pytest.mark.parametrize("dst_mode", ["bare-user", "bare"])  # copied; linked
def test_missing_source_object(tmp_path, ostree, sysroot, sources, dst_mode):
    src = copy_repo(sources["bare"], tmp_path / "src")
    next((src / "objects").rglob("*.file")).unlink()
    dst = init(ostree, tmp_path / "dst", dst_mode)
    line = one_error_line(sysroot("pull-local", f"--repo={dst}", str(src), check=False))
    assert "is missing from" in line
    assert_untouched(ostree, dst)
    assert object_names(dst) == set()  # nothing linked or copied stays


def test_bare_user_only_refuses_setuid_like_ostree(tmp_path, ostree, sysroot, sources):
    dst = init(ostree, tmp_path / "dst", "bare-user-only")
    line = one_error_line(
        sysroot("pull-local", f"--repo={dst}", str(sources["bare"]), RICH, check=False)
    )
    assert "invalid mode" in line and "bare-user-only" in line
    assert_untouched(ostree, dst)
    assert (
        ostree("pull-local", f"--repo={dst}", str(sources["bare"]), RICH, check=False).returncode
        != 0
    )
    # --bareuseronly-files applies the same rule to any destination mode
    dst2 = init(ostree, tmp_path / "dst2", "archive")
    one_error_line(
        sysroot(
            "pull-local",
            "--bareuseronly-files",
            f"--repo={dst2}",
            str(sources["bare"]),
            RICH,
            check=False,
        )
    )
    assert_untouched(ostree, dst2)


@pytest.fixture(scope="module")
def chain(tmp_path_factory, ostree) -> Path:
    """A bare repo with a three-commit history on 'main' and a second ref 'side'.

    Tests only read it.
    """
    base = tmp_path_factory.mktemp("chain")
    repo = init(ostree, base / "chain", "bare")
    tree = base / "t"
    tree.mkdir()
    for i in range(3):
        (tree / f"f{i}").write_text(f"content {i}\n")
        ostree(
            "commit",
            f"--repo={repo}",
            "-b",
            "main",
            "-s",
            f"c{i}",
            "--add-detached-metadata-string=sig=fake",
            str(tree),
        )
    ostree("commit", f"--repo={repo}", "-b", "side", "-s", "side", str(tree))
    return repo


@pytest.mark.parametrize("depth", ["0", "1", "-1"])
def test_depth_matches_ostree(tmp_path, ostree, sysroot, depth, chain):
    src = chain
    ours = init(ostree, tmp_path / "ours", "archive")
    theirs = init(ostree, tmp_path / "theirs", "archive")
    sysroot("pull-local", f"--repo={ours}", str(src), "main", f"--depth={depth}")
    ostree("pull-local", f"--repo={theirs}", str(src), "main", f"--depth={depth}")
    assert object_names(ours) == object_names(theirs)
    ostree("fsck", f"--repo={ours}")
    assert ostree.out("log", f"--repo={ours}", "main") == ostree.out(
        "log", f"--repo={theirs}", "main"
    )


def test_default_refs_remote_and_detached_metadata(tmp_path, ostree, sysroot, chain):
    src = chain
    ours = init(ostree, tmp_path / "ours", "bare-user")
    theirs = init(ostree, tmp_path / "theirs", "bare-user")
    sysroot("pull-local", f"--repo={ours}", "--remote=origin", str(src))
    ostree("pull-local", f"--repo={theirs}", "--remote=origin", str(src))
    assert ostree.out("refs", f"--repo={ours}") == ostree.out("refs", f"--repo={theirs}")
    assert (ours / "refs/remotes/origin/main").is_file()
    assert object_names(ours) == object_names(theirs)
    commit = ostree.out("rev-parse", f"--repo={src}", "main")
    meta = f"objects/{commit[:2]}/{commit[2:]}.commitmeta"
    assert (ours / meta).read_bytes() == (src / meta).read_bytes()
    assert (
        ostree.out("show", f"--repo={ours}", "--print-detached-metadata-key=sig", commit)
        == "'fake'"
    )


def test_commit_metadata_only_then_resume(tmp_path, ostree, sysroot, chain):
    src = chain
    ours = init(ostree, tmp_path / "ours", "archive")
    theirs = init(ostree, tmp_path / "theirs", "archive")
    for tool, repo in ((sysroot, ours), (ostree, theirs)):
        tool("pull-local", "--commit-metadata-only", f"--repo={repo}", str(src), "main")
    assert object_names(ours) == object_names(theirs)
    assert sorted(os.listdir(ours / "state")) == sorted(os.listdir(theirs / "state"))
    assert len(os.listdir(ours / "state")) == 1  # the commit is marked partial
    # the full pull completes the partial commit and clears the marker
    sysroot("pull-local", f"--repo={ours}", str(src), "main")
    assert os.listdir(ours / "state") == []
    ostree("fsck", f"--repo={ours}")
    assert object_names(ours) >= object_names(theirs)


def test_pull_by_checksum_writes_no_ref(tmp_path, ostree, sysroot, chain):
    src = chain
    commit = ostree.out("rev-parse", f"--repo={src}", "side")
    dst = init(ostree, tmp_path / "dst", "bare")
    sysroot("pull-local", f"--repo={dst}", str(src), commit)
    assert ostree.out("refs", f"--repo={dst}") == ""
    ostree("fsck", f"--repo={dst}")
    assert ostree.out("rev-parse", f"--repo={dst}", commit) == commit


@pytest.mark.parametrize(
    "args", [["nope"], ["origin:main"], ["main", "--depth=-2"], ["--remote=bad:name", "main"]]
)
def test_bad_arguments_one_line(tmp_path, ostree, sysroot, args, chain):
    src = chain
    dst = init(ostree, tmp_path / "dst", "bare")
    one_error_line(sysroot("pull-local", f"--repo={dst}", str(src), *args, check=False))
    assert_untouched(ostree, dst)


def test_not_a_repository(tmp_path, ostree, sysroot):
    dst = init(ostree, tmp_path / "dst", "bare")
    (tmp_path / "empty").mkdir()
    line = one_error_line(
        sysroot("pull-local", f"--repo={dst}", str(tmp_path / "empty"), check=False)
    )
    assert "empty" in line
