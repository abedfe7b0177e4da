"""`sysroot refs` and `sysroot rev-parse` against ostree 2022.7: same lines in the same
(hash-table) order, same errors, same files left in refs/."""

from __future__ import annotations

import os
import random
import shutil
import sys

import pytest

from sysroot.cli.main import main
from sysroot.store.refs import ghash_order, str_hash


def ours(capfdbinary, *argv) -> tuple[int, bytes, bytes]:
    rc = main([str(a) for a in argv])
    sys.stdout.flush()
    cap = capfdbinary.readouterr()
    return rc, cap.out, cap.err


def compare(ostree, capfdbinary, *argv, ours_repo=None) -> bytes:
    """Run ostree on argv and ours on argv (optionally on a twin repository)."""
    proc = ostree(*argv, check=False)
    mine = [
        a.replace(str(argv_repo(argv)), str(ours_repo)) if ours_repo else a for a in map(str, argv)
    ]
    rc, out, err = ours(capfdbinary, *mine)
    assert out == proc.stdout, argv
    assert (rc == 0) == (proc.returncode == 0), (argv, err)
    if b"Usage:" in proc.stderr:  # ostree adds --help text to usage errors
        assert err.startswith(b"error: ") and err.count(b"\n") == 1, argv
    else:
        assert err == proc.stderr, argv
    return proc.stdout


def argv_repo(argv) -> str:
    return next(a for a in map(str, argv) if a.startswith("--repo=")).removeprefix("--repo=")


def refs_tree(repo) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(repo / "refs"):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            kind = "l" if os.path.islink(p) else "d" if os.path.isdir(p) else "f"
            target = os.readlink(p) if kind == "l" else ""
            if kind == "f":
                with open(p) as f:
                    target = f.read()
            out.append(f"{os.path.relpath(p, repo)} {kind} {target}")
    return sorted(out)


@pytest.fixture
def base_repo(ostree, tmp_path):
    repo, tree = tmp_path / "repo", tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("x")
    ostree("init", f"--repo={repo}", "--mode=archive")
    first = ostree.out("commit", f"--repo={repo}", "-b", "base", "--timestamp=@1", tree)
    second = ostree.out("commit", f"--repo={repo}", "-b", "base", "--timestamp=@2", tree)
    return repo, first, second


def test_ghash_order_model():
    # small tables keep insertion slots; a resize reshuffles, deterministically
    keys = [f"ref{i}" for i in range(40)]
    order = ghash_order(keys)
    assert sorted(order) == sorted(keys)
    assert ghash_order(keys) == order
    assert ghash_order(["a"]) == ["a"]
    assert str_hash("") == 5381 and str_hash("a") == 5381 * 33 + 97


def test_listing(ostree, capfdbinary, base_repo):
    repo, first, second = base_repo
    rng = random.Random(5)
    names = set()
    while len(names) < 150:
        parts = [
            rng.choice("abcdefgh") + "".join(rng.choices("xyz019._-", k=rng.randint(0, 4)))
            for _ in range(rng.randint(1, 3))
        ]
        names.add("/".join(parts))
    for name in sorted(names):
        path = repo / "refs/heads" / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_text(rng.choice([first, second]) + "\n")
        except (NotADirectoryError, FileExistsError):
            pass
    for remote, refs in (("origin", ["main", "sub/y", "sub/z/w"]), ("other", ["main"])):
        for ref in refs:
            (repo / "refs/remotes" / remote / ref).parent.mkdir(parents=True, exist_ok=True)
            (repo / "refs/remotes" / remote / ref).write_text(second + "\n")
    os.symlink("base", repo / "refs/heads/alias1")
    os.symlink("../base", repo / "refs/heads/a/alias2") if (
        repo / "refs/heads/a"
    ).is_dir() else None
    (repo / "refs/heads/.hidden").write_text(first + "\n")
    (repo / "refs/heads/garbage").write_text("not a checksum\n")
    r = f"--repo={repo}"
    for args in (
        [],
        ["--list"],
        ["-A"],
        ["a"],
        ["a/"],
        ["--list", "a"],
        ["b", "c"],
        ["origin:"],
        ["origin:."],
        ["--list", "origin:"],
        ["origin:sub"],
        ["origin"],
        ["nonexistent"],
        ["base"],
        ["garbage"],
        ["-A", "a"],
        ["origin:main"],
        [":x"],
        ["a//b"],
    ):
        compare(ostree, capfdbinary, "refs", r, *args)
    listed = compare(ostree, capfdbinary, "refs", r).decode().split()
    assert len(listed) > 100 and listed != sorted(listed)


