"""`sysroot admin upgrade` / `admin switch` against ostree 2022.7's.

An archive repository (commits made by ostree) is served over HTTP from a thread on
127.0.0.1; two identical sysroots, one driven by ostree and one by sysroot, track it
through the remote `origin`. After every step both must have printed the same, have
the same boot configuration, deployments and origin files (byte for byte), the same
refs and the same `state/` (partial commits) in their repositories.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from sysroot.cli.main import main
from tests.conftest import one_error_line
from tests.helpers.keys import gpg_keys
from tests.helpers.sysroots import OSNAME, assert_dicts_equal, boot_state, make_os_tree
from tests.helpers.twins import SysrootTwins
from tests.pull.serve_helpers import RepoServer, object_names, refs_of

OS = f"--os={OSNAME}"
X, Y = f"{OSNAME}/x", f"{OSNAME}/y"
T0, T1, T2, T3 = (
    "2023-01-02 03:04:05",
    "2023-01-03 03:04:05",
    "2023-01-04 03:04:05",
    "2023-01-05 03:04:05",
)
OLDER = "2022-06-01 00:00:00"


@dataclass
class Served:
    """The archive repository both sysroots pull from, and its server."""

    repo: Path
    base: Path
    server: RepoServer
    ostree: object
    n: int = 0
    summary_mtime: float = 0.0

    def commit(
        self,
        branch: str = X,
        *,
        ts: str,
        version: str | None = None,
        meta: dict[str, str] | None = None,
        sign: tuple[str, Path] | None = None,
        files: dict[str, str] | None = None,
    ) -> str:
        """Commit an OS tree (different each time) and update the summary."""
        self.n += 1
        tree = make_os_tree(
            self.base / f"tree{self.n}", extra={"usr/share/serial": f"{self.n}\n", **(files or {})}
        )
        args = [
            f"--repo={self.repo}",
            "commit",
            f"--branch={branch}",
            "-s",
            f"c{self.n}",
            f"--timestamp={ts}",
            f"--tree=dir={tree}",
        ]
        if version is not None:
            args.append(f"--add-metadata-string=version={version}")
        for k, v in (meta or {}).items():
            args.append(f"--add-metadata-string={k}={v}")
        if sign is not None:
            args += [f"--gpg-sign={sign[0]}", f"--gpg-homedir={sign[1]}"]
        checksum = self.ostree.out(*args)
        summary = [f"--repo={self.repo}", "summary", "-u"]
        if sign is not None:
            summary += [f"--gpg-sign={sign[0]}", f"--gpg-homedir={sign[1]}"]
        else:
            # a stale signature would make ostree keep using its cached summary
            (self.repo / "summary.sig").unlink(missing_ok=True)
        self.ostree(*summary)
        # The server's Last-Modified has whole seconds: a summary rewritten within the
        # second ostree fetched the last one would get 304 and ostree would keep its
        # cached copy. Each new summary is a second newer than the one before.
        self.summary_mtime = max(time.time(), self.summary_mtime + 1)
        for name in ("summary", "summary.sig"):
            if (self.repo / name).exists():
                os.utime(self.repo / name, (self.summary_mtime, self.summary_mtime))
        return checksum


@pytest.fixture
def served(tmp_path, ostree):
    repo = tmp_path / "served"
    ostree("init", f"--repo={repo}", "--mode=archive")
    with RepoServer(repo) as server:
        yield Served(repo, tmp_path, server, ostree)


def repo_state(repo: Path) -> dict:
    state = repo / "state"
    return {
        "refs": refs_of(repo),
        "state": sorted(p.name for p in state.iterdir()) if state.is_dir() else [],
        "objects": object_names(repo),
    }


def assert_same(pair: SysrootTwins, ours_extra: frozenset[str] = frozenset()) -> None:
    """Same boot state, status, refs, partial commits; the same objects, but for
    ours_extra, objects only our repository has."""
    pair.assert_same()
    b = repo_state(pair.b.repo)
    assert ours_extra <= b["objects"]
    b["objects"] -= ours_extra
    assert_dicts_equal(repo_state(pair.a.repo), b, f"repos: {pair.log}")


def track(
    pair: SysrootTwins,
    served: Served,
    *,
    gpg_keyring: Path | None = None,
    refspec: str = f"origin:{X}",
) -> None:
    """Add the remote to both sysroots (with ostree: setup, not under test), pull the
    ref with ostree into both, and deploy it with each tool."""
    for sr in (pair.a, pair.b):
        if gpg_keyring is None:
            pair.ostree(
                "remote", "add", f"--repo={sr.repo}", "--no-gpg-verify", "origin", served.server.url
            )
        else:
            pair.ostree(
                "remote",
                "add",
                f"--repo={sr.repo}",
                "--set=gpg-verify=true",
                "origin",
                served.server.url,
            )
            pair.ostree(
                "remote", "gpg-import", f"--repo={sr.repo}", "origin", "-k", str(gpg_keyring)
            )
        pair.ostree("pull", f"--repo={sr.repo}", "origin", X)
    pair.admin("deploy", OS, refspec)
    assert_same(pair)


def failed_alike(
    pair: SysrootTwins,
    *args: str,
    same_message: bool = True,
    ours_extra: frozenset[str] = frozenset(),
) -> str:
    """Both tools refuse, ours on one line, and nothing changed in either sysroot."""
    before = (boot_state(pair.a.path), repo_state(pair.a.repo)["refs"])
    ra, rb = pair.admin(*args, expect_ok=False)
    line = one_error_line(rb)
    if same_message:
        assert rb.stderr.decode() == ra.stderr.decode()
    assert (boot_state(pair.a.path), repo_state(pair.a.repo)["refs"]) == before
    assert_same(pair, ours_extra)
    return line


def default_origin(pair: SysrootTwins, sr) -> Path:
    first = pair.a.status(pair.ostree).splitlines()[0].split()[1]
    return sr.path / "ostree/deploy" / OSNAME / "deploy" / f"{first}.origin"


def ours(*argv: str) -> tuple[int, str, str]:
    """sysroot's CLI in this process."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------------- upgrade
