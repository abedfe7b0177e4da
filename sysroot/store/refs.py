"""Refs as `ostree refs` lists and changes them (2022.7).

`ostree refs` prints from a GHashTable, so its order is the table's bucket order, not a
sorted one. `ghash_order` replays GLib's table (g_str_hash, `hash * 11 % prime` buckets,
quadratic probing, growth at 15/16 load) over the refs in the order ostree finds them --
directory-read order, depth first -- which makes the output identical, not just equal
as a set. Values are the ref files' raw contents (or alias targets), unchecked: listing
shows what is there. `Repo.list_refs`/`Repo.read_ref` are the checked, sorted view.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from sysroot.errors import SysrootError, UsageError
from sysroot.formats.ghash import ghash_order, str_hash
from sysroot.store.repo import Repo, parse_refspec
from sysroot.util import fsutil

# ------------------------------------------------------------------ listing

_K = TypeVar("_K", bound=Hashable)


class _Lister(Generic[_K]):
    """ostree's enumerate_refs_recurse: readdir order, depth first, dot names skipped."""

    def __init__(self, aliases: bool = False):
        self.aliases = aliases
        self.found: dict[_K, str] = {}  # key -> value, in insertion order

    def walk(self, dirpath: str, base: str, key: Callable[[str], _K]) -> None:
        try:
            entries = list(os.scandir(dirpath))
        except OSError as e:
            raise SysrootError(f"Listing refs: {dirpath}: {e.strerror}") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            name = base + entry.name
            if entry.is_dir(follow_symlinks=False):
                self.walk(entry.path, name + "/", key)
            elif self.aliases:
                if entry.is_symlink():
                    target = os.readlink(entry.path)
                    while target.startswith("../"):
                        target = target[3:]
                    self.found.setdefault(key(name), target)
            elif entry.is_file(follow_symlinks=False) or entry.is_symlink():
                self.add(entry.path, key(name), name)

    def add(self, path: str, key: _K, name: str) -> None:
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise SysrootError(f"Listing refs: openat({name}): {e.strerror}") from None
        try:
            value = raw.decode("utf-8").rstrip()
        except UnicodeDecodeError:
            raise SysrootError(f"Listing refs: {path}: Invalid UTF-8") from None
        self.found.setdefault(key, value)

    def ordered(self, hash_func: Callable[[_K], int]) -> list[tuple[_K, str]]:
        return [(k, self.found[k]) for k in ghash_order(self.found, hash_func)]


def _named(remote: str | None) -> Callable[[str], str]:
    return (lambda name: f"{remote}:{name}") if remote else (lambda name: name)


def list_refs(
    repo: Repo, prefix: str | None = None, *, cut: bool = False, aliases: bool = False
) -> list[tuple[str, str]]:
    """(name, value) pairs in `ostree refs` order; value is the ref file's content, or
    the alias target with aliases=True. cut=True drops a directory prefix from names."""
    lister = _Lister[str](aliases)

    def named(remote: str | None) -> Callable[[str], str]:
        # like ostree, an alias found in a walk is listed without its remote
        return _named(None if aliases else remote)

    top = repo.path
    if prefix is None:
        lister.walk(os.path.join(top, "refs/heads"), "", named(None))
        remotes_dir = os.path.join(top, "refs/remotes")
        for e in _scandir(remotes_dir):
            if e.is_dir(follow_symlinks=False) and not e.name.startswith("."):
                lister.walk(e.path, "", named(e.name))
        return lister.ordered(str_hash)
    remote, ref = _parse_prefix(prefix)
    prefix_dir = os.path.join(top, f"refs/remotes/{remote}" if remote else "refs/heads")
    path = os.path.join(prefix_dir, ref)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise SysrootError(f"Listing refs: {path}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        lister.walk(path, "" if cut else ref + "/", named(remote))
    else:  # a single ref, listed by its full name even in alias mode
        lister.add(path, _named(remote)(ref), ref)
    return lister.ordered(str_hash)


def _scandir(path: str) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(path))
    except FileNotFoundError:
        return []


def _parse_prefix(prefix: str) -> tuple[str | None, str]:
    # ostree special-cases "REMOTE:" and "REMOTE:." (all of a remote's refs)
    for suffix in (":", ":."):
        if prefix.endswith(suffix) and re.fullmatch(
            r"[\w\d][-._\w\d]*", prefix[: -len(suffix)], re.ASCII
        ):
            return prefix[: -len(suffix)], "."
    try:
        return parse_refspec(prefix)
    except SysrootError as e:
        raise SysrootError(f"Listing refs: {e}") from None


# ------------------------------------------------------------------ collections


