"""A build directory, as coreos-assembler keeps one: a commit paired with its disk images.

    DIR/builds/builds.json          every build, newest first (HTTP cannot list a folder)
    DIR/builds/latest -> VERSION    the newest build
    DIR/builds/VERSION/meta.json    the commit, its version and time, each artifact
    DIR/builds/VERSION/NAME-VERSION-metal.x86_64.raw      512-byte sectors
    DIR/builds/VERSION/NAME-VERSION-metal4k.x86_64.raw    4096-byte sectors
    DIR/builds/VERSION/NAME-VERSION-qemu.x86_64.qcow2     the metal image for qemu

The schema of both JSON files is in README.md ("The build directory"); the tests
check them against it.

A build is made in a hidden directory beside its final place and renamed there when
complete, so a half-made build never shows under its version; builds.json and latest
are replaced atomically after it. One build or prune at a time per directory
(builds/.lock, flock); the leftovers of an interrupted build are removed by the next.
The images are reproducible (install/image.py): building a commit again gives the same
bytes, which is what `--force` is for (and what later osmet packing relies on).
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sysroot.boot.backends import BootloaderKind
from sysroot.errors import SysrootError, UsageError
from sysroot.install.image import assemble, ids_for_commit, stage
from sysroot.install.todisk import DEFAULT_STATEROOT, Payload, check_payload
from sysroot.store.prune import PruneOptions, PruneResult, prune
from sysroot.store.repo import Repo
from sysroot.util import fsutil
from sysroot.util.run import run

SCHEMA_VERSION = "1.0.0"  # builds.json's, as coreos-assembler's
BUILDS_JSON = "builds.json"
META_JSON = "meta.json"
LATEST = "latest"
_LOCK = ".lock"
_TEMP_PREFIX = ".build-"  # a build being made: .build-VERSION-XXXXXXXX
_OLD_PREFIX = ".old-"  # a build being replaced (--force)
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}")


def arch() -> str:
    return platform.machine()


class Artifact(enum.Enum):
    """The images of a build: the key in meta.json's images, and how each is made."""

    METAL = "metal"
    METAL4K = "metal4k"
    QEMU = "qemu"

    @property
    def sector_size(self) -> int | None:
        return {Artifact.METAL: 512, Artifact.METAL4K: 4096}.get(self)

    def file_name(self, name: str, version: str) -> str:
        suffix = "qcow2" if self is Artifact.QEMU else "raw"
        return f"{name}-{version}-{self.value}.{arch()}.{suffix}"


@dataclass(frozen=True)
class BuildOptions:
    repo: str
    rev: str
    builds_dir: str  # DIR: the builds go in DIR/builds
    bootloader: BootloaderKind = BootloaderKind.SYSTEMD_BOOT
    kargs: tuple[str, ...] = ()
    version: str | None = None  # None: the commit's version metadata, else its short checksum
    name: str = DEFAULT_STATEROOT  # the stateroot, and the artifacts' name
    force: bool = False


class Outcome(enum.Enum):
    BUILT = "built"
    UNCHANGED = "unchanged"  # the same commit is built under this version already


@dataclass(frozen=True)
class BuildResult:
    outcome: Outcome
    version: str
    commit: str
    path: str


def check_version(version: str) -> str:
    """A version is a directory name and part of file names: no '/', no '..', no dot first."""
    if not _VERSION.fullmatch(version) or ".." in version or version in (LATEST, BUILDS_JSON):
        raise UsageError(
            f"invalid build version {version!r}",
            hint="letters, digits and . _ + ~ -, starting with a letter or digit, no '..'"
            f" (nor {LATEST} or {BUILDS_JSON})",
        )
    return version


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


@dataclass(frozen=True)
class _Source:
    commit: str
    timestamp: int
    ostree_version: str | None


def _read_source(repo_path: str, rev: str) -> _Source:
    with Repo.open(repo_path) as repo:
        checksum = repo.resolve_rev(rev)
        commit = repo.load_commit(checksum)
    meta = commit.metadata.get("version")
    version = meta.value if meta is not None and isinstance(meta.value, str) else None
    return _Source(checksum, commit.timestamp, version)


def builds_path(builds_dir: str) -> str:
    return os.path.join(builds_dir, "builds")


