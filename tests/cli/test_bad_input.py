"""Every command against a damaged repository: a clear one-line error, never a traceback,
and nothing changed.

Each damage is applied to a copy of a repository ostree wrote; each command is run on
it. A command either does not need the damaged part (and succeeds), or fails with
`error: ...` on one line (plus an optional `hint: ...`). Where a command must read the
damaged part, it must fail and name what is damaged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from dataclasses import replace

import pytest

from sysroot.cli.main import main
from sysroot.formats.objects import Commit, DirTree

# argv per command; {obj} is what the damage names, {tmp} a scratch directory,
# {src} the damaged repository when the command reads another one
COMMANDS = {
    "commit": ["commit", "-b", "new", "--tree=ref=main"],
    "refs": ["refs", "--create=copy", "main"],
    "rev-parse": ["rev-parse", "main^"],
    "log": ["log", "main"],
    "show": ["show", "main"],
    "show-object": ["show", "{obj}"],
    "ls": ["ls", "-R", "main"],
    "cat": ["cat", "main", "/f"],
    "checkout": ["checkout", "main", "{tmp}/checkout"],
    "fsck": ["fsck"],
    # --untrusted: a trusted source's content objects are linked unread, as ostree links
    # them (tests/store/test_pull_local.py), so only an untrusted pull can notice them
    "pull-local": ["pull-local", "--untrusted", "{src}", "main"],
    "config": ["config", "get", "core.mode"],
    "diff": ["diff", "main^", "main"],
    "summary": ["summary", "-u"],
    "prune": ["prune", "--refs-only"],
}

_COMMIT_READERS = {
    "commit",
    "rev-parse",
    "log",
    "show",
    "show-object",
    "ls",
    "cat",
    "checkout",
    "fsck",
    "pull-local",
    "diff",
    "summary",
    "prune",
}
_TREE_READERS = {"show-object", "ls", "cat", "checkout", "fsck", "pull-local", "diff", "prune"}
_META_READERS = {"show-object", "ls", "checkout", "fsck", "pull-local"}

# damage -> the commands that must fail on it
MUST_FAIL = {
    "flip-commit": _COMMIT_READERS,
    "truncate-commit": _COMMIT_READERS,
    "missing-commit": _COMMIT_READERS - {"prune"},  # like ostree: history just ends
    "malformed-commit": _COMMIT_READERS,
    "flip-dirtree": _TREE_READERS,
    "truncate-dirtree": _TREE_READERS,
    "missing-dirtree": _TREE_READERS,
    "malformed-dirtree": _TREE_READERS - {"show-object"},
    "flip-dirmeta": _META_READERS,
    "truncate-dirmeta": _META_READERS,
    "missing-dirmeta": _META_READERS,
    "flip-file": {"show-object", "cat", "fsck", "pull-local"},
    "truncate-file": {"show-object", "cat", "fsck", "pull-local"},
    "missing-file": {"show-object", "ls", "cat", "checkout", "fsck", "pull-local"},
    "garbage-ref": _COMMIT_READERS - {"show-object"} | {"refs"},
    "bogus-mode": set(COMMANDS),
}
# commands that only read refs or the config: run them only where that is damaged
_CONFIG_OR_REFS_ONLY = {"refs", "config"}

_VERBOSE_CHECKED: set[str] = set()

CASES = [(d, "archive") for d in MUST_FAIL] + [
    (d, "bare") for d in ("flip-file", "truncate-file", "missing-file")
]


def ours(capfdbinary, argv) -> tuple[int, bytes, bytes]:
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse --help and the like; not expected here
        rc = e.code
    sys.stdout.flush()
    cap = capfdbinary.readouterr()
    return rc, cap.out, cap.err


def _object_path(repo, checksum: str, ext: str):
    return repo / "objects" / checksum[:2] / f"{checksum[2:]}.{ext}"


@pytest.fixture(scope="module")
def pristine(ostree, tmp_path_factory):
    """One repository per mode, written by ostree: two commits on main."""
    repos = {}
    for mode in ("archive", "bare"):
        tmp = tmp_path_factory.mktemp(f"bad-{mode}")
        repo, tree = tmp / "repo", tmp / "tree"
        (tree / "d").mkdir(parents=True)
        (tree / "d/g").write_text("g")
        os.symlink("f", tree / "l")
        ostree("init", f"--repo={repo}", f"--mode={mode}")
        for i, text in enumerate(("first\n", "second\n")):
            (tree / "f").write_text(text * 100)
            ostree("commit", f"--repo={repo}", "-b", "main", "-s", "c", f"--timestamp=@{i}", tree)
        repos[mode] = repo
    return repos


def damage(repo, mode: str, kind: str) -> str:
    """Apply one damage; returns the name an error message must mention."""
    head = (repo / "refs/heads/main").read_text().strip()
    commit = Commit.parse(_object_path(repo, head, "commit").read_bytes())
    files = dict(DirTree.parse(_object_path(repo, commit.root_tree, "dirtree").read_bytes()).files)
    targets = {
        "commit": (head, "commit"),
        "dirtree": (commit.root_tree, "dirtree"),
        "dirmeta": (commit.root_meta, "dirmeta"),
        "file": (files["f"], "filez" if mode == "archive" else "file"),
    }
    how, _, what = kind.partition("-")
    if how in ("flip", "truncate", "missing"):
        checksum, ext = targets[what]
        path = _object_path(repo, checksum, ext)
        if how == "missing":
            path.unlink()
            return checksum
        data = bytearray(path.read_bytes())
        if how == "flip":
            data[len(data) // 2] ^= 0x10
        else:
            data = data[: len(data) // 2]
        xattrs = {k: os.getxattr(path, k) for k in os.listxattr(path)}
        path.unlink()  # bare objects may be hardlinked into checkouts: never write through
        path.write_bytes(bytes(data))
        for k, v in xattrs.items():
            os.setxattr(path, k, v)
        return checksum
    if kind == "garbage-ref":
        (repo / "refs/heads/main").write_text("garbage\n")
        return "main"
    if kind == "bogus-mode":
        config = repo / "config"
        config.write_text(config.read_text().replace("mode=", "mode=bogus\n#", 1))
        return "bogus"
    # malformed objects under names that match their (garbage) content
    bad = b"\x01\x02 not a GVariant of the right type \xff"
    name = hashlib.sha256(bad).hexdigest()
    if kind == "malformed-dirtree":
        _object_path(repo, name, "dirtree").parent.mkdir(exist_ok=True)
        _object_path(repo, name, "dirtree").write_bytes(bad)
        data = replace(commit, root_tree=name).serialize()
        head = hashlib.sha256(data).hexdigest()
        _object_path(repo, head, "commit").parent.mkdir(exist_ok=True)
        _object_path(repo, head, "commit").write_bytes(data)
    else:
        head = name
        _object_path(repo, head, "commit").parent.mkdir(exist_ok=True)
        _object_path(repo, head, "commit").write_bytes(bad)
    (repo / "refs/heads/main").write_text(head + "\n")
    return name


def snapshot(repo) -> dict[str, tuple]:
    """What a failed command must not change (its own scratch space in tmp/ aside)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(repo):
        rel = os.path.relpath(dirpath, repo)
        if rel == "tmp" or rel.startswith("tmp/"):
            continue
        for name in dirnames + filenames:
            if name == ".lock":  # taking the repository lock creates it, as in ostree
                continue
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.join(rel, name)] = (st.st_mode, 0 if name in dirnames else st.st_size)
    return out


