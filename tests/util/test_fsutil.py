"""fsutil.atomic_write, the one helper for small durable files (refs, origins, BLS
entries, merged /etc files): temp sibling opened O_EXCL, data flushed, one rename over
the target, the directory flushed after it; on failure the target is as before and no
temp file is left. The calls are recorded in order (os functions wrapped in-process)."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from sysroot.util import fsutil

pytestmark = pytest.mark.unit  # needs neither root nor ostree nor mounts


@pytest.fixture
def trace(monkeypatch):
    """Records ("open", fd, name, flags), ("fsync", fd), ("rename", src, dst), ("close", fd)."""
    calls: list[tuple] = []
    real_open, real_fsync, real_rename, real_close = os.open, os.fsync, os.rename, os.close

    def open_(path, flags, mode=0o777, *, dir_fd=None):
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        calls.append(("open", fd, os.path.basename(os.fspath(path)), flags))
        return fd

    def fsync(fd):
        calls.append(("fsync", fd))
        return real_fsync(fd)

    def rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        calls.append(("rename", os.path.basename(src), os.path.basename(dst)))

    def close(fd):
        calls.append(("close", fd))
        return real_close(fd)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "close", close)
    return calls


def test_temp_flush_rename_flush_dir(tmp_path, trace):
    target = tmp_path / "file"
    target.write_bytes(b"old\n")
    fsutil.atomic_write(target, b"new content\n", mode=0o640)
    calls = list(trace)
    assert target.read_bytes() == b"new content\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["file"]  # no temp left
    renames = [c for c in calls if c[0] == "rename"]
    assert len(renames) == 1 and renames[0][2] == "file", calls
    tmp = renames[0][1]
    assert tmp != "file"
    at = calls.index(renames[0])
    opened = [c for c in calls if c[0] == "open" and c[2] == tmp]
    assert len(opened) == 1 and opened[0][3] & os.O_EXCL and opened[0][3] & os.O_CREAT, calls
    fd = opened[0][1]
    # the data reaches the disk before the new name can: fsync(tmp) before the rename
    assert ("fsync", fd) in calls[:at], calls
    assert calls.index(("fsync", fd)) < calls.index(("close", fd))
    # and the rename itself is flushed: fsync of the directory after it
    dirs = [c[1] for c in calls if c[0] == "open" and c[3] & os.O_DIRECTORY]
    assert any(("fsync", d) in calls[at:] for d in dirs), calls


def test_without_fsync_no_flush_but_still_a_rename(tmp_path, trace):
    fsutil.atomic_write(tmp_path / "f", b"x", fsync=False)
    assert [c for c in trace if c[0] == "fsync"] == []
    assert [c[2] for c in trace if c[0] == "rename"] == ["f"]


def test_failure_keeps_the_target_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "file"
    target.write_bytes(b"old\n")

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError) as e:
        fsutil.atomic_write(target, b"new\n")
    monkeypatch.undo()
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    assert target.read_bytes() == b"old\n"
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_relative_to_dir_fd(tmp_path):
    (tmp_path / "d").mkdir()
    dfd = os.open(tmp_path / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsutil.atomic_write("name", b"via dir_fd", dir_fd=dfd)
    finally:
        os.close(dfd)
    assert (tmp_path / "d/name").read_bytes() == b"via dir_fd"
    assert sorted(os.listdir(tmp_path / "d")) == ["name"]


def test_atomic_output_appears_only_complete(tmp_path):
    from sysroot.util.fsutil import atomic_output

    target = tmp_path / "out.tar"
    with pytest.raises(RuntimeError), atomic_output(target) as f:
        f.write(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary name
    with atomic_output(target, mode=0o600) as f:
        f.write(b"whole")
        assert not target.exists()
    assert target.read_bytes() == b"whole" and target.stat().st_mode & 0o777 == 0o600
    assert list(tmp_path.iterdir()) == [target]