def test_upgrade_then_no_update(pair: SysrootTwins, served: Served):
    served.commit(ts=T0, version="1")
    track(pair, served)
    served.commit(ts=T1, version="2")
    ra, _ = pair.admin("upgrade", OS)
    assert "Bootloader updated" in ra.stdout.decode()
    assert_same(pair)
    ra, _ = pair.admin("upgrade", OS)
    assert ra.stdout.decode() == "No update available.\n"
    assert_same(pair)
    # --reboot: only a sysroot that is / reboots, for ostree as for us
    served.commit(ts=T2, version="3")
    pair.admin("upgrade", OS, "--reboot")
    assert_same(pair)


def test_downgrade_refused_then_allowed(pair: SysrootTwins, served: Served):
    served.commit(ts=T1, version="1")
    track(pair, served)
    older = served.commit(ts=OLDER, version="0")
    # the refused commit object stays in our repository (unreferenced: the next prune
    # takes it), where ostree's was left in its transaction's staging directory
    line = failed_alike(
        pair, "upgrade", OS, ours_extra=frozenset({f"{older[:2]}/{older[2:]}.commit"})
    )
    # GLib pads the day with a figure space in a UTF-8 locale (the tests run in C.UTF-8)
    assert (
        f"Upgrade target revision '{older}' with timestamp 'Wed Jun \u20071 00:00:00 "
        "2022' is chronologically older than" in line
    )
    # the refused commit object was fetched (and is partial), the ref did not move
    assert f"{older}.commitpartial" in repo_state(pair.b.repo)["state"]
    pair.admin("upgrade", OS, "--allow-downgrade")
    assert_same(pair)


def test_override_commit_and_transient_state(pair: SysrootTwins, served: Served):
    served.commit(ts=T0, version="1")
    track(pair, served)
    second = served.commit(ts=T1, version="2")
    served.commit(ts=T2, version="3")
    # a pinned, hotfixed origin with comments and another group: none of the transient
    # state carries over, and the new origin is written byte for byte as ostree does
    for sr in (pair.a, pair.b):
        default_origin(pair, sr).write_text(
            "# vendor\n[origin]\nrefspec=origin:testos/x\nunlocked=hotfix\n\n\n"
            "[libostree-transient]\npinned=true\n[extra]\n# why\nkey=value\n"
        )
    pair.admin("upgrade", OS, f"--override-commit={second}")
    assert_same(pair)
    assert "override-commit=" in default_origin(pair, pair.b).read_text()
    assert refs_of(pair.b.repo)[f"refs/remotes/origin/{X}"] == second
    pair.admin("upgrade", OS)  # back to the head: the override goes
    assert_same(pair)
    assert "override-commit" not in default_origin(pair, pair.b).read_text()
    # not a checksum: both refuse
    failed_alike(pair, "upgrade", OS, "--override-commit=abc", same_message=False)