def check_error(err: bytes, *, fsck: bool) -> list[str]:
    text = err.decode(errors="replace")
    assert "Traceback" not in text
    lines = text.rstrip("\n").split("\n")
    if fsck:  # a report, one problem per line, then the verdict
        assert lines[-1].startswith("error: "), text
    else:
        assert lines[0].startswith("error: "), text
        assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), text
    return lines


@pytest.mark.parametrize(("kind", "mode"), CASES, ids=[f"{k}-{m}" for k, m in CASES])
def test_damaged_repository(pristine, ostree, tmp_path, capfdbinary, kind, mode):
    must_fail = MUST_FAIL[kind]
    for command, template in COMMANDS.items():
        if command in _CONFIG_OR_REFS_ONLY and kind not in ("garbage-ref", "bogus-mode"):
            continue
        work = tmp_path / command
        work.mkdir()
        repo = work / "repo"
        shutil.copytree(pristine[mode], repo, symlinks=True)
        name = damage(repo, mode, kind)
        target = repo
        if command == "pull-local":  # the damaged repository is the source
            target = work / "dest"
            ostree("init", f"--repo={target}", f"--mode={mode}")
        argv = [a.format(obj=name, tmp=work, src=repo) for a in template]
        before = snapshot(target)
        rc, _, err = ours(capfdbinary, [*argv, f"--repo={target}"])
        if rc == 0:
            assert command not in must_fail, f"{command} ignored {kind}"
            assert b"Traceback" not in err
            continue
        lines = check_error(err, fsck=command == "fsck")
        if command in must_fail:
            assert any(name in line for line in lines), (command, lines)
        if command != "fsck":  # (fsck may mark commits partial: that is its job)
            assert snapshot(target) == before, f"{command} changed the repository"
        if command not in _VERBOSE_CHECKED:  # once per command is enough
            _VERBOSE_CHECKED.add(command)
            # with --verbose a traceback is allowed, the failure stays
            rc, _, _ = ours(capfdbinary, [*argv, f"--repo={target}", "--verbose"])
            assert rc != 0


def test_real_command_line(pristine, sysroot, tmp_path):
    """The installed entry point, not just main(): one line, no traceback."""
    repo = tmp_path / "repo"
    shutil.copytree(pristine["archive"], repo, symlinks=True)
    checksum = damage(repo, "archive", "flip-dirtree")
    proc = sysroot("ls", "-R", f"--repo={repo}", "main", check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode().startswith(f"error: Corrupted dirtree object {checksum}: ")
    assert proc.stderr.count(b"\n") == 1
    proc = sysroot("ls", "-R", f"--repo={repo}", "main", "--verbose", check=False)
    assert proc.returncode == 1 and b"Traceback" in proc.stderr
