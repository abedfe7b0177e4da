"""Boot counting in a (faked) booted system (tests/deploy/test_staged.py's harness):
finalizing a staged deployment arms its counting; rolling back to the booted one
clears it; blessing takes the deployment that runs.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from sysroot.formats.keyfile import KeyFile
from tests.deploy import test_staged
from tests.deploy.test_staged import Booted, make_booted  # noqa: F401 (a fixture)
from tests.helpers.sysroots import OSNAME

GRUBENV = "boot/grub/grubenv"


def configure(b: Booted, bootloader: str, tries: int) -> None:
    path = b.path / "ostree/repo/config"
    config = KeyFile.parse(path.read_text())
    config.set("sysroot", "boot-counting-tries", str(tries))
    config.set("sysroot", "bootloader", bootloader)
    path.write_text(config.to_text())


def editenv_list(b: Booted) -> str:
    return subprocess.run(
        ["grub-editenv", str(b.path / GRUBENV), "list"], capture_output=True, text=True, check=True
    ).stdout


BLESS = """
from sysroot.deploy import bootcount
from sysroot.deploy.admin import Sysroot
from sysroot.deploy.transaction import transaction
sr = Sysroot("/")
with transaction(sr.layout) as tx:
    print(bootcount.bless(tx), bootcount.status(tx.load()).status.value)
"""


@pytest.fixture
def with_python(monkeypatch):
    """Booted(...)("python", ARGS) runs this Python in the booted system."""
    real = test_staged.tool_argv
    monkeypatch.setattr(
        test_staged, "tool_argv", lambda tool: [sys.executable] if tool == "python" else real(tool)
    )


def test_finalize_arms_and_rollback_to_booted_clears(make_booted, with_python):  # noqa: F811
    b = make_booted()
    configure(b, "grub2", 2)
    b("sysroot", "admin", "deploy", "--stage", f"{OSNAME}/x")
    assert not (b.path / GRUBENV).exists()  # staging writes no boot configuration
    b("sysroot", "admin", "finalize-staged")
    assert editenv_list(b) == "boot_counter=2\nboot_success=0\n"
    cfg = (b.path / "boot/grub/grub.cfg").read_text()
    assert "sysroot.boot-counting-tries=2" in cfg
    # the booted one is not the counted default: a bless does nothing
    assert b.out("python", "-c", BLESS).split() == ["False", "armed"]
    b("sysroot", "admin", "rollback")  # to the booted one: not counted
    assert editenv_list(b) == "boot_success=1\n"
    assert b.out("python", "-c", BLESS).split() == ["False", "blessed"]
    # deploying anew from the booted system arms again; the booted one blesses nothing
    b("sysroot", "admin", "deploy", f"{OSNAME}/x")
    assert editenv_list(b) == "boot_success=0\nboot_counter=2\n"
