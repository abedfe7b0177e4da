"""The one door for external processes.

Every external command goes through run(): stdin closed, a C.UTF-8 environment so
parsed output is stable, the command line logged at debug level, and a failure
reported as what ran, its exit code and the last lines of its stderr.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence

from sysroot.errors import SysrootError

log = logging.getLogger(__name__)


class CommandError(SysrootError):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str):
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        msg = f"{shlex.join(argv)} exited with status {returncode}"
        super().__init__(f"{msg}: {tail}" if tail else msg)
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_")}
    env["LANG"] = "C.UTF-8"
    env["LC_ALL"] = "C.UTF-8"
    if extra:
        env.update(extra)
    return env


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    capture: bool = True,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """Run argv; raise CommandError on a non-zero exit when check is true."""
    argv = [os.fspath(a) for a in argv]
    log.debug("running: %s", shlex.join(argv))
    try:
        proc = subprocess.run(
            argv,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            env=clean_env(env),
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as e:
        raise SysrootError(f"{argv[0]}: command not found") from e
    if check and proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace") if proc.stderr else ""
        raise CommandError(argv, proc.returncode, stderr)
    return proc
