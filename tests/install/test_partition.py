"""partition.py and the guard on real loop devices: the kernel is asked until it shows
the partitions, with a bounded back-off and a clear error when it never does; only
whole disks pass the guard."""

from __future__ import annotations

import pytest

from sysroot.install.disks import NotAWholeDiskError, guard
from sysroot.install.partition import PartitionError, wait_for_partitions
from tests.install.conftest import GIB, Loops, make_image, sh


def test_waiting_for_partitions_the_kernel_never_shows(tmp_path, loops: Loops) -> None:
    dev = loops.attach(make_image(tmp_path / "disk.img", 1 * GIB))
    sh("sfdisk", "--quiet", dev, input=b"label: gpt\nsize=64MiB\n")
    delays: list[float] = []
    assert wait_for_partitions(dev, 1, sleep=delays.append) == [f"{dev}p1"]
    assert delays == []  # shown at the first look: no waiting at all
    with pytest.raises(PartitionError, match=f"does not show {dev}p2, {dev}p3"):
        wait_for_partitions(dev, 3, sleep=delays.append)
    assert len(delays) == 6 and sum(delays) < 5  # a few tries, bounded
    assert all(b > a for a, b in zip(delays, delays[1:], strict=False))  # backing off


def test_only_a_whole_disk_passes_the_guard(tmp_path, loops: Loops) -> None:
    image = make_image(tmp_path / "disk.img", 1 * GIB)
    dev = loops.attach(image)
    sh("sfdisk", "--quiet", dev, input=b"label: gpt\nsize=64MiB\n")
    sh("partx", "-u", dev, check=False)
    assert guard(dev).path == dev
    with pytest.raises(NotAWholeDiskError, match="a partition, not a whole disk"):
        guard(f"{dev}p1")
    with pytest.raises(NotAWholeDiskError, match="not a block device"):
        guard(str(image))
    with pytest.raises(NotAWholeDiskError, match="No such file"):
        guard(str(tmp_path / "missing"))
