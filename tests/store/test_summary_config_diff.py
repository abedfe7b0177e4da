"""summary, config and diff against the real ostree."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sysroot.cli.main import main as cli_main
from sysroot.formats.gvariant import Variant
from sysroot.store.diff import diff_commits, diff_dirs
from sysroot.store.repo import Repo
from sysroot.store.summary import KEY_LAST_MODIFIED, Summary, hash_table_order
from tests.conftest import COMMIT_ARGS, one_error_line


def init(ostree, path: Path, mode: str) -> Path:
    ostree("init", f"--repo={path}", f"--mode={mode}")
    return path


def twin(path: Path) -> Path:
    copy = path.with_name(path.name + "-twin")
    subprocess.run(["cp", "-a", str(path), str(copy)], check=True)
    return copy


# ---------------------------------------------------------------- summary


@pytest.fixture
def summary_repo(tmp_path, ostree) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("x\n")
    repo = init(ostree, tmp_path / "repo", "archive")
    ostree("commit", f"--repo={repo}", "-b", "main", *COMMIT_ARGS, str(tree))
    ostree("commit", f"--repo={repo}", "-b", "a/b", "-s", "no version", str(tree))
    ostree(
        "commit",
        f"--repo={repo}",
        "-b",
        "Zeta",
        "-s",
        "big metadata",
        "--add-metadata-string=blob=" + "y" * 1500,
        str(tree),
    )
    ostree("refs", f"--repo={repo}", "--create=origin:remote-ref", "main")  # not listed
    return repo


def _same_summary_but_time(ours: bytes, theirs: bytes, before: int, after: int) -> None:
    mine, ref = Summary.parse(ours), Summary.parse(theirs)
    assert mine.refs == ref.refs
    assert list(mine.metadata) == list(ref.metadata)
    stamp = int.from_bytes(mine.metadata[KEY_LAST_MODIFIED].value.to_bytes(8, "little"), "big")
    assert before <= stamp <= after
    mine.metadata[KEY_LAST_MODIFIED] = ref.metadata[KEY_LAST_MODIFIED]
    assert mine.serialize() == theirs


@pytest.mark.parametrize(
    "extra",
    [[], ["-m", "k1='v'", "-m", "n=42"], [a for i in range(9) for a in ("-m", f"key{i}={i}")]],
    ids=["plain", "two-keys", "nine-keys"],
)
def test_summary_bytes_match_ostree(ostree, sysroot, summary_repo, extra):
    other = twin(summary_repo)
    before = int(time.time())
    sysroot("summary", f"--repo={summary_repo}", "-u", *extra)
    after = int(time.time()) + 1
    ostree("summary", f"--repo={other}", "-u", *extra)
    _same_summary_but_time(
        (summary_repo / "summary").read_bytes(), (other / "summary").read_bytes(), before, after
    )
    # ostree reads ours; both record indexed deltas in the config the same way
    ostree("summary", f"--repo={summary_repo}", "--view")
    assert (summary_repo / "config").read_bytes() == (other / "config").read_bytes()


def test_summary_with_static_delta_and_bare_repo(tmp_path, ostree, sysroot, summary_repo):
    ostree("static-delta", "generate", f"--repo={summary_repo}", "--empty", "main")
    other = twin(summary_repo)
    before = int(time.time())
    sysroot("summary", f"--repo={summary_repo}", "-u")
    ostree("summary", f"--repo={other}", "-u")
    _same_summary_but_time(
        (summary_repo / "summary").read_bytes(),
        (other / "summary").read_bytes(),
        before,
        int(time.time()) + 1,
    )
    bare = init(ostree, tmp_path / "bare", "bare")  # no refs at all
    bare2 = twin(bare)
    sysroot("summary", f"--repo={bare}", "-u")
    ostree("summary", f"--repo={bare2}", "-u")
    _same_summary_but_time(
        (bare / "summary").read_bytes(),
        (bare2 / "summary").read_bytes(),
        before,
        int(time.time()) + 1,
    )


def test_summary_view_matches_ostree(ostree, sysroot, summary_repo):
    ostree(
        "summary",
        f"--repo={summary_repo}",
        "-u",
        "-m",
        "s='text'",
        "-m",
        "t=uint64 7",
        "-m",
        "as=['a', 'b']",
    )
    ostree("static-delta", "generate", f"--repo={summary_repo}", "--empty", "a/b")
    ostree("summary", f"--repo={summary_repo}", "-u", "-m", "s='text'")
    assert (
        sysroot("summary", f"--repo={summary_repo}", "--view").stdout
        == ostree("summary", f"--repo={summary_repo}", "--view").stdout
    )


def test_summary_replaces_stale_signature_and_errors(tmp_path, ostree, sysroot, summary_repo):
    (summary_repo / "summary.sig").write_bytes(b"stale")
    sysroot("summary", f"--repo={summary_repo}", "-u")
    assert not (summary_repo / "summary.sig").exists()
    one_error_line(sysroot("summary", f"--repo={summary_repo}", check=False))
    empty = init(ostree, tmp_path / "empty", "bare")
    line = one_error_line(sysroot("summary", f"--repo={empty}", "--view", check=False))
    assert "summary" in line
    one_error_line(sysroot("summary", f"--repo={empty}", "-u", "-m", "k=notgvariant", check=False))
    assert not (empty / "summary").exists()


def test_hash_table_order_model():
    # GVariantDict order for keys whose buckets collide, and after the table grows
    base = [
        "ostree.summary.last-modified",
        "ostree.summary.mode",
        "ostree.summary.tombstone-commits",
        "ostree.summary.indexed-deltas",
    ]
    assert hash_table_order(base) == [base[1], base[0], base[2], base[3]]
    many = [f"key{i}" for i in range(20)]
    assert sorted(hash_table_order(many)) == sorted(many)
    assert hash_table_order(["a", "b", "a"]) == hash_table_order(["a", "b"])


# ---------------------------------------------------------------- config


CONFIG_OPS = [
    ["set", "core.a", "  two leading"],
    ["set", "core.b", "x\ty\\z;w\rend"],
    ["set", "core.c", "\t lead"],
    ["set", "a.b.c", "dotted key"],
    ['--group=remote "o.x"', "set", "url", "http://example.com/repo"],
    ["set", 'remote "plain".url', "http://example.com/other"],
    ["set", "core.multi", "new\nline"],
    ["unset", "core.a"],
    ["unset", "core.never-there"],
    ["unset", "nosuchgroup.key"],
    ["set", "core.mode", "bare"],
]
CONFIG_GETS = [
    ["get", "core.mode"],
    ["get", "core.b"],
    ["get", "core.c"],
    ["get", "a.b.c"],
    ['--group=remote "o.x"', "get", "url"],
    ["get", 'remote "plain".url'],
    ["get", "core.multi"],
]
CONFIG_ERRORS = [
    ["get", "core.nope"],
    ["get", "nope.key"],
    ["get", "core"],
    ["get"],
    ["set", "core.x"],
    ["bogus", "core.mode"],
    ["--group=core", "get"],
    ["--group=core", "set", "x"],
    ["get", "core.a"],
]


def _ours(capsys, *args) -> tuple[int, str, str]:
    """sysroot's CLI in-process: the loops below would spend most time starting Python."""
    rc = cli_main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_config_matches_ostree(tmp_path, ostree, capsys):
    ours = init(ostree, tmp_path / "ours", "bare")
    with open(ours / "config", "a") as f:
        f.write("# a comment that must survive\n\n[ex-custom]\nkeep=1\n")
    theirs = twin(ours)
    for op in CONFIG_OPS:
        assert _ours(capsys, "config", f"--repo={ours}", *op)[0] == 0
        ostree("config", f"--repo={theirs}", *op)
    # ostree drops comments when it rewrites the config; we keep them, otherwise the
    # bytes are the same
    comment = b"# a comment that must survive\n"
    assert comment in (ours / "config").read_bytes()
    assert (ours / "config").read_bytes().replace(comment, b"") == (theirs / "config").read_bytes()
    for op in CONFIG_GETS:
        rc, out, _ = _ours(capsys, "config", f"--repo={ours}", *op)
        assert rc == 0
        assert out.encode() == ostree("config", f"--repo={theirs}", *op).stdout
    for op in CONFIG_ERRORS:
        rc, _, err = _ours(capsys, "config", f"--repo={ours}", *op)
        assert rc != 0 and len(err.strip().splitlines()) == 1, err
        theirs_err = ostree("config", f"--repo={theirs}", *op, check=False)
        assert theirs_err.returncode != 0
        last = theirs_err.stderr.decode().strip().splitlines()[-1]
        assert err.startswith(last), (err, last)
    assert (ours / "config").read_bytes().replace(comment, b"") == (theirs / "config").read_bytes()
    # and the real CLI, once
    assert _real_cli_get_matches(ostree, ours)


