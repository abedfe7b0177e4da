"""Pulls that fail midway: a dying server, corrupt, truncated or missing objects, a full
disk. Each must fail with one clear line, leave a repository `ostree fsck` accepts with
no ref moved, and the next pull (fault gone) must resume: fewer objects fetched than a
pull from scratch, and the result identical to ostree's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import COMMIT_ARGS, one_error_line
from tests.pull.serve_helpers import (
    RepoServer,
    make_served_repo,
    new_repo,
    object_names,
    refs_of,
)


@pytest.fixture(scope="module")
def served(tmp_path_factory, ostree):
    return make_served_repo(ostree, tmp_path_factory.mktemp("served"))


def _reference(ostree, served, base: Path) -> dict:
    """What ostree has after pulling the first commit then main, and how many object
    requests the second pull takes."""
    repo = new_repo(ostree, base / "repo", "archive")
    with RepoServer(served["repo"]) as server:
        ostree("remote", "add", f"--repo={repo}", "--no-gpg-verify", "origin", server.url)
        ostree("pull", f"--repo={repo}", "origin", served["c1"])
        server.reset()
        ostree("pull", f"--repo={repo}", "origin", "main")
        full = len(server.object_requests())
    return {"repo": repo, "full_requests": full}


@pytest.fixture(scope="module")
def reference(served, ostree, tmp_path_factory):
    return _reference(ostree, served, tmp_path_factory.mktemp("ref"))


@pytest.fixture(scope="module")
def plain(ostree, tmp_path_factory):
    """Like `served`, but main's second commit holds only what a bare-user-only repo
    accepts (no setuid, no xattrs): regular files, one of 1.5 MiB, a symlink, a subdir."""
    base = tmp_path_factory.mktemp("plain")
    repo = new_repo(ostree, base / "served", "archive")
    first, tree = base / "first", base / "tree"
    (first / "sub").mkdir(parents=True)
    (first / "hello").write_text("first commit\n")
    (tree / "usr/share").mkdir(parents=True)
    (tree / "usr/share/big").write_bytes(os.urandom(3 << 19))  # incompressible
    (tree / "usr/share/small").write_text("small\n")
    (tree / "link").symlink_to("usr/share/small")
    c1 = ostree.out("commit", f"--repo={repo}", "-b", "main", *COMMIT_ARGS, str(first))
    c2 = ostree.out("commit", f"--repo={repo}", "-b", "main", *COMMIT_ARGS, str(tree))
    ostree("summary", f"--repo={repo}", "-u")
    served = {"repo": repo, "c1": c1, "c2": c2}
    return served, _reference(ostree, served, base)


def content_paths(served) -> list[str]:
    objs = sorted(p for p in (served["repo"] / "objects").rglob("*.filez"))
    return [str(p.relative_to(served["repo"])) for p in objs]


def biggest_object(served) -> str:
    objs = (served["repo"] / "objects").rglob("*.filez")
    return str(max(objs, key=lambda p: p.stat().st_size).relative_to(served["repo"]))


def start_repo(ostree, served, path: Path, url: str, mode: str = "archive") -> Path:
    """A repo whose origin:main already points at the first commit (it must not move)."""
    repo = new_repo(ostree, path, mode, url)
    ostree("pull", f"--repo={repo}", "origin", served["c1"])
    ref = repo / "refs/remotes/origin/main"
    ref.parent.mkdir(parents=True)
    ref.write_text(served["c1"] + "\n")
    return repo


def fail_then_resume(
    ostree,
    sysroot,
    served,
    reference,
    repo: Path,
    server: RepoServer,
    expect: str,
    mode: str = "archive",
) -> str:
    proc = sysroot("pull", f"--repo={repo}", "--network-retries=1", "origin", "main", check=False)
    line = one_error_line(proc)
    assert expect in line, line
    assert refs_of(repo) == {"refs/remotes/origin/main": served["c1"]}  # not moved
    ostree("fsck", f"--repo={repo}")
    assert not [p for p in (repo / "tmp").iterdir() if p.name.startswith("staging-")]
    resumes(ostree, sysroot, served, reference, repo, server, mode)
    return line


def resumes(
    ostree, sysroot, served, reference, repo: Path, server: RepoServer, mode: str = "archive"
) -> None:
    """The fault is gone: the next pull completes what is missing, and only that."""
    server.reset()
    sysroot("pull", f"--repo={repo}", "origin", "main")
    assert len(server.object_requests()) < reference["full_requests"]
    assert refs_of(repo) == {"refs/remotes/origin/main": served["c2"]}
    assert list((repo / "state").iterdir()) == []
    ostree("fsck", f"--repo={repo}")
    if mode == "archive":
        assert object_names(repo) == object_names(reference["repo"])


def test_server_dies_mid_pull(served, reference, ostree, sysroot, tmp_path):
    with RepoServer(served["repo"]) as first:
        repo = start_repo(ostree, served, tmp_path / "repo", first.url)
        first.die_after = 30  # summary, config, commit, some trees and files
        proc = sysroot(
            "pull", f"--repo={repo}", "--network-retries=1", "origin", "main", check=False
        )
    line = one_error_line(proc)
    assert first.url in line and "failed" in line, line
    assert refs_of(repo) == {"refs/remotes/origin/main": served["c1"]}
    ostree("fsck", f"--repo={repo}")
    partial = [p.name for p in (repo / "state").iterdir()]
    assert partial == [f"{served['c2']}.commitpartial"]
    # a new server at another port: the next pull resumes from there
    with RepoServer(served["repo"]) as second:
        sysroot("pull", f"--repo={repo}", f"--url={second.url}", "origin", "main")
        assert 0 < len(second.object_requests()) < reference["full_requests"]
    assert refs_of(repo) == {"refs/remotes/origin/main": served["c2"]}
    assert list((repo / "state").iterdir()) == []
    ostree("fsck", f"--repo={repo}")
    assert object_names(repo) == object_names(reference["repo"])


@pytest.mark.parametrize(
    "fault,expect",
    [
        ("corrupt", "Corrupted file object"),
        ("truncate", "truncated response"),
        ("404", "HTTP 404"),
    ],
)
def test_bad_content_object(served, reference, ostree, sysroot, tmp_path, fault, expect):
    with RepoServer(served["repo"]) as server:
        repo = start_repo(ostree, served, tmp_path / "repo", server.url)
        victim = biggest_object(served)
        server.faults[victim] = fault
        line = fail_then_resume(ostree, sysroot, served, reference, repo, server, expect)
        assert victim.split("/")[1][:10] in line.replace("/", "")  # names the object


def _flip_middle_byte(path: Path) -> bytes:
    """Damage an object in place (a private copy, never ostree's hardlinks); the
    original bytes, to put back."""
    data = path.read_bytes()
    os.chmod(path, 0o644)
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    return data


@pytest.mark.parametrize("transport", ["http", "file", "pull-local"])
@pytest.mark.parametrize("mode", ["bare", "bare-user", "bare-user-only"])
def test_corrupt_content_into_bare_modes(plain, ostree, sysroot, tmp_path, mode, transport):
    """A bare-mode destination stores content decoded from the .filez, not the .filez
    itself (archive does): the checksum must be checked on that path too. Over HTTP,
    from a file:// remote and with pull-local, a damaged object fails the pull with one
    line naming it, moves no ref, leaves fsck clean; once repaired, the pull completes.
    ostree refuses the same damaged source."""
    served, reference = plain
    victim = biggest_object(served)
    name = victim.split("/")[1] + victim.split("/")[2].split(".")[0]
    if transport == "http":
        with RepoServer(served["repo"]) as server:
            repo = start_repo(ostree, served, tmp_path / "repo", server.url, mode)
            server.faults[victim] = "corrupt"
            oracle = new_repo(ostree, tmp_path / "oracle", mode, server.url)
            assert ostree("pull", f"--repo={oracle}", "origin", "main", check=False).returncode != 0
            line = fail_then_resume(
                ostree, sysroot, served, reference, repo, server, "Corrupted file object", mode
            )
        assert name in line, line
        return
    src = tmp_path / "src"
    subprocess.run(["cp", "-a", str(served["repo"]), str(src)], check=True)
    original = _flip_middle_byte(src / victim)
    if transport == "file":
        repo = start_repo(ostree, served, tmp_path / "repo", f"file://{src}", mode)
        argv = ["pull", f"--repo={repo}", "origin", "main"]
        oracle = new_repo(ostree, tmp_path / "oracle", mode, f"file://{src}")
        # ostree imports local sources unchecked unless --untrusted; we always check
        assert (
            ostree(
                "pull", "--untrusted", f"--repo={oracle}", "origin", "main", check=False
            ).returncode
            != 0
        )
    else:
        repo = new_repo(ostree, tmp_path / "repo", mode)
        ostree("pull-local", f"--repo={repo}", str(src), served["c1"])
        (repo / "refs/heads/main").write_text(served["c1"] + "\n")
        argv = ["pull-local", f"--repo={repo}", str(src), "main"]
        oracle = new_repo(ostree, tmp_path / "oracle", mode)
        assert (
            ostree(
                "pull-local", "--untrusted", f"--repo={oracle}", str(src), "main", check=False
            ).returncode
            != 0
        )
    before = refs_of(repo)
    assert set(before.values()) == {served["c1"]}
    line = one_error_line(sysroot(*argv, check=False))
    assert f"Corrupted file object {name}" in line, line
    assert refs_of(repo) == before  # not moved
    ostree("fsck", f"--repo={repo}")
    assert not [p for p in (repo / "tmp").iterdir() if p.name.startswith("staging-")]
    (src / victim).write_bytes(original)
    sysroot(*argv)
    assert set(refs_of(repo).values()) == {served["c2"]}
    assert list((repo / "state").iterdir()) == []
    ostree("fsck", f"--repo={repo}")


@pytest.mark.parametrize("damage", ["text", "middle"])
def test_corrupt_commit_object(served, reference, ostree, sysroot, tmp_path, damage):
    """A commit whose bytes do not hash to its name is refused before anything of it
    is kept: no commit object, no partial marker, no ref moved; ostree refuses it too.
    "text" changes only the body text, so the commit still parses: only its checksum
    tells it apart."""
    c2 = served["c2"]
    copy = tmp_path / "served"
    subprocess.run(["cp", "-a", str(served["repo"]), str(copy)], check=True)
    path = copy / f"objects/{c2[:2]}/{c2[2:]}.commit"
    data = path.read_bytes()
    if damage == "text":
        assert data.count(b"Body text") == 1
        bad = data.replace(b"Body text", b"Body tex!")
    else:
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 0xFF
    path.write_bytes(bytes(bad))
    with RepoServer(copy) as server:
        repo = start_repo(ostree, served, tmp_path / "repo", server.url)
        oracle = new_repo(ostree, tmp_path / "oracle", "archive", server.url)
        assert ostree("pull", f"--repo={oracle}", "origin", "main", check=False).returncode != 0
        line = one_error_line(sysroot("pull", f"--repo={repo}", "origin", "main", check=False))
        assert f"Corrupted commit object {c2}" in line, line
        assert refs_of(repo) == {"refs/remotes/origin/main": served["c1"]}
        assert list((repo / "state").iterdir()) == []
        assert not (repo / f"objects/{c2[:2]}/{c2[2:]}.commit").exists()
        assert not (repo / f"objects/{c2[:2]}/{c2[2:]}.commitmeta").exists()
        ostree("fsck", f"--repo={repo}")
        path.write_bytes(data)  # repaired: the next pull completes (from scratch)
        sysroot("pull", f"--repo={repo}", "origin", "main")
    assert refs_of(repo) == {"refs/remotes/origin/main": c2}
    assert list((repo / "state").iterdir()) == []
    ostree("fsck", f"--repo={repo}")
    assert object_names(repo) == object_names(reference["repo"])


def test_corrupt_dirtree_into_bare_user(served, reference, ostree, sysroot, tmp_path):
    dirtrees = sorted((served["repo"] / "objects").rglob("*.dirtree"))
    victim = str(dirtrees[len(dirtrees) // 2].relative_to(served["repo"]))
    with RepoServer(served["repo"]) as server:
        repo = start_repo(ostree, served, tmp_path / "repo", server.url, "bare-user")
        server.faults[victim] = "corrupt"
        fail_then_resume(
            ostree,
            sysroot,
            served,
            reference,
            repo,
            server,
            "Corrupted dirtree object",
            mode="bare-user",
        )


def test_disk_full(served, reference, ostree, sysroot, tmp_path):
    """The repo on a 1 MiB tmpfs: the 1.5 MiB file cannot fit. The free-space reserve
    (core.min-free-space-percent, on by default) is turned off, so the write itself
    runs into ENOSPC."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        with RepoServer(served["repo"]) as server:
            repo = start_repo(ostree, served, mnt / "repo", server.url)
            ostree("config", f"--repo={repo}", "set", "core.min-free-space-percent", "0")
            proc = sysroot("pull", f"--repo={repo}", "origin", "main", check=False)
            line = one_error_line(proc)
            assert "No space left on device" in line and str(repo) in line, line
            assert refs_of(repo) == {"refs/remotes/origin/main": served["c1"]}
            ostree("fsck", f"--repo={repo}")
            subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
            resumes(ostree, sysroot, served, reference, repo, server)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_interrupted_commit_is_completed(served, reference, ostree, sysroot, tmp_path):
    """A commit left partial (here by --commit-metadata-only) is walked again by the
    next pull, which fetches only what is missing; ostree agrees on the result."""
    with RepoServer(served["repo"]) as server:
        repo = new_repo(ostree, tmp_path / "repo", "archive", server.url)
        ostree("pull", f"--repo={repo}", "origin", served["c1"])
        sysroot("pull", f"--repo={repo}", "--commit-metadata-only", "origin", "main")
        assert [p.name for p in (repo / "state").iterdir()] == [f"{served['c2']}.commitpartial"]
        ostree("fsck", f"--repo={repo}")
        server.reset()
        sysroot("pull", f"--repo={repo}", "origin", "main")
        assert f"objects/{served['c2'][:2]}/{served['c2'][2:]}.commit" not in server.requests
    assert list((repo / "state").iterdir()) == []
    assert object_names(repo) == object_names(reference["repo"])
    ostree("fsck", f"--repo={repo}")


def _ctrl_c_as_at_a_terminal() -> None:
    """SIGINT's default action in the child, as in a terminal: a test suite started in
    the background (`cmd &` in a script) inherits SIGINT ignored, and Python then
    never turns ^C into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_held_pull(ostree, served, tmp_path, server):
    """A pull running in the background, one of its fetch workers waiting for the
    biggest object (the server holds it back): (repo, process)."""
    repo = start_repo(ostree, served, tmp_path / "repo", server.url)
    server.faults[biggest_object(served)] = "hold"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sysroot",
            "pull",
            f"--repo={repo}",
            "--network-retries=1",
            "origin",
            "main",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_ctrl_c_as_at_a_terminal,
    )
    assert server.held.wait(60), "the pull never asked for the held object"
    return repo, proc


def _processes_using(repo: Path) -> list[int]:
    """Processes whose command line names repo (the pull and its forked workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(repo).encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            pass  # gone meanwhile
    return pids


def _finish(proc) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_interrupted_by_ctrl_c(served, reference, ostree, sysroot, tmp_path):
    """^C mid-pull: exit 130, every worker gone, what was verified kept (nothing left
    in staging), no ref moved; the next pull fetches only the rest."""
    with RepoServer(served["repo"]) as server:
        repo, proc = _start_held_pull(ostree, served, tmp_path, server)
        workers = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(workers) == min(8, len(os.sched_getaffinity(0)))  # one per CPU
        proc.send_signal(signal.SIGINT)
        done = _finish(proc)
        assert done.returncode == 130, done.stderr
        assert b"Traceback" not in done.stderr
        deadline = time.monotonic() + 10
        while _processes_using(repo) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _processes_using(repo) == []
        assert not [p for p in (repo / "tmp").iterdir() if p.name.startswith("staging-")]
        assert refs_of(repo) == {"refs/remotes/origin/main": served["c1"]}
        ostree("fsck", f"--repo={repo}")
        resumes(ostree, sysroot, served, reference, repo, server)


def test_fetch_worker_killed(served, reference, ostree, sysroot, tmp_path):
    """A worker process killed (say, by the OOM killer): one line naming it, the
    verified objects kept, no ref moved; the next pull fetches only the rest."""
    with RepoServer(served["repo"]) as server:
        repo, proc = _start_held_pull(ostree, served, tmp_path, server)
        worker = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0]
        os.kill(int(worker), signal.SIGKILL)
        server.release.set()
        line = one_error_line(_finish(proc))
        assert f"fetch worker (pid {worker}) died" in line, line
        assert refs_of(repo) == {"refs/remotes/origin/main": served["c1"]}
        assert not [p for p in (repo / "tmp").iterdir() if p.name.startswith("staging-")]
        ostree("fsck", f"--repo={repo}")
        resumes(ostree, sysroot, served, reference, repo, server)
