"""The free-space reserve applied to `admin deploy` (see freespace.py).

The check reads the commit's tree before anything is written, so it sits above the
tree reader, which the repo (and with it freespace.py) sits below.
"""

from __future__ import annotations

import os

from sysroot.store.freespace import FreeSpaceError
from sysroot.store.modes import RepoMode
from sysroot.store.repo import Repo
from sysroot.store.tree import TreeEntry, TreeReader
from sysroot.util.units import format_size


def check_deploy_space(repo: Repo, commit: str, deploy_parent: str) -> None:
    """Refuse a deployment of commit under deploy_parent that would cross the repo's
    reserve, before anything of it is written.

    ostree 2022.7 applies the guard only to writes into the repo, so `ostree admin
    deploy` fills the file system past the reserve (or to ENOSPC, leaving a half-made
    deployment to clean up). The deployment lives on the repo's file system and eats
    the same space, so it is held to the same reserve: counted are the blocks it will
    write, a block per directory and, per copied file, size // f_bsize + 1 (every file
    when the checkout cannot hardlink from the repo, and /usr/etc, copied to /etc).
    Hardlinks cost nothing.
    """
    policy = repo.free_space
    if not policy.enabled:
        return
    fd = os.open(deploy_parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        st = os.fstatvfs(fd)
        same_fs = os.fstat(fd).st_dev == os.fstat(repo.dfd).st_dev
    finally:
        os.close(fd)
    bsize = st.f_bsize
    links = same_fs and repo.mode is RepoMode.BARE  # what a root checkout hardlinks
    reader = TreeReader(repo, commit)
    blocks = 0
    stack = [(reader.root, False)]
    while stack:
        entry, in_etc = stack.pop()
        copies = 2 if in_etc else 1  # usr/etc is checked out, then copied to /etc
        blocks += copies
        tree = reader.dirtree(entry.dirtree())
        for name, csum in tree.files:
            if in_etc or not links:
                info = reader.file_info(csum, "/".join(("", *entry.components, name)))
                n = (0 if links else 1) + (1 if in_etc else 0)
                blocks += n * (info.size // bsize + 1)
        for name, subtree, submeta in tree.dirs:
            child = TreeEntry(entry.components + (name,), submeta, subtree)
            stack.append((child, in_etc or child.components == ("usr", "etc")))
    free = st.f_bfree if os.getuid() == 0 else st.f_bavail
    if free - blocks < policy.reserved_blocks(st):
        raise FreeSpaceError(
            f"Deploying {commit}: {policy.describe()} would be exceeded, "
            f"at least {format_size(blocks * bsize)} requested"
        )
