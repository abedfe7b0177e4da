"""sysroot refs and rev-parse, with ostree 2022.7's output rules.

`ostree refs` prints from a GHashTable, so its order is the table's bucket order, not a
sorted one. `ghash_order` replays GLib's table (g_str_hash, `hash * 11 % prime` buckets,
quadratic probing, growth at 15/16 load) over the refs in the order ostree finds them --
directory-read order, depth first -- which makes the output identical, not just equal
as a set.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Hashable, Iterable

from sysroot.cli.main import add_repo_option, open_repo
from sysroot.errors import NotFoundError, SysrootError, UsageError
from sysroot.store.repo import parse_refspec
from sysroot.util import fsutil

# ------------------------------------------------------------------ GHashTable order

_PRIME_MOD = (1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749,
              65521, 131071, 262139, 524287, 1048573, 2097143, 4194301, 8388593, 16777213,
              33554393, 67108859, 134217689, 268435399, 536870909, 1073741789, 2147483647)


def str_hash(s: str) -> int:
    """g_str_hash(): djb2 over the UTF-8 bytes read as signed chars."""
    h = 5381
    for b in s.encode("utf-8", "surrogateescape"):
        h = (h * 33 + (b - 256 if b >= 128 else b)) & 0xFFFFFFFF
    return h


def ghash_order(keys: Iterable[Hashable], hash_func: Callable[[Hashable], int] = str_hash
                ) -> list:
    """The order a GLib 2.74 GHashTable iterates keys inserted in this order."""
    size, mod = 8, 7
    hashes = [0] * size  # 0: unused; GLib maps real hashes below 2 to 2
    slots: list = [None] * size
    nnodes = 0

    def bucket(h: int) -> int:
        return ((h * 11) & 0xFFFFFFFF) % mod

    for key in keys:
        h = max(hash_func(key), 2)
        i, step = bucket(h), 0
        while hashes[i] and not (hashes[i] == h and slots[i] == key):
            step += 1
            i = (i + step) & (size - 1)
        if hashes[i]:
            continue  # already present: GLib keeps the slot
        hashes[i], slots[i] = h, key
        nnodes += 1
        if size > nnodes + nnodes // 16:
            continue
        # grow to 2**shift with shift from nnodes * 1.333, then rehash in place, old
        # buckets in index order, evicting occupants of not-yet-moved buckets
        old, n, shift = size, int(nnodes * 1.333), 0
        while n:
            n, shift = n >> 1, shift + 1
        shift = max(shift, 3)
        size, mod = 1 << shift, _PRIME_MOD[shift]
        hashes += [0] * (size - old)
        slots += [None] * (size - old)
        moved = [False] * size
        for j in range(old):
            if hashes[j] < 2 or moved[j]:
                continue
            nh, k = hashes[j], slots[j]
            hashes[j], slots[j] = 0, None
            while True:
                t, step = bucket(nh), 0
                while moved[t]:
                    step += 1
                    t = (t + step) & (size - 1)
                moved[t] = True
                displaced = hashes[t]
                hashes[t] = nh
                slots[t], k = k, slots[t]
                if displaced < 2:
                    break
                nh = displaced
    return [slots[i] for i in range(size) if hashes[i] >= 2]


# ------------------------------------------------------------------ listing


class _Lister:
    """ostree's enumerate_refs_recurse: readdir order, depth first, dot names skipped."""

    def __init__(self, aliases: bool = False):
        self.aliases = aliases
        self.found: dict = {}  # key -> value, in insertion order

    def walk(self, dirpath: str, base: str, key: Callable[[str], Hashable]) -> None:
        try:
            entries = list(os.scandir(dirpath))
        except OSError as e:
            raise SysrootError(f"Listing refs: {dirpath}: {e.strerror}") from None
        for e in entries:
            if e.name.startswith("."):
                continue
            name = base + e.name
            if e.is_dir(follow_symlinks=False):
                self.walk(e.path, name + "/", key)
            elif self.aliases:
                if e.is_symlink():
                    target = os.readlink(e.path)
                    while target.startswith("../"):
                        target = target[3:]
                    self.found.setdefault(name, target)
            elif e.is_file(follow_symlinks=False) or e.is_symlink():
                self.add(e.path, key(name), name)

    def add(self, path: str, key: Hashable, name: str) -> None:
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

    def ordered(self, hash_func=str_hash) -> list[tuple]:
        return [(k, self.found[k]) for k in ghash_order(self.found, hash_func)]


def _named(remote: str | None) -> Callable[[str], str]:
    return (lambda name: f"{remote}:{name}") if remote else (lambda name: name)


