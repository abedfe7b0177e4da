"""`sysroot build create|prune`: reproducible images, the build directory's JSON against
its documented schema (README.md), no rebuild of an unchanged commit, --force,
prune --keep with the repository, refusals, and interruption."""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sysroot.install.image import ids_for_commit
from sysroot.util.fsutil import set_immutable
from tests.helpers.sysroots import TIMESTAMP, make_os_tree
from tests.install.conftest import Loops, Source, sh
from tests.install.test_todisk import copy_esp

SCHEMA_DOC = Path(__file__).parents[2] / "README.md"  # its build directory section


def build_cli(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sysroot", "build", *[str(a) for a in args]],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def create(source: Source, builds: Path, *extra: object, rev: str | None = None, env=None):
    proc = build_cli(
        "create", rev or source.ref, f"--repo={source.repo}", f"--builds={builds}", *extra, env=env
    )
    return proc


def error_lines(stderr: str) -> list[str]:
    """stderr's lines but the hints that may follow the one error line."""
    return [ln for ln in stderr.strip().splitlines() if not ln.startswith("hint: ")]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------ the documented schema


def documented_schema(name: str) -> dict[str, tuple[str, bool]]:
    """key path -> (type, required), from the table after `<!-- schema NAME -->`."""
    text = SCHEMA_DOC.read_text()
    block = text.split(f"<!-- schema {name} -->", 1)[1].split("<!-- end schema -->", 1)[0]
    schema = {}
    for line in block.splitlines():
        m = re.match(
            r"\|\s*`([^`]+)`\s*\|\s*([^|]+?)\s*\|\s*(yes|no)\s*\|", line.replace("\\|", "¦")
        )
        if m:
            schema[m.group(1)] = (m.group(2).replace("¦", "|"), m.group(3) == "yes")
    assert schema, f"no schema table for {name} in {SCHEMA_DOC}"
    return schema


_TYPES = {
    "string": lambda v: isinstance(v, str),
    "string|null": lambda v: v is None or isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, list),
    "sha256": lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None,
    "time": lambda v: (
        isinstance(v, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", v) is not None
    ),
    "version": lambda v: (
        isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+~-]*", v) is not None
    ),
}


def schema_errors(value: Any, schema: dict[str, tuple[str, bool]], path: str = "") -> list[str]:
    """Every key of value (recursively) documented and of its type; required keys there."""
    errors = []
    if isinstance(value, dict):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [("*", v) for v in value]
    else:
        return []
    for key, child in items:
        full = f"{path}/{key}" if path else key
        wild = f"{path}/*" if path else "*"
        spec = schema.get(full) or schema.get(wild)
        if spec is None:
            errors.append(f"{full}: not documented")
            continue
        if not _TYPES[spec[0]](child):
            errors.append(f"{full}: {child!r} is not {spec[0]}")
        errors += schema_errors(child, schema, full if full in schema else wild)
    if isinstance(value, dict):
        present = {f"{path}/{k}" if path else str(k) for k in value}
        for key, (_type, required) in schema.items():
            parent = key.rsplit("/", 1)[0] if "/" in key else ""
            if required and parent == path and not key.endswith("*") and key not in present:
                errors.append(f"{key}: required, missing")
    return errors


def test_schema_checker_catches_mistakes() -> None:
    schema = documented_schema("builds.json")
    good = {
        "schema-version": "1.0.0",
        "builds": [{"id": "1.0", "arches": ["x86_64"]}],
        "timestamp": "2024-01-01T00:00:00Z",
    }
    assert schema_errors(good, schema) == []
    assert schema_errors({**good, "extra": 1}, schema) == ["extra: not documented"]
    assert schema_errors({**good, "timestamp": 5}, schema) == ["timestamp: 5 is not time"]
    bad_build = {**good, "builds": [{"arches": ["x86_64"]}]}
    assert schema_errors(bad_build, schema) == ["builds/*/id: required, missing"]


# ------------------------------------------------------------------ builds


