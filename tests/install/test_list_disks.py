"""`sysroot install list-disks`: an attached loop device is listed with its size, its
logical sector size and its backing file."""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.install.conftest import GIB, Loops, make_image, sh


@pytest.mark.parametrize("sector", [512, 4096])
def test_list_disks_json(tmp_path, loops: Loops, sector: int) -> None:
    image = make_image(tmp_path / "disk.img", 1 * GIB)
    dev = loops.attach(image, sector_size=sector)
    out = sh(sys.executable, "-m", "sysroot", "install", "list-disks", "--json").stdout
    (disk,) = [d for d in json.loads(out) if d["path"] == dev]
    assert disk["name"] == os.path.basename(dev)
    assert disk["size"] == 1 * GIB
    assert disk["logical-sector-size"] == sector
    assert disk["model"] == f"loop: {image}"
    text = sh(sys.executable, "-m", "sysroot", "install", "list-disks").stdout.decode()
    assert any(line.split("\t")[0] == dev for line in text.splitlines())
