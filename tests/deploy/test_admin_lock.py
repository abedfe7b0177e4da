"""Every mutating `admin` command waits while another process holds `ostree/lock`.

The holder is either sysroot itself (SysrootLock, in another process) or a process that
locks the file exactly as libostree 2022.7 does (glnx_make_lock_file: an exclusive OFD
lock on the whole of `ostree/lock`, the file left in place); that the real `ostree admin`
waits for the second kind is checked too. A blocked command must announce the wait
("Waiting for sysroot lock...", as ostree does), still be running a while later with
nothing changed, and complete once the holder lets go.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.deploy.test_staged import BINDS, HARNESS, make_booted  # noqa: F401 (a fixture)
from tests.helpers.crash import clone, discard
from tests.helpers.sysroots import OSNAME, make_os_tree, snapshot

WAITING = "Waiting for sysroot lock..."
STILL_BLOCKED = 0.5  # how long a blocked command is watched after it announced the wait

# The holders: each locks, prints "locked", and lets go when its stdin closes.
OURS = """
import sys
from sysroot.deploy.layout import SysrootLayout
from sysroot.deploy.state import SysrootLock
with SysrootLock(SysrootLayout(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""
LIKE_OSTREE = """
import fcntl, os, struct, sys
fd = os.open(sys.argv[1] + "/ostree/lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
print("locked", flush=True)
sys.stdin.read()
"""
HOLDERS = {"sysroot": OURS, "ostree-ofd": LIKE_OSTREE}

# (command words, arguments after --sysroot), and whether it changes the sysroot
COMMANDS = {
    "deploy": ((("deploy",), (f"--os={OSNAME}", f"{OSNAME}/3")), True),
    "undeploy": ((("undeploy",), ("1",)), True),
    "set-default": ((("set-default",), ("1",)), True),
    "rollback": ((("rollback",), ()), True),
    "pin": ((("pin",), ("1",)), True),
    "cleanup": ((("cleanup",), ()), False),
    "set-origin": (
        (("set-origin",), ("--index=0", "other", "http://127.0.0.1:9/", f"{OSNAME}/3")),
        True,
    ),
    "set-origin-refspec": ((("set-origin",), ("--index=0", f"other:{OSNAME}/3")), True),
    "kargs-edit-in-place": ((("kargs", "edit-in-place"), ("--append-if-missing=quiet",)), True),
    "os-init": ((("os-init",), ("newos",)), True),
}
# in a (faked) booted system, one after the other: (arguments after `admin`)
STAGED_COMMANDS = [
    ("deploy", "--stage", f"{OSNAME}/x"),
    ("lock-finalization",),
    ("lock-finalization", "--unlock"),
    ("finalize-staged",),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory, ostree) -> Path:
    """A sysroot made by ostree: deployments [2, 1], commit 3 on its branch."""
    work = tmp_path_factory.mktemp("lock")
    root = work / "base"
    root.mkdir()
    ostree("admin", "init-fs", str(root))
    ostree("admin", "os-init", f"--sysroot={root}", OSNAME)
    for n in (1, 2, 3):
        tree = make_os_tree(
            work / f"tree{n}", kernel=f"kernel-{n}\n".encode(), extra={"usr/share/marker": f"{n}\n"}
        )
        ostree(
            f"--repo={root}/ostree/repo",
            "commit",
            f"--branch={OSNAME}/{n}",
            "--timestamp=2023-01-02 03:04:05",
            f"--tree=dir={tree}",
            "--subject=t",
        )
    for n in (1, 2):
        ostree("admin", "deploy", f"--sysroot={root}", f"--os={OSNAME}", f"{OSNAME}/{n}")
    yield root
    discard(root)


class Holder:
    """A process holding ostree/lock of root until release()."""

    def __init__(self, kind: str, root: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDERS[kind], str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        line = self.proc.stdout.readline()
        assert line == b"locked\n", self.proc.stderr.read().decode()

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(30)
        assert self.proc.returncode == 0, self.proc.stderr.read().decode()
        self.proc.stdout.close()
        self.proc.stderr.close()


class Watched:
    """A command whose output (stdout and stderr, merged) is read as it comes."""

    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.output: list[str] = []
        self.waiting = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace")
            self.output.append(line)
            if WAITING in line:
                self.waiting.set()

    def wait_blocked(self) -> None:
        """Until it announces the wait; failing if it ends (or gets nowhere) first."""
        deadline = time.monotonic() + 30
        while not self.waiting.wait(0.05):
            assert self.proc.poll() is None, (
                f"ran without waiting for the lock (rc {self.proc.returncode}): "
                f"{''.join(self.output)}"
            )
            assert time.monotonic() < deadline, "no wait announced in 30 s"

    def finish(self) -> str:
        self.proc.wait(120)
        self._reader.join(10)
        return "".join(self.output)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def snapshots(paths: list[Path]) -> list[dict]:
    return [snapshot(p) for p in paths]


def blocks_then_completes(
    root: Path, holder_kind: str, argv: list[str], also: tuple[Path, ...] = ()
) -> tuple[dict, str]:
    """Run argv while the lock of root is held; the snapshot of root before, and the
    output. Neither root nor the directories `also` may change while it waits."""
    holder = Holder(holder_kind, root)
    cmd = None
    try:
        before = snapshot(root)
        before_also = snapshots(list(also))
        cmd = Watched(argv)
        cmd.wait_blocked()
        time.sleep(STILL_BLOCKED)
        assert cmd.proc.poll() is None, f"finished while the lock was held: {cmd.finish()}"
        assert snapshot(root) == before, "changed the sysroot while the lock was held"
        assert snapshots(list(also)) == before_also, "changed /run while the lock was held"
        holder.release()
        out = cmd.finish()
        assert cmd.proc.returncode == 0, out
        assert "Traceback" not in out
        return before, out
    finally:
        if cmd is not None:
            cmd.kill()
        holder.release()


@pytest.mark.parametrize("holder", list(HOLDERS))
@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_waits_for_the_lock(base, tmp_path, holder, name):
    (words, rest), changes = COMMANDS[name]
    root = clone(base, tmp_path / "sr")
    try:
        argv = [sys.executable, "-m", "sysroot", "admin", *words, f"--sysroot={root}", *rest]
        before, _out = blocks_then_completes(root, holder, argv)
        if changes:
            assert snapshot(root) != before, "the command changed nothing after the wait"
    finally:
        discard(root)


@pytest.mark.parametrize("holder", list(HOLDERS))
def test_ostree_waits_for_the_same_holders(base, tmp_path, ostree, holder):
    """The oracle: the real ostree waits for both holders alike (so they take the lock
    ostree takes), announcing it the same way."""
    root = clone(base, tmp_path / "sr")
    try:
        argv = [*ostree.argv0, "admin", "pin", f"--sysroot={root}", "1"]
        before, _out = blocks_then_completes(root, holder, argv)
        assert snapshot(root) != before
    finally:
        discard(root)


def test_lock_file_is_the_one_ostree_locks(base, tmp_path):
    """While sysroot holds the lock, an OFD lock on ostree/lock (libostree's way) is
    refused: the two lock the same file with the same kind of lock."""
    root = clone(base, tmp_path / "sr")
    holder = Holder("sysroot", root)
    try:
        fd = os.open(root / "ostree/lock", os.O_RDWR | os.O_CLOEXEC)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.fcntl(
                    fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0)
                )
        finally:
            os.close(fd)
    finally:
        holder.release()
        discard(root)


@pytest.mark.parametrize("holder", list(HOLDERS))
def test_staged_commands_wait_for_the_lock(make_booted, holder):  # noqa: F811
    """deploy --stage, lock-finalization (both ways) and finalize-staged, in the booted
    system of tests/deploy/test_staged.py: each waits, then does its part."""
    b = make_booted()
    staged = b.staged_file
    for args in STAGED_COMMANDS:
        argv = b.argv(sys.executable, "-m", "sysroot", "admin", *args)
        record = staged.read_bytes() if staged.exists() else None
        blocks_then_completes(b.path, holder, argv, also=(b.run,))
        after = staged.read_bytes() if staged.exists() else None
        assert after != record, f"admin {' '.join(args)} did nothing after the wait"
    assert not staged.exists()
    assert b.deployment(b.v2).exists()  # finalized


def test_lock_on_a_file_unlinked_meanwhile_is_taken_again(tmp_path, monkeypatch):
    """The previous owner unlinks ostree/lock when it lets go (as libostree does): a
    lock won on the old, unlinked file excludes nobody (the next process creates a new
    file), so it must be taken again on the file that is there. The race is forced:
    the file is unlinked right after our first open."""
    from sysroot.deploy.layout import SysrootLayout
    from sysroot.deploy.state import SysrootLock

    (tmp_path / "ostree").mkdir()
    layout = SysrootLayout(str(tmp_path))
    real_open = os.open
    raced: list[int] = []

    def racing_open(path, flags, mode=0o777, *, dir_fd=None):
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        if os.fspath(path) == layout.lock and not raced:
            raced.append(fd)
            os.unlink(path)
        return fd

    monkeypatch.setattr(os, "open", racing_open)
    with SysrootLock(layout) as lock:
        monkeypatch.undo()
        assert raced
        st = os.fstat(lock.fd)
        assert st.st_nlink == 1
        assert st.st_ino == os.stat(layout.lock).st_ino