def check_build_dir(builds: Path, version: str) -> dict[str, Any]:
    meta = json.loads((builds / "builds" / version / "meta.json").read_text())
    index = json.loads((builds / "builds" / "builds.json").read_text())
    assert schema_errors(meta, documented_schema("meta.json")) == []
    assert schema_errors(index, documented_schema("builds.json")) == []
    assert os.readlink(builds / "builds" / "latest") == version
    for entry in meta["images"].values():
        path = builds / "builds" / version / entry["path"]
        assert path.stat().st_size == entry["size"]
        assert sha256(path) == entry["sha256"]
    return meta


def read_root(
    tmp_path: Path, loops: Loops, ostree, image: Path, sector: int, bootloader: str, commit: str
) -> None:
    """The image as a disk: e2fsck finds nothing, the real ostree reads the sysroot and
    its repository, the deployment is a hardlink farm (chattr +i on its root)."""
    dev = loops.attach(image, sector_size=sector, read_only=True)
    parts = json.loads(sh("sfdisk", "--json", dev).stdout)["partitiontable"]["partitions"]
    ids = ids_for_commit(commit)
    assert [p["uuid"].lower() for p in parts][0] == ids.table.esp_uuid
    root_dev = f"{dev}p{len(parts)}"
    for part in range(2, len(parts) + 1):
        fsck = sh("e2fsck", "-fn", f"{dev}p{part}", check=False)
        assert fsck.returncode == 0, fsck.stdout.decode()
    uuid = sh("blkid", "-s", "UUID", "-o", "value", root_dev).stdout.decode().strip()
    assert uuid == ids.root_fs_uuid
    mnt = loops.mount(root_dev, tmp_path / f"mnt{sector}", "-o", "ro")
    deploy = mnt / f"ostree/deploy/default/deploy/{commit}.0"
    assert "i" in sh("lsattr", "-d", str(deploy)).stdout.decode().split()[0]
    sh_file = deploy / "usr/bin/sh"
    assert sh_file.stat().st_nlink >= 2, "the deployment's files are not hardlinks any more"
    # what the deploy wrote (now) is clamped to the commit's time
    epoch = calendar.timegm(time.strptime(TIMESTAMP, "%Y-%m-%d %H:%M:%S"))
    assert (deploy.parent / f"{commit}.0.origin").stat().st_mtime == epoch
    config = (mnt / "ostree/repo/config").read_text()
    if bootloader == "grub2":
        loops.mount(f"{dev}p2", mnt / "boot", "-o", "ro")
        status = ostree("admin", "status", f"--sysroot={mnt}").stdout.decode()
    else:
        # ostree 2022.7 knows no sysroot.bootloader=systemd-boot: a copy without it
        patched = tmp_path / f"config{sector}"
        patched.write_text(config.replace("bootloader=systemd-boot\n", ""))
        loops.mount(str(patched), mnt / "ostree/repo/config", "--bind")
        esp = copy_esp(f"{dev}p1", tmp_path / f"esp{sector}", tmp_path)
        assert (esp / "EFI/BOOT/BOOTX64.EFI").stat().st_size > 0
        loops.mount(str(esp), mnt / "boot", "--bind")
        status = sh(
            sys.executable, "-m", "sysroot", "admin", "status", f"--sysroot={mnt}"
        ).stdout.decode()
    assert f"default {commit}.0" in status, status
    (entry,) = (mnt / "boot/loader/entries").glob("*.conf")
    assert f"root=UUID={ids.root_fs_uuid}" in entry.read_text()
    fsck = ostree("fsck", f"--repo={mnt}/ostree/repo", check=False)
    assert fsck.returncode == 0, fsck.stderr.decode()


