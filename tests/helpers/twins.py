"""Twins: the same input built twice, one copy driven by the real ostree (the oracle),
the other by sysroot, then compared.

- Repositories: `twin_repos` makes two alike (by ostree: `theirs` for ostree, `ours` for
  sysroot), `copied_twins` two `cp -a` copies of one, `with_tools` pairs each with its
  tool, `ReposByWriter` holds the same commits written by each tool. `run_both` runs one
  command with each tool on its own copy, `lines_of_both` does so with ours in-process
  and returns both stdouts, `run_in_dirs` runs a command (a checkout) in a directory per
  tool, `for_both` applies one change to each; `assert_same_repos` compares what they
  hold (refs, objects, partial commits) and has `ostree fsck` check ours.
- Commits: `CommitTwins` (made by `commit_twins`: each repo inited by its own tool) runs
  one `commit` with both tools and compares.
- `run_ours` / `run_sysroot`: our CLI in-process (an interpreter start per call would
  dominate the runtime of the option matrices).
- Sysroots: `SysrootTwins` runs `admin` commands with both tools (both succeed or both
  fail, printing the same) and compares the boot state and `admin status` of both.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sysroot.cli.main import main as sysroot_main
from tests.helpers.sysroots import (
    OSNAME,
    Sysroot,
    assert_dicts_equal,
    boot_state,
    our_status,
)
from tests.helpers.tools import Tool
from tests.pull.serve_helpers import new_repo, object_bytes, object_names, refs_of


# ---------------------------------------------------------------------- our CLI in-process
def run_ours(*args, cwd: Path | None = None, strip: bool = False) -> tuple[int, str, str]:
    """The sysroot CLI in-process, in cwd when given: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = sysroot_main([str(a) for a in args])
    finally:
        os.chdir(old)
    if strip:
        return rc, out.getvalue().strip(), err.getvalue().strip()
    return rc, out.getvalue(), err.getvalue()


def run_sysroot(*args) -> tuple[int, str, str]:
    """run_ours with stdout and stderr stripped."""
    return run_ours(*args, strip=True)


@dataclass
class InProcessResult:
    """What run_in_dirs keeps of an in-process run (the shape of a CompletedProcess)."""

    returncode: int
    stderr: bytes


# ---------------------------------------------------------------------- repositories
def twin_repos(
    ostree: Tool,
    base: Path,
    mode: str,
    url: str | None = None,
    names: tuple[str, str] = ("theirs", "ours"),
) -> tuple[Path, Path]:
    """(theirs, ours): two empty repositories of mode under base, made by ostree, each
    with the remote "origin" at url when given."""
    return (
        new_repo(ostree, base / names[0], mode, url),
        new_repo(ostree, base / names[1], mode, url),
    )


def pulled_by_both(
    ostree: Tool,
    sysroot: Tool,
    base: Path,
    url: str,
    remote_options: tuple[str, ...] = (),
    pull_args: tuple[str, ...] = ("main",),
) -> tuple[Path, Path, list[subprocess.CompletedProcess]]:
    """(theirs, ours, [ostree's pull, ours]): two empty archive repositories, each with
    the remote "origin" at url added by ostree (with remote_options, and
    --no-gpg-verify), then pulled by its own tool (`pull origin PULL_ARGS`, unchecked)."""
    theirs, ours = twin_repos(ostree, base, "archive", None)
    procs = []
    for tool, repo in ((ostree, theirs), (sysroot, ours)):
        ostree("remote", "add", f"--repo={repo}", "--no-gpg-verify", *remote_options, "origin", url)
        procs.append(tool("pull", f"--repo={repo}", "origin", *pull_args, check=False))
    return theirs, ours, procs


def copied_twins(src: Path, base: Path) -> tuple[Path, Path]:
    """(theirs, ours): two `cp -a` copies of the repository src, as base/theirs, base/ours."""
    theirs, ours = base / "theirs", base / "ours"
    for dst in (ours, theirs):
        subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    return theirs, ours


def with_tools(ostree: Tool, sysroot: Tool, repos: tuple[Path, Path]) -> list[tuple[Tool, Path]]:
    """[(ostree, theirs), (sysroot, ours)]: for tests that run the same steps with each."""
    theirs, ours = repos
    return [(ostree, theirs), (sysroot, ours)]


def for_both(repos: tuple[Path, Path], change: Callable[[Path], object]) -> None:
    """Apply the same change (a corruption, a ref) to each repository."""
    for repo in repos:
        change(repo)


def lines_of_both(ostree: Tool, repos: tuple[Path, Path], *args: str) -> tuple[list, list]:
    """`--repo=REPO ARGS` by ostree on theirs and by sysroot (in-process) on ours, both
    required to succeed: (our stdout lines, theirs)."""
    theirs, ours = repos
    rc, out, err = run_ours(f"--repo={ours}", *args)
    assert rc == 0, err
    return out.strip().splitlines(), ostree.out(f"--repo={theirs}", *args).splitlines()