def list_refs(repo, prefix: str | None = None, *, cut: bool = False,
              aliases: bool = False) -> list[tuple[str, str]]:
    """(name, value) pairs in `ostree refs` order; value is the ref file's content, or
    the alias target with aliases=True. cut=True drops a directory prefix from names."""
    lister = _Lister(aliases)
    top = repo.path
    if prefix is None:
        lister.walk(os.path.join(top, "refs/heads"), "", _named(None))
        remotes_dir = os.path.join(top, "refs/remotes")
        for e in _scandir(remotes_dir):
            if e.is_dir(follow_symlinks=False) and not e.name.startswith("."):
                lister.walk(e.path, "", _named(e.name))
        return lister.ordered()
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
        lister.walk(path, "" if cut else ref + "/", _named(remote))
    else:  # a single ref, listed by its full name even in alias mode
        lister.add(path, _named(remote)(ref), ref)
    return lister.ordered()


def _scandir(path: str) -> list[os.DirEntry]:
    try:
        return list(os.scandir(path))
    except FileNotFoundError:
        return []


def _parse_prefix(prefix: str) -> tuple[str | None, str]:
    # ostree special-cases "REMOTE:" and "REMOTE:." (all of a remote's refs)
    for suffix in (":", ":."):
        if prefix.endswith(suffix) and re.fullmatch(r"[\w\d][-._\w\d]*",
                                                    prefix[:-len(suffix)], re.ASCII):
            return prefix[:-len(suffix)], "."
    try:
        return parse_refspec(prefix)
    except SysrootError as e:
        raise SysrootError(f"Listing refs: {e}") from None


# ------------------------------------------------------------------ collections


_COLLECTION_ELEMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def validate_collection_id(cid: str) -> None:
    parts = cid.split(".")
    if len(cid) > 255 or len(parts) < 2 or not all(_COLLECTION_ELEMENT.fullmatch(p)
                                                   for p in parts):
        raise UsageError(f"Invalid collection ID {cid}")


def _collection_hash(key: tuple[str, str]) -> int:
    return str_hash(key[0]) ^ str_hash(key[1])  # ostree_collection_ref_hash


def list_collection_refs(repo, match: str | None = None) -> list[tuple[tuple[str, str], str]]:
    """((collection id, ref), value) for refs/heads (with the repo's collection ID),
    refs/mirrors/COLLECTION and remotes that have a collection-id, in ostree's order."""
    lister = _Lister()
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
    for e in _scandir(os.path.join(top, "refs/remotes")):
        cid = repo.config.get(f'remote "{e.name}"', "collection-id")
        if e.is_dir(follow_symlinks=False) and cid and match in (None, cid):
            lister.walk(e.path, "", keyed(cid))
    return lister.ordered(_collection_hash)


# ------------------------------------------------------------------ writing


def _unlink_ref(repo, relpath: str) -> None:
    """Delete one ref file; like ostree, empty parent directories stay."""
    try:
        os.unlink(os.path.join(repo.path, relpath))
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise SysrootError(f"Deleting ref {relpath}: Is a directory") from None
    os.utime(repo.dfd)  # a ref change bumps the repository's mtime, as in libostree


def _write_alias(repo, name: str, target: str) -> None:
    path = os.path.join(repo.path, "refs/heads", name)
    os.makedirs(os.path.dirname(path), mode=0o775, exist_ok=True)
    if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)
    fsutil.atomic_symlink("../" * name.count("/") + target, path)
    os.utime(repo.dfd)


# ------------------------------------------------------------------ commands


def register(sub) -> None:
    p = sub.add_parser("refs", help="List refs, or create and delete them")
    add_repo_option(p)
    p.add_argument("prefixes", nargs="*", metavar="PREFIX")
    p.add_argument("--delete", action="store_true",
                   help="Delete refs which match PREFIX, rather than listing them")
    p.add_argument("--list", action="store_true", help="Do not remove the prefix from the refs")
    p.add_argument("-A", "--alias", action="store_true",
                   help="If used with --create, create an alias, otherwise just list aliases")
    p.add_argument("--create", metavar="NEWREF", help="Create a new ref for an existing commit")
    p.add_argument("-c", "--collections", action="store_true",
                   help="Enable listing collection IDs for refs")
    p.add_argument("--force", action="store_true",
                   help="Overwrite existing refs when creating")
    p.set_defaults(func=run_refs)

    p = sub.add_parser("rev-parse", help="Output the target of a rev")
    add_repo_option(p)
    p.add_argument("revs", nargs="*", metavar="REV")
    p.add_argument("-S", "--single", action="store_true",
                   help="If the repository has exactly one commit, then print it; any other "
                        "case will result in an error")
    p.set_defaults(func=run_rev_parse)


