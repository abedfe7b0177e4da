"""The health verbs as a library: another Python program runs greenboot's flow with
`from sysroot.health import ...`, no command line involved (importing it loads no
sysroot.cli), and gets data back, not printed text."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sysroot.boot.backends import CountStatus
from sysroot.health import (
    CheckKind,
    HealthStatus,
    Verdict,
    check,
    check_fallback,
    check_target,
    health_status,
    hooks,
    load_sysroot,
    mark_bad,
    mark_good,
    red_act,
    red_decision,
    red_plan,
)
from sysroot.health.counting import read_intervention
from sysroot.health.records import stateroot_records_dir
from sysroot.util import journal
from tests.boot.test_boot_counting import deploy, grub_boot, make_sysroot
from tests.health.conftest import USR_REQUIRED, Root
from tests.helpers.sysroots import OSNAME, clear_immutable_under

RED_D = "usr/lib/greenboot/red.d"


@pytest.fixture(autouse=True)
def _quiet_and_mutable(tmp_path, monkeypatch):
    monkeypatch.setattr(journal, "send", lambda msg, **kw: True)
    yield
    clear_immutable_under(tmp_path)


def test_importing_the_flows_loads_no_command_line():
    code = (
        "import sys\n"
        "from sysroot.health import check, check_target, health_status, mark_good,"
        " red_plan, red_decision, red_act, check_fallback, mark_bad, hooks\n"
        "print(' '.join(m for m in sys.modules if m.startswith('sysroot.cli')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == ""


def test_the_flow_of_a_failed_boot_without_the_cli(tmp_path, ostree):
    sr, c = make_sysroot(tmp_path / "sr", ostree, "grub2", 3)
    deploy(sr, 1)
    deploy(sr, 2)
    root = Root(tmp_path / "root")
    root.script(USR_REQUIRED, "01_app.sh", "exit 1")
    root.script(RED_D, "10_notify.sh", "exit 0")
    name = f"{OSNAME}/deploy/{c[2]}.0"
    booted = f"{OSNAME}/deploy/{grub_boot(sr)}"
    assert booted == name  # the counted default boots

    state = load_sysroot(sr.path)
    target = check_target(state, booted, None)
    assert target.warning is None and target.directory == stateroot_records_dir(
        state.layout, OSNAME
    )
    report = check(str(root), target, {})
    assert not report.healthy and [r.check.name for r in report.failures()] == ["01_app.sh"]

    status = health_status(load_sysroot(sr.path))
    assert isinstance(status, HealthStatus) and status.warnings == []
    mine = next(d for d in status.deployments if d.name == name)
    assert mine.health == "failed" and mine.counting is not None
    assert status.to_json()["schema"] == "sysroot-health-status/v2"

    # red: the scripts, then the decision: counted, so reboot (through the callable)
    plan = red_plan(sr.path, booted)
    assert hooks(str(root), CheckKind.RED, {}).healthy
    outcome = red_decision(plan)
    assert outcome.reboot and outcome.deployment == name
    reboots: list[str] = []
    red_act(str(root), plan, outcome, reboot=lambda: reboots.append("reboot"))
    assert reboots == ["reboot"]

    # marked bad: still a reboot (the boot loader falls back); marked good: counting
    # ends, so a failure now is the loop breaker, which leaves its record
    assert mark_bad(sr.path, booted).changed
    assert red_decision(red_plan(sr.path, booted)).decision.verdict is Verdict.REBOOT
    assert check_fallback(str(root), sr.path, booted) is None  # it did not fall back
    good = mark_good(sr.path, booted)
    assert good.deployment == name and good.changed
    assert good.before is not None and good.before.status is CountStatus.BAD
    plan = red_plan(sr.path, booted)
    outcome = red_decision(plan)
    assert not outcome.reboot
    red_act(str(root), plan, outcome, reboot=lambda: reboots.append("wrong"))
    assert reboots == ["reboot"]
    found = read_intervention(stateroot_records_dir(state.layout, OSNAME))
    assert found is not None and found.deployment == name
    assert health_status(load_sysroot(sr.path)).deployments[0].intervention == found
    mark_good(sr.path, booted)  # a good boot of it clears the record
    assert read_intervention(stateroot_records_dir(state.layout, OSNAME)) is None


def test_a_broken_sysroot_is_a_loop_breaker_decision(tmp_path):
    plan = red_plan(str(tmp_path / "missing"), None)
    assert plan.state is None and plan.error is not None
    outcome = red_decision(plan)
    assert outcome.decision.verdict is Verdict.MANUAL and outcome.deployment is None
    assert "could not be loaded" in outcome.message


def test_the_deployment_a_check_names_when_not_booted(tmp_path, ostree):
    sr, c = make_sysroot(tmp_path / "sr", ostree, "grub2", None)
    deploy(sr, 1)
    target = check_target(load_sysroot(sr.path), None, None)
    assert target.deployment.csum == c[1] and target.warning is not None
    assert "recording the result under its default deployment" in target.warning
