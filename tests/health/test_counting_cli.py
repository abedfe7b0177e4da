"""`sysroot admin health` with boot counting, greenboot's flow over real sysroots of
both counting back ends (grub2 and systemd-boot, 3 tries), booted through the models
of tests/boot/test_boot_counting.py (GRUB's script with the real grub-editenv;
systemd-boot's entry-name counting). The host is not booted into these sysroots, so
the verbs are told which deployment booted with --booted (what the boot model says).

The reboot itself goes through the one process door (run); the tests replace it and
the journal's send() in this process, to see what would run and what was logged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sysroot.boot.backends import SystemdBootBackend
from sysroot.cli.commands import health as health_cli
from sysroot.health.counting import FALLBACK_ID, INTERVENTION_ID, REBOOT_ID, read_intervention
from sysroot.health.flows import load_sysroot
from sysroot.health.records import stateroot_records_dir
from tests.boot.test_boot_counting import deploy, grub_boot, make_sysroot, sd_boot
from tests.deploy.test_staged import Booted, booted_tree
from tests.health.conftest import USR_REQUIRED, Root
from tests.health.test_cli import Result, cli
from tests.helpers.sysroots import OSNAME, clear_immutable_under, init_sysroot

OUR_IDS = (FALLBACK_ID, INTERVENTION_ID, REBOOT_ID)


@pytest.fixture(autouse=True)
def _mutable_afterwards(tmp_path):
    yield
    clear_immutable_under(tmp_path)


class Machine:
    """A sysroot with testos/1 and testos/2 deployed (2 the counted default), its boot
    loader's model, and what the health verbs did in this process."""

    def __init__(self, tmp_path: Path, ostree, bootloader: str, monkeypatch):
        self.bootloader = bootloader
        self.sr, self.c = make_sysroot(tmp_path / "sr", ostree, bootloader, 3)
        deploy(self.sr, 1)
        deploy(self.sr, 2)
        self.root = Root(tmp_path / "root")
        self.root.path.mkdir()
        self.reboots: list[list[str]] = []
        self.journal: list[tuple[str, dict]] = []
        monkeypatch.setattr(health_cli, "run", lambda argv, **kw: self.reboots.append(argv))
        real_send = health_cli.journal.send

        def send(msg: str, **kw) -> bool:
            if kw.get("message_id") in OUR_IDS:  # not the check runner's entries
                self.journal.append((msg, kw))
                return True
            return real_send(msg, **kw)

        monkeypatch.setattr(health_cli.journal, "send", send)
        self.booted: str | None = None

    def name(self, n: int) -> str:
        return f"{OSNAME}/deploy/{self.c[n]}.0"

    def boot(self) -> str:
        """One boot by the model; returns (and remembers) the deployment's name."""
        grub = self.bootloader == "grub2"
        got = grub_boot(self.sr) if grub else sd_boot(Path(self.sr.path))
        self.booted = f"{OSNAME}/deploy/{got}"
        return self.booted

    def health(self, verb: str, *extra: str, booted: str | None = None) -> Result:
        args = ["admin", "health", verb, f"--sysroot={self.sr.path}"]
        if verb in ("check", "red", "check-fallback", "green"):
            args.append(f"--root={self.root}")
        return cli(*args, f"--booted={booted or self.booted}", *extra)

    def status(self) -> dict:
        r = cli("admin", "health", "status", "--json", f"--sysroot={self.sr.path}")
        assert r.rc == 0 and r.err == "", r.err
        return json.loads(r.out)

    def entry(self, n: int) -> dict:
        return next(d for d in self.status()["deployments"] if d["deployment"] == self.name(n))

    def failing_check(self) -> None:
        self.root.script(USR_REQUIRED, "01_app.sh", "echo '<2>the app is down'; exit 1")

    def motd(self, name: str = "boot-status") -> str:
        return (self.root.path / "run/motd.d" / name).read_text()

    def boot_files(self) -> dict[str, bytes]:
        boot = Path(self.sr.path) / "boot"
        return {str(p): p.read_bytes() for p in sorted(boot.rglob("*")) if p.is_file()}