def run_in_dirs(
    ostree: Tool, sysroot: Tool | None, base: Path, args: list, *, check: bool = True
) -> dict:
    """Run the same command with both tools, each in its own base/{ostree,sysroot}.

    sysroot is given as None to run our CLI in-process (same argument parsing and
    code, without an interpreter start per call: it keeps the option matrix fast).
    """
    results: dict = {}
    for name, tool in (("ostree", ostree), ("sysroot", sysroot)):
        cwd = base / name
        cwd.mkdir(exist_ok=True)
        if tool is None:
            rc, _, err = run_ours(*args, cwd=cwd)
            if check:
                assert rc == 0, f"sysroot {' '.join(map(str, args))} exited {rc}: {err}"
            results[name] = InProcessResult(rc, err.encode())
        else:
            results[name] = tool(*args, check=check, cwd=cwd)
    return results


class ReposByWriter:
    """The same commits written by each tool: one repository per (mode, writer), writer
    "ostree" or "sysroot", made on first use under base as repo-WRITER-MODE. branches
    maps each branch to the tree committed to it (in order), with commit_args."""

    def __init__(
        self,
        base: Path,
        ostree: Tool,
        sysroot: Tool,
        branches: dict[str, Path],
        commit_args: tuple[str, ...] = (),
    ):
        self.base = base
        self.ostree, self.sysroot = ostree, sysroot
        self.branches = branches
        self.commit_args = commit_args
        self._repos: dict[tuple[str, str], Path] = {}

    def get(self, mode: str, writer: str = "ostree") -> Path:
        key = (mode, writer)
        if key not in self._repos:
            path = self.base / f"repo-{writer}-{mode}"
            tool = self.ostree if writer == "ostree" else self.sysroot
            tool("init", f"--repo={path}", f"--mode={mode}")
            for branch, tree in self.branches.items():
                tool("commit", f"--repo={path}", "-b", branch, *self.commit_args, tree)
            self._repos[key] = path
        return self._repos[key]


def run_both(
    ostree: Tool, sysroot: Tool, repos: tuple[Path, Path], cmd: str, *args: str
) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """`CMD --repo=REPO ARGS` by ostree on theirs and by sysroot on ours, neither checked."""
    theirs, ours = repos
    return (
        ostree(cmd, f"--repo={theirs}", *args, check=False),
        sysroot(cmd, f"--repo={ours}", *args, check=False),
    )


def assert_same_repos(ostree: Tool, theirs: Path, ours: Path, mode: str) -> None:
    """The same refs, objects (byte for byte in archive mode) and partial-commit marks;
    and ours passes `ostree fsck`."""
    assert refs_of(ours) == refs_of(theirs)
    if mode == "archive":
        assert object_bytes(ours) == object_bytes(theirs)
    else:
        assert object_names(ours) == object_names(theirs)
    assert sorted(p.name for p in (ours / "state").iterdir()) == sorted(
        p.name for p in (theirs / "state").iterdir()
    )
    ostree("fsck", f"--repo={ours}")


# ---------------------------------------------------------------------- commits
def disable_fsync(repo: Path) -> None:
    """fsync has no bearing on checksums (test_commit_safety covers it); skipping it
    keeps these tests fast. A fresh repo's config ends in its [core] group."""
    config = repo / "config"
    text = config.read_text()
    groups = [ln for ln in text.splitlines() if ln.startswith("[")]
    assert groups[-1] == "[core]", text
    config.write_text(text.rstrip("\n") + "\nfsync=false\n")


