"""`pull` against a hostile server (tests/pull/hostile_server.py): endless bodies, lying
Content-Length, stalls, redirect loops, decompression bombs, traversal ref names,
objects that hash wrong. Each must end in one error line and no traceback, with no
ref moved, nothing written outside the repository, a bounded peak RSS, a repository
`ostree fsck` accepts, and an honest pull afterwards that completes. ostree is run
against the same server where it has the same bound, and must refuse too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from sysroot.formats.objects import FileHeader, length_prefixed
from sysroot.pull import filez
from sysroot.store.summary import Summary, SummaryRef
from sysroot.util.run import clean_env
from tests.conftest import OSTREE, one_error_line
from tests.pull.hostile_server import (
    Bomb,
    Endless,
    HostileServer,
    RedirectLoop,
    Replace,
    Slow,
    Stall,
    WrongLength,
)
from tests.pull.serve_helpers import new_repo, refs_of

MAX_RSS_KIB = 300 << 10
SMALL = 1 << 16  # the max-metadata-size most cases set, to keep them fast


@pytest.fixture(scope="module")
def served(tmp_path_factory, ostree) -> dict:
    """main = C1 <- C2 (a 6-byte /hello, a 256 KiB /sub/big), with a summary; and a
    client template whose origin:main is at C1."""
    base = tmp_path_factory.mktemp("hostile")
    repo = new_repo(ostree, base / "served", "archive")
    first, tree = base / "first", base / "tree"
    first.mkdir()
    (first / "one").write_text("first\n")
    (tree / "sub").mkdir(parents=True)
    (tree / "hello").write_text("hello\n")
    (tree / "sub/big").write_bytes(os.urandom(1 << 18))
    os.chmod(tree / "sub", 0o700)  # a dirmeta C1 does not have
    c1 = ostree.out("commit", f"--repo={repo}", "-b", "main", "-s", "one", str(first))
    c2 = ostree.out("commit", f"--repo={repo}", "-b", "main", "-s", "two", str(tree))
    ostree("summary", f"--repo={repo}", "-u")

    def obj(checksum: str, ext: str) -> str:
        return f"objects/{checksum[:2]}/{checksum[2:]}.{ext}"

    def ls(path: str) -> list[str]:
        return ostree.out("ls", f"--repo={repo}", "-C", "-d", c2, path).split()

    paths = {
        "config": "config",
        "summary": "summary",
        "summary.sig": "summary.sig",
        "commit": obj(c2, "commit"),
        "commitmeta": obj(c2, "commitmeta"),
        "dirtree": obj(ls("/")[4], "dirtree"),
        "subtree": obj(ls("/sub")[4], "dirtree"),
        "dirmeta": obj(ls("/sub")[5], "dirmeta"),
        "small": obj(ls("/hello")[4], "filez"),
        "big": obj(ls("/sub/big")[4], "filez"),
        "refs/heads/main": "refs/heads/main",
    }
    server = HostileServer(repo, response_secs=20, lifetime=600)
    with server:
        client = new_repo(ostree, base / "client", "archive", server.url)
        ostree("pull", f"--repo={client}", "origin", c1)
        (client / "refs/remotes/origin").mkdir(parents=True, exist_ok=True)
        (client / "refs/remotes/origin/main").write_text(c1 + "\n")
        yield {"repo": repo, "c1": c1, "c2": c2, "paths": paths, "server": server, "client": client}


@pytest.fixture
def server(served) -> HostileServer:
    srv = served["server"]
    srv.reset()
    yield srv
    srv.reset()


def _case_repo(served, tmp_path: Path, **options: str) -> Path:
    repo = tmp_path / "case/repo"
    shutil.copytree(served["client"], repo, symlinks=True)
    for key, value in options.items():
        _config_set(repo, f'remote "origin".{key}', value)
    return repo


def _config_set(repo: Path, key: str, value: str) -> None:
    subprocess.run(
        [OSTREE, "config", f"--repo={repo}", "set", key, value],
        check=True,
        env=clean_env(),
        capture_output=True,
    )


# Runs argv from a fresh, small process and writes the peak RSS (KiB) of argv and its
# waited-for children to the file named first. Linux's ru_maxrss of a child also counts
# the memory of the process that forked it (its high-water mark is carried over at
# exec): forked straight from a test worker grown large, the pull would be charged
# for the worker.
_MEASURER = r"""
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(
    argv: list[str], cwd: Path, timeout: float = 60
) -> tuple[subprocess.CompletedProcess, int, float]:
    """(result, peak RSS in KiB of it and its waited-for children, seconds)."""
    out, err, rss = cwd / "stdout", cwd / "stderr", cwd / "maxrss"
    start = time.monotonic()
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(
            [sys.executable, "-c", _MEASURER, str(rss), *argv],
            stdin=subprocess.DEVNULL,
            stdout=o,
            stderr=e,
            env=clean_env(),
            cwd=cwd,
            start_new_session=True,
        )
    # a hung pull fails the test, no more (the whole group: the measurer and the pull)
    killer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    killer.start()
    try:
        proc.wait()
    finally:
        killer.cancel()
    elapsed = time.monotonic() - start
    result = subprocess.CompletedProcess(argv, proc.returncode, out.read_bytes(), err.read_bytes())
    peak = int(rss.read_text()) if rss.exists() else 0
    for path in (out, err, rss):
        path.unlink(missing_ok=True)
    return result, peak, elapsed