@pytest.fixture(params=["grub2", "systemd-boot"])
def m(request, tmp_path, ostree, monkeypatch) -> Machine:
    return Machine(tmp_path, ostree, request.param, monkeypatch)


def test_a_good_boot_is_blessed(m):
    assert m.boot() == m.name(2)
    counting = m.status()["counting"]
    assert counting["state"] == "armed" and counting["deployment"] == m.name(2)
    assert m.entry(2)["counting"] == {
        "state": "armed",
        "tries_left": 2,
        "tries_done": None if m.bootloader == "grub2" else 1,
    }
    assert m.entry(1)["counting"] is None
    r = m.health("mark-good")
    assert (r.rc, r.err) == (0, "")
    assert r.out == f"{m.name(2)}: boot marked good (2 tries left), boot counting ended\n"
    if m.bootloader == "grub2":
        assert m.status()["counting"]["state"] == "blessed"
        assert m.entry(2)["counting"]["state"] == "blessed"
    else:
        assert m.status()["counting"]["state"] == "off"
        assert m.entry(2)["counting"] is None
    assert [m.boot() for _ in range(5)] == [m.name(2)] * 5  # never falls back now
    before = m.boot_files()
    assert m.health("mark-good") == Result(0, "", "")  # nothing left to do
    assert m.boot_files() == before
    assert m.reboots == [] and m.journal == []


def test_a_failed_check_on_an_armed_boot_reboots_until_the_fall_back(m):
    m.failing_check()
    for left in (2, 1, 0):  # each try fails; the last one leaves no tries
        assert m.boot() == m.name(2)
        r = m.health("check")
        assert r.rc == 1 and "the app is down" in r.err
        r = m.health("red", "--reboot", "--dry-run")
        reason = (
            f"boot counting has {left} tries left"
            if left
            else "no tries left: the boot loader falls back to the previous deployment"
        )
        assert r.out == f"reboot: {m.name(2)} failed its health checks; {reason}: rebooting\n"
        assert m.reboots == []
        r = m.health("red", "--reboot")
        assert r.rc == 0 and "rebooting" in r.err
        assert m.reboots.pop() == ["systemctl", "reboot"]
        msg, fields = m.journal.pop()
        assert fields["message_id"] == REBOOT_ID and fields["SYSROOT_DEPLOYMENT"] == m.name(2)
        assert m.entry(2)["intervention"] is None
    assert m.boot() == m.name(1)  # the boot loader fell back


