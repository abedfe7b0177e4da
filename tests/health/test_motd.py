"""sysroot/health/motd.py: /run/motd.d/boot-status as greenboot composes it."""

from __future__ import annotations

import os
import stat

from sysroot.health import RUNNING, motd_text, run_checks, write_motd
from tests.health.conftest import ETC_REQUIRED, USR_REQUIRED, USR_WANTED


def test_green(root, config):
    root.script(USR_REQUIRED, "01_ok.sh", "echo '<2>not shown when green'")
    root.script(USR_WANTED, "01_w.sh", "exit 5")
    text = motd_text(run_checks(str(root), config))
    assert text == (
        "Boot Status is GREEN - Health Check SUCCESS\n"
        "Script '01_w.sh' FAILURE (exit code '5'). Continuing...\n"
    )


def test_red_shows_failures_and_urgent_output(root, config):
    root.script(USR_REQUIRED, "01_ok.sh", "echo '<1>disk almost full'; echo '<3>only an error'")
    root.script(USR_WANTED, "01_w.sh", "echo '<0>wanted said'; exit 1")
    root.script(ETC_REQUIRED, "01_dns.sh", "echo '<2>cannot resolve example.com'; exit 1")
    text = motd_text(run_checks(str(root), config))
    assert text == (
        "Boot Status is RED - Health Check FAILURE!\n"
        "disk almost full\n"
        "wanted said\n"
        "Script '01_w.sh' FAILURE (exit code '1'). Continuing...\n"
        "cannot resolve example.com\n"
        "Script '01_dns.sh' FAILURE (exit code '1')\n"
    )


def test_written_atomically_in_run_motd_d(root):
    path = write_motd(str(root), RUNNING)
    assert path == str(root.path / "run/motd.d/boot-status")
    with open(path) as f:
        assert f.read().startswith("GREENBOOT is currently performing the provided checks.")
    write_motd(str(root), "Boot Status is GREEN - Health Check SUCCESS\n")
    assert os.listdir(root.path / "run/motd.d") == ["boot-status"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