@pytest.mark.parametrize("bootloader,sector", [("systemd-boot", 512), ("grub2", 4096)])
def test_build_twice_gives_the_same_bytes(
    tmp_path: Path, loops: Loops, ostree, source: Source, bootloader: str, sector: int
) -> None:
    metas = []
    for n in (1, 2):
        builds = tmp_path / f"dir{n}"
        proc = create(source, builds, f"--bootloader={bootloader}", "--karg=console=ttyS0")
        assert proc.returncode == 0, proc.stderr.decode()
        metas.append(check_build_dir(builds, source.commit[:10]))
    a, b = (m["images"] for m in metas)
    assert set(a) == {"metal", "metal4k", "qemu"}
    for kind in a:
        assert a[kind]["sha256"] == b[kind]["sha256"], f"{kind} differs between builds"
    assert a["metal"]["sha256"] != a["metal4k"]["sha256"]
    assert metas[0]["ostree-commit"] == source.commit
    assert metas[0]["sysroot.kargs"] == ["console=ttyS0"]
    kind = "metal" if sector == 512 else "metal4k"
    image = tmp_path / "dir1/builds" / source.commit[:10] / a[kind]["path"]
    read_root(tmp_path, loops, ostree, image, sector, bootloader, source.commit)
    shutil.rmtree(tmp_path / "dir2")


@pytest.fixture(scope="module")
def built_1_0(tmp_path_factory: pytest.TempPathFactory, source: Source) -> Path:
    """A build directory with one build, `create --version=1.0` of the source's commit,
    made once for the module (a build takes ~12 s): the tests that go on from such a
    directory each start from their own copy of it (copy_builds)."""
    builds = tmp_path_factory.mktemp("built-1.0") / "out"
    proc = create(source, builds, "--version=1.0")
    assert proc.returncode == 0, proc.stderr.decode()
    return builds


def copy_builds(template: Path, dest: Path) -> Path:
    """A copy of a build directory as its own: cp keeps the images sparse and `latest` a
    symlink; files are copied, not hard-linked, since a test's builds lock (flock on
    builds/.lock) and replace files in its copy."""
    sh("cp", "-a", "--sparse=always", str(template), str(dest))
    return dest


def test_unchanged_commit_is_not_rebuilt_unless_forced(
    tmp_path: Path, source: Source, built_1_0: Path
) -> None:
    builds = copy_builds(built_1_0, tmp_path / "out")
    version_dir = builds / "builds/1.0"
    meta_before = (version_dir / "meta.json").stat()
    index_before = (builds / "builds/builds.json").read_bytes()

    again = create(source, builds, "--version=1.0")
    assert again.returncode == 0, again.stderr.decode()
    assert "nothing to do" in again.stdout.decode()
    assert (version_dir / "meta.json").stat().st_ino == meta_before.st_ino
    assert (builds / "builds/builds.json").read_bytes() == index_before

    forced = create(source, builds, "--version=1.0", "--force")
    assert forced.returncode == 0, forced.stderr.decode()
    assert "Built 1.0" in forced.stdout.decode()
    assert (version_dir / "meta.json").stat().st_ino != meta_before.st_ino
    index = json.loads((builds / "builds/builds.json").read_text())
    assert [b["id"] for b in index["builds"]] == ["1.0"]
    assert sorted(p.name for p in (builds / "builds").iterdir()) == [
        ".lock",
        "1.0",
        "builds.json",
        "latest",
    ]


def second_commit(repo: Path, tmp_path: Path, ostree) -> str:
    tree = make_os_tree(tmp_path / "tree2", kver="6.1.0")
    (tree / "usr/second").write_text("2\n")
    return ostree.out(
        f"--repo={repo}",
        "commit",
        "--branch=testos/next",
        "--subject=second",
        "--add-metadata-string=version=2.0",
        "--timestamp=2023-01-02 04:00:00",
        f"--tree=dir={tree}",
    )


