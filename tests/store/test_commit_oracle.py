"""`sysroot commit` of directories against the real `ostree commit`.

Same input tree, same options, same metadata: the commit checksums must be equal, and
`ostree fsck` must accept what sysroot wrote. Input that ostree refuses (devices, fifos,
sockets, non-UTF-8 names) is refused too, with one error line and nothing published.

sysroot runs in-process here (the CLI's main(), not a subprocess) to keep the many
commits fast; the refusal tests run the real command line.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
from pathlib import Path

import pytest

from tests.conftest import COMMIT_ARGS, make_rich_tree
from tests.helpers.twins import CommitTwins, commit_twins, run_sysroot

MODES = ["bare", "bare-user", "bare-user-only", "archive"]
SECOND_COMMIT = [
    "-s",
    "Second",
    "--timestamp=2022-06-07 08:09:10",
    "--add-metadata-string=version=42.2",
]


def make_extra_shapes(root: Path) -> Path:
    """Shapes beyond make_rich_tree: every special mode bit, ownership, sizes around the
    read-chunk boundary, names whose byte order differs from locale order, xattrs set
    out of order (and a zero-length one, which ostree ignores)."""
    x = root / "extras"
    x.mkdir(parents=True)
    for name, mode in (
        ("setuid", 0o4711),
        ("setgid", 0o2750),
        ("sticky-file", 0o1644),
        ("all-bits", 0o7777),
        ("no-perms", 0o000),
    ):
        (x / name).write_bytes(name.encode())
        os.chmod(x / name, mode)
    for name, mode in (
        ("sticky-dir", 0o1777),
        ("setgid-dir", 0o2775),
        ("private-dir", 0o700),
        ("ro-dir", 0o555),
    ):
        (x / name).mkdir()
        (x / name / "inside").write_text(name)
        os.chmod(x / name, mode)
    (x / "empty").write_bytes(b"")
    (x / "empty-dirs/inner/innermost").mkdir(parents=True)
    os.symlink("nowhere/at/all", x / "dangling-rel")
    os.symlink("/nonexistent/abs", x / "dangling-abs")
    os.symlink("sticky-dir", x / "link-to-dir")
    os.symlink("ziel-ü/日本", x / "link-ü")
    os.symlink("../" * 6 + "escape", x / "link-up")
    (x / "hl/one").mkdir(parents=True)
    (x / "hl/two").mkdir()
    (x / "hl/one/a").write_bytes(b"three names\n")
    os.link(x / "hl/one/a", x / "hl/one/b")
    os.link(x / "hl/one/a", x / "hl/two/c")
    (x / "sizes").mkdir()
    for size in (1, 4095, 4096, 4097, 65536, (1 << 20) + 1):
        (x / "sizes" / f"s{size}").write_bytes(os.urandom(size))
    (x / "owned").write_text("owned\n")
    os.chown(x / "owned", 1234, 5678)
    os.lchown(x / "dangling-rel", 4321, 8765)
    (x / "owned-dir").mkdir()
    os.chown(x / "owned-dir", 42, 43)
    names = x / "names"
    names.mkdir()
    for n in (
        "É",
        "e",
        "f",
        "Z",
        "a b",
        "a~",
        "a_b",
        "a-b",
        "日本語",
        "😀",
        "-",
        "_",
        "~",
        "x" * 255,
        "ü" * 127,
    ):
        (names / n).write_text(n)
    (names / "Ä-dir").mkdir()
    f = x / "xattr-file"
    f.write_text("x\n")
    os.setxattr(f, "user.zz", b"1")
    os.setxattr(f, "user.aa", b"\x00\xff binary")
    os.setxattr(f, "user.empty", b"")
    os.setxattr(f, "trusted.t", b"trusted")
    os.setxattr(x / "owned-dir", "user.dir-attr", b"d")
    return root


@pytest.fixture(scope="module")
def shapes_tree(tmp_path_factory) -> Path:
    """make_rich_tree without its 10 MiB file, plus make_extra_shapes. Read-only."""
    root = make_rich_tree(tmp_path_factory.mktemp("shapes") / "tree")
    os.unlink(root / "usr/share/big")
    return make_extra_shapes(root)


@pytest.fixture(scope="module")
def full_tree(tmp_path_factory) -> Path:
    """make_rich_tree as it is (with the 10 MiB file). Read-only."""
    return make_rich_tree(tmp_path_factory.mktemp("full") / "tree")


@pytest.fixture
def make_pair(tmp_path, ostree):
    """A fresh pair, for tests that look at refs, objects or config."""
    return lambda mode: commit_twins(ostree, tmp_path, mode)


@pytest.fixture(scope="module")
def shared_pair(tmp_path_factory, ostree):
    """One pair per mode for the whole module: parity tests only add branches."""
    cache: dict[str, CommitTwins] = {}

    def get(mode: str) -> CommitTwins:
        if mode not in cache:
            cache[mode] = commit_twins(ostree, tmp_path_factory.mktemp("pairs"), mode)
        return cache[mode]

    return get


def object_files(repo: Path) -> list[str]:
    return sorted(str(p.relative_to(repo)) for p in (repo / "objects").rglob("*") if not p.is_dir())


def staging_dirs(repo: Path) -> list[str]:
    return [
        n for n in os.listdir(repo / "tmp") if n.startswith("staging-") and not n.endswith("-lock")
    ]


# ---------------------------------------------------------------- checksum parity


@pytest.mark.parametrize("xattr_args", [[], ["--no-xattrs"]], ids=["xattrs", "no-xattrs"])
@pytest.mark.parametrize("mode", MODES)
def test_directory_commits_match(shared_pair, shapes_tree, mode, xattr_args):
    pair = shared_pair(mode)
    branch = f"os/{len(xattr_args)}/main"
    first = pair.commit(
        "-b", branch, *COMMIT_ARGS, *xattr_args, "--add-metadata=count=uint64 7", str(shapes_tree)
    )
    assert first[0] == first[1]
    # A second commit on the branch takes the first as its parent.
    second = pair.commit("-b", branch, *SECOND_COMMIT, *xattr_args, str(shapes_tree))
    assert second[0] == second[1]
    assert second[0] != first[0]
    parent = pair.ostree.out("rev-parse", f"--repo={pair.s}", f"{branch}^")
    assert parent == first[0]
    pair.fsck()


@pytest.mark.parametrize("mode", MODES)
def test_modifier_commits_match(shared_pair, shapes_tree, mode):
    pair = shared_pair(mode)
    for branch, modifier in (
        ("canonical", ["--canonical-permissions"]),
        ("owners", ["--owner-uid=1000", "--owner-gid=1001"]),
        ("uid-only", ["--owner-uid=0"]),
    ):
        o, s = pair.commit("-b", branch, *COMMIT_ARGS, *modifier, str(shapes_tree))
        assert o == s, modifier
    pair.fsck()


@pytest.mark.parametrize("mode", ["bare", "archive"])
def test_ten_mib_file_commit_matches(shared_pair, full_tree, mode):
    pair = shared_pair(mode)
    o, s = pair.commit("-b", "full", *COMMIT_ARGS, str(full_tree))
    assert o == s
    pair.fsck()


def test_disable_xattrs_config_matches(make_pair, shapes_tree):
    pair = make_pair("bare-user")
    for repo in (pair.o, pair.s):
        pair.ostree("config", f"--repo={repo}", "set", "core.disable-xattrs", "true")
    o, s = pair.commit("-b", "main", *COMMIT_ARGS, str(shapes_tree))
    assert o == s
    # The xattrs really were dropped: the same commit with --no-xattrs is identical.
    o2, s2 = pair.commit("-b", "other", *COMMIT_ARGS, "--no-xattrs", str(shapes_tree))
    assert o2 == s2
    assert pair.ostree.out(
        "ls", f"--repo={pair.s}", "-X", "main", "/extras/xattr-file"
    ) == pair.ostree.out("ls", f"--repo={pair.s}", "-X", "other", "/extras/xattr-file")


# ---------------------------------------------------------------- metadata options


@pytest.mark.parametrize(
    "args",
    [
        [
            "-b",
            "a/b",
            "--add-metadata=n=<int32 5>",
            "--add-metadata=l=['x', 'y']",
            "--add-metadata-string=zz=1",
            "--add-metadata-string=aa=2",
        ],
        ["-b", "main", "--bind-ref=zz", "--bind-ref=aa", "--bind-ref=main"],
        ["-b", "main", "--no-bindings", "--bind-ref=ignored"],
        ["--orphan"],
        ["--orphan", "--bind-ref=x"],
        ["--orphan", "-b", "written-anyway"],
        ["-b", "main", "--parent=" + "ab" * 32],
        ["-b", "main", "--parent=none", "--body=multi\nline\n"],
        ["-b", "main", "--timestamp=@1234567890"],
    ],
    ids=[
        "metadata",
        "bind-refs",
        "no-bindings",
        "orphan",
        "orphan-bind-ref",
        "orphan-branch",
        "absent-parent",
        "parent-none",
        "epoch-timestamp",
    ],
)
def test_metadata_options_match(make_pair, tmp_path, args):
    tree = tmp_path / "t"
    (tree / "d").mkdir(parents=True)
    (tree / "d/f").write_text("f\n")
    pair = make_pair("archive")
    o, s = pair.commit(*COMMIT_ARGS, *args, str(tree))
    assert o == s
    o_refs, s_refs = pair.refs()
    assert o_refs == s_refs


def test_collection_binding_and_body_file_match(make_pair, tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "f").write_text("f\n")
    body = tmp_path / "body"
    body.write_text("From a file\n\nwith paragraphs ü\n")
    pair = make_pair("bare-user")
    for repo in (pair.o, pair.s):
        pair.ostree("config", f"--repo={repo}", "set", "core.collection-id", "org.example.Os")
    o, s = pair.commit(
        "-b",
        "main",
        "-s",
        "x",
        f"--body-file={body}",
        "--timestamp=2020-02-02T02:02:02Z",
        str(tree),
    )
    assert o == s


def test_keep_metadata_matches_including_duplicate_keys(make_pair, tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "f").write_text("f\n")
    pair = make_pair("archive")
    o, s = pair.commit(
        "-b",
        "main",
        *COMMIT_ARGS,
        "--add-metadata-string=keep=me",
        "--add-metadata=num=uint32 3",
        str(tree),
    )
    assert o == s
    # ostree appends kept keys after the added ones, so "version" appears twice.
    o, s = pair.commit(
        "-b",
        "main",
        "--timestamp=@1600000000",
        "--keep-metadata=keep",
        "--keep-metadata=num",
        "--keep-metadata=version",
        "--add-metadata-string=version=new",
        str(tree),
    )
    assert o == s
    shown = pair.ostree.out("show", f"--repo={pair.s}", "main", "--print-metadata-key=version")
    assert shown == "'new'"
    # A second level: keep a key of a commit that has a duplicate (first one wins).
    o, s = pair.commit(
        "-b", "main", "--timestamp=@1600000001", "--keep-metadata=version", str(tree)
    )
    assert o == s
    pair.both_fail("-b", "main", "--keep-metadata=missing", str(tree))
    pair.both_fail("-b", "new-branch", "--keep-metadata=keep", str(tree))
    pair.both_fail("-b", "main", "--parent=none", "--keep-metadata=keep", str(tree))


def test_parent_takes_a_checksum_not_a_ref(make_pair, tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "f").write_text("f\n")
    pair = make_pair("bare")
    pair.commit("-b", "main", str(tree))
    pair.both_fail("-b", "other", "--parent=main", str(tree))
    pair.both_fail("-b", "other", "--parent=main^", str(tree))
    assert pair.refs() == (["main"], ["main"])


def test_skip_if_unchanged(make_pair, tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "f").write_text("f\n")
    pair = make_pair("bare")
    first = pair.commit("-b", "main", *COMMIT_ARGS, str(tree))
    assert first[0] == first[1]
    before = object_files(pair.s)
    # Unchanged content: the parent's checksum is printed, nothing is written and the
    # ref stays, even though subject and metadata differ.
    again = pair.commit(
        "-b",
        "main",
        "--skip-if-unchanged",
        "-s",
        "other subject",
        "--add-metadata-string=k=v",
        str(tree),
    )
    assert again == first
    assert object_files(pair.s) == before
    assert (pair.s / "refs/heads/main").read_text().strip() == first[1]
    assert staging_dirs(pair.s) == []
    # A branch without a commit yet, or --parent=none: nothing to compare, so it commits.
    fresh = pair.commit("-b", "fresh", "--skip-if-unchanged", *COMMIT_ARGS, str(tree))
    assert fresh[0] == fresh[1] != first[0]
    nop = pair.commit("-b", "main", "--parent=none", "--skip-if-unchanged", *COMMIT_ARGS, str(tree))
    assert nop[0] == nop[1]
    # Changed content makes a new commit on top.
    (tree / "f").write_text("changed\n")
    changed = pair.commit("-b", "main", "--skip-if-unchanged", *COMMIT_ARGS, str(tree))
    assert changed[0] == changed[1] != first[0]


def test_consume_deletes_the_input_including_its_root(make_pair, shapes_tree, tmp_path):
    pair = make_pair("bare")
    inputs = []
    for tool in ("ostree", "sysroot"):
        copy = tmp_path / f"input-{tool}"
        shutil.copytree(shapes_tree, copy, symlinks=True)
        inputs.append(copy)
    o = pair.ostree.out(
        "commit", f"--repo={pair.o}", "-b", "main", "--consume", *COMMIT_ARGS, str(inputs[0])
    )
    rc, s, err = run_sysroot(
        "commit", f"--repo={pair.s}", "-b", "main", "--consume", *COMMIT_ARGS, str(inputs[1])
    )
    assert rc == 0, err
    assert o == s
    assert not inputs[0].exists() and not inputs[1].exists()
    pair.fsck()


def test_consume_keeps_the_input_when_the_commit_fails(make_pair, tmp_path, sysroot):
    """ostree unlinks while importing; we delete only after the commit is durable."""
    pair = make_pair("bare")
    tree = tmp_path / "t"
    (tree / "a").mkdir(parents=True)
    (tree / "a/f").write_text("f\n")
    (tree / "z").mkdir()
    os.mkfifo(tree / "z/fifo")
    before = sorted(str(p) for p in tree.rglob("*"))
    res = sysroot("commit", f"--repo={pair.s}", "-b", "main", "--consume", str(tree), check=False)
    assert res.returncode != 0
    assert sorted(str(p) for p in tree.rglob("*")) == before
    assert pair.refs()[1] == []


# ---------------------------------------------------------------- refused input


def _make_special(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(path))
    elif kind == "chardev":
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    else:
        os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(7, 0))


def _tree_with(tmp_path: Path, make_bad) -> Path:
    """Some good content first (so objects get staged), then the bad entry."""
    tree = tmp_path / "t"
    (tree / "a/b").mkdir(parents=True)
    for i in range(20):
        (tree / f"a/file{i}").write_text(f"content {i}\n")
    make_bad(tree / "a/b")
    return tree


def _assert_nothing_published(pair: CommitTwins) -> None:
    assert pair.refs() == ([], [])
    assert object_files(pair.s) == []
    assert staging_dirs(pair.s) == []


@pytest.mark.parametrize("kind", ["fifo", "socket", "chardev", "blockdev"])
def test_special_files_are_refused(make_pair, tmp_path, kind):
    tree = _tree_with(tmp_path, lambda d: _make_special(d / "special", kind))
    pair = make_pair("bare")
    err = pair.both_fail("-b", "main", str(tree))
    assert "a/b/special" in err
    _assert_nothing_published(pair)


def test_refusal_on_the_command_line_is_one_line(make_pair, tmp_path, sysroot):
    tree = _tree_with(tmp_path, lambda d: os.mkfifo(d / "fifo"))
    pair = make_pair("bare-user")
    o = pair.ostree("commit", f"--repo={pair.o}", "-b", "main", str(tree), check=False)
    s = sysroot("commit", f"--repo={pair.s}", "-b", "main", str(tree), check=False)
    assert o.returncode == 1
    assert s.returncode == 1
    err = s.stderr.decode()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "fifo" in err, err
    assert s.stdout == b""
    _assert_nothing_published(pair)


@pytest.mark.parametrize("where", ["file", "directory"])
def test_non_utf8_names_are_refused(make_pair, tmp_path, where):
    def bad(d: Path) -> None:
        name = os.path.join(os.fsencode(d), b"bad-\xff\xfe")
        if where == "file":
            with open(name, "wb") as f:
                f.write(b"x")
        else:
            os.mkdir(name)

    tree = _tree_with(tmp_path, bad)
    pair = make_pair("archive")
    err = pair.both_fail("-b", "main", str(tree))
    assert "UTF-8" in err and "bad-" in err, err
    _assert_nothing_published(pair)


def test_non_utf8_symlink_target_is_refused(make_pair, tmp_path):
    """ostree 2022.7 commits this after a GLib-CRITICAL (the target is not a valid
    GVariant string); we refuse it instead."""
    tree = _tree_with(
        tmp_path, lambda d: os.symlink(b"target-\xff", os.path.join(os.fsencode(d), b"link"))
    )
    pair = make_pair("archive")
    rc, _, err = run_sysroot("commit", f"--repo={pair.s}", "-b", "main", str(tree))
    assert rc != 0
    assert len(err.splitlines()) == 1 and "symlink target" in err, err
    assert pair.refs()[1] == []
    assert object_files(pair.s) == []


def test_missing_input_is_refused(make_pair, tmp_path):
    pair = make_pair("bare")
    err = pair.both_fail("-b", "main", str(tmp_path / "nope"))
    assert "nope" in err


# ---------------------------------------------------------------- xattr order

# Set in this (non-sorted) order: the stored order must be sorted by name, as ostree does.
XATTRS = [
    ("user.zeta", b"z"),
    ("user.alpha", b"\x00a\xff"),
    ("user.mid", b"middle"),
    ("user.Beta", b"B"),
]


def _set_xattrs(path: Path, salt: bytes) -> None:
    for name, value in XATTRS:
        os.setxattr(path, name, value + salt)


def _xattrs_of(root: Path) -> dict[str, list[tuple[str, bytes]]]:
    """Every user.* xattr under root (root itself as "."), per relative path."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            path = os.path.normpath(os.path.join(dirpath, name))
            if name == "." and dirpath != str(root):
                continue
            out[os.path.relpath(path, root)] = sorted(
                (n, os.getxattr(path, n)) for n in os.listxattr(path) if n.startswith("user.")
            )
    return out