def test_a_fall_back_is_made_permanent_then_the_loop_breaker_holds(m):
    m.failing_check()
    assert [m.boot() for _ in range(4)] == [m.name(2)] * 3 + [m.name(1)]
    st = m.status()["counting"]
    assert (st["state"], st["deployment"]) == ("fell-back", m.name(2))
    # a failure on the fall-back before it is made permanent: no reboot either
    r = m.health("red", "--reboot", "--dry-run")
    assert r.out.startswith(f"manual-intervention: {m.name(1)} failed its health checks and")
    assert f"it is the fall-back from {m.name(2)}" in r.out
    # check-fallback, as at the start of the fall-back boot
    r = m.health("check-fallback")
    after = " after 3 tries" if m.bootloader == "systemd-boot" else ""
    line = (
        f"{m.name(2)} failed to boot{after}: the boot loader fell back to {m.name(1)},"
        " which is now the default"
    )
    assert (r.rc, r.out, r.err) == (0, "", f"warning: {line}\n")
    ((msg, fields),) = m.journal
    assert msg == line and fields["message_id"] == FALLBACK_ID
    assert fields["SYSROOT_FAILED_DEPLOYMENT"] == m.name(2)
    assert m.motd("boot-fallback") == f"Boot Status is FALLBACK - {line}\n"
    status = m.status()
    assert [d["deployment"] for d in status["deployments"]] == [m.name(1), m.name(2)]
    assert status["deployments"][1]["failed_boot"] is not None
    assert status["deployments"][0]["failed_boot"] is None
    assert m.health("check-fallback") == Result(0, "", "")  # done: silent
    m.journal.clear()
    # the fall-back fails its checks too: the loop breaker, no reboot
    assert m.health("check").rc == 1
    r = m.health("red", "--reboot")
    # the loop breaker fails the unit (greenboot: "Manual intervention necessary", 1)
    assert r.rc == 1 and m.reboots == []
    assert "manual intervention needed, not rebooting" in r.err
    ((msg, fields),) = m.journal
    assert fields["message_id"] == INTERVENTION_ID and fields["SYSROOT_DEPLOYMENT"] == m.name(1)
    assert m.motd().startswith("Boot Status is RED - Health Check FAILURE!\n")
    assert m.motd().endswith(f"Boot Status is RED - {msg}\n")
    assert msg.endswith("manual intervention needed, not rebooting")
    entry = m.entry(1)
    assert entry["intervention"]["reason"] and entry["health"] == "failed"
    text = cli("admin", "health", "status", f"--sysroot={m.sr.path}").out
    assert "    Manual intervention needed since " in text
    assert "    Failed boot: " in text
    assert [m.boot() for _ in range(2)] == [m.name(1)] * 2  # it stays on the fall-back
    # fixed by hand, a good boot: the loop breaker's record goes
    assert m.health("mark-good").rc == 0
    assert m.entry(1)["intervention"] is None


def test_red_with_a_grubenv_damaged_by_red_d_is_the_loop_breaker(tmp_path, ostree, monkeypatch):
    """The counting state is read after red.d ran: when it cannot be read then, the
    loop breaker decides (journal, motd, record, exit 1), not an error without any."""
    m = Machine(tmp_path, ostree, "grub2", monkeypatch)
    assert m.boot() == m.name(2)
    m.failing_check()
    assert m.health("check").rc == 1
    env = Path(m.sr.path) / "boot/grub/grubenv"
    m.root.script("etc/greenboot/red.d", "50-damage.sh", f"printf 'not a grubenv' > {env}")
    r = m.health("red", "--reboot")
    assert r.rc == 1 and m.reboots == []
    assert "etc/greenboot/red.d/50-damage.sh" in m.root.ran()
    assert "the boot counting state could not be read" in r.err
    assert r.err.rstrip().endswith("manual intervention needed, not rebooting")
    ((msg, fields),) = m.journal
    assert fields["message_id"] == INTERVENTION_ID and fields["SYSROOT_DEPLOYMENT"] == m.name(2)
    assert m.motd().endswith(f"Boot Status is RED - {msg}\n")
    state = load_sysroot(m.sr.path)
    found = read_intervention(stateroot_records_dir(state.layout, OSNAME))
    assert found is not None and found.deployment == m.name(2)


def test_the_check_unit_makes_a_fall_back_permanent_then_checks(m):
    """check --check-fallback (the check unit): check-fallback and the checks in one
    process, the fall-back first; on a boot that did not fall back, the checks alone."""
    m.failing_check()
    assert [m.boot() for _ in range(4)] == [m.name(2)] * 3 + [m.name(1)]
    r = m.health("check", "--check-fallback")
    assert r.rc == 1 and "the app is down" in r.err
    assert r.err.startswith(f"warning: {m.name(2)} failed to boot")
    assert [(fields["message_id"]) for _, fields in m.journal] == [FALLBACK_ID]
    status = m.status()
    assert [d["deployment"] for d in status["deployments"]] == [m.name(1), m.name(2)]
    assert status["deployments"][1]["failed_boot"] is not None
    assert status["deployments"][0]["health"] == "failed"  # the checks ran, on 1
    r = m.health("check", "--check-fallback")  # done: the checks alone
    assert r.rc == 1 and "fell back" not in r.err and len(m.journal) == 1


