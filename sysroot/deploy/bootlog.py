"""The journal record of each write of the boot configuration.

Every change of the deployment list goes through Transaction.apply (and the in-place
kernel-argument edit, which rewrites entries without a new list); each one ends with
one record with MESSAGE_ID=BOOT_CONFIG_ID, so `journalctl MESSAGE_ID=...` is the
history of what the machine was set to boot, and by which command. A failed write is
recorded too (priority ERR, SYSROOT_RESULT=failed): it left the old configuration,
which the record names. Nothing is printed without a journal: the command's own
output already says what happened.
"""

from __future__ import annotations

from collections.abc import Sequence

from sysroot.deploy.state import Deployment
from sysroot.util import journal


def deployment_name(d: Deployment) -> str:
    """osname/checksum.serial: the words `journalctl SYSROOT_DEFAULT=...` matches."""
    return f"{d.osname}/{d.csum}.{d.deployserial}"


def record_boot_change(
    operation: str,
    before: Sequence[Deployment],
    after: Sequence[Deployment],
    *,
    bootloader: str | None,
    error: BaseException | None = None,
) -> bool:
    """One record of a write from before to after (boot order, staged excluded).
    Returns whether the journal took it."""
    names = [deployment_name(d) for d in after]
    previous = deployment_name(before[0]) if before else None
    default = names[0] if names else None
    if error is not None:
        message = f"Boot configuration not changed by {operation}: {error}"
    elif default is None:
        message = f"Boot configuration written by {operation}: no deployments"
    else:
        changed = "unchanged default" if default == previous else "new default"
        message = (
            f"Boot configuration written by {operation}: {changed} {default}, "
            f"{len(names)} deployment{'s' if len(names) != 1 else ''}"
        )
    return journal.send(
        message,
        priority=journal.ERR if error is not None else journal.INFO,
        message_id=journal.BOOT_CONFIG_ID,
        stderr=False,
        SYSROOT_OPERATION=operation,
        SYSROOT_RESULT="failed" if error is not None else "ok",
        SYSROOT_DEFAULT=default if error is None else previous,
        SYSROOT_PREVIOUS_DEFAULT=previous,
        SYSROOT_DEPLOYMENTS=" ".join(names) if error is None else None,
        SYSROOT_DEPLOYMENT_COUNT=len(names) if error is None else None,
        SYSROOT_BOOTLOADER=bootloader,
        SYSROOT_ERROR=str(error) if error is not None else None,
    )
