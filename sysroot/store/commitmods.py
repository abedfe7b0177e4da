"""What may go into the store on import, shared by the directory and tarball importers.

`CommitModifier` adjusts each file's uid, gid, mode and xattrs on the way in (ostree's
commit modifier flags), and `check_utf8` refuses names GVariant cannot hold.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass, replace

from sysroot.errors import SysrootError
from sysroot.formats.objects import DirMeta, FileHeader
from sysroot.store.repo import Repo

Xattr = tuple[bytes, bytes]  # (name with its NUL, value), as a commit records it


@dataclass(frozen=True)
class CommitModifier:
    """How file metadata is adjusted on the way into the repository."""

    skip_xattrs: bool = False
    canonical_permissions: bool = False
    owner_uid: int | None = None
    owner_gid: int | None = None
    consume: bool = False

    def dir_meta(self, uid: int, gid: int, mode: int, xattrs: Iterable[Xattr]) -> DirMeta:
        uid, gid, mode = self.ids_mode(uid, gid, mode)
        return DirMeta(uid, gid, mode, () if self._drop_xattrs else tuple(xattrs))

    def file_header(
        self, st_uid: int, st_gid: int, st_mode: int, target: str, xattrs: Iterable[Xattr]
    ) -> FileHeader:
        uid, gid, mode = self.ids_mode(st_uid, st_gid, st_mode)
        return FileHeader(uid, gid, mode, target, () if self._drop_xattrs else tuple(xattrs))

    @property
    def _drop_xattrs(self) -> bool:
        return self.skip_xattrs or self.canonical_permissions

    def ids_mode(self, uid: int, gid: int, mode: int) -> tuple[int, int, int]:
        if self.owner_uid is not None:
            uid = self.owner_uid
        if self.owner_gid is not None:
            gid = self.owner_gid
        if self.canonical_permissions:
            uid = gid = 0
            if stat.S_ISREG(mode):
                mode &= stat.S_IFREG | 0o755
            elif stat.S_ISDIR(mode):
                mode &= stat.S_IFDIR | 0o755
        return uid, gid, mode

    @property
    def reads_xattrs(self) -> bool:
        return not self._drop_xattrs

    @property
    def changes_metadata(self) -> bool:
        """Whether any file's uid, gid, mode or xattrs may differ from its source."""
        return (
            self.skip_xattrs
            or self.canonical_permissions
            or self.owner_uid is not None
            or self.owner_gid is not None
        )


def for_repo(modifier: CommitModifier, repo: Repo) -> CommitModifier:
    """bare-user-only repos and core.disable-xattrs narrow what may be stored."""
    if repo.mode.forces_canonical_permissions():
        modifier = replace(modifier, canonical_permissions=True)
    if repo.disable_xattrs:
        modifier = replace(modifier, skip_xattrs=True)
    return modifier


def check_utf8(name: str, what: str, where: str) -> None:
    """OSTree stores names and link targets as GVariant strings, which must be UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "surrogateescape")
        raise SysrootError(f"Invalid UTF-8 in {what} {raw!r} in {where}") from None
