"""The repository `summary` file, byte-compatible with `ostree summary -u` (2022.7).

Type `(a(s(taya{sv}))a{sv})`: every local ref with its commit's size, checksum and a
little metadata, then repository-wide metadata. Two details matter for identical bytes:

* the per-ref commit size is written little-endian (host order; upstream bug #1990),
  while the timestamps are big-endian like every other ostree integer;
* both `a{sv}` dictionaries come out of a GLib `GVariantDict`, i.e. in the iteration
  order of a `GHashTable` keyed by `g_str_hash`. `hash_table_order` reproduces that
  order from the insertion sequence (checked against ostree with random key sets).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sysroot.errors import CorruptObjectError, FormatError, NotFoundError
from sysroot.formats import gvariant
from sysroot.formats.ghash import ghash_order
from sysroot.formats.gvariant import Variant
from sysroot.formats.objects import (
    Commit,
    DirMeta,
    DirTree,
    ObjectType,
    bswap64,
    mbase64_checksum_hex,
)
from sysroot.store import delta_index
from sysroot.store.commit import write_commit
from sysroot.store.refs import list_collection_refs
from sysroot.store.repo import Repo
from sysroot.store.transaction import Transaction
from sysroot.util import fsutil

SUMMARY_TYPE = "(a(s(taya{sv}))a{sv})"
KEY_VERSION = "ostree.commit.version"
KEY_TIMESTAMP = "ostree.commit.timestamp"
KEY_LAST_MODIFIED = "ostree.summary.last-modified"
KEY_EXPIRES = "ostree.summary.expires"
KEY_MODE = "ostree.summary.mode"
KEY_TOMBSTONES = "ostree.summary.tombstone-commits"
KEY_INDEXED_DELTAS = "ostree.summary.indexed-deltas"
KEY_COLLECTION_ID = "ostree.summary.collection-id"
KEY_COLLECTION_MAP = "ostree.summary.collection-map"
COLLECTION_MAP_TYPE = "a{sa(s(taya{sv}))}"
KEY_STATIC_DELTAS = "ostree.static-deltas"

# With core.collection-id set, ostree 2022.7's `summary -u` also commits the summary's
# metadata to this ref (an empty tree, bound to the ref and collection), for peers that
# cannot check a summary signature but can check a commit's
METADATA_REF = "ostree-metadata"
KEY_COLLECTION_BINDING = "ostree.collection-binding"
KEY_REF_BINDING = "ostree.ref-binding"

# GDateTime's range: years 1 to 9999
_MAX_TIMESTAMP = 253402300799


def hash_table_order(keys: Iterable[str]) -> list[str]:
    """The order a GVariantDict built by inserting keys (in this order) serializes in."""
    return ghash_order(keys)


def _dict_in_glib_order(items: list[tuple[str, Variant]]) -> dict[str, Variant]:
    values: dict[str, Variant] = {}
    for k, v in items:
        values[k] = v
    return {k: values[k] for k in hash_table_order(k for k, _ in items)}


# ---------------------------------------------------------------- building


@dataclass(frozen=True)
class SummaryRef:
    name: str
    commit_size: int
    checksum: str
    metadata: dict[str, Variant]

    def as_tuple(self) -> tuple[str, tuple[int, bytes, dict[str, Variant]]]:
        """The `(s(taya{sv}))` entry."""
        return (self.name, (self.commit_size, bytes.fromhex(self.checksum), self.metadata))


@dataclass(frozen=True)
class Summary:
    refs: list[SummaryRef]
    metadata: dict[str, Variant]

    @classmethod
    def parse(cls, data: bytes) -> Summary:
        refs, meta = gvariant.decode(SUMMARY_TYPE, data)
        out = []
        for name, (size, csum, rmeta) in refs:
            if len(csum) != 32:
                raise FormatError(f"summary ref {name}: checksum has {len(csum)} bytes")
            out.append(SummaryRef(name, size, bytes(csum).hex(), rmeta))
        return cls(out, meta)

    def serialize(self) -> bytes:
        refs = [r.as_tuple() for r in self.refs]
        return gvariant.encode(SUMMARY_TYPE, (refs, self.metadata))


def _ref_entry(repo: Repo, name: str, checksum: str) -> SummaryRef:
    data = repo.read_metadata(ObjectType.COMMIT, checksum)
    actual = hashlib.sha256(data).hexdigest()
    if actual != checksum:  # never publish a damaged commit under its old name
        raise CorruptObjectError(checksum, "commit", f"content has checksum {actual}")
    try:
        commit = Commit.parse(data)
    except FormatError as e:
        raise FormatError(f"Commit {checksum} of ref {name}: {e}") from None
    items: list[tuple[str, Variant]] = []
    version = commit.metadata.get("version")
    if version is not None and version.signature == "s":
        items.append((KEY_VERSION, Variant("s", version.value)))
    if 0 <= commit.timestamp <= _MAX_TIMESTAMP:
        items.append((KEY_TIMESTAMP, Variant("t", bswap64(commit.timestamp))))
    return SummaryRef(name, len(data), checksum, _dict_in_glib_order(items))


def list_static_deltas(repo: Repo) -> list[tuple[str, bytes]]:
    """(delta name, sha256 of its superblock) in directory order, as ostree lists them."""
    out: list[tuple[str, bytes]] = []
    base = os.path.join(repo.path, "deltas")
    try:
        outer = list(os.scandir(base))
    except FileNotFoundError:
        return []
    for d in outer:
        if len(d.name) != 2 or not d.is_dir(follow_symlinks=False):
            continue
        for sub in os.scandir(d.path):
            superblock = os.path.join(sub.path, "superblock")
            parts = (d.name + sub.name).split("-")
            names = [mbase64_checksum_hex(p) for p in parts]
            hexes = [n for n in names if n is not None]
            if len(parts) > 2 or len(hexes) != len(parts) or not os.path.isfile(superblock):
                continue
            with open(superblock, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").digest()
            out.append(("-".join(hexes), digest))
    return out


def build_summary(
    repo: Repo, additional: Mapping[str, Variant] | None = None, *, now: int | None = None
) -> Summary:
    """The summary ostree would write for repo now: refs/heads (with a collection ID,
    the refs/mirrors of that collection too), sorted; other collections' mirrored refs
    in the collection map."""
    collection_id = repo.config.get("core", "collection-id")
    if collection_id:
        heads: dict[str, str] = {}
        for (cid, name), csum in list_collection_refs(repo, include_remotes=False):
            if cid == collection_id:
                heads.setdefault(name, csum)
    else:
        heads = repo.list_refs(include_remotes=False)
    refs = [_ref_entry(repo, name, csum) for name, csum in heads.items()]
    refs.sort(key=lambda r: r.name.encode())
    items: list[tuple[str, Variant]] = list((additional or {}).items())
    deltas = list_static_deltas(repo)
    if deltas and not repo.config.get_bool("core", "no-deltas-in-summary", False):
        inner = _dict_in_glib_order([(n, Variant("ay", d)) for n, d in deltas])
        items.append((KEY_STATIC_DELTAS, Variant("a{sv}", inner)))
    stamp = int(time.time()) if now is None else now
    items.append((KEY_LAST_MODIFIED, Variant("t", bswap64(stamp))))
    items.append((KEY_MODE, Variant("s", repo.config.get("core", "mode", "bare") or "bare")))
    items.append(
        (KEY_TOMBSTONES, Variant("b", repo.config.get_bool("core", "tombstone-commits", False)))
    )
    items.append((KEY_INDEXED_DELTAS, Variant("b", True)))
    if collection_id:
        items.append((KEY_COLLECTION_ID, Variant("s", collection_id)))
    collection_map = _collection_map(repo, collection_id)
    if collection_map:
        items.append((KEY_COLLECTION_MAP, Variant(COLLECTION_MAP_TYPE, collection_map)))
    return Summary(refs, _dict_in_glib_order(items))


def _collection_map(repo: Repo, main_collection: str | None) -> dict[str, list[object]]:
    """refs/mirrors/COLLECTION/*, the repository's own collection aside (it is the main
    list): sorted by collection, then by ref, as ostree 2022.7 lists them."""
    by_collection: dict[str, list[tuple[str, str]]] = {}
    for (cid, ref), checksum in list_collection_refs(repo, include_remotes=False):
        if cid != main_collection:
            by_collection.setdefault(cid, []).append((ref, checksum))
    out: dict[str, list[object]] = {}
    for cid in sorted(by_collection, key=str.encode):
        entries = sorted(by_collection[cid], key=lambda e: e[0].encode())
        out[cid] = [_ref_entry(repo, ref, checksum).as_tuple() for ref, checksum in entries]
    return out


def regenerate_summary(
    repo: Repo, additional: Mapping[str, Variant] | None = None, *, now: int | None = None
) -> Summary:
    """Write `summary` atomically (and drop a now stale `summary.sig`), like ostree,
    with the delta index files brought up to date first, as ostree does. The summary
    is built (every ref's commit read and checked) before the indexes change, so a
    damaged repository fails with nothing written."""
    collection_id = repo.config.get("core", "collection-id")
    if collection_id:
        # before the summary, so it lists the new commit, as ostree's does
        write_metadata_commit(repo, collection_id, additional)
    with repo.lock(exclusive=True):
        summary = build_summary(repo, additional, now=now)
    delta_index.reindex(repo)  # takes the lock itself
    with repo.lock(exclusive=True):
        fsync = repo.fsync_enabled
        fsutil.atomic_write(
            os.path.join(repo.path, "summary"), summary.serialize(), mode=0o644, fsync=fsync
        )
        try:
            os.unlink("summary.sig", dir_fd=repo.dfd)
        except FileNotFoundError:
            pass
        # ostree 2022.7 records that it keeps delta indexes up to date from now on
        if not repo.config.get_bool("core", "indexed-deltas", False):
            repo.config.set("core", "indexed-deltas", "true")
            repo.write_config()
    return summary


def write_metadata_commit(
    repo: Repo, collection_id: str, additional: Mapping[str, Variant] | None = None
) -> str:
    """Commit the summary metadata to the `ostree-metadata` ref, as ostree 2022.7 does:
    a new commit on every update (parent: the ref's last one, unchanged or not), with
    the additional metadata plus the collection and ref bindings, and an empty root
    directory owned by root, mode 0755. Its timestamp honours SOURCE_DATE_EPOCH."""
    items: list[tuple[str, Variant]] = list((additional or {}).items())
    items.append((KEY_COLLECTION_BINDING, Variant("s", collection_id)))
    items.append((KEY_REF_BINDING, Variant("as", [METADATA_REF])))
    parent = repo.resolve_rev(METADATA_REF, allow_noent=True)
    with Transaction(repo) as tx:
        meta = tx.write_metadata(ObjectType.DIR_META, DirMeta(0, 0, 0o40755).serialize())
        tree = tx.write_metadata(ObjectType.DIR_TREE, DirTree().serialize())
        checksum = write_commit(
            tx, tree=tree, meta=meta, parent=parent, metadata=_dict_in_glib_order(items)
        )
        tx.set_ref(METADATA_REF, checksum)
    return checksum


def collection_map(summary: Summary) -> dict[str, list[SummaryRef]]:
    """The summary's other collections and their refs (empty if it has none, or one of
    another type)."""
    value = summary.metadata.get(KEY_COLLECTION_MAP)
    if value is None or value.signature != COLLECTION_MAP_TYPE:
        return {}
    out: dict[str, list[SummaryRef]] = {}
    for cid, refs in value.value.items():
        out[cid] = [
            SummaryRef(name, size, bytes(csum).hex(), meta)
            for name, (size, csum, meta) in refs
            if len(csum) == 32
        ]
    return out


def read_summary(repo: Repo) -> Summary:
    data = read_summary_bytes(repo)
    try:
        return Summary.parse(data)
    except FormatError as e:
        raise FormatError(f"{repo.path}/summary: {e}") from None


def read_summary_bytes(repo: Repo) -> bytes:
    try:
        fd = os.open("summary", os.O_RDONLY | os.O_CLOEXEC, dir_fd=repo.dfd)
    except FileNotFoundError:
        raise NotFoundError(
            f"No summary file in repository {repo.path}", hint="generate one with 'summary -u'"
        ) from None
    with os.fdopen(fd, "rb") as f:
        return f.read()


# ---------------------------------------------------------------- viewing


def format_timestamp(be_value: int) -> str:
    ts = bswap64(be_value)
    if ts > _MAX_TIMESTAMP:
        return "invalid"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00")
