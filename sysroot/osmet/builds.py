"""osmet files in a build directory (install/builds.py): how it stays small.

`build osmet` packs a build's metal and metal4k images into NAME-VERSION-metal.ARCH.osmet
and NAME-VERSION-metal4k.ARCH.osmet, recorded in meta.json's images as the kinds
`metal-osmet` and `metal4k-osmet` (`packs` names the image each recreates). After that
`build dehydrate` may delete the raw images and the qcow2, and `build rehydrate` makes
them again from a repository holding the commit: the raw images from the osmet files,
the qcow2 from the metal image (qemu-img's output is reproducible); each must have its
meta.json SHA-256 before it gets its name. All three hold the build directory's lock.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

from sysroot.errors import SysrootError, UsageError
from sysroot.formats.osmet import read as read_osmet
from sysroot.install.builds import (
    LATEST,
    META_JSON,
    Artifact,
    builds_path,
    check_version,
    describe_file,
    locked,
    read_meta,
    write_json,
)
from sysroot.osmet.pack import PackOptions, pack
from sysroot.osmet.target import unpack_to_file
from sysroot.util import fsutil
from sysroot.util.run import run

PACKED = (Artifact.METAL, Artifact.METAL4K)


def osmet_kind(artifact: Artifact) -> str:
    return f"{artifact.value}-osmet"


@dataclass(frozen=True)
class BuildRef:
    """One build of a build directory: its directory and meta.json."""

    version: str
    path: str
    meta: dict[str, Any]

    def image(self, kind: str) -> dict[str, Any] | None:
        entry = self.meta.get("images", {}).get(kind)
        return entry if isinstance(entry, dict) else None

    def file(self, kind: str) -> str:
        entry = self.image(kind)
        if entry is None or not isinstance(entry.get("path"), str):
            raise SysrootError(f"{self.path}/{META_JSON}: no {kind} image")
        name = entry["path"]
        if "/" in name or name in ("", ".", ".."):  # meta.json is input: never a path out
            raise SysrootError(f"{self.path}/{META_JSON}: invalid file name {name!r}")
        return os.path.join(self.path, name)


def find_build(builds_dir: str, version: str | None) -> BuildRef:
    builds = builds_path(builds_dir)
    if version is None:
        try:
            version = os.readlink(os.path.join(builds, LATEST))
        except OSError:
            raise UsageError(f"{builds}: no latest build") from None
    check_version(version)
    path = os.path.join(builds, version)
    meta = read_meta(path)
    if meta is None:
        raise UsageError(f"{path}: no build (no {META_JSON})")
    return BuildRef(version, path, meta)


def add_osmet(builds_dir: str, version: str | None, *, fast: bool, app_version: str) -> list[str]:
    """Pack the build's raw images; the osmet files written, by kind."""
    ref = find_build(builds_dir, version)
    done = []
    with locked(builds_path(builds_dir)):
        meta = ref.meta
        for artifact in PACKED:
            image = ref.file(artifact.value)
            entry = ref.image(artifact.value)
            assert entry is not None
            kind = osmet_kind(artifact)
            out = os.path.splitext(image)[0] + ".osmet"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(out)  # a build's own file, made again
            pack(
                PackOptions(
                    image, out, checksum=entry["sha256"], fast=fast, app_version=app_version
                )
            )
            described = describe_file(out, entry.get("sector-size"))
            described["packs"] = artifact.value
            meta["images"][kind] = described
            write_json(os.path.join(ref.path, META_JSON), meta)  # after each: never stale
            done.append(kind)
    return done


def dehydrate(builds_dir: str, version: str | None) -> list[str]:
    """Delete the images an osmet file of the build can recreate (and the qcow2, made
    from the metal image); the files deleted."""
    ref = find_build(builds_dir, version)
    removed = []
    with locked(builds_path(builds_dir)):
        for artifact in PACKED:
            if ref.image(osmet_kind(artifact)) is None:
                raise UsageError(
                    f"build {ref.version} has no {osmet_kind(artifact)}: run `build osmet` first"
                )
            _check_osmet(ref, artifact)
        for kind in (Artifact.METAL.value, Artifact.METAL4K.value, Artifact.QEMU.value):
            path = ref.file(kind)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed.append(os.path.basename(path))
        fsutil.fsync_dir(ref.path)
    return removed


def _check_osmet(ref: BuildRef, artifact: Artifact) -> str:
    """The osmet file of artifact, which must be the one meta.json records and describe
    the image meta.json records."""
    kind = osmet_kind(artifact)
    path = ref.file(kind)
    entry, image = ref.image(kind), ref.image(artifact.value)
    assert entry is not None and image is not None
    try:
        if fsutil.file_sha256(path).hex() != entry.get("sha256"):
            raise SysrootError(f"{path}: not the file {META_JSON} records (SHA-256 differs)")
        with open(path, "rb") as f:
            _header, body = read_osmet(f)
    except OSError as e:
        raise SysrootError(f"{path}: {e.strerror}") from None
    if body.checksum.hex() != image.get("sha256") or body.size != image.get("size"):
        raise SysrootError(f"{path}: packs another image than {META_JSON}'s {artifact.value}")
    return path


def rehydrate(builds_dir: str, version: str | None, repo: str) -> list[str]:
    """Make the build's missing images again; the files made."""
    ref = find_build(builds_dir, version)
    made = []
    with locked(builds_path(builds_dir)):
        for artifact in PACKED:
            image = ref.file(artifact.value)
            if os.path.exists(image):
                continue
            osmet_path = _check_osmet(ref, artifact)
            unpack_to_file(osmet_path, repo, image)  # verified against the same SHA-256
            made.append(os.path.basename(image))
        qcow2 = ref.file(Artifact.QEMU.value)
        if not os.path.exists(qcow2):
            _remake_qcow2(ref, qcow2)
            made.append(os.path.basename(qcow2))
        fsutil.fsync_dir(ref.path)
    return made


def _remake_qcow2(ref: BuildRef, qcow2: str) -> None:
    entry = ref.image(Artifact.QEMU.value)
    assert entry is not None
    tmp = os.path.join(ref.path, fsutil.temp_name(os.path.basename(qcow2)))
    try:
        run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", ref.file("metal"), tmp])
        if fsutil.file_sha256(tmp).hex() != entry.get("sha256"):
            raise SysrootError(f"{qcow2}: made again, but not with {META_JSON}'s SHA-256")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.rename(tmp, qcow2)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