def test_the_green_unit_marks_the_boot_good_then_runs_green_d(m):
    assert m.boot() == m.name(2)
    m.root.script("etc/greenboot/green.d", "50-hello.sh", "echo hello")
    r = m.health("green", "--mark-good")
    assert (r.rc, r.err) == (0, "sysroot: Script '50-hello.sh' SUCCESS\n")
    assert r.out == f"{m.name(2)}: boot marked good (2 tries left), boot counting ended\n"
    assert m.root.ran() == ["etc/greenboot/green.d/50-hello.sh"]
    state = "blessed" if m.bootloader == "grub2" else "off"
    assert m.status()["counting"]["state"] == state
    # without --mark-good: green.d only
    r = m.health("green")
    assert (r.rc, r.out) == (0, "") and len(m.root.ran()) == 2


def test_green_d_runs_when_marking_the_boot_good_fails(m):
    assert m.boot() == m.name(2)
    m.root.script("etc/greenboot/green.d", "50-hello.sh", "echo hello")
    r = m.health("green", "--mark-good", booted="testos/deploy/nope.0")
    assert r.rc == 2 and r.err.splitlines()[-1].endswith(
        "testos/deploy/nope.0: no such deployment in " + m.sr.path
    )
    assert m.root.ran() == ["etc/greenboot/green.d/50-hello.sh"]
    assert m.status()["counting"]["state"] == "armed"  # not marked


def test_mark_bad_falls_back_at_the_next_boot(m):
    assert m.boot() == m.name(2)
    r = m.health("mark-bad")
    assert (r.rc, r.out) == (0, f"{m.name(2)}: boot marked bad, the next boot falls back\n")
    # grubenv says boot_counter=0 (bad); systemd-boot's name +0-1 already sorts last
    state = "bad" if m.bootloader == "grub2" else "fell-back"
    assert m.entry(2)["counting"]["state"] == state and m.entry(2)["counting"]["tries_left"] == 0
    assert m.boot() == m.name(1)
    r = m.health("mark-bad")  # the fall-back is not counted
    assert r.rc == 0 and r.out == "" and "not counted" in r.err


def test_sd_mark_good_after_systemd_bless_boot_is_a_no_op(tmp_path, ostree, monkeypatch):
    m = Machine(tmp_path, ostree, "systemd-boot", monkeypatch)
    m.boot()
    edir = Path(m.sr.path) / "boot/loader/entries"
    # systemd-bless-boot good: the counter leaves the name
    os.rename(edir / "ostree-2-9999-testos+2-1.conf", edir / "ostree-2-9999-testos.conf")
    before = m.boot_files()
    assert m.health("mark-good") == Result(0, "", "")
    assert m.boot_files() == before


def test_sd_mark_good_loses_the_race_to_systemd_bless_boot(tmp_path, ostree, monkeypatch):
    """systemd-bless-boot renames between mark-good's read and its rename: ours finds
    the file gone, rereads, sees the boot blessed, and succeeds doing nothing."""
    m = Machine(tmp_path, ostree, "systemd-boot", monkeypatch)
    m.boot()
    edir = Path(m.sr.path) / "boot/loader/entries"
    real_head = SystemdBootBackend._head
    raced = []

    def head(self, layout):
        found = real_head(self, layout)
        if found is not None and not raced:
            raced.append(found[1].filename)
            os.rename(edir / found[1].filename, edir / "ostree-2-9999-testos.conf")
        return found

    monkeypatch.setattr(SystemdBootBackend, "_head", head)
    r = m.health("mark-good")
    assert raced == ["ostree-2-9999-testos+2-1.conf"]
    assert r == Result(0, "", "")
    assert sorted(os.listdir(edir)) == ["ostree-1-9998-testos.conf", "ostree-2-9999-testos.conf"]