def test_pull_only_then_deploy_only(pair: SysrootTwins, served: Served):
    served.commit(ts=T0, version="1")
    track(pair, served)
    served.commit(ts=T1, version="2")
    for args in (("--pull-only", "--deploy-only"), ("--pull-only", "--reboot")):
        failed_alike(pair, "upgrade", OS, *args)
    ra, _ = pair.admin("upgrade", OS, "--pull-only")
    assert ra.stdout == b""
    assert_same(pair)
    assert len(pair.b.status().splitlines()) == 3  # still one deployment
    ra, _ = pair.admin("upgrade", OS, "--deploy-only")
    assert "Bootloader updated" in ra.stdout.decode()
    assert_same(pair)


def test_unconfigured_state_and_bad_input(pair: SysrootTwins, served: Served, tmp_path):
    served.commit(ts=T0, version="1")
    track(pair, served)
    served.commit(ts=T1, version="2")
    failed_alike(pair, "upgrade")  # not booted, no --os
    failed_alike(pair, "upgrade", "--os=nosuch")
    failed_alike(pair, "upgrade", "--os=")
    pair.admin("os-init", "empty")
    failed_alike(pair, "upgrade", "--os=empty")
    for sr in (pair.a, pair.b):
        default_origin(pair, sr).write_text(
            "[origin]\nrefspec=origin:testos/x\nunconfigured-state=Run vendor-register first\n"
        )
    line = failed_alike(pair, "upgrade", OS)
    assert line == "error: origin unconfigured-state: Run vendor-register first"
    rb = pair.sysroot("admin", "upgrade", f"--sysroot={tmp_path / 'nothing'}", OS, check=False)
    ra = pair.ostree("admin", "upgrade", f"--sysroot={tmp_path / 'nothing'}", OS, check=False)
    assert one_error_line(rb) == ra.stderr.decode().strip()
    # switch ignores the unconfigured state (it is how one leaves it)
    pair.admin("switch", OS, "origin:testos/x2", expect_ok=False)  # no such branch
    served.commit(Y, ts=T2, version="y1")
    pair.admin("switch", OS, f"origin:{Y}")
    assert_same(pair)


def test_endoflife_and_rebase(pair: SysrootTwins, served: Served):
    served.commit(ts=T0, version="1")
    track(pair, served)
    served.commit(ts=T1, version="2", meta={"ostree.endoflife": "Stream x is over"})
    _, rb = pair.admin("upgrade", OS)
    assert rb.stderr.decode() == f"warning: origin:{X} is end-of-life: Stream x is over\n"
    assert_same(pair)
    served.commit(Y, ts=T2, version="y1")
    served.commit(
        ts=T3, version="eol", meta={"ostree.endoflife": "Moved to y", "ostree.endoflife-rebase": Y}
    )
    pair.admin("upgrade", OS)
    assert_same(pair)
    assert default_origin(pair, pair.b).read_text() == f"[origin]\nrefspec=origin:{Y}\n"


# ---------------------------------------------------------------------- switch
def test_switch_remote_ref(pair: SysrootTwins, served: Served):
    served.commit(ts=T1, version="1")
    served.commit(Y, ts=T0, version="y1")  # older: switch allows any age
    track(pair, served)
    ra, _ = pair.admin("switch", OS, f"origin:{Y}")
    assert ra.stdout.decode().endswith(f"Deleting ref 'origin:{X}'\n")
    assert_same(pair)
    assert f"refs/remotes/origin/{X}" not in refs_of(pair.b.repo)
    failed_alike(pair, "switch", OS, Y)  # the remote is kept: the same refspec
    failed_alike(pair, "switch", OS, "origin:")  # REMOTE: keeps the ref: the same again
    failed_alike(pair, "switch", OS, "nosuch:foo")
    failed_alike(pair, "switch", OS, f"origin:{OSNAME}/none", same_message=False)
    rb = pair.b.admin("switch", OS, check=False)
    assert one_error_line(rb) == "error: REFSPEC must be specified"