@contextlib.contextmanager
def locked(builds: str) -> Iterator[None]:
    fd = os.open(os.path.join(builds, _LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SysrootError(f"{builds}: another build or prune is running") from None
        yield
    finally:
        os.close(fd)


def _remove_tree(path: str) -> None:
    """rm -r, through the chattr +i libostree puts on a staged deployment root."""
    for parent, dirs, _files in os.walk(path):
        for d in dirs:
            with contextlib.suppress(OSError):
                fsutil.set_immutable(os.path.join(parent, d), False)
    shutil.rmtree(path, ignore_errors=False)


def _remove_leftovers(builds: str) -> None:
    """What an interrupted build or --force left (under the lock: nobody is writing)."""
    for name in os.listdir(builds):
        if name.startswith((_TEMP_PREFIX, _OLD_PREFIX)):
            _remove_tree(os.path.join(builds, name))


def read_meta(build_dir: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(build_dir, META_JSON), "rb") as f:
            meta: dict[str, Any] = json.load(f)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise SysrootError(f"{build_dir}/{META_JSON}: not JSON ({e})") from None
    return meta


def read_builds(builds: str) -> dict[str, Any]:
    try:
        with open(os.path.join(builds, BUILDS_JSON), "rb") as f:
            data: dict[str, Any] = json.load(f)
    except FileNotFoundError:
        return {"schema-version": SCHEMA_VERSION, "builds": [], "timestamp": _iso(time.time())}
    except json.JSONDecodeError as e:
        raise SysrootError(f"{builds}/{BUILDS_JSON}: not JSON ({e})") from None
    if data.get("schema-version") != SCHEMA_VERSION or not isinstance(data.get("builds"), list):
        raise SysrootError(f"{builds}/{BUILDS_JSON}: not a builds.json of schema {SCHEMA_VERSION}")
    return data


def write_json(path: str, data: dict[str, Any]) -> None:
    fsutil.atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def _point_latest(builds: str, version: str | None) -> None:
    """builds/latest -> version (replaced in one rename), or gone when version is None."""
    link = os.path.join(builds, LATEST)
    if version is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
    else:
        tmp = os.path.join(builds, fsutil.temp_name(LATEST))
        os.symlink(version, tmp)
        try:
            os.rename(tmp, link)
        except BaseException:
            os.unlink(tmp)
            raise
    fsutil.fsync_dir(builds)


def build(options: BuildOptions) -> BuildResult:
    """Build options.rev's images into the build directory (see the module's doc)."""
    payload = Payload(options.repo, options.rev, options.bootloader, options.kargs, options.name)
    check_payload(payload)  # the boot loader, the name and the ref, before anything is made
    source = _read_source(options.repo, options.rev)
    version = check_version(options.version or source.ostree_version or source.commit[:10])
    builds = builds_path(options.builds_dir)
    with fsutil.errors_about(builds):
        os.makedirs(builds, exist_ok=True)
    final = os.path.join(builds, version)
    with locked(builds):
        existing = read_meta(final) if os.path.isdir(final) else None
        if existing is None and os.path.lexists(final):
            # not a build of ours (no meta.json): never replaced, even with --force
            raise UsageError(f"{final} exists and is not a build")
        if existing is not None and not options.force:
            if existing.get("ostree-commit") == source.commit:
                return BuildResult(Outcome.UNCHANGED, version, source.commit, final)
            raise UsageError(
                f"build {version} exists with commit {existing.get('ostree-commit')}",
                hint="pass --version to name this one, or --force to replace it",
            )
        _remove_leftovers(builds)
        work = tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{version}-", dir=builds)
        try:
            os.chmod(work, 0o755)  # served over HTTP as it is: not mkdtemp's 0700
            meta = _make_build(work, payload, source, version)
            write_json(os.path.join(work, META_JSON), meta)
            fsutil.fsync_dir(work)
            _publish(builds, work, version)
        except BaseException:
            with contextlib.suppress(OSError):
                _remove_tree(work)
            raise
        index = read_builds(builds)
        index["builds"] = [{"id": version, "arches": [arch()]}] + [
            b for b in index["builds"] if b.get("id") != version
        ]
        index["timestamp"] = meta["sysroot.build-timestamp"]
        write_json(os.path.join(builds, BUILDS_JSON), index)
        _point_latest(builds, version)
    return BuildResult(Outcome.BUILT, version, source.commit, final)


def _publish(builds: str, work: str, version: str) -> None:
    """work becomes builds/version in one rename; a build it replaces is moved aside
    first and removed after."""
    final = os.path.join(builds, version)
    old = None
    if os.path.lexists(final):
        old = tempfile.mkdtemp(prefix=f"{_OLD_PREFIX}{version}-", dir=builds)
        os.rename(final, os.path.join(old, version))
    os.rename(work, final)
    fsutil.fsync_dir(builds)
    if old is not None:
        _remove_tree(old)


def _make_build(work: str, payload: Payload, source: _Source, version: str) -> dict[str, Any]:
    ids = ids_for_commit(source.commit)
    staged = stage(payload, ids, source.timestamp, os.path.join(work, ".stage"))
    images: dict[str, dict[str, Any]] = {}
    try:
        for artifact in (Artifact.METAL, Artifact.METAL4K):
            path = os.path.join(work, artifact.file_name(payload.stateroot, version))
            assert artifact.sector_size is not None
            assemble(staged, ids, path, artifact.sector_size)
            images[artifact.value] = describe_file(path, artifact.sector_size)
    finally:
        _remove_tree(staged.dir)
    metal = os.path.join(work, Artifact.METAL.file_name(payload.stateroot, version))
    qcow2 = os.path.join(work, Artifact.QEMU.file_name(payload.stateroot, version))
    # qemu-img's qcow2 has no time stamp or random field: the same raw, the same qcow2
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", metal, qcow2])
    with open(qcow2, "rb+") as f:
        os.fsync(f.fileno())
    images[Artifact.QEMU.value] = describe_file(qcow2, None)
    return {
        "buildid": version,
        "name": payload.stateroot,
        "ostree-commit": source.commit,
        "ostree-version": source.ostree_version,
        "ostree-timestamp": _iso(source.timestamp),
        "sysroot.build-timestamp": _iso(time.time()),
        "sysroot.basearch": arch(),
        "sysroot.bootloader": payload.bootloader.value,
        "sysroot.kargs": list(payload.kargs),
        "images": images,
    }


def describe_file(path: str, sector_size: int | None) -> dict[str, Any]:
    digest = fsutil.file_sha256(path).hex()
    size = os.path.getsize(path)
    entry: dict[str, Any] = {
        "path": os.path.basename(path),
        "sha256": digest,
        "size": size,
        # nothing is compressed yet: the uncompressed file is the file
        "uncompressed-sha256": digest,
        "uncompressed-size": size,
    }
    if sector_size is not None:
        entry["sector-size"] = sector_size
    return entry


@dataclass(frozen=True)
class PruneBuildsResult:
    removed: list[str]
    kept: list[str]
    repo: PruneResult | None


def prune_builds(builds_dir: str, keep: int, repo_path: str | None) -> PruneBuildsResult:
    """Keep the newest keep builds of builds.json; remove the others from builds.json,
    then from disk, then (with repo_path) their commits from the repository, unless a
    ref or a kept build still needs them."""
    if keep < 1:
        raise UsageError(f"--keep {keep}: must be at least 1")
    builds = builds_path(builds_dir)
    if not os.path.isdir(builds):
        raise UsageError(f"{builds}: no build directory")
    with locked(builds):
        index = read_builds(builds)
        entries = index["builds"]
        kept, removed = entries[:keep], entries[keep:]
        kept_ids = [str(b["id"]) for b in kept]
        removed_ids = [str(b["id"]) for b in removed]
        for bid in kept_ids + removed_ids:
            check_version(bid)  # never a path out of builds/
        if removed:
            index["builds"] = kept
            index["timestamp"] = _iso(time.time())
            write_json(os.path.join(builds, BUILDS_JSON), index)  # first: never a dangling id
            _point_latest(builds, kept_ids[0])
            for bid in removed_ids:
                path = os.path.join(builds, bid)
                if os.path.isdir(path):
                    aside = tempfile.mkdtemp(prefix=f"{_OLD_PREFIX}{bid}-", dir=builds)
                    os.rename(path, os.path.join(aside, bid))
                    _remove_tree(aside)
            fsutil.fsync_dir(builds)
        result = None
        if repo_path is not None:
            roots = []
            for bid in kept_ids:
                meta = read_meta(os.path.join(builds, bid))
                if meta is not None and isinstance(meta.get("ostree-commit"), str):
                    roots.append(meta["ostree-commit"])
            with Repo.open(repo_path) as repo:
                result = prune(repo, PruneOptions(refs_only=True, extra_roots=tuple(roots)))
    return PruneBuildsResult(removed_ids, kept_ids, result)