def test_refusals_are_one_line_and_change_nothing(tmp_path, ostree, monkeypatch):
    m = Machine(tmp_path, ostree, "grub2", monkeypatch)
    m.boot()
    m.failing_check()
    before = m.boot_files()
    # not booted, and not told which one booted
    for verb in ("mark-good", "mark-bad", "check-fallback"):
        args = ["admin", "health", verb, f"--sysroot={m.sr.path}"]
        r = cli(*args)
        assert r.rc == 1 and r.errors() == [r.err.strip()], r.err
        assert "Not booted into a deployment of" in r.err
    for verb in ("mark-good", "mark-bad", "check-fallback", "red"):
        r = m.health(verb, *(["--reboot"] if verb == "red" else []), booted="testos/nope.0")
        assert r.rc == 2 and r.errors() == [r.err.strip()], r.err
        assert "--booted=testos/nope.0: no such deployment" in r.err
    r = m.health("red", "--dry-run")
    assert r.rc == 2 and "--dry-run: only with --reboot" in r.err
    assert m.root.ran() == []  # refused before red.d (or anything) ran
    assert m.boot_files() == before and m.reboots == [] and m.journal == []


def test_booted_system_needs_no_booted_option(tmp_path, ostree, sysroot):
    """In a (faked) booted system (tests/deploy/test_staged.py's harness) the verbs
    find the booted deployment themselves, and the loop breaker's record goes to the
    running /var, which is the stateroot's var that status reads."""
    sr = init_sysroot(tmp_path / "sr", sysroot, ostree)
    ostree(f"--repo={sr.path}/ostree/repo", "config", "set", "sysroot.boot-counting-tries", "3")
    ostree(f"--repo={sr.path}/ostree/repo", "config", "set", "sysroot.bootloader", "grub2")
    sr.commit(booted_tree(tmp_path / "tree1"), version="1")
    sr.admin("deploy", f"--os={OSNAME}", f"{OSNAME}/x")
    sr.commit(booted_tree(tmp_path / "tree2", conf="a=2\n"), version="2")
    sr.admin("deploy", f"--os={OSNAME}", f"{OSNAME}/x")  # the counted default
    default = json.loads(cli("admin", "status", "--json", f"--sysroot={sr.path}").out)
    booted = "{checksum}.{serial}".format(**default["deployments"][0])
    name = f"{OSNAME}/deploy/{booted}"
    run = tmp_path / "run"
    run.mkdir()
    (run / "ostree-booted").write_bytes(b"")
    b = Booted(sr.path, run, booted, "")

    def status() -> dict:
        doc = json.loads(cli("admin", "health", "status", "--json", f"--sysroot={sr.path}").out)
        return doc["deployments"][0]

    assert status()["counting"] == {"state": "armed", "tries_left": 3, "tries_done": None}
    r = b("sysroot", "admin", "health", "red", "--reboot", "--dry-run")
    assert r.stdout.decode().startswith(f"reboot: {name} failed its health checks; boot counting")
    r = b("sysroot", "admin", "health", "mark-good", f"--booted={OSNAME}/deploy/x.0", check=False)
    assert r.returncode == 2 and f"booted is {name}" in r.stderr.decode()
    r = b("sysroot", "admin", "health", "mark-good")
    assert r.stdout.decode() == f"{name}: boot marked good (3 tries left), boot counting ended\n"
    assert status()["counting"]["state"] == "blessed"
    # blessed, then failing: nothing counts it any more, the loop breaker holds
    checks = b.etc / "greenboot/check/required.d"
    checks.mkdir(parents=True)
    (checks / "01_fail.sh").write_text("echo '<2>broken'; exit 1\n")
    assert b("sysroot", "admin", "health", "check", check=False).returncode == 1
    r = b("sysroot", "admin", "health", "red", "--reboot", check=False)
    assert r.returncode == 1
    assert "manual intervention needed, not rebooting" in r.stderr.decode()
    assert "manual intervention needed" in (run / "motd.d/boot-status").read_text()
    entry = status()
    assert entry["health"] == "failed" and entry["intervention"]["reason"]
    b("sysroot", "admin", "health", "mark-good")  # fixed by hand: a good boot
    assert status()["intervention"] is None
