"""Structured messages for the systemd journal, or one line on stderr without one.

`admin finalize-staged` runs at shutdown from a unit, where the journal is how anyone
learns what happened: each message carries MESSAGE_ID (so `journalctl
MESSAGE_ID=...` finds every finalization) and SYSROOT_* fields naming the deployment
and the result. The journal is used when systemd-python is importable and its socket
exists; sd_journal_send() would silently drop messages without the socket, so the
socket is checked first and stderr (which systemd also collects) is the fallback.
"""

from __future__ import annotations

import os
import sys

JOURNAL_SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "sysroot"

# Our own catalog ids (uuid4, fixed forever), one per kind of event.
FINALIZE_ID = "2f8b6d0c41e54c6f9a3d7be15c0a9e27"  # staged deployment finalization
STAGE_ID = "97adf9169ed9438081d1653cb840b6c3"  # a deployment was staged
BOOT_CONFIG_ID = "7e28e3dc9a404d7fba2db1908cf51d93"  # a new deployment list was written (or not)
PULL_ID = "6a4b1f1a994f45a88d96c2df3db593c8"  # a pull ended (a ref moved, or an error)
# The catalog (units/sysroot.catalog) explains each id; tests/test_catalog.py checks
# that every *_ID in the package has its entry there.

# syslog priorities, as the journal's PRIORITY field wants them
ERR, WARNING, NOTICE, INFO = 3, 4, 5, 6


def _journal_module():
    if not os.path.exists(JOURNAL_SOCKET):
        return None
    try:
        from systemd import journal
    except ImportError:
        return None
    return journal


def send(
    message: str,
    *,
    priority: int = INFO,
    message_id: str | None = None,
    stderr: bool = True,
    **fields: object,
) -> bool:
    """Log message with extra FIELDS (None values are left out). Returns True when
    it went to the journal; else it is printed to stderr (unless stderr=False, for
    messages only worth keeping in a journal) and False is returned."""
    extra = {k: str(v) for k, v in fields.items() if v is not None}
    if message_id is not None:
        extra["MESSAGE_ID"] = message_id
    journal = _journal_module()
    if journal is not None:
        try:
            journal.send(message, PRIORITY=str(priority), SYSLOG_IDENTIFIER=IDENTIFIER, **extra)
            return True
        except OSError:
            pass  # e.g. the journal went away during shutdown: stderr still works
    if stderr:
        print(f"{IDENTIFIER}: {message}", file=sys.stderr)
    return False