def test_create_and_delete(ostree, capfdbinary, base_repo):
    repo, first, second = base_repo
    twin = repo.parent / "twin"
    shutil.copytree(repo, twin, symlinks=True)
    steps = [
        ["--create=al", "-A", "base"],
        ["-A"],
        [],
        ["--create=dir/al2", "-A", "base"],
        ["-A"],
        ["--create=al", "-A", "base"],
        ["--create=al", "base"],
        ["--create=al", "--force", "base"],
        ["--create=n1", "base", "extra"],
        ["--create=n1"],
        ["--delete"],
        ["--delete", "nope"],
        ["--create=origin:foo", "base"],
        [],
        ["--delete", "origin:foo"],
        [f"--create={first}", "base"],
        ["--create=bad/", "base"],
        ["--create=n2", "nonexist"],
        ["--create=n3", first],
        ["--create=n4", second[:8]],
        ["-A", "--create=al3", "nonexist"],
        ["-A", "--create=al4", first],
        [],
        ["--delete", "dir/al2"],
        ["--create=dir", "base"],
        ["--create=origin:x", "-A", "base"],
        ["--create=y", "-A", "origin:foo"],
        ["--delete", "n"],
        ["--delete", "n3"],
        ["--delete", "-A", "al"],
        ["-A"],
        [],
        ["--create=base/sub", "base"],
        ["--create=deep/er/ref", "base^"],
        ["--list", "deep"],
    ]
    for step in steps:
        compare(ostree, capfdbinary, "refs", f"--repo={repo}", *step, ours_repo=twin)
        assert refs_tree(twin) == refs_tree(repo), step


def test_collections(ostree, capfdbinary, tmp_path):
    repo, tree = tmp_path / "repo", tmp_path / "tree"
    tree.mkdir()
    ostree("init", f"--repo={repo}", "--collection-id=org.main.C")
    checksum = ostree.out("commit", f"--repo={repo}", "-b", "h1", tree)
    ostree("commit", f"--repo={repo}", "-b", "h2/x", tree)
    ostree(
        "remote",
        "add",
        f"--repo={repo}",
        "--no-gpg-verify",
        "--collection-id=org.rem.C",
        "orig",
        "file:///nonexistent",
    )
    for rel in ("mirrors/org.ex.M/m1", "mirrors/org.ex.M/sub/m2", "remotes/orig/r1"):
        (repo / "refs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / rel).write_text(checksum + "\n")
    twin = tmp_path / "twin"
    shutil.copytree(repo, twin, symlinks=True)
    for step in (
        [],
        ["org.ex.M"],
        ["org.main.C"],
        ["--list"],
        ["--create=org.new.C:nr", "h1"],
        ["--create=bad:nr", "h1"],
        [],
        ["--delete", "org.new.C"],
        [],
        ["--create=org.main.C:h3", "h1"],
        [],
    ):
        compare(ostree, capfdbinary, "refs", f"--repo={repo}", "-c", *step, ours_repo=twin)
        assert refs_tree(twin) == refs_tree(repo), step


def test_rev_parse(ostree, capfdbinary, tmp_path):
    repo, tree = tmp_path / "repo", tmp_path / "tree"
    tree.mkdir()
    ostree("init", f"--repo={repo}", "--mode=archive")
    commits = [
        ostree.out("commit", f"--repo={repo}", "-b", "main", f"--timestamp=@{i}", tree)
        for i in range(18)
    ]
    for rel in ("remotes/origin/up", "remotes/origin/sub/y", "heads/garbage", "heads/lead"):
        (repo / "refs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / rel).write_text(commits[3] + "\n")
    (repo / "refs/heads/garbage").write_text("garbage\n")
    (repo / "refs/heads/lead").write_text(" " + commits[3])
    (repo / "refs/heads/emptydir").mkdir()
    by_first = {}
    for c in commits:
        by_first.setdefault(c[0], []).append(c)
    ambiguous = next(k for k, v in by_first.items() if len(v) > 1)
    unique = next((k for k, v in by_first.items() if len(v) == 1), commits[0][:12])
    r = f"--repo={repo}"
    for args in (
        ["main"],
        ["main^"],
        ["main^^^"],
        [commits[0] + "^"],
        [commits[5][:6]],
        [commits[5][:2]],
        [ambiguous],
        [unique],
        [""],
        [commits[0].upper()],
        ["origin:up"],
        ["up"],
        ["sub/y"],
        ["origin:sub/y"],
        ["nope"],
        ["a/"],
        [":x"],
        ["a//b"],
        ["origin:"],
        ["main", "up", "nope", "main"],
        ["-S"],
        ["--single", "main"],
        [],
    ):
        compare(ostree, capfdbinary, "rev-parse", r, *args)
    # broken refs: both fail; our message also names the ref file (ostree's only the content)
    for ref in ("garbage", "lead", "emptydir"):
        assert ostree("rev-parse", r, ref, check=False).returncode != 0
        rc, out, err = ours(capfdbinary, "rev-parse", r, ref)
        assert rc != 0 and out == b"" and err.count(b"\n") == 1
        assert err.startswith(b"error: ") and ref.encode() in err
    single = tmp_path / "single"
    ostree("init", f"--repo={single}")
    compare(ostree, capfdbinary, "rev-parse", f"--repo={single}", "--single")
    ostree("commit", f"--repo={single}", "-b", "x", tree)
    compare(ostree, capfdbinary, "rev-parse", f"--repo={single}", "--single")
    compare(ostree, capfdbinary, "rev-parse", f"--repo={single}", "")
