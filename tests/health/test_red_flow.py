"""`admin health red --reboot` when it cannot reboot: the loop breaker fails the
command (and so the unit), as greenboot's redboot-auto-reboot does ("Manual
intervention necessary", exit 1), and a sysroot that cannot be loaded does not
silence red.d: the scripts run, then the loop breaker says why on one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sysroot.cli.commands import health as health_cli
from sysroot.health.counting import INTERVENTION_ID, REBOOT_ID
from tests.health.conftest import Root
from tests.health.test_cli import cli

RED_D = "usr/lib/greenboot/red.d"


class Seen:
    def __init__(self, monkeypatch):
        self.reboots: list[list[str]] = []
        self.journal: list[tuple[str, dict]] = []
        monkeypatch.setattr(health_cli, "run", lambda argv, **kw: self.reboots.append(argv))

        def send(msg: str, **kw) -> bool:
            if kw.get("message_id") in (INTERVENTION_ID, REBOOT_ID):
                self.journal.append((msg, kw))
            return True  # the runner's entries too: stderr is the command's own lines

        monkeypatch.setattr(health_cli.journal, "send", send)


def broken_sysroots(tmp_path: Path) -> dict[str, Path]:
    empty = tmp_path / "empty"
    empty.mkdir()
    return {
        "missing": tmp_path / "no\nsuch",  # a newline in the path: still one line
        "empty": empty,  # not initialized
    }


@pytest.mark.parametrize("which", ["missing", "empty"])
def test_red_d_runs_when_the_sysroot_cannot_be_loaded(tmp_path, monkeypatch, which):
    seen = Seen(monkeypatch)
    root = Root(tmp_path / "root")
    root.script(RED_D, "10_notify.sh", "exit 0")
    root.script(RED_D, "20_fails.sh", "exit 3")
    sysroot = broken_sysroots(tmp_path)[which]
    r = cli("admin", "health", "red", "--reboot", f"--root={root}", f"--sysroot={sysroot}")
    assert root.ran() == [f"{RED_D}/10_notify.sh", f"{RED_D}/20_fails.sh"]
    assert r.rc == 1 and r.out == "" and seen.reboots == []
    lines = r.err.splitlines()
    assert lines[0] == "warning: red script 20_fails.sh failed (exit code 3)"
    assert len(lines) == 2, r.err  # the decision: one line, the reason in it
    assert lines[1].startswith(
        "the booted deployment failed its health checks and the sysroot could not be loaded ("
    )
    assert lines[1].endswith("): manual intervention needed, not rebooting")
    ((msg, fields),) = seen.journal
    assert fields["message_id"] == INTERVENTION_ID and "\n" not in msg
    motd = (root.path / "run/motd.d/boot-status").read_text()
    assert motd.endswith(f"Boot Status is RED - {msg}\n") and motd.count("\n") == 1
    # --dry-run says the same decision and does nothing
    seen.journal.clear()
    r = cli(
        "admin", "health", "red", "--reboot", "--dry-run", f"--root={root}", f"--sysroot={sysroot}"
    )
    assert r.rc == 0 and r.out == f"manual-intervention: {lines[1]}\n"
    assert seen.journal == [] and seen.reboots == []


def test_without_reboot_a_broken_sysroot_is_not_read(tmp_path, monkeypatch):
    seen = Seen(monkeypatch)
    root = Root(tmp_path / "root")
    root.script(RED_D, "10_notify.sh", "exit 0")
    r = cli("admin", "health", "red", f"--root={root}", f"--sysroot={tmp_path / 'nothing'}")
    assert (r.rc, r.out, r.err) == (0, "", "")
    assert root.ran() == [f"{RED_D}/10_notify.sh"] and seen.journal == []
