"""Delta index files (`delta-indexes/XX/REST.index`, shared/docs/static-deltas.md §1.4),
as `ostree static-delta reindex` and `summary -u` keep them: one per TO commit with a
delta, `a{sv}` {"ostree.static-deltas": {name: sha256(superblock) as ay}}."""

from __future__ import annotations

import os

from sysroot.formats import gvariant
from sysroot.formats import static_delta as sd
from sysroot.formats.ghash import ghash_order
from sysroot.formats.gvariant import Variant
from sysroot.store import static_delta as store_sd
from sysroot.store.repo import Repo
from sysroot.util import fsutil

INDEX_DIR = "delta-indexes"
KEY = "ostree.static-deltas"


def index_relpath(to: str) -> str:
    t = sd.mbase64(to)
    return f"{INDEX_DIR}/{t[:2]}/{t[2:]}.index"


def index_bytes(entries: dict[str, bytes]) -> bytes:
    """The index for one TO: entries are delta name -> superblock sha256. ostree sorts
    the names, then inserts them into a GVariantDict: hash-table order on disk."""
    order = ghash_order(sorted(entries))
    inner = {n: Variant("ay", entries[n]) for n in order}
    return gvariant.encode("a{sv}", {KEY: Variant("a{sv}", inner)})


def reindex(repo: Repo, only_to: str | None = None) -> None:
    """Rewrite index files whose bytes change, delete those of TOs without deltas
    (only only_to's with it), and record core.indexed-deltas=true as ostree does."""
    with repo.lock(exclusive=True):
        by_to: dict[str, dict[str, bytes]] = {}
        for name in store_sd.list_deltas(repo):
            if only_to is not None and name.to != only_to:
                continue
            sb = os.path.join(repo.path, name.relpath, store_sd.SUPERBLOCK)
            by_to.setdefault(name.to, {})[str(name)] = fsutil.file_sha256(sb)
        fsync = repo.fsync_enabled
        for to, entries in by_to.items():
            path = os.path.join(repo.path, index_relpath(to))
            data = index_bytes(entries)
            try:
                with open(path, "rb") as f:
                    if f.read() == data:
                        continue
            except FileNotFoundError:
                pass
            os.makedirs(os.path.dirname(path), mode=0o775, exist_ok=True)
            fsutil.atomic_write(path, data, fsync=fsync)
        stale = [only_to] if only_to is not None else store_sd.list_indexes(repo)
        for to in stale:
            if to not in by_to:
                try:
                    os.unlink(os.path.join(repo.path, index_relpath(to)))
                except FileNotFoundError:
                    pass
        if not repo.config.get_bool("core", "indexed-deltas", False):
            repo.config.set("core", "indexed-deltas", "true")
            repo.write_config()