def _outside(case: Path) -> set[str]:
    """Everything in the case directory but the repository."""
    return {
        str(p.relative_to(case))
        for p in case.rglob("*")
        if "repo" not in p.relative_to(case).parts[:1]
    }


def refuses(
    served,
    repo: Path,
    args: list[str],
    expect: str,
    *,
    timeout: float = 60,
    tool: list[str] | None = None,
) -> str:
    """Runs the pull, checks everything a refused pull must keep; its error line."""
    case = repo.parent
    refs = refs_of(repo)
    before = _outside(case)
    argv = (tool or [sys.executable, "-m", "sysroot"]) + ["pull", f"--repo={repo}", *args]
    proc, rss, elapsed = run_measured(argv, case, timeout)
    line = one_error_line(proc) if tool is None else proc.stderr.decode().strip()
    assert proc.returncode != 0, proc
    assert expect in line, line
    assert rss < MAX_RSS_KIB, f"peak RSS {rss} KiB"
    assert refs_of(repo) == refs, "a ref moved"
    assert _outside(case) == before, "written outside the repository"
    assert not (repo.parent.parent / "x").exists()
    fsck = subprocess.run([OSTREE, "fsck", f"--repo={repo}"], capture_output=True, env=clean_env())
    assert fsck.returncode == 0, fsck.stderr.decode()
    return line


