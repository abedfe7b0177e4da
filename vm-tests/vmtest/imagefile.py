"""A disk image file's partitions, read with sfdisk and attached by offset.

A partition is attached as a loop device of its own (offset and size limit): no
partition device nodes or udev needed, on any kernel. The host-side checks
(hostcheck.py) and the harness's changes to an installed disk (disk.py) use it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

from sysroot.util.run import run


@dataclass(frozen=True)
class Partition:
    start: int  # bytes
    size: int  # bytes


def parse_partitions(sfdisk_json: str) -> list[Partition]:
    """The partitions of `sfdisk --json IMAGE`, in table order, in bytes."""
    table = json.loads(sfdisk_json)["partitiontable"]
    sector = table.get("sectorsize", 512)
    return [Partition(p["start"] * sector, p["size"] * sector) for p in table["partitions"]]


@contextlib.contextmanager
def loop_device(image: str, part: Partition, read_only: bool) -> Iterator[str]:
    dev = (
        run(
            [
                "losetup",
                "--find",
                "--show",
                *(["--read-only"] if read_only else []),
                "--offset",
                str(part.start),
                "--sizelimit",
                str(part.size),
                image,
            ]
        )
        .stdout.decode()
        .strip()
    )
    try:
        yield dev
    finally:
        run(["losetup", "--detach", dev], check=False)
