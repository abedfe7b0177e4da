"""`sysroot log` and `sysroot show` against `ostree log`/`ostree show`, byte for byte,
and `sysroot commit` metadata against `ostree commit` checksums.

Most of our runs are in-process (`main(argv)`), which is what the subprocess would run,
minus the interpreter start-up; a few run the real command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from sysroot.cli.main import main
from sysroot.formats import gvariant
from sysroot.formats.objects import ObjectType

MODES = ["bare", "bare-user", "bare-user-only", "archive"]


def ours(capfdbinary, *argv) -> tuple[int, bytes, bytes]:
    rc = main([str(a) for a in argv])
    sys.stdout.flush()
    cap = capfdbinary.readouterr()
    return rc, cap.out, cap.err


def theirs(ostree, *argv) -> tuple[int, bytes, bytes]:
    proc = ostree(*argv, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def assert_same(ostree, capfdbinary, *argv) -> bytes:
    """Same output, same error text, both fail or both succeed."""
    rc1, out1, err1 = theirs(ostree, *argv)
    rc2, out2, err2 = ours(capfdbinary, *argv)
    assert out2 == out1, argv
    assert err2 == err1, argv
    assert (rc1 == 0) == (rc2 == 0), argv
    return out1


def make_tree(root) -> None:
    (root / "sub/deeper").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "file").write_text("content\n")
    (root / "sub/exe").write_text("#!/bin/sh\n")
    os.chmod(root / "sub/exe", 0o755)
    (root / "sub/deeper/ünï").write_bytes(b"\x00\x01")
    os.symlink("file", root / "link")
    os.setxattr(root / "file", "user.k", b"v\x00")
    os.setxattr(root / "sub", "user.d", b"\x01\x02")


HISTORY = [
    [
        "-s",
        "Subj",
        "-m",
        "Body line1\nline2",
        "--timestamp=2021-05-04 03:02:01",
        "--add-metadata-string=version=1.0",
        "--add-metadata=n=42",
    ],
    [
        "-m",
        "body\nwith trailing\n\n",
        "--timestamp=2021-05-05 00:00:00",
        "--add-metadata=version=42",
    ],
    [
        "-s",
        "line1\nline2 ünïcødé",
        "--timestamp=2022-01-01 12:00:00",
        "--add-metadata-string=version=2.0",
        "--add-metadata=d=<[1.5, -0.0]>",
    ],
    ["-s", "Last", "--timestamp=@0"],
    ["-s", "Before 1970, year 68", "--timestamp=@-60000000000"],
]


@pytest.fixture(scope="module", params=MODES)
def history(request, ostree, tmp_path_factory):
    """A repository written by ostree: four commits on main, one on other."""
    tmp = tmp_path_factory.mktemp(f"hist-{request.param}")
    repo, tree = tmp / "repo", tmp / "tree"
    make_tree(tree)
    ostree("init", f"--repo={repo}", f"--mode={request.param}")
    commits = [
        ostree.out("commit", f"--repo={repo}", "-b", "main", *args, tree) for args in HISTORY
    ]
    ostree("commit", f"--repo={repo}", "-b", "other", "-s", "x", tree)
    return repo, commits


@pytest.mark.parametrize("history", ["archive"], indirect=True)
def test_log(history, ostree, capfdbinary):
    repo, commits = history
    for rev in ("main", "main^", "other", commits[2][:10]):
        for flags in ([], ["--raw"]):
            assert_same(ostree, capfdbinary, "log", f"--repo={repo}", rev, *flags)


@pytest.mark.parametrize("history", ["bare"], indirect=True)
def test_show_commits(history, ostree, capfdbinary):
    repo, commits = history
    for rev in [*commits, "other"]:
        for flags in ([], ["--raw"]):
            assert_same(ostree, capfdbinary, "show", f"--repo={repo}", rev, *flags)
    for flags in (["-B"], ["--raw", "-B"]):  # 2022.7: -B prints raw *and* the details
        assert_same(ostree, capfdbinary, "show", f"--repo={repo}", "main^^", *flags)


def test_show_every_object(history, ostree, capfdbinary):
    repo, _ = history
    seen = set()
    for path in sorted((repo / "objects").rglob("*.*")):
        checksum = path.parent.name + path.name.split(".")[0]
        kind = path.suffix
        if kind == ".commit":
            continue  # test_show_commits
        flags = [] if kind in (".file", ".filez") else ["--raw"]
        assert_same(ostree, capfdbinary, "show", f"--repo={repo}", checksum, *flags)
        if kind not in seen:  # the other spellings once per type
            seen.add(kind)
            for other in ([], ["-B"]):
                assert_same(ostree, capfdbinary, "show", f"--repo={repo}", checksum, *other)


@pytest.mark.parametrize("history", ["archive"], indirect=True)
def test_show_metadata_keys(history, ostree, capfdbinary):
    repo, commits = history
    for key in ("version", "n", "d", "ostree.ref-binding", "nope"):
        for flags in ([], ["-B"]):
            assert_same(
                ostree,
                capfdbinary,
                "show",
                f"--repo={repo}",
                commits[2],
                f"--print-metadata-key={key}",
                *flags,
            )
    assert_same(
        ostree, capfdbinary, "show", f"--repo={repo}", "main", "--print-detached-metadata-key=x"
    )
    assert_same(ostree, capfdbinary, "show", f"--repo={repo}", "main", "--print-related")


@pytest.mark.parametrize("history", ["archive"], indirect=True)
def test_errors(history, ostree, capfdbinary):
    repo, _ = history
    missing = "0" * 64
    for argv in (
        ["show", missing],
        ["show", "nope"],
        ["log", "nope"],
        ["show", "main^^^^^"],
        ["log", missing],
        ["show", "main", "--print-sizes"],
    ):
        assert_same(ostree, capfdbinary, argv[0], f"--repo={repo}", *argv[1:])
    for argv in (["show"], ["log"]):  # usage errors: ostree adds its --help text
        assert theirs(ostree, argv[0], f"--repo={repo}")[0] != 0
        rc, out, err = ours(capfdbinary, argv[0], f"--repo={repo}")
        assert rc != 0 and out == b"" and err.startswith(b"error: ")


def test_date_out_of_range(ostree, tmp_path, capfdbinary):
    repo, tree = tmp_path / "repo", tmp_path / "tree"
    make_tree(tree)
    ostree("init", f"--repo={repo}", "--mode=archive")
    ostree("commit", f"--repo={repo}", "-b", "main", "--timestamp=@253402300800", tree)
    for command in ("log", "show"):
        rc, out, err = ours(capfdbinary, command, f"--repo={repo}", "main")
        proc = ostree(command, f"--repo={repo}", "main", check=False)
        assert rc != 0 and proc.returncode != 0 and out == proc.stdout
        assert err == b"error: Failed to read commit: Invalid timestamp: 253402300800\n"


def test_log_stops_at_missing_parent(ostree, tmp_path, capfdbinary):
    repo, tree = tmp_path / "repo", tmp_path / "tree"
    make_tree(tree)
    ostree("init", f"--repo={repo}", "--mode=archive")
    first = ostree.out("commit", f"--repo={repo}", "-b", "main", "-s", "one", tree)
    ostree("commit", f"--repo={repo}", "-b", "main", "-s", "two", tree)
    (repo / "objects" / first[:2] / f"{first[2:]}.commit").unlink()
    out = assert_same(ostree, capfdbinary, "log", f"--repo={repo}", "main")
    assert out.endswith(b"<< History beyond this commit not fetched >>\n")
    assert_same(ostree, capfdbinary, "log", f"--repo={repo}", "main", "--raw")
    assert_same(ostree, capfdbinary, "show", f"--repo={repo}", "main^")
    assert_same(ostree, capfdbinary, "rev-parse", f"--repo={repo}", "main^^")


def test_detached_metadata_and_sizes(ostree, tmp_path, capfdbinary):
    repo, tree = tmp_path / "repo", tmp_path / "tree"
    make_tree(tree)
    ostree("init", f"--repo={repo}", "--mode=archive")
    ostree(
        "commit",
        f"--repo={repo}",
        "-b",
        "main",
        "--generate-sizes",
        "--add-detached-metadata-string=sig=abc",
        "--add-metadata-string=z=1",
        tree,
    )
    for key in ("sig", "nope"):
        assert_same(
            ostree,
            capfdbinary,
            "show",
            f"--repo={repo}",
            "main",
            f"--print-detached-metadata-key={key}",
        )
    assert_same(ostree, capfdbinary, "show", f"--repo={repo}", "main", "--print-sizes")
    # objects missing locally count as "needed"
    for path in sorted((repo / "objects").rglob("*.filez"))[:2]:
        path.unlink()
    assert_same(ostree, capfdbinary, "show", f"--repo={repo}", "main", "--print-sizes")
    # newer ostree's key listing (not in 2022.7): sorted like strcmp
    rc, out, _ = ours(capfdbinary, "show", f"--repo={repo}", "main", "--list-metadata-keys")
    assert rc == 0 and out == b"ostree.ref-binding\nostree.sizes\nz\n"
    rc, out, _ = ours(
        capfdbinary, "show", f"--repo={repo}", "main", "--list-detached-metadata-keys"
    )
    assert rc == 0 and out == b"sig\n"


def test_print_variant_type(ostree, tmp_path, capfdbinary):
    repo, tree = tmp_path / "repo", tmp_path / "tree"
    make_tree(tree)
    ostree("init", f"--repo={repo}", "--mode=bare")
    checksum = ostree.out("commit", f"--repo={repo}", "-b", "main", tree)
    path = repo / "objects" / checksum[:2] / f"{checksum[2:]}.commit"
    assert_same(
        ostree,
        capfdbinary,
        "show",
        f"--repo={repo}",
        "--print-variant-type=(a{sv}aya(say)sstayay)",
        path,
    )
    assert_same(
        ostree,
        capfdbinary,
        "show",
        f"--repo={repo}",
        "--print-variant-type=as",
        path.parent / "missing",
    )


@pytest.mark.parametrize("history", ["archive"], indirect=True)
def test_cli_end_to_end(history, ostree, sysroot):
    """The real command line: same bytes, one-line errors, no traceback."""
    repo, _ = history
    argv = ["log", "--raw", "main"]
    assert sysroot(*argv, f"--repo={repo}").stdout == ostree(*argv, f"--repo={repo}").stdout
    proc = sysroot("show", f"--repo={repo}", "main", "--print-metadata-key=nope", check=False)
    assert proc.returncode == 1
    assert proc.stderr == b"error: No such metadata key 'nope'\n"


def test_corrupt_commit_is_reported(tmp_path, ostree, capfdbinary):
    repo, tree = tmp_path / "repo", tmp_path / "tree"
    make_tree(tree)
    ostree("init", f"--repo={repo}", "--mode=archive")
    checksum = ostree.out("commit", f"--repo={repo}", "-b", "main", "-s", "subject", tree)
    path = repo / "objects" / checksum[:2] / f"{checksum[2:]}.commit"
    data = bytearray(path.read_bytes())
    data[data.index(b"subject")] ^= 0x20  # still valid GVariant, different content
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    for argv in (["log", "main"], ["show", "main"], ["show", "--raw", "main"]):
        rc, out, err = ours(capfdbinary, *argv, f"--repo={repo}")
        assert rc == 1 and out == b""
        assert err.decode().startswith(f"error: Corrupted commit object {checksum}: ")
        assert err.count(b"\n") == 1


# ------------------------------------------------------------------ commit checksums

METADATA_COMBOS = [
    [],
    ["--add-metadata-string=version=1.0"],
    ["--add-metadata=version='1.0'"],
    ["--add-metadata=n=42", "--add-metadata-string=s=x"],
    ["--add-metadata-string=a=1", "--add-metadata-string=a=2", "--add-metadata=a=3"],
    ["--add-metadata=t=uint64 3", "--add-metadata=b=true", "--add-metadata=d=3.5"],
    ["--add-metadata=l=['a','b']", "--add-metadata=e=@as []", "--add-metadata=y=byte 0x01"],
    [
        "--add-metadata=tup=(1, 'x')",
        "--add-metadata=v=<<'nested'>>",
        "--add-metadata=dict={'k': <[1, 2]>}",
    ],
    [
        "--add-metadata=bs=b'bytes'",
        "--add-metadata=ba=[byte 0x00, 0xff]",
        '--add-metadata-string=q=it\'s "quoted"\nnew line ünï',
    ],
    ["--add-metadata=big=[" + ", ".join(str(i) for i in range(300)) + "]"],
    ["--add-metadata-string=ostree.ref-binding=fake", "--add-metadata-string=version="],
    ["--add-metadata=m=just 5", "--add-metadata=o=objectpath '/a'", "--add-metadata=z=@mi nothing"],
]


@pytest.mark.parametrize("meta", METADATA_COMBOS, ids=range(len(METADATA_COMBOS)))
def test_commit_metadata_checksums(ostree, tmp_path, capfdbinary, meta):
    tree = tmp_path / "tree"
    make_tree(tree)
    common = ["-b", "main", "-s", "subject", "--timestamp=2021-05-04 03:02:01", *meta]
    checksums = []
    for name in ("theirs", "ours"):
        repo = tmp_path / name
        ostree("init", f"--repo={repo}", "--mode=archive")
        if name == "theirs":
            checksums.append(ostree.out("commit", f"--repo={repo}", *common, tree))
        else:
            rc, out, err = ours(capfdbinary, "commit", f"--repo={repo}", *common, tree)
            assert rc == 0, err
            checksums.append(out.decode().strip())
    assert checksums[0] == checksums[1]
    # and our show prints it like ostree does
    shutil.rmtree(tmp_path / "ours")
    data = tmp_path / "theirs/objects" / checksums[0][:2] / f"{checksums[0][2:]}.commit"
    value = gvariant.decode(ObjectType.COMMIT.gvariant_type, data.read_bytes())
    assert gvariant.encode(ObjectType.COMMIT.gvariant_type, value) == data.read_bytes()
    assert_same(ostree, capfdbinary, "show", f"--repo={tmp_path / 'theirs'}", "main", "--raw")


def test_output_into_a_pipe_closed_early(ostree, sysroot, tmp_path):
    """`sysroot log REF | head -1` said `error: Broken pipe` and exited 1 (OSError was
    handled before BrokenPipeError, its subclass). ostree 2022.7 says nothing and exits
    0; so do we. The reader is gone before the first write: sixty commits' log (over
    8 KiB) meets it while the command runs, refs' one line at the last flush (stdout
    block-buffered, as users have it: not under PYTHONUNBUFFERED)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    repo = tmp_path / "repo"
    ostree("init", f"--repo={repo}", "--mode=archive")
    (tmp_path / "tree").mkdir()
    for i in range(60):
        (tmp_path / "tree/f").write_text(str(i))
        ostree("commit", f"--repo={repo}", "-b", "main", "-s", f"commit {i}", tmp_path / "tree")
    for tool in (ostree, sysroot):
        for command in (["log", "main"], ["refs"]):
            proc = subprocess.Popen(
                [*tool.argv0, *command, f"--repo={repo}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            proc.stdout.close()
            err = proc.stderr.read()
            proc.stderr.close()
            assert (proc.wait(), err) == (0, b""), (tool.argv0, command)