def _real_cli_get_matches(ostree, repo: Path) -> bool:
    proc = subprocess.run(
        [sys.executable, "-m", "sysroot", "config", f"--repo={repo}", "get", "a.b.c"],
        capture_output=True,
        check=True,
    )
    return proc.stdout == ostree("config", f"--repo={repo}", "get", "a.b.c").stdout


def test_config_cross_reads(tmp_path, ostree, sysroot):
    repo = init(ostree, tmp_path / "repo", "archive")
    sysroot("config", f"--repo={repo}", "set", "core.fsync", "false")
    sysroot("config", f"--repo={repo}", '--group=remote "a.b"', "set", "url", "file:///x")
    assert ostree.out("config", f"--repo={repo}", "get", "core.fsync") == "false"
    assert (
        ostree.out("config", f"--repo={repo}", '--group=remote "a.b"', "get", "url") == "file:///x"
    )
    ostree("config", f"--repo={repo}", "set", "archive.zlib-level", "3")
    assert sysroot.out("config", f"--repo={repo}", "get", "archive.zlib-level") == "3"
    assert Repo.open(repo).zlib_level == 3
    ostree("fsck", f"--repo={repo}")
    # invalid names are refused, not written
    before = (repo / "config").read_bytes()
    for op in (
        ["set", ".x", "y"],
        ["set", "core.", "y"],
        ["set", "core.a=b", "y"],
        ["--group=[x]", "set", "k", "v"],
    ):
        one_error_line(sysroot("config", f"--repo={repo}", *op, check=False))
    assert (repo / "config").read_bytes() == before