def honest_pull_completes(served, server: HostileServer, repo: Path) -> None:
    server.reset()
    proc, _, _ = run_measured(
        [sys.executable, "-m", "sysroot", "pull", f"--repo={repo}", "origin", "main"], repo.parent
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert refs_of(repo)["refs/remotes/origin/main"] == served["c2"]
    subprocess.run(
        [OSTREE, "fsck", f"--repo={repo}"], check=True, capture_output=True, env=clean_env()
    )


# --------------------------------------------------------------- endless and bounded

ENDLESS = ["config", "summary", "summary.sig", "commit", "commitmeta", "dirtree", "dirmeta"]


@pytest.mark.parametrize("what", ENDLESS)
def test_endless_metadata(served, server, tmp_path, what):
    """An endless body with no Content-Length stops at max-metadata-size."""
    repo = _case_repo(served, tmp_path, **{"max-metadata-size": str(SMALL)})
    server.behaviours[served["paths"][what]] = Endless()
    line = refuses(served, repo, ["origin", "main"], f"exceeded maximum size of {SMALL} bytes")
    assert served["paths"][what] in line
    honest_pull_completes(served, server, repo)


def test_endless_refs_heads(served, server, tmp_path):
    """No summary: refs/heads/main is read, and bounded too."""
    repo = _case_repo(served, tmp_path, **{"max-metadata-size": str(SMALL)})
    server.behaviours["summary"] = Replace(None)
    server.behaviours["refs/heads/main"] = Endless()
    refuses(served, repo, ["origin", "main"], f"exceeded maximum size of {SMALL} bytes")
    honest_pull_completes(served, server, repo)


def test_declared_too_large_is_not_read(served, server, tmp_path):
    """A Content-Length past the bound is refused before its body is read."""
    repo = _case_repo(served, tmp_path, **{"max-metadata-size": str(SMALL)})
    server.behaviours["summary"] = Endless(declared=1 << 40)
    line = refuses(served, repo, ["origin", "main"], f"exceeded maximum size of {SMALL} bytes")
    assert "summary" in line
    assert server.requests.count("summary") == 1  # refused, not retried
    honest_pull_completes(served, server, repo)


@pytest.mark.parametrize("what", ["summary", "dirtree"])
def test_default_bound_like_ostree(served, server, tmp_path, what):
    """Without the option: ostree's 10 MiB, and ostree refuses the same file alike."""
    repo = _case_repo(served, tmp_path)
    server.behaviours[served["paths"][what]] = Endless()
    ours = refuses(served, repo, ["origin", "main"], "exceeded maximum size of 10485760 bytes")
    theirs = refuses(
        served, repo, ["origin", "main"], "exceeded maximum size of 10485760 bytes", tool=[OSTREE]
    )
    assert served["paths"][what] in ours and served["paths"][what] in theirs
    honest_pull_completes(served, server, repo)


def test_endless_error_pages(served, server, tmp_path):
    """An endless 404 page for the (optional) commitmeta is not read to its end: the
    pull goes on at once; an endless 503 is retried, then refused."""
    repo = _case_repo(served, tmp_path)
    server.behaviours[served["paths"]["commitmeta"]] = Endless(status=404)
    proc, rss, elapsed = run_measured(
        [sys.executable, "-m", "sysroot", "pull", f"--repo={repo}", "origin", "main"], repo.parent
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert elapsed < 10 and rss < MAX_RSS_KIB
    repo = _case_repo(served, tmp_path / "again")
    server.reset()
    server.behaviours["summary"] = Endless(status=503)
    refuses(
        served,
        repo,
        ["--network-retries=2", "origin", "main"],
        "summary failed: server returned HTTP 503",
    )
    assert server.requests.count("summary") == 3
    honest_pull_completes(served, server, repo)


def test_max_metadata_size_option_checked(served, server, tmp_path):
    repo = _case_repo(served, tmp_path, **{"max-metadata-size": "lots"})
    refuses(served, repo, ["origin", "main"], 'key "max-metadata-size" has value "lots"')


# --------------------------------------------------------------- content (.filez)


@pytest.mark.parametrize("mode", ["archive", "bare-user"])
def test_filez_bomb(served, server, tmp_path, ostree, mode):
    """Header says 6 bytes, the deflate stream inflates forever: stopped at once,
    stored as .filez (archive) or decoded (bare-user), long before the server's 20 s
    are over. ostree downloads the whole stream before it looks (so its bomb ends
    after 2 s), then refuses it too."""
    if mode == "archive":
        repo = _case_repo(served, tmp_path)
    else:
        (tmp_path / "case").mkdir()
        repo = new_repo(ostree, tmp_path / "case/repo", mode, server.url)
    server.behaviours[served["paths"]["small"]] = Bomb()
    start = time.monotonic()
    refuses(served, repo, ["origin", "main"], "payload is longer than the 6 bytes its header says")
    assert time.monotonic() - start < 10
    if mode == "bare-user":
        server.behaviours[served["paths"]["small"]] = Bomb(secs=2)
        refuses(served, repo, ["origin", "main"], "Corrupted file object", tool=[OSTREE])
    honest_pull_completes(served, server, repo)


def test_filez_endless_after_payload(served, server, tmp_path):
    """A valid object followed by endless bytes: bounded by its declared size."""
    repo = _case_repo(served, tmp_path)
    data = (served["repo"] / served["paths"]["small"]).read_bytes()
    server.behaviours[served["paths"]["small"]] = Replace(data + os.urandom(1 << 20))
    refuses(served, repo, ["origin", "main"], "too long for the 6 bytes its header says")
    honest_pull_completes(served, server, repo)


@pytest.mark.parametrize(
    ("served_instead", "target", "message"),
    [
        ("small", "big", "Corrupted file object"),
        ("subtree", "dirtree", "Corrupted dirtree object"),
    ],
)
def test_object_hashing_wrong(served, server, tmp_path, served_instead, target, message):
    """Another valid object served in place of a content object or a dirtree."""
    repo = _case_repo(served, tmp_path)
    other = (served["repo"] / served["paths"][served_instead]).read_bytes()
    server.behaviours[served["paths"][target]] = Replace(other)
    refuses(served, repo, ["origin", "main"], message)
    refuses(served, repo, ["origin", "main"], "", tool=[OSTREE])
    honest_pull_completes(served, server, repo)


# --------------------------------------------------------------- wrong Content-Length


def test_content_length_too_short(served, server, tmp_path):
    """The object cut short by its own header, the rest left on the connection."""
    repo = _case_repo(served, tmp_path)
    server.behaviours[served["paths"]["dirtree"]] = WrongLength(-10)
    refuses(served, repo, ["origin", "main"], "Corrupted dirtree object")
    refuses(served, repo, ["origin", "main"], "", tool=[OSTREE])
    honest_pull_completes(served, server, repo)


def test_content_length_too_long(served, server, tmp_path):
    """More promised than sent, then the connection closes: retried, then refused."""
    repo = _case_repo(served, tmp_path)
    server.behaviours[served["paths"]["big"]] = WrongLength(1000)
    refuses(served, repo, ["--network-retries=1", "origin", "main"], "truncated response")
    refuses(served, repo, ["origin", "main"], "", tool=[OSTREE])
    honest_pull_completes(served, server, repo)


def test_content_length_too_long_then_stall(served, server, tmp_path):
    repo = _case_repo(served, tmp_path, **{"stall-timeout-secs": "2"})
    server.behaviours[served["paths"]["dirtree"]] = WrongLength(1000, stall=True)
    refuses(served, repo, ["origin", "main"], "no data received in 2 s", timeout=20)
    honest_pull_completes(served, server, repo)


# --------------------------------------------------------------- stalls


@pytest.mark.parametrize("what", ["summary", "big"])
def test_stall_ends_at_the_deadline(served, server, tmp_path, what):
    """Retries go on (5 by default) but all of them within stall-timeout-secs."""
    repo = _case_repo(served, tmp_path, **{"stall-timeout-secs": "2"})
    server.behaviours[served["paths"][what]] = Stall(after=100)
    start = time.monotonic()
    line = refuses(served, repo, ["origin", "main"], "no data received in 2 s", timeout=30)
    assert time.monotonic() - start < 15
    assert served["paths"][what] in line
    honest_pull_completes(served, server, repo)


def test_slow_but_progressing_is_not_cut_off(served, server, tmp_path):
    """16 KiB every 0.3 s (about 5 s for the file) under a 2 s stall timeout."""
    repo = _case_repo(served, tmp_path, **{"stall-timeout-secs": "2"})
    server.behaviours[served["paths"]["big"]] = Slow(16 << 10, 0.3)
    proc, _, elapsed = run_measured(
        [sys.executable, "-m", "sysroot", "pull", f"--repo={repo}", "origin", "main"], repo.parent
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert elapsed > 4
    assert refs_of(repo)["refs/remotes/origin/main"] == served["c2"]
    assert server.requests.count(served["paths"]["big"]) == 1  # never retried


def test_stall_timeout_option_checked(served, server, tmp_path):
    repo = _case_repo(served, tmp_path, **{"stall-timeout-secs": "0"})
    refuses(served, repo, ["origin", "main"], 'key "stall-timeout-secs" has value "0"')


# --------------------------------------------------------------- redirects, names


def test_redirect_loop(served, server, tmp_path):
    repo = _case_repo(served, tmp_path)
    server.behaviours["summary"] = RedirectLoop()
    line = refuses(served, repo, ["origin", "main"], "too many redirects")
    assert server.requests.count("summary") <= 10, line  # 5 redirects, never retried
    # ostree (libcurl, no redirect limit set) follows a few thousand, then gives up
    refuses(served, repo, ["origin", "main"], "", tool=[OSTREE], timeout=20)
    honest_pull_completes(served, server, repo)


def _summary_with(served, name: str) -> bytes:
    summary = Summary.parse((served["repo"] / "summary").read_bytes())
    ref = summary.refs[0]
    refs = [SummaryRef(name, ref.commit_size, served["c2"], ref.metadata)]
    return Summary(refs, summary.metadata).serialize()


def test_traversal_ref_in_summary(served, server, tmp_path):
    """A mirror pull takes every ref the summary lists: `../../x` is refused."""
    repo = _case_repo(served, tmp_path)
    server.behaviours["summary"] = Replace(_summary_with(served, "../../x"))
    refuses(served, repo, ["--mirror", "origin"], "../../x")
    refuses(served, repo, ["--mirror", "origin"], "", tool=[OSTREE])
    assert not (repo / "x").exists() and not (repo / "refs/x").exists()
    honest_pull_completes(served, server, repo)


def test_traversal_in_refs_heads(served, server, tmp_path):
    """No summary, and refs/heads/main names `../../x` instead of a checksum."""
    repo = _case_repo(served, tmp_path)
    server.behaviours["summary"] = Replace(None)
    server.behaviours["refs/heads/main"] = Replace(b"../../x\n")
    refuses(served, repo, ["origin", "main"], "Invalid checksum")
    refuses(served, repo, ["origin", "main"], "", tool=[OSTREE])
    honest_pull_completes(served, server, repo)


@pytest.mark.unit
def test_bomb_inflates_in_bounded_steps():
    """One 64 KiB network chunk of deflated zeros is 64 MiB inflated: it comes out in
    pieces of at most 1 MiB, so eight fetch threads cannot hold 512 MiB between them
    even when the header claims a size that large."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = z.compress(bytes(64 << 20)) + z.flush()
    assert len(stream) < 1 << 16
    header = length_prefixed(FileHeader(0, 0, 0o100644).serialize_zlib(64 << 20))
    dec = filez.FilezDecoder("0" * 64)
    sizes = [len(piece) for piece in dec.pieces(header + stream)]
    assert sum(sizes) + len(dec.finish()) == 64 << 20
    assert max(sizes) <= 1 << 20
