"""Staged deployments (`admin deploy --stage`, `admin finalize-staged`), in a faked
booted system, against the real ostree.

Both tools only stage in a booted system: /run/ostree-booted exists and / is a
deployment of the sysroot (libostree also wants the sysroot to be /). Each command
here runs in a mount and pid namespace of its own (unshare) and chroot'ed into the
booted deployment, which gets what a real boot gives it: the physical root at
/sysroot (reached through the tree's `ostree -> sysroot/ostree` link), /boot, the
stateroot's /var, and a /run kept in the test's directory between commands. The
host's /usr (and the directories holding this Python and this checkout) are bind-
mounted over it so that both tools can run; the deployment's own /usr stays visible
under /sysroot, where both tools read it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import sysroot as sysroot_pkg
from sysroot.deploy.staged import StagedRecord
from sysroot.formats import gvariant
from sysroot.util.run import clean_env
from tests.conftest import one_error_line
from tests.helpers.sysroots import OSNAME, assert_dicts_equal, boot_state, make_os_tree
from tests.helpers.tools import in_mount_namespace

HARNESS = r"""
set -e
root=$1 phys=$2 run=$3 var=$4 binds=$5
shift 5
mount --bind "$phys" "$root/sysroot"
mount --bind "$phys/boot" "$root/boot"
mount --bind "$var" "$root/var"
# before the binds: when this Python lives under /tmp, /tmp is one of them
mount -t tmpfs tmpfs "$root/tmp"
for b in $binds; do mount --bind "$b" "$root$b"; done
mount --bind "$run" "$root/run"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
cd /
exec chroot "$root" /usr/bin/env PYTHONSAFEPATH=1 "$@"
"""

# host directories the tools need inside the chroot: /usr, and the top directories of
# this Python (a venv's and the interpreter's it links to) and of this checkout
BINDS = sorted(
    {"/usr"}
    | {
        "/" + Path(p).resolve().parts[1]
        for p in (sys.prefix, sys.base_prefix, sys.executable, sysroot_pkg.__file__)
    }
)


def booted_tree(root: Path, conf: str = "a=1\n") -> Path:
    """An OS tree that can be the root of a (faked) booted system."""
    make_os_tree(root, extra={"usr/etc/conf.d/a.conf": conf})
    for d in [
        "sysroot",
        "boot",
        "var",
        "run",
        "proc",
        "dev",
        "tmp",
        "sys",
        *(b.lstrip("/") for b in BINDS if b != "/usr"),
    ]:
        (root / d).mkdir(exist_ok=True)
    for name, target in (
        ("ostree", "sysroot/ostree"),
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("sbin", "usr/sbin"),
    ):
        (root / name).symlink_to(target)
    return root


def tool_argv(tool: str) -> list[str]:
    return ["ostree"] if tool == "ostree" else [sys.executable, "-m", "sysroot"]


@dataclass
class Booted:
    """A sysroot booted (as far as both tools can tell) into its deployment `booted`."""

    path: Path
    run: Path
    booted: str  # csum.serial
    v2: str  # a second commit, to stage

    @property
    def deploy_parent(self) -> Path:
        return self.path / "ostree/deploy" / OSNAME / "deploy"

    @property
    def etc(self) -> Path:
        """/etc of the running system."""
        return self.deploy_parent / self.booted / "etc"

    @property
    def staged_file(self) -> Path:
        return self.run / "ostree/staged-deployment"

    def argv(self, *command: str) -> list[str]:
        """command run inside the booted system (HARNESS, in a mount and PID namespace)."""
        return in_mount_namespace(
            HARNESS,
            str(self.deploy_parent / self.booted),
            str(self.path),
            str(self.run),
            str(self.path / "ostree/deploy" / OSNAME / "var"),
            " ".join(BINDS),
            *command,
            pid=True,
        )

    def __call__(self, tool: str, *args: str, check: bool = True, env: dict | None = None):
        proc = subprocess.run(
            self.argv(*tool_argv(tool), *args),
            capture_output=True,
            env=clean_env(env),
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{tool} {' '.join(args)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout.decode()}\nstderr: {proc.stderr.decode()}"
            )
        return proc

    def out(self, tool: str, *args: str) -> str:
        return self(tool, *args).stdout.decode()

    def deployments(self) -> list[str]:
        return sorted(
            p.name for p in self.deploy_parent.iterdir() if not p.name.endswith(".origin")
        )

    def deployment(self, csum: str) -> Path:
        (name,) = [n for n in self.deployments() if n.startswith(csum + ".")]
        return self.deploy_parent / name


@pytest.fixture
def make_booted(make_sysroot, tmp_path):
    """make_booted(name, by) -> Booted: init by `by`, deploy a first commit with it and
    boot into it; a second commit (one more /etc file, a.conf changed) is ready."""

    def make(name: str = "sr", by: str = "sysroot") -> Booted:
        sr = make_sysroot(name, by=by)
        sr.commit(booted_tree(tmp_path / f"{name}-tree1"), version="1")
        sr.admin("deploy", f"--os={OSNAME}", f"{OSNAME}/x")
        tree2 = booted_tree(tmp_path / f"{name}-tree2", conf="a=2\n")
        (tree2 / "usr/etc/new.conf").write_text("new\n")
        v2 = sr.commit(tree2, version="2")
        run = tmp_path / f"{name}-run"
        run.mkdir()
        (run / "ostree-booted").write_bytes(b"")
        (booted,) = [
            p.name
            for p in (sr.path / "ostree/deploy" / OSNAME / "deploy").iterdir()
            if not p.name.endswith(".origin")
        ]
        return Booted(sr.path, run, booted, v2)

    return make


def record(b: Booted) -> dict:
    return gvariant.decode("a{sv}", b.staged_file.read_bytes())


# ---------------------------------------------------------------------- staging
@pytest.mark.parametrize("kargs", [(), ("--karg=quiet", "--karg-append=console=ttyS0")])
def test_stage_writes_what_ostree_writes(make_booted, kargs):
    a, b = make_booted("a", by="ostree"), make_booted("b", by="sysroot")
    assert a.booted == b.booted
    ra = a("ostree", "admin", "deploy", "--stage", *kargs, f"{OSNAME}/x")
    rb = b("sysroot", "admin", "deploy", "--stage", *kargs, f"{OSNAME}/x")
    assert ra.stdout == rb.stdout == b""
    # the same record, byte for byte, and the same files (no boot change at all)
    assert b.staged_file.read_bytes() == a.staged_file.read_bytes()
    assert oct(b.staged_file.stat().st_mode) == oct(a.staged_file.stat().st_mode)
    assert ("kargs" in record(b)) == bool(kargs)
    assert_dicts_equal(boot_state(a.path), boot_state(b.path), "after deploy --stage")
    # both tools read either record: staged, listed first
    status = a.out("ostree", "admin", "status")
    assert f"{OSNAME} {b.v2}.0 (staged)" in status.splitlines()[0]
    for tool in ("ostree", "sysroot"):
        assert b.out(tool, "admin", "status") == status
        assert a.out(tool, "admin", "status") == status


def test_status_json_marks_the_staged_deployment(make_booted):
    import json

    b = make_booted()
    b("sysroot", "admin", "deploy", "--stage", f"{OSNAME}/x")
    data = json.loads(b.out("sysroot", "admin", "status", "--json"))
    first, second = data["deployments"]
    assert (first["checksum"], first["index"], first["staged"], first["booted"]) == (
        b.v2,
        0,
        True,
        False,
    )
    assert first["finalization_locked"] is False and first["boot_entry"] is None
    assert (second["staged"], second["booted"], second["index"]) == (False, True, 1)


@pytest.mark.parametrize(
    "stager,finalizer", [("sysroot", "sysroot"), ("ostree", "sysroot"), ("sysroot", "ostree")]
)
def test_finalize_merges_etc_as_it_is_at_finalize_time(make_booted, stager, finalizer):
    """The point of staging: /etc edited after staging is in the new deployment."""
    b = make_booted(by=stager)
    b(stager, "admin", "deploy", "--stage", f"{OSNAME}/x")
    (b.etc / "hostname").write_text("edited-after-staging\n")
    (b.etc / "local.conf").write_text("added after staging\n")
    r = b(finalizer, "admin", "finalize-staged")
    assert b"Copying /etc changes: 1 modified, 0 removed, 1 added" in r.stdout
    new = b.deployment(b.v2)
    assert (new / "etc/hostname").read_text() == "edited-after-staging\n"
    assert (new / "etc/local.conf").read_text() == "added after staging\n"
    assert (new / "etc/conf.d/a.conf").read_text() == "a=2\n"  # unmodified: the new default
    assert (new / "etc/new.conf").read_text() == "new\n"
    assert not b.staged_file.exists()
    # the boot configuration now has it first, and it is no longer staged
    status = b.out("ostree", "admin", "status")
    heads = [ln for ln in status.splitlines() if not ln.startswith("    ")]
    assert heads == [f"  {OSNAME} {b.v2}.0 (pending)", f"* {OSNAME} {b.booted}"]
    assert b.out("sysroot", "admin", "status") == status


def test_plain_deploy_does_not_see_a_later_etc_edit(make_booted):
    b = make_booted()
    b("sysroot", "admin", "deploy", f"{OSNAME}/x")
    (b.etc / "hostname").write_text("edited-after-deploy\n")
    assert (b.deployment(b.v2) / "etc/hostname").read_text() == "testhost\n"


def test_finalize_matches_ostree(make_booted):
    a, b = make_booted("a", by="ostree"), make_booted("b", by="sysroot")
    for sr, tool in ((a, "ostree"), (b, "sysroot")):
        sr(tool, "admin", "deploy", "--stage", "--karg-append=x=1", f"{OSNAME}/x")
        (sr.etc / "hostname").write_text("mine\n")
    ra = a("ostree", "admin", "finalize-staged")
    rb = b("sysroot", "admin", "finalize-staged")
    assert rb.stdout == ra.stdout
    assert_dicts_equal(boot_state(a.path), boot_state(b.path), "after finalize-staged")
    assert (b.deployment(b.v2) / "etc/hostname").read_text() == "mine\n"


# ---------------------------------------------------------------------- list changes
def test_undeploy_of_the_staged_deployment_drops_it(make_booted):
    a, b = make_booted("a", by="ostree"), make_booted("b", by="sysroot")
    for sr, tool in ((a, "ostree"), (b, "sysroot")):
        sr(tool, "admin", "deploy", "--stage", f"{OSNAME}/x")
    ra = a("ostree", "admin", "undeploy", "0")
    rb = b("sysroot", "admin", "undeploy", "0")
    assert rb.stdout == ra.stdout == f"Deleted deployment {b.v2}.0\n".encode()
    assert not b.staged_file.exists() and b.deployments() == [b.booted]

    # ostree leaves the now stale ref ostree/B/S/1 (of the booted commit, which
    # ostree/B/S/0 names too) when the boot version does not change; we drop it
    def without_refs(state: dict) -> dict:
        return {k: v for k, v in state.items() if not k.startswith("ostree/repo/refs/")}

    assert_dicts_equal(
        without_refs(boot_state(a.path)), without_refs(boot_state(b.path)), "after undeploy 0"
    )
    refs = {k: v for k, v in boot_state(b.path).items() if k.startswith("ostree/repo/refs/")}
    assert list(refs.values()) == [f"ref {b.booted[:-2]}"]


def test_cleanup_keeps_staged_until_its_record_is_gone(make_booted):
    b = make_booted()
    b("sysroot", "admin", "deploy", "--stage", f"{OSNAME}/x")
    b("sysroot", "admin", "cleanup")
    assert b.deployments() == sorted([b.booted, f"{b.v2}.0"])
    b.staged_file.unlink()
    b("sysroot", "admin", "cleanup")
    assert b.deployments() == [b.booted]


def test_second_stage_replaces_the_first(make_booted):
    a, b = make_booted("a", by="ostree"), make_booted("b", by="sysroot")
    for sr, tool in ((a, "ostree"), (b, "sysroot")):
        sr(tool, "admin", "deploy", "--stage", f"{OSNAME}/x")
        sr(tool, "admin", "deploy", "--stage", f"{OSNAME}/x")
    assert b.deployments() == sorted([b.booted, f"{b.v2}.1"])  # .0 removed
    assert b.staged_file.read_bytes() == a.staged_file.read_bytes()
    assert_dicts_equal(boot_state(a.path), boot_state(b.path), "after two deploy --stage")


def test_plain_deploy_drops_a_staged_deployment(make_booted):
    b = make_booted()
    b("sysroot", "admin", "deploy", "--stage", f"{OSNAME}/x")
    b("sysroot", "admin", "deploy", f"{OSNAME}/x")
    assert not b.staged_file.exists()
    assert b.deployments() == sorted([b.booted, f"{b.v2}.1"])
    assert "(staged)" not in b.out("ostree", "admin", "status")


# ---------------------------------------------------------------------- locking
def test_locked_staging_is_not_finalized(make_booted):
    b = make_booted()
    b("sysroot", "admin", "deploy", "--stage", "--lock-finalization", f"{OSNAME}/x")
    assert record(b)["locked"] == gvariant.Variant("b", True)
    assert (b.run / "ostree/staged-deployment-locked").exists()
    before = boot_state(b.path)
    for tool in ("sysroot", "ostree"):  # ostree 2022.7 honours the legacy lock file
        r = b(tool, "admin", "finalize-staged")
        assert r.stdout == b""
        assert b.staged_file.exists()
        assert boot_state(b.path) == before
    assert (
        b.out("sysroot", "admin", "lock-finalization")
        == "Staged deployment is already finalization locked\n"
    )
    assert (
        b.out("sysroot", "admin", "lock-finalization", "--unlock")
        == "Staged deployment is now queued to apply on shutdown\n"
    )
    assert "locked" not in record(b) or record(b)["locked"].value is False
    assert not (b.run / "ostree/staged-deployment-locked").exists()
    b("sysroot", "admin", "finalize-staged")
    assert not b.staged_file.exists()
    assert b.out("ostree", "admin", "status").startswith(f"  {OSNAME} {b.v2}.0 (pending)")


def test_lock_finalization_locks(make_booted):
    b = make_booted()
    b("sysroot", "admin", "deploy", "--stage", f"{OSNAME}/x")
    assert (
        b.out("sysroot", "admin", "lock-finalization")
        == "Staged deployment is now finalization locked\n"
    )
    assert record(b)["locked"].value is True
    b("ostree", "admin", "finalize-staged")
    assert b.staged_file.exists()


# ---------------------------------------------------------------------- failures
def _break_merge_reference(b: Booted) -> None:
    rec = StagedRecord.decode(b.staged_file.read_bytes())
    from dataclasses import replace

    b.staged_file.write_bytes(replace(rec, merge=replace(rec.merge, serial=7)).encode())


def test_finalize_failure_writes_the_stamp_as_ostree(make_booted):
    a, b = make_booted("a", by="ostree"), make_booted("b", by="sysroot")
    for sr, tool in ((a, "ostree"), (b, "sysroot")):
        sr(tool, "admin", "deploy", "--stage", f"{OSNAME}/x")
        _break_merge_reference(sr)
    ra = a("ostree", "admin", "finalize-staged", check=False)
    rb = b("sysroot", "admin", "finalize-staged", check=False)
    assert ra.returncode != 0 and rb.returncode != 0
    assert b"Traceback" not in rb.stderr
    err = [ln for ln in rb.stderr.decode().splitlines() if ln.startswith("error: ")]
    assert err == [f"error: Failed to find merge deployment {b.booted[:-2]}.7 for staged"]
    stamp = "boot/ostree/finalize-failure.stamp"
    assert (b.path / stamp).read_text() == (a.path / stamp).read_text()
    assert b.staged_file.exists()  # nothing done: the record is still there
    # a later successful finalize removes the stamp
    b.staged_file.unlink()
    b("sysroot", "admin", "deploy", "--stage", f"{OSNAME}/x")
    b("sysroot", "admin", "finalize-staged")
    assert not (b.path / stamp).exists()


def test_finalize_with_nothing_staged_succeeds_silently_like_ostree(make_booted):
    b = make_booted()
    before = boot_state(b.path)
    for tool in ("ostree", "sysroot"):
        r = b(tool, "admin", "finalize-staged")
        assert r.stdout == b""
    assert boot_state(b.path) == before


def test_stage_needs_a_booted_system(make_sysroot, tmp_path, ostree, sysroot):
    sr = make_sysroot(by="sysroot")
    sr.commit(booted_tree(tmp_path / "tree"))
    sr.admin("deploy", f"--os={OSNAME}", f"{OSNAME}/x")
    before = boot_state(sr.path)
    ra = sr.oadmin("deploy", "--stage", f"--os={OSNAME}", f"{OSNAME}/x", check=False)
    rb = sr.admin("deploy", "--stage", f"--os={OSNAME}", f"{OSNAME}/x", check=False)
    assert ra.returncode != 0 and rb.returncode != 0
    assert (
        rb.stderr.decode() == "error: Cannot stage deployment: Not currently booted into "
        "an OSTree system\n"
    )
    assert b"Not currently booted into an OSTree system" in ra.stderr
    assert boot_state(sr.path) == before
    # finalize-staged outside a booted system: nothing, as ostree
    for tool in (ostree, sysroot):
        r = tool("admin", "finalize-staged", f"--sysroot={sr.path}")
        assert (r.stdout, r.stderr) == (b"", b"")


@pytest.mark.parametrize(
    "args,message",
    [
        (("--retain-pending",), "--stage cannot currently be combined with --retain arguments"),
        (("--not-as-default",), "--stage cannot currently be combined with --not-as-default"),
    ],
)
def test_stage_refuses_options_it_cannot_honour(make_booted, args, message):
    b = make_booted()
    r = b("sysroot", "admin", "deploy", "--stage", *args, f"{OSNAME}/x", check=False)
    assert r.returncode != 0 and r.stderr.decode() == f"error: {message}\n"
    ro = b("ostree", "admin", "deploy", "--stage", *args, f"{OSNAME}/x", check=False)
    assert ro.returncode != 0 and message.encode() in ro.stderr
    assert not b.staged_file.exists() and b.deployments() == [b.booted]


def test_bad_staged_record_and_no_staged_deployment_are_one_line(make_booted):
    b = make_booted()
    r = b("sysroot", "admin", "lock-finalization", check=False)
    assert r.returncode != 0 and r.stderr.decode() == "error: No staged deployment\n"
    (b.run / "ostree").mkdir()
    b.staged_file.write_bytes(
        gvariant.encode(
            "a{sv}",
            {"target": gvariant.Variant("a{sv}", {"name": gvariant.Variant("s", "nonsense")})},
        )
    )
    # a bad record does not break status (one warning; tests/deploy/test_staged_record.py)
    r = b("sysroot", "admin", "status", check=False)
    assert r.returncode == 0 and b"Traceback" not in r.stderr
    assert len(r.stderr.decode().splitlines()) == 1
    assert "staged-deployment" in r.stderr.decode()
    r = b("sysroot", "admin", "lock-finalization", check=False)
    assert r.returncode != 0 and len(r.stderr.decode().splitlines()) == 1
    assert "staged-deployment" in r.stderr.decode()


def test_pin_refuses_the_staged_deployment(make_booted):
    b = make_booted()
    b("sysroot", "admin", "deploy", "--stage", f"{OSNAME}/x")
    r = b("sysroot", "admin", "pin", "0", check=False)
    assert r.returncode != 0 and r.stderr.decode() == "error: Cannot pin staged deployment\n"


def test_stage_starts_the_finalize_unit_when_systemd_runs(make_booted):
    """With systemd as init (/run/systemd/system), staging starts the unit whose stop
    finalizes, before anything is written; a failing start stages nothing."""
    b = make_booted()
    (b.run / "systemd/system").mkdir(parents=True)
    (b.run / "bin").mkdir()
    fake = b.run / "bin/systemctl"
    fake.write_text('#!/bin/sh\necho "$@" >> /run/systemctl.log\nexit ${FAIL:-0}\n')
    fake.chmod(0o755)
    path = "/run/bin:" + os.environ["PATH"]
    r = b(
        "sysroot",
        "admin",
        "deploy",
        "--stage",
        f"{OSNAME}/x",
        check=False,
        env={"PATH": path, "FAIL": "1"},
    )
    assert r.returncode != 0 and b"systemctl start" in r.stderr
    assert not b.staged_file.exists() and b.deployments() == [b.booted]
    b("sysroot", "admin", "deploy", "--stage", f"{OSNAME}/x", env={"PATH": path})
    assert (
        b.run / "systemctl.log"
    ).read_text() == "start --quiet sysroot-finalize-staged.service\n" * 2
    assert b.staged_file.exists()


# ---------------------------------------------------------------------- units
UNITS = Path(__file__).resolve().parents[2] / "units"


def test_units_install_and_verify(tmp_path):
    dest = tmp_path / "dest"
    subprocess.run(["sh", str(UNITS / "install"), str(dest)], check=True)
    unitdir = dest / "usr/lib/systemd/system"
    (dest / "usr/bin").mkdir(parents=True)
    (dest / "usr/bin/sysroot").write_text("#!/bin/sh\n")  # what the units run
    (dest / "usr/bin/sysroot").chmod(0o755)
    names = [
        "sysroot-finalize-staged.service",
        "sysroot-finalize-staged-hold.service",
        "sysroot-finalize-staged.path",
    ]
    r = subprocess.run(
        ["systemd-analyze", "verify", f"--root={dest}", *(str(unitdir / n) for n in names)],
        capture_output=True,
        env=clean_env({"SYSTEMD_LOG_LEVEL": "err"}),
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    assert (
        os.readlink(unitdir / "multi-user.target.wants/sysroot-finalize-staged.path")
        == "../sysroot-finalize-staged.path"
    )
    service = (unitdir / names[0]).read_text().splitlines()
    for line in (
        "Type=oneshot",
        "RemainAfterExit=yes",
        "DefaultDependencies=no",
        "ExecStop=/usr/bin/sysroot admin finalize-staged",
        "RequiresMountsFor=/sysroot /boot",
        "Conflicts=final.target",
        "Before=basic.target final.target",
        "ConditionPathExists=/run/ostree-booted",
    ):
        assert line in service
    assert "PathExists=/run/ostree/staged-deployment" in (unitdir / names[2]).read_text()


@pytest.mark.parametrize("tool", ["ostree", "sysroot"])
def test_finalize_removes_the_update_stamps(make_booted, tool):
    """systemd-update-done's stamps of the running system say nothing of the new /usr:
    both go when the staged deployment is finished (not before), as in ostree."""
    b = make_booted(by=tool)
    var_stamp = b.path / "ostree/deploy" / OSNAME / "var/.updated"
    b(tool, "admin", "deploy", "--stage", f"{OSNAME}/x")
    (b.etc / ".updated").write_text("TIMESTAMP_NSEC=1\n")
    var_stamp.write_text("TIMESTAMP_NSEC=1\n")
    b(tool, "admin", "finalize-staged")
    assert not (b.deployment(b.v2) / "etc/.updated").exists()
    assert not var_stamp.exists()
    assert (b.etc / ".updated").exists()  # the running deployment's own stays


@pytest.mark.parametrize("tool", ["ostree", "sysroot"])
def test_staging_keeps_the_var_stamp_until_finalize(make_booted, tool):
    b = make_booted(by=tool)
    var_stamp = b.path / "ostree/deploy" / OSNAME / "var/.updated"
    var_stamp.write_text("TIMESTAMP_NSEC=1\n")
    b(tool, "admin", "deploy", "--stage", f"{OSNAME}/x")
    assert var_stamp.exists()


def test_instutil_set_kargs_refuses_a_staged_first_deployment(make_booted):
    """libostree aborts on an assertion there; sysroot refuses in one line, and the
    staged deployment and the boot configuration stay as they were."""
    a, b = make_booted("a", by="ostree"), make_booted("b", by="sysroot")
    a("ostree", "admin", "deploy", "--stage", f"{OSNAME}/x")
    b("sysroot", "admin", "deploy", "--stage", f"{OSNAME}/x")
    assert a("ostree", "admin", "instutil", "set-kargs", "x=1", check=False).returncode != 0
    staged, before = b.staged_file.read_bytes(), boot_state(b.path)
    line = one_error_line(b("sysroot", "admin", "instutil", "set-kargs", "x=1", check=False))
    assert line == "error: The first deployment is staged: deploy it with --karg options instead"
    assert b.staged_file.read_bytes() == staged
    assert boot_state(b.path) == before
