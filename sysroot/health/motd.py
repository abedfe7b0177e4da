"""/run/motd.d/boot-status: what greenboot shows at login.

greenboot writes a "checks running" text there before the checks
(greenboot-loading-message) and, after them, the lines of the journal that matter
(greenboot-status): the GREEN line when healthy; the RED line, the failures and the
scripts' own lines of priority 2 or more urgent when not. We compose the same text from
the report instead of querying the journal, so it is right even with no journal.
"""

from __future__ import annotations

import os

from sysroot.health.model import HealthReport
from sysroot.health.runner import CRIT, describe
from sysroot.util import fsutil

MOTD_PATH = "run/motd.d/boot-status"  # relative to the root

RUNNING = (
    "GREENBOOT is currently performing the provided checks.\n"
    "Log in again in a minute or check /run/motd.d/boot-status to know the result of the"
    " checks\n"
)


def motd_text(report: HealthReport) -> str:
    if report.healthy:
        lines = ["Boot Status is GREEN - Health Check SUCCESS"]
        lines += [describe(r) for r in report.failures()]  # wanted ones, relaxed
    else:
        lines = ["Boot Status is RED - Health Check FAILURE!"]
        for result in report.results:
            lines += [line.text for line in result.tail if line.priority <= CRIT]
            if result.outcome.failed():
                lines.append(describe(result))
    return "".join(f"{line}\n" for line in lines)


def write_motd(root: str, text: str) -> str:
    """Replace root/run/motd.d/boot-status with text; returns its path."""
    path = os.path.join(root, MOTD_PATH)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fsutil.atomic_write(path, text.encode(), mode=0o644)
    return path


FALLBACK_MOTD_PATH = "run/motd.d/boot-fallback"  # beside boot-status, shown after it


def write_fallback_motd(root: str, line: str) -> str:
    """A file of its own for check-fallback's line: it runs before the checks, whose
    run replaces boot-status."""
    path = os.path.join(root, FALLBACK_MOTD_PATH)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fsutil.atomic_write(path, f"{line}\n".encode(), mode=0o644)
    return path


def append_motd(root: str, line: str) -> str:
    """boot-status with line added (the red path's verdict after the checks' text)."""
    path = os.path.join(root, MOTD_PATH)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    if text and not text.endswith("\n"):
        text += "\n"
    return write_motd(root, text + f"{line}\n")