def test_prune_keeps_the_newest_and_their_commits(
    tmp_path: Path, ostree, source: Source, built_1_0: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(source.repo, repo)
    copy = Source(repo, source.ref, source.commit)
    second = second_commit(repo, tmp_path, ostree)
    # build 1.0 of copy.commit (the same commit, the same build: meta.json names no repo)
    builds = copy_builds(built_1_0, tmp_path / "out")
    proc = create(copy, builds, rev="testos/next")  # the version from the metadata: 2.0
    assert proc.returncode == 0, proc.stderr.decode()
    index = json.loads((builds / "builds/builds.json").read_text())
    assert [b["id"] for b in index["builds"]] == ["2.0", "1.0"]
    # no ref holds either commit any more: only the kept build keeps its commit
    ostree(f"--repo={repo}", "refs", "--delete", copy.ref, "testos/next")

    pruned = build_cli("prune", "--keep=1", f"--builds={builds}", f"--repo={repo}")
    assert pruned.returncode == 0, pruned.stderr.decode()
    assert "Removed build 1.0" in pruned.stdout.decode()
    assert not (builds / "builds/1.0").exists()
    assert os.readlink(builds / "builds/latest") == "2.0"
    index = json.loads((builds / "builds/builds.json").read_text())
    assert [b["id"] for b in index["builds"]] == ["2.0"]
    assert schema_errors(index, documented_schema("builds.json")) == []
    assert ostree(f"--repo={repo}", "show", copy.commit, check=False).returncode != 0
    assert ostree(f"--repo={repo}", "show", second, check=False).returncode == 0
    assert ostree(f"--repo={repo}", "fsck", check=False).returncode == 0


@pytest.mark.parametrize(
    "case",
    [
        "version-slash",
        "version-dotdot",
        "version-latest",
        "missing-ref",
        "not-writable",
        "not-a-build",
    ],
)
def test_refusals_are_one_line_and_change_nothing(
    tmp_path: Path, source: Source, case: str
) -> None:
    builds = tmp_path / "out"
    extra: list[str] = []
    rev = None
    if case == "version-slash":
        extra = ["--version=a/b"]
    elif case == "version-dotdot":
        extra = ["--version=1..2"]
    elif case == "version-latest":
        extra = ["--version=latest"]
    elif case == "missing-ref":
        rev = "testos/nowhere"
    elif case == "not-a-build":
        (builds / "builds/1.0").mkdir(parents=True)
        (builds / "builds/1.0/mine").write_text("kept\n")
        extra = ["--version=1.0", "--force"]
    else:
        (builds / "builds").mkdir(parents=True)
        set_immutable(builds / "builds", True)
    try:
        proc = create(source, builds, *extra, rev=rev)
        listing = sorted(p.name for p in builds.rglob("*")) if builds.exists() else []
    finally:
        if case == "not-writable":
            set_immutable(builds / "builds", False)
    assert proc.returncode != 0
    err = proc.stderr.decode()
    assert len(error_lines(err)) == 1, err
    assert "Traceback" not in err
    if case == "not-a-build":
        assert (builds / "builds/1.0/mine").read_text() == "kept\n"
        assert not (builds / "builds/builds.json").exists()
    else:
        assert listing in ([], ["builds"])


def failing_qemu_img(tmp_path: Path, body: str) -> dict[str, str]:
    """An environment whose qemu-img runs body instead (a build's last step)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "qemu-img"
    fake.write_text(f"#!/bin/sh\n{body}\n")
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}


@pytest.mark.parametrize("how", ["step-fails", "killed"])
def test_an_interrupted_build_never_shows(
    tmp_path: Path, source: Source, built_1_0: Path, how: str
) -> None:
    builds = copy_builds(built_1_0, tmp_path / "out")
    index_before = (builds / "builds/builds.json").read_bytes()
    body = "exit 1" if how == "step-fails" else "kill -KILL $PPID; sleep 5"
    proc = create(source, builds, "--version=2.0", env=failing_qemu_img(tmp_path, body))
    assert proc.returncode != 0
    if how == "step-fails":
        assert len(error_lines(proc.stderr.decode())) == 1, proc.stderr.decode()
    assert not (builds / "builds/2.0").exists()
    assert (builds / "builds/builds.json").read_bytes() == index_before
    assert os.readlink(builds / "builds/latest") == "1.0"
    leftovers = [p.name for p in (builds / "builds").iterdir() if p.name.startswith(".build-")]
    assert len(leftovers) == (0 if how == "step-fails" else 1)
    # the next build removes what a killed one left, and publishes
    proc = create(source, builds, "--version=2.0")
    assert proc.returncode == 0, proc.stderr.decode()
    assert not [p for p in (builds / "builds").iterdir() if p.name.startswith(".build-")]
    assert os.readlink(builds / "builds/latest") == "2.0"
