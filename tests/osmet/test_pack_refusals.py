"""What `osmet pack` refuses: a file that is no GPT image, an image without a root
file system, an image whose SHA-256 is not the --checksum given, an existing output.
Each with one error line, no output file (nor a temp file beside it), and no loop
device or mount left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import one_error_line
from tests.install.conftest import MIB, make_image, sh
from tests.osmet.conftest import Artifacts, osmet_cli


def loops_of(image: Path) -> str:
    return sh("losetup", "--associated", image).stdout.decode()


def pack_mounts() -> list[str]:
    """Mounts of this namespace under a pack's work directory (there should be none:
    pack mounts in a namespace of its own, and unmounts)."""
    with open("/proc/self/mountinfo") as f:
        return [ln for ln in f if "sysroot-osmet-" in ln]


def not_gpt(tmp_path: Path, artifacts: Artifacts) -> tuple[Path, list[str], str]:
    return make_image(tmp_path / "zeros.img", 16 * MIB), [], "no GPT partition table"


def no_root(tmp_path: Path, artifacts: Artifacts) -> tuple[Path, list[str], str]:
    image = make_image(tmp_path / "noroot.img", 128 * MIB)
    sh("sfdisk", "--quiet", image, input=b"label: gpt\nsize=64MiB\n")
    return image, [], "0 partitions hold an ext4 file system labelled root"


def wrong_checksum(tmp_path: Path, artifacts: Artifacts) -> tuple[Path, list[str], str]:
    image = artifacts.image("grub2", 512)
    return image.raw, [f"--checksum={'0' * 64}"], f"its SHA-256 is {image.sha256}, not {'0' * 64}"


def bad_checksum(tmp_path: Path, artifacts: Artifacts) -> tuple[Path, list[str], str]:
    return artifacts.image("grub2", 512).raw, ["--checksum=abc"], "not a SHA-256"


CASES = {
    "not-gpt": not_gpt,
    "no-root": no_root,
    "wrong-checksum": wrong_checksum,
    "bad-checksum": bad_checksum,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refusal_leaves_nothing(artifacts: Artifacts, tmp_path, case: str) -> None:
    image, args, expected = CASES[case](tmp_path, artifacts)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    loops_before, mounts_before = loops_of(image), pack_mounts()
    line = one_error_line(osmet_cli("pack", f"--output={out_dir / 'x.osmet'}", *args, image))
    assert expected in line, line
    assert os.listdir(out_dir) == []
    assert loops_of(image) == loops_before == ""
    assert pack_mounts() == mounts_before


def test_an_existing_output_is_refused(artifacts: Artifacts, tmp_path) -> None:
    image = artifacts.image("grub2", 512).raw
    out = tmp_path / "x.osmet"
    out.write_bytes(b"mine")
    line = one_error_line(osmet_cli("pack", f"--output={out}", "--fast", image))
    assert f"{out} exists" in line, line
    assert out.read_bytes() == b"mine"
    assert os.listdir(tmp_path) == ["x.osmet"]
    assert loops_of(image) == ""


def test_a_pack_leaves_no_loop_device_or_mount(artifacts: Artifacts) -> None:
    """(the success path: the shared files were packed through read-only loop devices)"""
    image = artifacts.image("grub2", 512)
    artifacts.osmet("grub2", 512)
    assert loops_of(image.raw) == ""
    assert pack_mounts() == []