@pytest.fixture(scope="module")
def xattr_tree(tmp_path_factory) -> Path:
    """Directories (the root too) and files with four user.* xattrs each, set out of order."""
    root = tmp_path_factory.mktemp("xattrs") / "tree"
    (root / "a/b").mkdir(parents=True)
    (root / "c").mkdir()
    (root / "a/b/file").write_text("file\n")
    (root / "c/other").write_text("other\n")
    for i, path in enumerate(
        [root, root / "a", root / "a/b", root / "c", root / "a/b/file", root / "c/other"]
    ):
        _set_xattrs(path, str(i).encode())
    return root


@pytest.mark.parametrize("mode", ["bare", "bare-user", "archive"])
def test_multiple_xattrs_order(make_pair, xattr_tree, tmp_path, mode):
    """Directories and files with several xattrs: the same commit checksum as ostree,
    and a checkout (by either tool, from sysroot's repo) has them all, intact."""
    pair = make_pair(mode)
    o, s = pair.commit("-b", "main", *COMMIT_ARGS, str(xattr_tree))
    assert o == s
    pair.fsck()
    want = _xattrs_of(xattr_tree)
    assert all(len(v) == len(XATTRS) for v in want.values())
    # what ostree records for the root directory, from sysroot's repo
    listed = pair.ostree.out("ls", f"--repo={pair.s}", "-X", "-d", "main", "/")
    for name, _value in XATTRS:
        assert name in listed, listed
    for tool in ("ostree", "sysroot"):
        dest = tmp_path / f"co-{tool}"
        if tool == "ostree":
            pair.ostree("checkout", f"--repo={pair.s}", "main", str(dest))
        else:
            rc, _, err = run_sysroot("checkout", f"--repo={pair.s}", "main", str(dest))
            assert rc == 0, err
        got = _xattrs_of(dest)
        assert got == want, tool