def test_unknown_mode_is_one_line_everywhere(tmp_path, ostree, sysroot):
    good = init(ostree, tmp_path / "good", "bare")
    bad = init(ostree, tmp_path / "bad", "bare")
    text = (bad / "config").read_text().replace("mode=bare", "mode=weird")
    (bad / "config").write_text(text)
    for args in (
        ["config", f"--repo={bad}", "get", "core.mode"],
        ["config", f"--repo={bad}", "set", "core.mode", "bare"],
        ["summary", f"--repo={bad}", "-u"],
        ["summary", f"--repo={bad}", "--view"],
        ["diff", f"--repo={bad}", "a", "b"],
        ["pull-local", f"--repo={bad}", str(good)],
        ["pull-local", f"--repo={good}", str(bad)],
    ):
        line = one_error_line(sysroot(*args, check=False))
        assert "weird" in line, (args, line)
        assert ostree(*args, check=False).returncode != 0
    assert (bad / "config").read_text() == text


# ---------------------------------------------------------------- diff


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def diff_setup(tmp_path, ostree) -> tuple[Path, Path, Path]:
    """Two trees with every kind of change, committed as refs 'old' and 'new'."""
    old, new = tmp_path / "old", tmp_path / "new"
    for root in (old, new):
        _write(root / "same", "same\n")
        _write(root / "dir/keep", "keep\n")
        _write(root / "dir/sub/deep", "deep\n")
        _write(root / "zfile", "z\n")
        _write(root / "B", "upper\n")
        (root / "empty").mkdir()
    _write(old / "content", "old\n")
    _write(new / "content", "new\n")
    _write(old / "perm", "p\n")
    _write(new / "perm", "p\n")
    os.chmod(new / "perm", 0o600)
    _write(old / "chmoddir/inner", "i\n")
    _write(new / "chmoddir/inner", "changed inside\n")
    os.chmod(new / "chmoddir", 0o700)
    _write(old / "file2dir", "f\n")
    _write(new / "file2dir/child", "c\n")
    _write(old / "dir2file/child", "c\n")
    _write(new / "dir2file", "f\n")
    _write(old / "file2link", "f\n")
    os.symlink("same", new / "file2link")
    os.symlink("same", old / "link")
    os.symlink("zfile", new / "link")
    _write(old / "gone", "g\n")
    _write(old / "gonedir/a/b", "b\n")
    _write(new / "added", "a\n")
    _write(new / "addeddir/x/y", "y\n")
    _write(new / "addeddir/f", "f\n")
    _write(new / "dir/sub/newdeep", "n\n")
    _write(old / "xattr", "x\n")
    _write(new / "xattr", "x\n")
    os.setxattr(new / "xattr", "user.only", b"xattr change")
    repo = init(ostree, tmp_path / "repo", "bare")
    ostree("commit", f"--repo={repo}", "-b", "old", *COMMIT_ARGS, str(old))
    ostree("commit", f"--repo={repo}", "-b", "new", *COMMIT_ARGS, str(new))
    return repo, old, new


