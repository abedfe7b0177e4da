"""`sysroot admin health check|green|red|status`: real scripts in a temp --root, a real
sysroot (init-fs, os-init, deploy by our tool, commits by the real ostree).

Not booted (the host), `check` records under the sysroot's default deployment and says
so; test_booted_check_names_the_booted_deployment runs it in a faked booted system
(tests/deploy/test_staged.py's harness: a mount namespace, chroot'ed into the booted
deployment), where it must name the booted deployment and write to /var.
"""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from sysroot.cli.main import main
from sysroot.health import read_record
from tests.deploy.test_staged import Booted, booted_tree
from tests.health.conftest import ETC_REQUIRED, ETC_WANTED, USR_REQUIRED, Root
from tests.helpers.sysroots import (
    OSNAME,
    Sysroot,
    clear_immutable_under,
    init_sysroot,
    make_os_tree,
)


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def errors(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.startswith("error: ")]


def cli(*args: str) -> Result:
    """The command, run in this process (its check scripts are real processes)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(list(args))
    assert "Traceback" not in err.getvalue()
    return Result(rc, out.getvalue(), err.getvalue())


@pytest.fixture(autouse=True)
def _mutable_afterwards(tmp_path):
    yield
    clear_immutable_under(tmp_path)  # deployment roots are immutable


def deployments(sr: Sysroot) -> list[str]:
    """csum.serial of each deployment, in boot order (from our status --json)."""
    doc = json.loads(cli("admin", "status", "--json", f"--sysroot={sr.path}").out)
    return [f"{d['checksum']}.{d['serial']}" for d in doc["deployments"]]


@pytest.fixture
def sr(tmp_path, ostree, sysroot) -> Sysroot:
    """A sysroot with one deployment of testos."""
    s = init_sysroot(tmp_path / "sr", sysroot, ostree)
    s.commit(make_os_tree(tmp_path / "tree"), version="1")
    s.admin("deploy", f"--os={OSNAME}", f"{OSNAME}/x")
    return s


def records_of(sr: Sysroot) -> Path:
    return sr.path / "ostree/deploy" / OSNAME / "var/lib/sysroot/health"


def records(sr: Sysroot) -> list:
    d = records_of(sr)
    return [read_record(str(p)) for p in sorted(d.iterdir())] if d.exists() else []


def motd(root: Root) -> str:
    return (root.path / "run/motd.d/boot-status").read_text()


def check(sr: Sysroot, root: Root, *extra: str) -> Result:
    return cli("admin", "health", "check", f"--sysroot={sr.path}", f"--root={root}", *extra)


# ---------------------------------------------------------------------- check


def test_healthy_check_records_under_the_default_deployment(sr, root):
    root.script(USR_REQUIRED, "01_ok.sh", "echo all good")
    root.script(ETC_WANTED, "05_meh.sh", "echo '<3>not great'; exit 4")
    r = check(sr, root)
    assert r.rc == 0, r.err
    (only,) = deployments(sr)
    assert f"recording the result under its default deployment {OSNAME} {only}" in r.err
    # a wanted failure: one warning line, not an error
    assert r.errors() == []
    assert "warning: wanted health check 05_meh.sh failed (exit code 4): not great" in r.err
    (rec,) = records(sr)
    assert rec.deployment == f"{OSNAME}/deploy/{only}" and rec.report.healthy
    assert [(c.check.name, c.outcome.value) for c in rec.report.results] == [
        ("01_ok.sh", "passed"),
        ("05_meh.sh", "failed"),
    ]
    assert motd(root).startswith("Boot Status is GREEN - Health Check SUCCESS\n")


def test_required_failure_exits_1_with_one_line(sr, root):
    root.script(USR_REQUIRED, "01_ok.sh")
    root.script(ETC_REQUIRED, "10_disk.sh", "echo checking; echo '<2>disk is full'; exit 3")
    root.script(ETC_REQUIRED, "20_never.sh")
    r = check(sr, root)
    assert r.rc == 1
    assert r.errors() == [
        "error: required health check 10_disk.sh failed (exit code 3): disk is full"
    ]
    assert root.ran() == [f"{USR_REQUIRED}/01_ok.sh", f"{ETC_REQUIRED}/10_disk.sh"]
    (rec,) = records(sr)
    assert not rec.report.healthy
    assert [c.outcome.value for c in rec.report.results] == ["passed", "failed", "skipped"]
    assert motd(root).splitlines() == [
        "Boot Status is RED - Health Check FAILURE!",
        "disk is full",
        "Script '10_disk.sh' FAILURE (exit code '3')",
    ]


def test_each_run_adds_a_record(sr, root):
    root.script(USR_REQUIRED, "01_ok.sh")
    assert check(sr, root).rc == 0
    assert check(sr, root).rc == 0
    assert len(records(sr)) == 2


@pytest.mark.parametrize(
    "case",
    ["no-sysroot", "not-initialized", "no-root", "root-is-a-file", "unknown-os", "no-deployment"],
)
def test_refusals_change_nothing(sr, root, tmp_path, sysroot, case):
    """One error line, non-zero exit, and nothing ran or was written."""
    root.script(USR_REQUIRED, "01_ok.sh")
    args = [f"--sysroot={sr.path}", f"--root={root}"]
    if case == "no-sysroot":
        args[0] = f"--sysroot={tmp_path / 'missing'}"
    elif case == "not-initialized":
        (tmp_path / "empty").mkdir()
        args[0] = f"--sysroot={tmp_path / 'empty'}"
    elif case == "no-root":
        args[1] = f"--root={tmp_path / 'missing'}"
    elif case == "root-is-a-file":
        (tmp_path / "file").write_text("")
        args[1] = f"--root={tmp_path / 'file'}"
    elif case == "unknown-os":
        args.append("--os=nosuchos")
    else:  # an initialized sysroot with a stateroot but no deployment
        bare = init_sysroot(tmp_path / "bare", sysroot, sysroot)
        args[0] = f"--sysroot={bare.path}"
    r = cli("admin", "health", "check", *args)
    assert r.rc != 0 and len(r.errors()) == 1, r.err
    assert [ln for ln in r.err.splitlines() if not ln.startswith("error: ")] == []
    assert root.ran() == [] and not (root.path / "run").exists() and records(sr) == []


def test_bad_options_are_usage_errors(sr, root):
    for args in (["--no-such-option"], ["extra-word"], ["--sysroot"]):
        r = cli("admin", "health", "check", f"--root={root}", *args)
        assert (r.rc, len(r.errors())) == (2, 1), (args, r.err)
    r = cli("admin", "health", "status", "--json=yes", f"--sysroot={sr.path}")
    assert (r.rc, len(r.errors())) == (2, 1)


# ---------------------------------------------------------------------- green, red


@pytest.mark.parametrize("verb", ["green", "red"])
def test_hooks_run_their_own_directory(root, verb):
    other = "red" if verb == "green" else "green"
    root.script(f"usr/lib/greenboot/{verb}.d", "01_a.sh", "echo '<3>hook broke'; exit 2")
    root.script(f"etc/greenboot/{verb}.d", "02_b.sh")
    root.script(f"etc/greenboot/{other}.d", "01_other.sh")
    root.script(USR_REQUIRED, "01_check.sh")
    r = cli("admin", "health", verb, f"--root={root}")
    # as greenboot: a failing hook is reported, the others run, the exit status is 0
    assert r.rc == 0
    assert root.ran() == [f"usr/lib/greenboot/{verb}.d/01_a.sh", f"etc/greenboot/{verb}.d/02_b.sh"]
    assert f"warning: {verb} script 01_a.sh failed (exit code 2): hook broke" in r.err


# ---------------------------------------------------------------------- status


def test_status_text_and_json(sr, root, tmp_path, ostree):
    """Two deployments: the checked one shows its newest record, the other is
    unchecked."""
    sr.commit(make_os_tree(tmp_path / "tree2", kernel=b"kernel-2\n"), version="2")
    sr.admin("deploy", f"--os={OSNAME}", f"{OSNAME}/x")
    new, old = deployments(sr)
    # an older record of `new` that passed, then the newer one that failed
    root.script(
        USR_REQUIRED, "10_net.sh", 'if test -e "$0.fail"; then echo "<2>no route"; exit 1; fi'
    )
    assert check(sr, root).rc == 0
    (root.path / USR_REQUIRED / "10_net.sh.fail").write_text("")
    assert check(sr, root).rc == 1
    r = cli("admin", "health", "status", f"--sysroot={sr.path}")
    assert r.rc == 0 and r.err == ""
    lines = r.out.splitlines()
    assert lines[0] == f"  {OSNAME} {new}"
    assert lines[1].startswith("    Health: failed (checked 20")
    assert lines[2:] == [
        "    Failed: 10_net.sh (required, exit code 1)",
        "      | no route",
        f"  {OSNAME} {old}",
        "    Health: unchecked",
    ]
    doc = json.loads(cli("admin", "health", "status", "--json", f"--sysroot={sr.path}").out)
    assert doc["schema"] == "sysroot-health-status/v2" and doc["warnings"] == []
    # boot counting is off in this sysroot: nothing counted, failed or blocked
    assert doc["counting"] == {
        "state": "off",
        "deployment": None,
        "tries_left": None,
        "tries_done": None,
    }
    first, second = doc["deployments"]
    assert first["deployment"] == f"{OSNAME}/deploy/{new}"
    for d in (first, second):
        assert (d["counting"], d["failed_boot"], d["intervention"]) == (None, None, None)
    newest = records(sr)[-1]
    assert (first["checksum"] + "." + str(first["serial"]), first["health"]) == (new, "failed")
    assert (first["record"], first["finished"]) == (newest.name, newest.report.finished)
    assert first["failed_checks"] == [
        {
            "name": "10_net.sh",
            "path": f"/{USR_REQUIRED}/10_net.sh",
            "kind": "required",
            "outcome": "failed",
            "exit_status": 1,
            "duration": newest.report.results[0].duration,
            "tail": ["no route"],
        }
    ]
    assert (second["health"], second["record"], second["failed_checks"]) == ("unchecked", None, [])
    # --os filters by stateroot, as admin status does
    doc = json.loads(
        cli("admin", "health", "status", "--json", "--os=other", f"--sysroot={sr.path}").out
    )
    assert doc["deployments"] == []


def test_status_warns_about_bad_records_and_goes_on(sr, root):
    root.script(USR_REQUIRED, "01_ok.sh", r"printf 'evil \033[2J line\n'")
    assert check(sr, root).rc == 0
    (good,) = records_of(sr).iterdir()
    (records_of(sr) / ("9" * 20 + "-x.json")).write_text("{not json")
    # a well-formed record with a check name meant to drive the terminal
    doc = json.loads(good.read_text())
    doc["checks"][0].update(name="\x1b]0;owned\x07.sh", outcome="failed", exit_status=1)
    doc["healthy"] = False
    doc["finished"] = float("nan")  # JSON output must stay JSON
    (records_of(sr) / ("8" * 20 + "-y.json")).write_text(json.dumps(doc))
    r = cli("admin", "health", "status", f"--sysroot={sr.path}")
    assert r.rc == 0
    (warning,) = r.err.splitlines()
    assert warning.startswith("warning: ") and "-x.json: not a health record" in warning
    assert "\x1b" not in r.out and "\x07" not in r.out
    assert "    Failed: \\x1b]0;owned\\x07.sh (required, exit code 1)" in r.out
    assert "      | evil \\x1b[2J line" in r.out
    js = cli("admin", "health", "status", "--json", f"--sysroot={sr.path}")
    assert js.rc == 0 and json.loads(js.out)["warnings"] == [warning[len("warning: ") :]]
    (entry,) = json.loads(js.out, parse_constant=pytest.fail)["deployments"]
    assert (entry["health"], entry["finished"]) == ("failed", None)
    assert "    Health: failed (checked at an unknown time, boot " in r.out


def test_status_refuses_what_is_not_a_sysroot(tmp_path):
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "missing", tmp_path / "empty"):
        r = cli("admin", "health", "status", f"--sysroot={path}")
        assert r.rc == 1 and len(r.errors()) == 1 and r.out == ""


# ---------------------------------------------------------------------- booted


def test_booted_check_names_the_booted_deployment(tmp_path, ostree, sysroot):
    """In a (faked) booted system the record names the booted deployment, not the
    default one, and goes to /var; status marks the booted deployment."""
    sr = init_sysroot(tmp_path / "sr", sysroot, ostree)
    sr.commit(booted_tree(tmp_path / "tree1"), version="1")
    sr.admin("deploy", f"--os={OSNAME}", f"{OSNAME}/x")
    (booted,) = deployments(sr)
    sr.commit(booted_tree(tmp_path / "tree2", conf="a=2\n"), version="2")
    sr.admin("deploy", f"--os={OSNAME}", f"{OSNAME}/x")  # the new default, not booted
    default, rollback = deployments(sr)
    assert rollback == booted
    run = tmp_path / "run"
    run.mkdir()
    (run / "ostree-booted").write_bytes(b"")
    b = Booted(sr.path, run, booted, "")
    etc_checks = b.etc / "greenboot/check/required.d"
    etc_checks.mkdir(parents=True)
    (etc_checks / "01_fail.sh").write_text("echo '<2>booted and broken'; exit 1\n")
    r = b("sysroot", "admin", "health", "check", check=False)
    assert r.returncode == 1, r.stderr
    err = r.stderr.decode()
    assert "not booted" not in err
    assert "error: required health check 01_fail.sh failed (exit code 1): booted and broken" in err
    (rec,) = records(sr)
    assert rec.deployment == f"{OSNAME}/deploy/{booted}"
    assert (run / "motd.d/boot-status").read_text().startswith("Boot Status is RED")
    out = b("sysroot", "admin", "health", "status").stdout.decode().splitlines()
    assert out[0] == f"  {OSNAME} {default}" and out[1] == "    Health: unchecked"
    assert out[2] == f"* {OSNAME} {booted}" and out[3].startswith("    Health: failed")
    # --os naming another stateroot than the booted one is refused before any check runs
    r = b("sysroot", "admin", "health", "check", "--os=other", check=False)
    assert r.returncode == 2 and len(records(sr)) == 1
    assert os.path.exists(run / "motd.d/boot-status")