@dataclass
class CommitTwins:
    """One repository per tool, same mode (`o` for ostree, `s` for sysroot, run
    in-process); each method runs one `commit` with the same arguments in both, with
    --timestamp=TIMESTAMP first when timestamp is set."""

    ostree: Tool
    o: Path
    s: Path
    timestamp: str | None = None
    has_layer_refs: bool = False  # for tests that add shared layer refs once

    def _args(self, args: tuple) -> tuple:
        return args if self.timestamp is None else (f"--timestamp={self.timestamp}", *args)

    def run(self, *args) -> tuple[tuple[int, str], tuple[int, str, str]]:
        """((ostree's exit code, its stdout stripped + stderr), run_sysroot's result)."""
        args = self._args(args)
        o = self.ostree("commit", f"--repo={self.o}", *args, check=False)
        s = run_sysroot("commit", f"--repo={self.s}", *args)
        # ostree may name an undecodable file name: replaced, not a crash of the test
        out = o.stdout.decode(errors="replace").strip() + o.stderr.decode(errors="replace")
        return (o.returncode, out), s

    def same(self, *args) -> str:
        """Both succeed and print the same (ostree's stderr included); our stdout."""
        (orc, oout), (src, sout, serr) = self.run(*args)
        assert orc == 0, oout
        assert src == 0, serr
        assert oout == sout
        return sout

    def commit(self, *args) -> tuple[str, str]:
        """Both succeed: (ostree's stdout, ours), not compared."""
        args = self._args(args)
        o = self.ostree("commit", f"--repo={self.o}", *args, check=False)
        rc, s, err = run_sysroot("commit", f"--repo={self.s}", *args)
        assert o.returncode == 0, o.stderr.decode()
        assert rc == 0, err
        return o.stdout.decode().strip(), s

    def both_fail(self, *args) -> str:
        """Both refuse, ours with one `error:` line (and maybe a hint); our stderr."""
        (orc, oout), (src, sout, serr) = self.run(*args)
        assert orc != 0, f"ostree accepted: {oout}"
        assert src != 0, f"sysroot accepted: {sout}"
        assert serr.startswith("error: ") and len(serr.splitlines()) <= 2, serr
        return serr

    def refs(self) -> tuple[list[str], list[str]]:
        return (
            sorted(os.listdir(self.o / "refs/heads")),
            sorted(os.listdir(self.s / "refs/heads")),
        )

    def fsck(self) -> None:
        """ostree fsck passes ours."""
        res = self.ostree("fsck", f"--repo={self.s}", check=False)
        assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
        assert b"no errors found" in res.stdout

    def fsck_like_ostree(self) -> None:
        """For input where ostree writes objects its own fsck rejects (xattrs in archive
        order in a bare repo, a non-canonical commit pulled into bare-user-only): the
        same verdict, naming the same objects, on both repositories."""
        o, s = (self.ostree("fsck", f"--repo={repo}", check=False) for repo in (self.o, self.s))
        assert o.returncode == s.returncode
        assert [ln for ln in o.stderr.decode().splitlines() if ln.startswith("error")] == [
            ln for ln in s.stderr.decode().splitlines() if ln.startswith("error")
        ]


def commit_twins(ostree: Tool, base: Path, mode: str, timestamp: str | None = None) -> CommitTwins:
    """base/MODE-ostree inited by ostree, base/MODE-sysroot by sysroot, fsync off in both."""
    twins = CommitTwins(ostree, base / f"{mode}-ostree", base / f"{mode}-sysroot", timestamp)
    ostree("init", f"--repo={twins.o}", f"--mode={mode}")
    rc, _, err = run_sysroot("init", f"--repo={twins.s}", f"--mode={mode}")
    assert rc == 0, err
    disable_fsync(twins.o)
    disable_fsync(twins.s)
    return twins


# ---------------------------------------------------------------------- sysroots
@dataclass
class SysrootTwins:
    """Two sysroots with identical content: `a` driven by ostree, `b` by sysroot (the
    `pair` fixture of tests/deploy/conftest.py makes them with each tool's init-fs and
    os-init, and checks they start equal)."""

    a: Sysroot
    b: Sysroot
    ostree: Tool
    sysroot: Tool
    log: list[str] = field(default_factory=list)

    def commit(self, tree: Path, branch: str = f"{OSNAME}/x", **kw) -> str:
        ca = self.a.commit(tree, branch, **kw)
        cb = self.b.commit(tree, branch, **kw)
        assert ca == cb, "the same tree and timestamp must commit to the same checksum"
        return ca

    def admin(self, *args, expect_ok: bool = True, same_stdout: bool = True):
        """Run one admin command with both tools (ostree on a, sysroot on b); both must
        succeed (or both fail) and, by default, print the same."""
        ra = self.a.oadmin(*args, check=False)
        rb = self.b.admin(*args, check=False)
        self.log.append(" ".join(args))
        detail = (
            f"admin {' '.join(args)}\nostree rc={ra.returncode} "
            f"stderr={ra.stderr.decode()!r}\nsysroot rc={rb.returncode} "
            f"stderr={rb.stderr.decode()!r}"
        )
        assert (ra.returncode == 0) == (rb.returncode == 0), detail
        assert (ra.returncode == 0) == expect_ok, detail
        if not expect_ok:
            assert b"Traceback" not in rb.stderr, detail
        elif same_stdout:
            assert rb.stdout.decode() == ra.stdout.decode(), detail
        return ra, rb

    def assert_same(self) -> None:
        sa, sb = boot_state(self.a.path), boot_state(self.b.path)
        assert_dicts_equal(sa, sb, f"after: {self.log}")
        # ostree reads the sysroot we wrote as it reads its own, and so do we (a and b
        # are equal by now, so reading a with sysroot too would prove nothing more)
        status_a = self.a.status(self.ostree)
        assert self.b.status(self.ostree) == status_a
        assert our_status(self.b.path) == status_a
