"""/etc/greenboot/greenboot.conf, read the way greenboot reads it, without running bash.

greenboot `source`s the file as bash. We accept the subset such files are made of:
`KEY=VALUE` and `KEY=( word ... )` (also `+=` and a leading `export`), words unquoted,
'single-quoted' or "double-quoted" with backslash escapes, `#` comments, arrays spanning
lines. Anything that would need bash to evaluate (`$var`, `$(...)`, backquotes, commands)
is not run: that line is ignored with a warning, so the setting keeps its default.
Unknown keys are ignored silently (the file also configures the check scripts, which
source it themselves). A value we cannot use becomes the default, with a warning.

Keys: GREENBOOT_MAX_BOOT_ATTEMPTS (default 3), DISABLED_HEALTHCHECKS (a bash array of
script names), and ours, which greenboot ignores: SYSROOT_HEALTHCHECK_TIMEOUT (seconds,
or "infinity") and SYSROOT_HEALTHCHECK_TIMEOUTS=( "name.sh=SECONDS" ... ).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping

from sysroot.formats.shellvars import MAX_SIZE, parse_assignments, read_text
from sysroot.health.model import HealthConfig

CONFIG_PATH = "etc/greenboot/greenboot.conf"  # relative to the root
MAX_CONFIG_SIZE = MAX_SIZE


def _read(path: str, warnings: list[str]) -> str | None:
    """The file's text (formats/shellvars.py reads it as greenboot's `test -f`)."""
    return read_text(path, warnings, MAX_CONFIG_SIZE)


def _seconds(value: str) -> float | None:
    """A timeout: positive seconds, or "infinity" for none. ValueError otherwise."""
    if value.strip().lower() == "infinity":
        return None
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(value)
    return seconds


def load_config(root: str, environ: Mapping[str, str] | None = None) -> HealthConfig:
    """greenboot.conf under root. environ supplies GREENBOOT_MAX_BOOT_ATTEMPTS when the
    file does not set it (greenboot sources the file after reading the environment)."""
    path = os.path.join(root, CONFIG_PATH)
    warnings: list[str] = []
    text = _read(path, warnings)
    values = parse_assignments(text, warnings, path) if text is not None else {}
    default = HealthConfig()

    attempts = default.max_boot_attempts
    raw: str | None = None
    if "GREENBOOT_MAX_BOOT_ATTEMPTS" in values:
        raw = values["GREENBOOT_MAX_BOOT_ATTEMPTS"][0]
    elif environ is not None:
        raw = environ.get("GREENBOOT_MAX_BOOT_ATTEMPTS")
    if raw is not None:
        if re.fullmatch(r"[0-9]+", raw.strip()) and int(raw) > 0:
            attempts = int(raw)
        else:
            warnings.append(
                f"{path}: GREENBOOT_MAX_BOOT_ATTEMPTS={raw!r} is not a positive integer;"
                f" using {attempts}"
            )

    timeout = default.timeout
    if "SYSROOT_HEALTHCHECK_TIMEOUT" in values:
        value = values["SYSROOT_HEALTHCHECK_TIMEOUT"][0]
        try:
            timeout = _seconds(value)
        except ValueError:
            warnings.append(
                f"{path}: SYSROOT_HEALTHCHECK_TIMEOUT={value!r} is not a positive number"
                f" of seconds or 'infinity'; using {timeout}"
            )

    timeouts: list[tuple[str, float | None]] = []
    for entry in values.get("SYSROOT_HEALTHCHECK_TIMEOUTS", []):
        name, eq, seconds = entry.rpartition("=")
        try:
            if not eq or not name or "/" in name:
                raise ValueError(entry)
            timeouts.append((name, _seconds(seconds)))
        except ValueError:
            warnings.append(
                f"{path}: SYSROOT_HEALTHCHECK_TIMEOUTS entry {entry!r} is not NAME=SECONDS; ignored"
            )

    return HealthConfig(
        max_boot_attempts=attempts,
        disabled=tuple(values.get("DISABLED_HEALTHCHECKS", [])),
        timeout=timeout,
        timeouts=tuple(timeouts),
        warnings=tuple(warnings),
    )
