"""How many tries a write arms when boot counting is on: greenboot's
GREENBOOT_MAX_BOOT_ATTEMPTS, as the system's /etc/greenboot/greenboot.conf sets it.

greenboot arms its counter from that value when an update is staged, and its health
checks count against it; a counter armed with another number would disagree with
greenboot's. The repository's sysroot.boot-counting-tries stays the switch (0 or absent:
off, greenboot.conf is not even read) and gives the tries when greenboot.conf does not
set the variable (or sets it to something that is not a positive integer: a warning).

Which /etc: the booted deployment's when the sysroot is booted (the running system's
/etc; finalize-staged runs there too, at shutdown), else the merge deployment's of the
new default's stateroot (a sysroot prepared offline: the /etc the new deployment was
merged from). An offline tree's symlink is not followed (it would point into this
system). The file is read as formats/shellvars.py reads it, without bash; the
environment is not consulted (ours is the admin command's, not the booted system's).

More than GRUB's script counts (MAX_TRIES, one digit) is clamped to MAX_TRIES with a
warning rather than refused: greenboot.conf is the health checks' file too, and a
refusal would fail every deploy, and at shutdown the finalization of a staged one.
"""

from __future__ import annotations

import os
import re
import sys

from sysroot.boot.backends import MAX_TRIES
from sysroot.deploy.state import Deployment, SysrootState
from sysroot.formats.shellvars import parse_assignments, read_text

GREENBOOT_CONF = "etc/greenboot/greenboot.conf"  # under a deployment's root
ATTEMPTS = "GREENBOOT_MAX_BOOT_ATTEMPTS"


def config_root(state: SysrootState, new: list[Deployment]) -> tuple[str, bool] | None:
    """(the root whose etc/ decides, whether it is the running system's), or None when
    there is none (no deployment of the new default's stateroot yet)."""
    if state.booted is not None:
        d: Deployment | None = state.booted
    else:
        d = state.merge_deployment(new[0].osname) if new else None
    if d is None:
        return None
    return state.layout.deploy_dir(d.osname, d.csum, d.deployserial), state.booted is not None


def greenboot_attempts(root: str, *, running: bool = True) -> tuple[int | None, list[str]]:
    """(GREENBOOT_MAX_BOOT_ATTEMPTS of root's greenboot.conf clamped to 1..MAX_TRIES, or
    None when it does not set a usable one; warnings)."""
    path = os.path.join(root, GREENBOOT_CONF)
    warnings: list[str] = []
    text = read_text(path, warnings, follow_symlinks=running)
    if text is None:
        return None, warnings
    # lines about other settings are the health checks' business (they warn at boot)
    values = parse_assignments(text, [], path)
    if ATTEMPTS not in values:
        return None, warnings
    raw = values[ATTEMPTS][0]
    digits = raw.strip()
    if not re.fullmatch(r"[0-9]+", digits) or not digits.strip("0"):
        warnings.append(
            f"{path}: {ATTEMPTS}={raw!r} is not a positive integer; "
            "using sysroot.boot-counting-tries"
        )
        return None, warnings
    # no int() of a huge digit string (Python refuses over 4300 digits)
    digits = digits.lstrip("0")
    if len(digits) > 1 or int(digits) > MAX_TRIES:
        warnings.append(
            f"{path}: {ATTEMPTS}={digits} is more than the {MAX_TRIES} tries boot counting "
            f"supports; arming {MAX_TRIES}"
        )
        return MAX_TRIES, warnings
    return int(digits), warnings


def tries_for(state: SysrootState, new: list[Deployment], configured: int) -> int:
    """The tries a write of new over state arms: configured (the repo key) when it is 0
    (off) or when greenboot.conf does not say; warnings go to stderr."""
    if configured <= 0:
        return configured
    found = config_root(state, new)
    if found is None:
        return configured
    tries, warnings = greenboot_attempts(found[0], running=found[1])
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return configured if tries is None else tries
