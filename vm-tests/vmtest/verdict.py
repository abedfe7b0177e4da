"""What every scenario shares: its context, the failure it raises and the small
checks on what a boot reported (the script's `R: key=value` lines)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vmtest.disk import BaseDisk
from vmtest.qemu import BootResult, Machine
from vmtest.timing import Ledger


class ScenarioFailed(Exception):
    def __init__(self, message: str, boot: BootResult | None = None):
        super().__init__(message)
        self.boot = boot


@dataclass
class Context:
    disk: BaseDisk
    machine: Machine
    log: Callable[[str], None]
    ledger: Ledger | None = None  # where the host checks' time is added up
    job: str = ""  # the name the ledger knows this scenario's job by


def expect(cond: bool, message: str, boot: BootResult) -> None:
    if not cond:
        raise ScenarioFailed(message, boot)


def expect_equal(values: dict, key: str, want: str, boot: BootResult) -> None:
    got = values.get(key)
    expect(got == want, f"{key}: expected {want!r}, guest reported {got!r}", boot)


def finished(boot: BootResult) -> dict:
    expect(
        boot.rc is not None,
        f"the guest never ran the test script (qemu ran {boot.seconds:.0f} s)",
        boot,
    )
    expect(boot.rc == 0, f"the test script failed in the guest (exit {boot.rc})", boot)
    return boot.values()


def deployment_of(values: dict, key: str) -> str:
    """The commit checksum of deployment `key` (booted, rollback...) in values."""
    return values.get(key, "none").split(".")[0]


def first_values(boot: BootResult) -> dict:
    """The script's values, each as first reported (status before the admin command)."""
    values: dict[str, str] = {}
    for line in boot.output:
        if line.startswith("R: ") and "=" in line:
            k, _, val = line[3:].partition("=")
            values.setdefault(k.strip(), val.strip())
    return values


# Guest side: the deployment list as `sysroot admin status --json` gives it.
STATUS = r"""
status_report() {
python3 - "$@" <<'PY'
import json, subprocess, sys
p = subprocess.run(["sysroot", "admin", "status", "--json"], capture_output=True, text=True)
print(f"R: status_rc={p.returncode}")
if p.returncode:
    print("R: status_error=" + p.stderr.strip().replace("\n", " | "))
    sys.exit(0)
ds = json.loads(p.stdout)["deployments"]
names = [f"{d['checksum']}.{d['serial']}" for d in ds]
print("R: deployments=" + ",".join(names))
for flag in ("booted", "rollback", "pending", "staged"):
    print(f"R: {flag}=" + next((n for n, d in zip(names, ds) if d[flag]), "none"))
PY
}
"""