def test_switch_local_ref(pair: SysrootTwins, tmp_path):
    pair.commit(make_os_tree(tmp_path / "ta"), "local/a")
    pair.commit(
        make_os_tree(tmp_path / "tb", extra={"usr/share/b": "b\n"}),
        "local/b",
        extra=("--timestamp=2020-01-01 00:00:00",),
    )
    pair.admin("deploy", OS, "local/a")
    ra, _ = pair.admin("upgrade", OS)
    assert ra.stdout.decode() == "No update available.\n"
    ra, rb = pair.admin("switch", OS, "local/b", same_stdout=False)
    # ostree 2022.7 prints the missing remote of a local ref as "(null)"
    assert ra.stdout.decode().replace("'(null):local/a'", "'local/a'") == rb.stdout.decode()
    assert rb.stdout.decode().endswith("Deleting ref 'local/a'\n")
    assert_same(pair)
    assert "refs/heads/local/a" not in refs_of(pair.b.repo)
    # a local ref needs no pull: --check compares it with the deployment
    rc, out, _ = ours("admin", "upgrade", f"--sysroot={pair.b.path}", OS, "--check")
    assert (rc, out) == (77, "No update available.\n")
    newer = pair.commit(make_os_tree(tmp_path / "tc", extra={"usr/share/c": "c\n"}), "local/b")
    rc, out, _ = ours("admin", "upgrade", f"--sysroot={pair.b.path}", OS, "--check")
    assert rc == 0 and f"  Commit: {newer}\n" in out, out
    pair.admin("upgrade", OS)
    assert_same(pair)


# ---------------------------------------------------------------------- signatures
@pytest.fixture(scope="module")
def gpg_key(tmp_path_factory):
    with gpg_keys(tmp_path_factory.mktemp("gnupg"), "vendor") as (key,):
        yield key


def test_signed_upgrade_and_unsigned_refused(pair: SysrootTwins, served: Served, gpg_key):
    sign = (gpg_key.fpr, gpg_key.home)
    served.commit(ts=T0, version="1", sign=sign)
    track(pair, served, gpg_keyring=gpg_key.keyring)
    served.commit(ts=T1, version="2", sign=sign)
    pair.admin("upgrade", OS)
    assert_same(pair)
    unsigned = served.commit(ts=T2, version="3")
    line = failed_alike(pair, "upgrade", OS, same_message=False)
    assert unsigned in line or "signature" in line.lower(), line


# ---------------------------------------------------------------------- ours only
def test_check_and_preview(pair: SysrootTwins, served: Served, ostree):
    first = served.commit(ts=T0, version="1")
    track(pair, served)
    new = served.commit(ts=T1, version="2", files={"usr/share/added": "new\n"})
    before = repo_state(pair.b.repo)
    rc, out, _ = ours("admin", "upgrade", f"--sysroot={pair.b.path}", OS, "--check")
    assert rc == 0
    assert f"  Commit: {new}\n  Version: 2\n  Timestamp: 2023-01-03T03:04:05Z\n" in out
    assert out.startswith(f"Update available for {OSNAME}: origin:{X}\n")
    # only the commit object came: no ref moved, no deployment
    assert repo_state(pair.b.repo)["refs"] == before["refs"]
    assert f"{new}.commitpartial" in repo_state(pair.b.repo)["state"]
    pair.assert_same()
    # --preview fetches like --pull-only (compared with ostree's) and counts the diff
    pair.a.oadmin("upgrade", OS, "--pull-only")
    rc, out, _ = ours("admin", "upgrade", f"--sysroot={pair.b.path}", OS, "--preview")
    assert rc == 0
    assert_same(pair)
    lines = ostree.out("diff", f"--repo={pair.a.repo}", first, new).splitlines()
    counts = {k: sum(1 for ln in lines if ln.startswith(k + " ")) for k in "ADM"}
    assert f"  Files: {counts['A']} added, {counts['D']} removed, {counts['M']} modified\n" in out
    assert counts["A"] >= 1 and counts["M"] >= 1
    pair.admin("upgrade", OS)
    for flag in ("--check", "--preview"):
        rc, out, _ = ours("admin", "upgrade", f"--sysroot={pair.b.path}", OS, flag)
        assert (rc, out) == (77, "No update available.\n")
    rb = pair.b.admin("upgrade", OS, "--check", "--pull-only", check=False)
    assert one_error_line(rb) == "error: Cannot simultaneously specify --check and --pull-only"