_COLLECTION_ELEMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def validate_collection_id(cid: str) -> None:
    parts = cid.split(".")
    if len(cid) > 255 or len(parts) < 2 or not all(_COLLECTION_ELEMENT.fullmatch(p) for p in parts):
        raise UsageError(f"Invalid collection ID {cid}")


def _collection_hash(key: tuple[str, str]) -> int:
    return str_hash(key[0]) ^ str_hash(key[1])  # ostree_collection_ref_hash


def list_collection_refs(
    repo: Repo, match: str | None = None, *, include_remotes: bool = True
) -> list[tuple[tuple[str, str], str]]:
    """((collection id, ref), value) for refs/heads (with the repo's collection ID),
    refs/mirrors/COLLECTION and remotes that have a collection-id, in ostree's order."""
    lister = _Lister[tuple[str, str]]()
    top = repo.path
    main_cid = repo.config.get("core", "collection-id")

    def keyed(cid: str) -> Callable[[str], tuple[str, str]]:
        return lambda name: (cid, name)

    if main_cid and match in (None, main_cid):
        lister.walk(os.path.join(top, "refs/heads"), "", keyed(main_cid))
    for e in _scandir(os.path.join(top, "refs/mirrors")):
        if e.is_dir(follow_symlinks=False) and match in (None, e.name):
            try:
                validate_collection_id(e.name)
            except UsageError:
                continue
            lister.walk(e.path, "", keyed(e.name))
    for e in _scandir(os.path.join(top, "refs/remotes")) if include_remotes else []:
        cid = repo.config.get(f'remote "{e.name}"', "collection-id")
        if e.is_dir(follow_symlinks=False) and cid and match in (None, cid):
            lister.walk(e.path, "", keyed(cid))
    return lister.ordered(_collection_hash)


# ------------------------------------------------------------------ writing
# `ostree refs --create/--delete`'s own rules, which differ from Repo.write_ref: a
# deleted ref's empty parent directories stay, deleting a missing ref is no error, and
# aliases (symlinks) and collection refs (refs/mirrors) can be written.


def ref_relpath(refspec: str) -> str:
    """refs/heads/REF or refs/remotes/REMOTE/REF for 'REF' or 'REMOTE:REF'."""
    remote, ref = parse_refspec(refspec)
    return f"refs/remotes/{remote}/{ref}" if remote else f"refs/heads/{ref}"


def collection_ref_relpath(repo: Repo, cid: str, ref: str) -> str:
    """The repository's own collection lives in refs/heads, others in refs/mirrors."""
    main_cid = repo.config.get("core", "collection-id")
    return f"refs/heads/{ref}" if cid == main_cid else f"refs/mirrors/{cid}/{ref}"


def check_ref_parents(repo: Repo, refspec: str) -> None:
    """Refuse a ref whose parent directory would be an existing ref file, with
    ostree's message."""
    relpath = ref_relpath(refspec)
    try:
        os.lstat(os.path.join(repo.path, relpath))
    except FileNotFoundError:
        pass
    except NotADirectoryError:  # a ref file stands where a directory would go
        raise SysrootError(f"openat({relpath}): Not a directory") from None


def delete_ref(repo: Repo, refspec: str) -> None:
    """Delete a ref (or alias) as `ostree refs --delete` does."""
    _unlink_ref(repo, ref_relpath(refspec))


def delete_collection_ref(repo: Repo, cid: str, ref: str) -> None:
    _unlink_ref(repo, collection_ref_relpath(repo, cid, ref))


def _unlink_ref(repo: Repo, relpath: str) -> None:
    """Delete one ref file; like ostree, empty parent directories stay."""
    try:
        os.unlink(os.path.join(repo.path, relpath))
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise SysrootError(f"Deleting ref {relpath}: Is a directory") from None
    os.utime(repo.dfd)  # a ref change bumps the repository's mtime, as in libostree


def write_alias(repo: Repo, name: str, target: str) -> None:
    """refs/heads/NAME as a relative symlink to the ref TARGET (`refs --alias --create`)."""
    path = os.path.join(repo.path, "refs/heads", name)
    os.makedirs(os.path.dirname(path), mode=0o775, exist_ok=True)
    if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)
    fsutil.atomic_symlink("../" * name.count("/") + target, path)
    os.utime(repo.dfd)


def write_collection_ref(repo: Repo, cid: str, ref: str, checksum: str) -> None:
    path = os.path.join(repo.path, collection_ref_relpath(repo, cid, ref))
    os.makedirs(os.path.dirname(path), mode=0o775, exist_ok=True)
    fsutil.atomic_write(path, (checksum + "\n").encode(), fsync=repo.fsync_enabled)
    os.utime(repo.dfd)
