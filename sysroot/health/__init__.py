"""Health checks after boot, compatible with greenboot's scripts and configuration.

    config = load_config("/")                    # /etc/greenboot/greenboot.conf
    report = run_checks("/", config)             # required.d + wanted.d, in greenboot order
    write_motd("/", motd_text(report))           # /run/motd.d/boot-status
    write_record(records_dir("/"), report)       # /var/lib/sysroot/health/*.json
    run_hooks("/", config, CheckKind.GREEN if report.healthy else CheckKind.RED)

    decide_red(bootcount.status(state), booted)  # after red.d: reboot, or the loop breaker

health/counting.py joins boot counting (deploy/bootcount.py): key() names a
deployment as counting does, everywhere.

Layering: beside deploy/; imports util, errors, boot and deploy (its layout, state and
bootcount), never cli or pull. The units and the command line build on this API.
"""

from sysroot.health.config import load_config
from sysroot.health.discovery import discover
from sysroot.health.model import (
    Check,
    CheckKind,
    CheckResult,
    HealthConfig,
    HealthReport,
    Outcome,
    OutputLine,
)
from sysroot.health.motd import RUNNING, motd_text, write_motd
from sysroot.health.records import (
    HealthRecord,
    list_records,
    read_record,
    records_dir,
    stateroot_records_dir,
    write_record,
)
from sysroot.health.runner import CHECK_ID, RESULT_ID, run_checks, run_hooks

__all__ = [
    "CHECK_ID",
    "RESULT_ID",
    "RUNNING",
    "Check",
    "CheckKind",
    "CheckResult",
    "HealthConfig",
    "HealthRecord",
    "HealthReport",
    "Outcome",
    "OutputLine",
    "discover",
    "list_records",
    "load_config",
    "motd_text",
    "read_record",
    "records_dir",
    "run_checks",
    "run_hooks",
    "stateroot_records_dir",
    "write_motd",
    "write_record",
]
