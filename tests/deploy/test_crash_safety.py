"""Crash safety of the boot path: `sysroot admin` interrupted anywhere.

The claim (sysroot/deploy/writer.py): the only step that changes what boots next is one
rename, `boot/loader.tmp` over `boot/loader` (or `ostree/boot.N.tmp` over `ostree/boot.N`
when only the subbootversion changes). Everything before it is written where the live
configuration does not look, and flushed; everything after it removes what nothing
references any more, and a later command finishes what an interrupted one left.

Evidence, from real runs of the CLI under strace:
1. SIGKILL at deterministic points: `-e inject=SYSCALL:signal=KILL:when=N` kills the
   command on entry to the Nth call of SYSCALL (that call does not run). Points are
   chosen from an uninterrupted run's trace among the calls that change or flush the
   sysroot. After each kill: the invariant holds, the configuration is exactly the old
   one, or the new one if the committing rename ran, `ostree admin status` reads it; a
   later successful command leaves no debris and `ostree fsck` is clean.
2. Fault injection: the same points with `error=EIO` / `error=ENOSPC`: one `error:` line,
   no traceback, the invariant holds, the old configuration unless the commit ran.
3. Order: the trace of an uninterrupted run shows nothing live is touched before the
   commit, every change is flushed before it, and kernels and deployments appear under
   their final names by one rename each, when complete.

The harness (tracing, choosing points, interrupting, reading the configuration, finding
leftovers, the test sysroots and the checks after an interruption) is in tests/helpers/
(tracing.py, crash.py), so other boot-path tests and VM power-cut tests can reuse it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from sysroot.deploy.invariant import check_boot_invariant
from sysroot.deploy.state import SysrootState
from sysroot.util.fsutil import set_immutable
from tests.helpers.crash import (
    OSNAME,
    OSTREE,
    SCENARIOS,
    World,
    boot_config,
    check_commit_protocol,
    check_published_by_rename,
    clone,
    fault_and_check,
    fault_points,
    kill_and_check,
    leftovers,
    make_tree,
    run_all,
    set_deployments_immutable,
)
from tests.helpers.tracing import RENAMES, STRACE, Call, interruption_points

KILLS_PER_OPERATION = 18


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    assert STRACE, "strace is required (apt-get install strace)"
    assert OSTREE, "the real ostree is required: it is the test oracle"
    w = World(tmp_path_factory.mktemp("crash"))
    yield w
    for p in w.base.iterdir():
        if p.is_dir():
            set_deployments_immutable(p, False)


# ============================================================== tests
def test_invariant_holds_for_both_tools(world, tmp_path, ostree):
    """The invariant accepts what the real ostree writes, and what we write."""
    for name in ("one", "two", "same-kernel"):
        assert check_boot_invariant(world.state(name)) == [], name
    root = tmp_path / "by-ostree"
    root.mkdir()
    ostree("admin", "init-fs", str(root))
    ostree("admin", "os-init", f"--sysroot={root}", OSNAME)
    for n in (1, 2):
        tree = make_tree(tmp_path / f"t{n}", f"K{n}", f"c{n}")
        ostree(f"--repo={root}/ostree/repo", "commit", f"--branch=testos/{n}", f"--tree=dir={tree}")
        ostree("admin", "deploy", f"--sysroot={root}", f"--os={OSNAME}", f"testos/{n}")
    assert check_boot_invariant(root) == []
    assert leftovers(root) == []


def _break(root: Path, how: str) -> str:
    """Break one thing the next boot needs; returns a word the problem must mention."""
    state = SysrootState.load(str(root))
    d = state.deployments[0]
    layout = state.layout
    if how == "kernel":
        os.unlink(os.path.join(layout.boot, d.entry.get("linux").lstrip("/")))
        return "linux"
    if how == "initrd":
        os.unlink(os.path.join(layout.boot, d.entry.get("initrd").lstrip("/")))
        return "initrd"
    if how == "origin":
        os.unlink(layout.origin_path(d.osname, d.csum, d.deployserial))
        return "origin"
    if how == "deployment":
        path = state.deployment_path(d)
        set_immutable(path, False)
        os.rename(path, path + "-gone")
        return "does not exist"
    if how == "bootlink":
        os.unlink(layout.bootlink_base(state.bootversion))
        return f"boot.{state.bootversion}"
    if how == "loader":
        os.unlink(layout.loader_link)
        os.symlink("loader.7", layout.loader_link)
        return "loader.7"
    if how == "incomplete-entry":
        entry = d.entry
        with open(entry.filename, "w") as f:
            f.write("".join(f"{k} {v}\n" for k, v in entry.items if k != "linux"))
        return "'linux'"
    if how == "entries":
        shutil.rmtree(layout.entries_dir(state.bootversion))
        return "entries"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "kernel",
        "initrd",
        "origin",
        "deployment",
        "bootlink",
        "loader",
        "incomplete-entry",
        "entries",
    ],
)
def test_invariant_detects_breakage(world, tmp_path, how):
    root = clone(world.state("two"), tmp_path / "sr")
    word = _break(root, how)
    problems = check_boot_invariant(root)
    assert problems, f"broken {how} not detected"
    assert any(word in p for p in problems), problems


def test_leftovers_sees_debris(world):
    """The debris state really holds what cleanup must remove (else the cleanup
    scenario would prove nothing)."""
    debris = leftovers(world.state("debris"))
    text = "\n".join(debris)
    assert "boot/loader.tmp" in debris
    assert "boot/loader.1" in debris or "boot/loader.0" in debris
    assert re.search(r"deploy/\.staging-", text), debris
    assert re.search(r"deploy/[0-9a-f]{64}\.0\n", text + "\n"), debris
    assert re.search(r"boot/ostree/testos-[0-9a-f]{64}", text), debris
    assert check_boot_invariant(world.state("debris")) == []
    assert boot_config(world.state("debris")) == boot_config(world.state("two"))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_sigkill_anywhere(world, name):
    """SIGKILL at deterministic points of each operation."""
    scenario = SCENARIOS[name]
    dry = world.dry_run(scenario)
    if scenario.changes_boot:
        assert dry.new != dry.old
    else:
        assert dry.new == dry.old
    points = interruption_points(dry.calls, dry.root, KILLS_PER_OPERATION, dry.targets)
    assert len(points) >= 15, points
    problems = run_all(kill_and_check, [(world, scenario, p) for p in points])
    assert not problems, "\n".join(problems)


def test_faults_fail_cleanly(world):
    """A failing file-system call: one error line, and the old configuration stays
    (the new one only if the commit rename already ran)."""
    scenario = SCENARIOS["deploy"]
    dry = world.dry_run(scenario)
    jobs = fault_points(dry)
    kinds = {p.syscall for p, _ in jobs}
    assert {
        "fsync",
        "write",
        "renameat",
        "rename",
        "symlinkat",
        "mkdir",
        "linkat",
        "openat",
        "syncfs",
    } <= kinds, kinds
    problems = run_all(fault_and_check, [(world, scenario, p, e) for p, e in jobs])
    assert not problems, "\n".join(problems)


def test_deploy_commits_with_one_flushed_rename(world):
    dry = world.dry_run(SCENARIOS["deploy"])
    root = dry.root
    assert "bootconfig swap: yes" in dry.stdout
    problems = check_commit_protocol(dry.calls, root, dry.live, dry.targets, dry.new_live)
    commit = next(c for c in dry.calls if c.name in RENAMES and c.dest in dry.targets)
    assert commit.dest == str(root / "boot/loader")
    # the new deployment and the new kernel directory
    state = SysrootState.load(str(root))
    new = state.deployments[0]
    kernel = state.layout.kernel_dir(new.osname, new.bootcsum)
    problems += check_published_by_rename(
        dry.calls, state.deployment_path(new), r"\.staging-.*", root
    )
    problems += check_published_by_rename(dry.calls, kernel, r"\..*\.tmp", root)
    origin = state.deployment_path(new) + ".origin"
    published = next(
        c.seq for c in dry.calls if c.dest == state.deployment_path(new) and c.name in RENAMES
    )
    assert any(c.name in RENAMES and c.dest == origin and c.seq < published for c in dry.calls), (
        "the origin must be in place before the deployment"
    )
    assert not problems, "\n".join(problems)


def test_subbootversion_swap_commits_with_one_flushed_rename(world):
    dry = world.dry_run(SCENARIOS["set-default"])
    assert "bootconfig swap: no" in dry.stdout
    problems = check_commit_protocol(dry.calls, dry.root, dry.live, dry.targets, dry.new_live)
    assert not problems, "\n".join(problems)
    commit = next(c for c in dry.calls if c.name in RENAMES and c.dest in dry.targets)
    assert re.fullmatch(r".*/ostree/boot\.[01]", commit.dest), commit.label(dry.root)
    assert not any(c.dest == str(dry.root / "boot/loader") for c in dry.calls if c.changes)


def test_protocol_check_catches_a_live_write(world):
    """The order check is not vacuous: a trace that writes into the live entries before
    the commit, or does not sync, is refused."""
    dry = world.dry_run(SCENARIOS["deploy"])
    commit = next(c for c in dry.calls if c.name in RENAMES and c.dest in dry.targets)
    live_entry = os.path.join(dry.live[1], "entries", "ostree-1-testos.conf")
    bad = Call(0, "unlink", 1, (f'"{live_entry}"',), "0", (live_entry,))
    calls = [
        Call(i, c.name, c.ordinal, c.args, c.result, c.paths)
        for i, c in enumerate(dry.calls[: commit.seq - 3] + [bad] + dry.calls[commit.seq - 3 :])
    ]
    problems = check_commit_protocol(calls, dry.root, dry.live, dry.targets, dry.new_live)
    assert any("live configuration changed" in p for p in problems), problems
    no_sync = [c for c in dry.calls if c.name != "syncfs"]
    problems = check_commit_protocol(no_sync, dry.root, dry.live, dry.targets, dry.new_live)
    assert any("synced" in p for p in problems), problems
