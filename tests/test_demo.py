"""The README's demonstration runs to its end: every step, the real ostree reading
what sysroot wrote, and (as root) a build directory whose image is built twice with
the same bytes."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.sysroots import clear_immutable_under


def test_the_demo_runs(tmp_path):
    work = tmp_path / "demo"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "sysroot.demo", str(work)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        clear_immutable_under(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    out = proc.stdout
    for step in range(1, 9):
        assert f"# {step}. " in out
    assert "# reproducible: yes" in out
    assert "Traceback" not in out + proc.stderr
    assert out.rstrip().endswith("# Done.")
