"""The repository `summary` file, byte-compatible with `ostree summary -u` (2022.7).

Type `(a(s(taya{sv}))a{sv})`: every local ref with its commit's size, checksum and a
little metadata, then repository-wide metadata. Two details matter for identical bytes:

* the per-ref commit size is written little-endian (host order; upstream bug #1990),
  while the timestamps are big-endian like every other ostree integer;
* both `a{sv}` dictionaries come out of a GLib `GVariantDict`, i.e. in the iteration
  order of a `GHashTable` keyed by `g_str_hash`. `_hash_table_order` reproduces that
  order from the insertion sequence (checked against ostree with random key sets).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sysroot.errors import CorruptObjectError, FormatError, NotFoundError
from sysroot.formats import gvariant
from sysroot.formats.gvariant import Variant
from sysroot.formats.objects import Commit, ObjectType, bswap64
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
KEY_STATIC_DELTAS = "ostree.static-deltas"

# GDateTime's range: years 1 to 9999
_MAX_TIMESTAMP = 253402300799


# ---------------------------------------------------------------- GHashTable order

_PRIME_MOD = (
    1,
    2,
    3,
    7,
    13,
    31,
    61,
    127,
    251,
    509,
    1021,
    2039,
    4093,
    8191,
    16381,
    32749,
    65521,
    131071,
    262139,
    524287,
    1048573,
    2097143,
    4194301,
)


def _g_str_hash(key: str) -> int:
    """GLib's g_str_hash (djb2 over signed chars, 32-bit)."""
    h = 5381
    for c in key.encode("utf-8"):
        h = (h * 33 + (c - 256 if c > 127 else c)) & 0xFFFFFFFF
    return h


class _HashOrder:
    """Just enough of GLib 2.74's GHashTable (open addressing with quadratic probing,
    grow at 15/16 occupancy) to know the order in which an iterator visits keys."""

    def __init__(self) -> None:
        self._set_shift(3)
        self.hashes = [0] * self.size
        self.keys: list[str | None] = [None] * self.size
        self.nnodes = 0

    def _set_shift(self, shift: int) -> None:
        self.size = 1 << shift
        self.mod = _PRIME_MOD[shift]
        self.mask = self.size - 1

    def _index(self, h: int) -> int:
        return ((h * 11) & 0xFFFFFFFF) % self.mod

    def insert(self, key: str) -> None:
        h = max(_g_str_hash(key), 2)  # 0 and 1 mark empty and deleted buckets
        i, step = self._index(h), 0
        while self.hashes[i]:
            if self.hashes[i] == h and self.keys[i] == key:
                return  # replacing a value keeps the bucket
            step += 1
            i = (i + step) & self.mask
        self.hashes[i], self.keys[i] = h, key
        self.nnodes += 1
        # nothing is ever removed, so occupied buckets == nodes
        if self.size <= self.nnodes + self.nnodes // 16:
            self._grow()

    def _grow(self) -> None:
        old = self.size
        n, shift = int(self.nnodes * 1.333), 0
        while n:
            n >>= 1
            shift += 1
        self._set_shift(max(shift, 3))
        self.hashes += [0] * (self.size - old)
        self.keys += [None] * (self.size - old)
        placed = [False] * self.size
        # in-place rehash: each entry is moved to its new bucket, evicting whatever
        # sat there, exactly as GLib's resize_map() does
        for i in range(old):
            h = self.hashes[i]
            if h < 2 or placed[i]:
                continue
            key = self.keys[i]
            self.hashes[i], self.keys[i] = 0, None
            while True:
                j, step = self._index(h), 0
                while placed[j]:
                    step += 1
                    j = (j + step) & self.mask
                placed[j] = True
                h, self.hashes[j] = self.hashes[j], h
                key, self.keys[j] = self.keys[j], key
                if h < 2:
                    break

    def order(self) -> list[str]:
        return [k for h, k in zip(self.hashes, self.keys, strict=True) if h >= 2]


def hash_table_order(keys: Iterable[str]) -> list[str]:
    """The order a GVariantDict built by inserting keys (in this order) serializes in."""
    table = _HashOrder()
    for k in keys:
        table.insert(k)
    return table.order()


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
        refs = [(r.name, (r.commit_size, bytes.fromhex(r.checksum), r.metadata)) for r in self.refs]
        return gvariant.encode(SUMMARY_TYPE, (refs, self.metadata))


def _ref_entry(repo, name: str, checksum: str) -> SummaryRef:
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


def _mbase64_to_hex(text: str) -> str | None:
    try:
        raw = base64.b64decode(text.replace("_", "/") + "=", validate=True)
    except ValueError:
        return None
    return raw.hex() if len(raw) == 32 else None


def list_static_deltas(repo) -> list[tuple[str, str]]:
    """(delta name, sha256 of its superblock) in directory order, as ostree lists them."""
    out = []
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
            names = [_mbase64_to_hex(p) for p in parts]
            if len(parts) > 2 or None in names or not os.path.isfile(superblock):
                continue
            with open(superblock, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").digest()
            out.append(("-".join(names), digest))
    return out


def build_summary(
    repo, additional: Mapping[str, Variant] | None = None, *, now: int | None = None
) -> Summary:
    """The summary ostree would write for repo now (refs/heads only, sorted)."""
    refs = [
        _ref_entry(repo, name, csum) for name, csum in repo.list_refs(include_remotes=False).items()
    ]
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
    collection_id = repo.config.get("core", "collection-id")
    if collection_id:
        items.append((KEY_COLLECTION_ID, Variant("s", collection_id)))
    return Summary(refs, _dict_in_glib_order(items))


def regenerate_summary(
    repo, additional: Mapping[str, Variant] | None = None, *, now: int | None = None
) -> Summary:
    """Write `summary` atomically (and drop a now stale `summary.sig`), like ostree."""
    with repo.lock(exclusive=True):
        summary = build_summary(repo, additional, now=now)
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


def read_summary(repo) -> Summary:
    try:
        fd = os.open("summary", os.O_RDONLY | os.O_CLOEXEC, dir_fd=repo.dfd)
    except FileNotFoundError:
        raise NotFoundError(
            f"No summary file in repository {repo.path}", hint="generate one with 'summary -u'"
        ) from None
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    try:
        return Summary.parse(data)
    except FormatError as e:
        raise FormatError(f"{repo.path}/summary: {e}") from None


# ---------------------------------------------------------------- viewing


def format_timestamp(be_value: int) -> str:
    ts = bswap64(be_value)
    if ts > _MAX_TIMESTAMP:
        return "invalid"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00")
