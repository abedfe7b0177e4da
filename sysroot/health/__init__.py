"""Health checks after boot, compatible with greenboot's scripts and configuration.

    config = load_config("/")                    # /etc/greenboot/greenboot.conf
    report = run_checks("/", config)             # required.d + wanted.d, in greenboot order
    write_motd("/", motd_text(report))           # /run/motd.d/boot-status
    write_record(records_dir("/"), report)       # /var/lib/sysroot/health/*.json
    run_hooks("/", config, CheckKind.GREEN if report.healthy else CheckKind.RED)

    decide_red(bootcount.status(state), booted)  # after red.d: reboot, or the loop breaker

The verbs of `sysroot admin health` as calls (health/flows.py: check_target + check,
hooks, red_plan + red_decision + red_act, mark_good, mark_bad, check_fallback), and
what `status` shows as data (health/status.py: health_status()).

health/counting.py joins boot counting (deploy/bootcount.py): key() names a
deployment as counting does, everywhere.

Layering: beside deploy/; imports util, errors, boot and deploy (its layout, state and
bootcount), never cli or pull. The units and the command line build on this API.
"""

from sysroot.health.config import load_config
from sysroot.health.counting import Verdict
from sysroot.health.discovery import discover
from sysroot.health.flows import (
    CheckTarget,
    FellBack,
    Marked,
    RedOutcome,
    RedPlan,
    booted_deployment,
    check,
    check_fallback,
    check_target,
    hooks,
    load_sysroot,
    mark_bad,
    mark_good,
    red_act,
    red_decision,
    red_plan,
)
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
from sysroot.health.status import DeploymentHealth, HealthStatus, health_status

__all__ = [
    "CHECK_ID",
    "RESULT_ID",
    "RUNNING",
    "Check",
    "CheckKind",
    "CheckResult",
    "CheckTarget",
    "DeploymentHealth",
    "FellBack",
    "HealthConfig",
    "HealthRecord",
    "HealthReport",
    "HealthStatus",
    "Marked",
    "Outcome",
    "Verdict",
    "OutputLine",
    "RedOutcome",
    "RedPlan",
    "booted_deployment",
    "check",
    "check_fallback",
    "check_target",
    "discover",
    "health_status",
    "hooks",
    "list_records",
    "load_config",
    "load_sysroot",
    "mark_bad",
    "mark_good",
    "motd_text",
    "read_record",
    "records_dir",
    "red_act",
    "red_decision",
    "red_plan",
    "run_checks",
    "run_hooks",
    "stateroot_records_dir",
    "write_motd",
    "write_record",
]
