"""finalize-staged arms the tries greenboot.conf of the running system says
(deploy/counttries.py; tests/boot/test_counting_tries.py has the rest)."""

from __future__ import annotations

from tests.deploy.test_boot_counting_staged import configure, editenv_list
from tests.deploy.test_staged import make_booted  # noqa: F401 (a fixture)
from tests.helpers.sysroots import OSNAME


def test_staged_finalize_arms_from_the_running_etc(make_booted):  # noqa: F811
    """finalize-staged (at shutdown, in the booted system) arms GREENBOOT_MAX_BOOT_ATTEMPTS
    of the running /etc, not the repo key's tries."""
    b = make_booted()
    configure(b, "grub2", 2)
    (b.etc / "greenboot").mkdir(exist_ok=True)
    (b.etc / "greenboot/greenboot.conf").write_text("GREENBOOT_MAX_BOOT_ATTEMPTS=6\n")
    b("sysroot", "admin", "deploy", "--stage", f"{OSNAME}/x")
    b("sysroot", "admin", "finalize-staged")
    assert editenv_list(b) == "boot_counter=6\nboot_success=0\n"