def run_refs(args) -> int:
    repo = open_repo(args)
    if args.prefixes:
        if args.create and len(args.prefixes) > 1:
            raise UsageError("You must specify only 1 existing ref when creating a new ref")
        for prefix in args.prefixes:
            _do_ref(repo, args, prefix)
    elif args.delete:
        raise UsageError("At least one PREFIX is required when deleting refs")
    elif args.create:
        raise UsageError("You must specify a revision when creating a new ref")
    else:
        _do_ref(repo, args, None)
    return 0


def _do_ref(repo, args, prefix: str | None) -> None:
    if args.collections:
        return _do_collection_ref(repo, args, prefix)
    if args.create:
        return _create(repo, args, prefix)
    if args.delete:
        for name, _ in list_refs(repo, prefix, aliases=args.alias):
            remote, ref = parse_refspec(name)
            _unlink_ref(repo, f"refs/remotes/{remote}/{ref}" if remote else f"refs/heads/{ref}")
        return None
    refs = list_refs(repo, prefix, cut=not (args.list or args.alias), aliases=args.alias)
    lines = [f"{name} -> {value}" if args.alias else name for name, value in refs]
    print("".join(line + "\n" for line in lines), end="")
    return None


def _create(repo, args, target: str) -> None:
    new = args.create
    existing = repo.resolve_rev(new, allow_noent=True)
    replacing_alias = args.alias and any(name == new for name, _ in
                                         list_refs(repo, aliases=True))
    if existing is not None and not replacing_alias and not args.force:
        raise SysrootError(f"--create specified but ref {new} already exists")
    remote, ref = parse_refspec(new)
    relpath = f"refs/remotes/{remote}/{ref}" if remote else f"refs/heads/{ref}"
    try:
        os.lstat(os.path.join(repo.path, relpath))
    except FileNotFoundError:
        pass
    except NotADirectoryError:  # a ref file stands where a directory would go
        raise SysrootError(f"openat({relpath}): Not a directory") from None
    if args.alias:
        if remote:
            raise SysrootError(f"Cannot create alias to remote ref: {remote}")
        if not any(name == target for name, _ in list_refs(repo)):
            raise NotFoundError(f"Cannot create alias to non-existent ref: {target}")
        _write_alias(repo, ref, target)
    else:
        repo.write_ref(new, repo.resolve_rev(target))


def _do_collection_ref(repo, args, prefix: str | None) -> None:
    main_cid = repo.config.get("core", "collection-id")

    def relpath(cid: str, ref: str) -> str:
        return f"refs/heads/{ref}" if cid == main_cid else f"refs/mirrors/{cid}/{ref}"

    if args.create:
        new = args.create
        if repo.resolve_rev(new, allow_noent=True) is not None:
            raise SysrootError(f"--create specified but ref {new} already exists")
        checksum = repo.resolve_rev(prefix)
        cid, sep, ref = new.partition(":")
        validate_collection_id(cid)
        if not sep or not re.fullmatch(r"[\w\d][-._\w\d]*(/[\w\d][-._\w\d]*)*", ref, re.ASCII):
            raise UsageError(f"Invalid ref name {ref}")
        path = os.path.join(repo.path, relpath(cid, ref))
        os.makedirs(os.path.dirname(path), mode=0o775, exist_ok=True)
        fsutil.atomic_write(path, (checksum + "\n").encode(), fsync=repo.fsync_enabled)
        os.utime(repo.dfd)
        return
    refs = list_collection_refs(repo, prefix)
    if args.delete:
        for (cid, ref), _ in refs:
            _unlink_ref(repo, relpath(cid, ref))
        return
    print("".join(f"({cid}, {ref})\n" for (cid, ref), _ in refs), end="")


def run_rev_parse(args) -> int:
    repo = open_repo(args)
    if args.single:
        if args.revs:
            raise UsageError("Cannot specify arguments with --single")
        commits = [c for c, t in repo.list_objects() if t.type_name == "commit"]
        if not commits:
            raise NotFoundError("No commit objects found")
        if len(commits) > 1:
            raise SysrootError("Multiple commit objects found")
        print(commits[0])
        return 0
    if not args.revs:
        raise UsageError("REV must be specified")
    for rev in args.revs:
        print(repo.resolve_rev(rev), flush=True)
    return 0