def test_check_and_preview_as_json(pair: SysrootTwins, served: Served, ostree):
    first = served.commit(ts=T0, version="1")
    track(pair, served)
    new = served.commit(ts=T1, version="2", files={"usr/share/added": "new\n"})
    argv = ("admin", "upgrade", f"--sysroot={pair.b.path}", OS)
    rc, out, _ = ours(*argv, "--check", "--json")
    assert rc == 0
    report = json.loads(out)
    assert report == {
        "schema-version": 1,
        "update-available": True,
        "osname": OSNAME,
        "refspec": f"origin:{X}",
        "commit": new,
        "version": "2",
        "timestamp": "2023-01-03T03:04:05Z",
        "deployed": first,
        "rebased-from": None,
        "end-of-life": None,
        "failed-to-boot": None,
        "files": None,
    }
    rc, out, _ = ours(*argv, "--preview", "--json")
    lines = ostree.out("diff", f"--repo={pair.b.repo}", first, new).splitlines()
    counts = {k: sum(1 for ln in lines if ln.startswith(k + " ")) for k in "ADM"}
    assert (rc, json.loads(out)["files"]) == (
        0,
        {"added": counts["A"], "removed": counts["D"], "modified": counts["M"]},
    )
    pair.admin("upgrade", OS)
    for flag in ("--check", "--preview"):
        rc, out, _ = ours(*argv, flag, "--json")
        assert (rc, json.loads(out)) == (77, {"schema-version": 1, "update-available": False})
    rb = pair.b.admin("upgrade", OS, "--json", check=False)
    assert one_error_line(rb) == "error: --json needs --check or --preview"


def test_unchanged_exit_77(pair: SysrootTwins, served: Served):
    served.commit(ts=T0, version="1")
    track(pair, served)
    served.commit(ts=T1, version="2")
    argv = ("admin", "upgrade", f"--sysroot={pair.b.path}", OS)
    rc, out, _ = ours(*argv, "--unchanged-exit-77")
    assert rc == 0 and "Bootloader updated" in out
    assert ours(*argv, "--unchanged-exit-77") == (77, "No update available.\n", "")
    assert ours(*argv) == (0, "No update available.\n", "")


def test_stage_needs_booted_system(pair: SysrootTwins, served: Served):
    served.commit(ts=T0, version="1")
    track(pair, served)
    served.commit(ts=T1, version="2")
    ra, rb = pair.admin("upgrade", OS, "--stage", expect_ok=False)
    assert one_error_line(rb) == ra.stderr.decode().strip()
    assert_same(pair)  # both pulled before refusing to stage


def test_reboot_only_for_real_root(monkeypatch, tmp_path):
    from sysroot.cli.commands import admin_upgrade

    calls = []
    monkeypatch.setattr(admin_upgrade, "run", lambda argv, **kw: calls.append(list(argv)))
    admin_upgrade._reboot(str(tmp_path))
    assert calls == []
    admin_upgrade._reboot("/")
    assert calls == [["systemctl", "reboot"]]


def test_upgrade_holds_the_sysroot_lock(pair: SysrootTwins, served: Served):
    """From reading the merge deployment to writing the new one, no other admin command
    runs: ostree's own wait for the lock, and the deploy's locking nests in ours."""
    from sysroot.deploy.admin import Sysroot
    from sysroot.deploy.upgrade import Upgrader

    served.commit(ts=T0, version="1")
    track(pair, served)
    new = served.commit(ts=T1, version="2")
    cleanup = [*pair.ostree.argv0, "admin", "cleanup", f"--sysroot={pair.b.path}"]
    with Upgrader(Sysroot(str(pair.b.path)), OSNAME) as up:
        with pytest.raises(subprocess.TimeoutExpired):
            subprocess.run(cleanup, capture_output=True, timeout=3)
        up.pull()
        up.deploy()
        with pytest.raises(subprocess.TimeoutExpired):
            subprocess.run(cleanup, capture_output=True, timeout=3)
    assert subprocess.run(cleanup, capture_output=True, timeout=60).returncode == 0
    assert pair.b.status(pair.ostree).splitlines()[0].split()[1].startswith(new)