def _same_diff(ostree, sysroot, repo: Path, *args, cwd=None) -> str:
    theirs = ostree("diff", f"--repo={repo}", *args, cwd=cwd)
    ours = sysroot("diff", f"--repo={repo}", *args, cwd=cwd)
    assert ours.stdout == theirs.stdout
    return ours.stdout.decode()


def test_diff_revisions_matches_ostree(ostree, sysroot, diff_setup):
    repo, _, _ = diff_setup
    out = _same_diff(ostree, sysroot, repo, "old", "new")
    for line in (
        "M    /content",
        "M    /perm",
        "M    /chmoddir",
        "M    /chmoddir/inner",
        "M    /file2dir",
        "M    /dir2file",
        "M    /link",
        "M    /xattr",
        "D    /gonedir",
        "A    /addeddir/x/y",
        "A    /dir/sub/newdeep",
    ):
        assert line in out.splitlines()
    assert "/file2dir/child" not in out and "/gonedir/a" not in out
    _same_diff(ostree, sysroot, repo, "new", "old")
    _same_diff(ostree, sysroot, repo, "old", "old")
    _same_diff(ostree, sysroot, repo, "--stats", "old", "new")
    _same_diff(ostree, sysroot, repo, "--stats", "--fs-diff", "old", "new")


def test_diff_directories_match_ostree(ostree, sysroot, diff_setup, tmp_path):
    repo, old, new = diff_setup
    _same_diff(ostree, sysroot, repo, "old", "./new", cwd=tmp_path)
    _same_diff(ostree, sysroot, repo, "./old", "new", cwd=tmp_path)
    _same_diff(ostree, sysroot, repo, str(old), str(new))
    out = _same_diff(ostree, sysroot, repo, "--no-xattrs", str(old), str(new))
    assert "xattr" not in out
    _same_diff(ostree, sysroot, repo, "--owner-uid=1234", "new", str(new))


def test_diff_single_rev_and_errors(tmp_path, ostree, sysroot, diff_setup):
    repo, old, new = diff_setup
    ostree("commit", f"--repo={repo}", "-b", "old", "-s", "second", str(new))
    _same_diff(ostree, sysroot, repo, "old")
    for args in (["nosuchref", "old"], ["./nope", "old"], [], ["new"]):
        line = one_error_line(sysroot("diff", f"--repo={repo}", *args, check=False, cwd=tmp_path))
        assert ostree("diff", f"--repo={repo}", *args, check=False, cwd=tmp_path).returncode != 0
        assert line.startswith("error:")


def test_diff_library_api(diff_setup):
    repo_path, old, new = diff_setup
    with Repo.open(repo_path) as repo:
        result = diff_commits(repo, "old", "new")
    assert "content" in [m.path for m in result.modified]
    assert "gone" in result.removed and "addeddir/x/y" in result.added
    item = next(m for m in result.modified if m.path == "content")
    assert item.src_checksum != item.target_checksum
    local = diff_dirs(str(old), str(new), ignore_xattrs=True)
    assert "xattr" not in [m.path for m in local.modified]
    assert sorted(local.added) == sorted(result.added)
    assert not diff_dirs(str(old), str(old))


def test_metadata_variant_roundtrip():
    # the -m values reach the summary with their GVariant types
    s = Summary([], {"k": Variant("u", 7)})
    assert Summary.parse(s.serialize()).metadata == {"k": Variant("u", 7)}


def test_diff_large_directory_keeps_gio_order(tmp_path, ostree, sysroot):
    # GLib enumerates a directory in batches of 1000 entries, each sorted by inode
    (tmp_path / "a").mkdir()
    b = tmp_path / "b"
    b.mkdir()
    names = [f"n{(i * 7919) % 2500:05d}" for i in range(2500)]
    for n in names:
        (b / n).touch()
    for n in names[::3]:  # free inodes get reused: inode order != creation order
        (b / n).unlink()
        (b / f"{n}x").touch()
    repo = init(ostree, tmp_path / "repo", "bare")
    out = _same_diff(ostree, sysroot, repo, str(tmp_path / "a"), str(b))
    assert len(out.splitlines()) == 2500
