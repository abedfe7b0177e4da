"""The iteration order of a GLib 2.74 `GHashTable`, from the order keys went in.

ostree prints refs from a GHashTable, and a `GVariantDict` (the summary's and the
commit's `a{sv}` metadata) serializes in its table's order, so identical output needs
the same order, not a sorted one. `ghash_order` replays GLib's table: g_str_hash,
`hash * 11 % prime` buckets, quadratic probing, growth at 15/16 load and the in-place
rehash of resize_map().
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar, overload

_K = TypeVar("_K", bound=Hashable)

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
    8388593,
    16777213,
    33554393,
    67108859,
    134217689,
    268435399,
    536870909,
    1073741789,
    2147483647,
)


def str_hash(s: str) -> int:
    """g_str_hash(): djb2 over the UTF-8 bytes read as signed chars."""
    h = 5381
    for b in s.encode("utf-8", "surrogateescape"):
        h = (h * 33 + (b - 256 if b >= 128 else b)) & 0xFFFFFFFF
    return h


@overload
def ghash_order(keys: Iterable[str]) -> list[str]: ...
@overload
def ghash_order(keys: Iterable[_K], hash_func: Callable[[_K], int]) -> list[_K]: ...
def ghash_order(keys: Iterable[Any], hash_func: Callable[[Any], int] = str_hash) -> list[Any]:
    """The order a GLib 2.74 GHashTable iterates keys inserted in this order (keys
    hashed with hash_func, g_str_hash by default)."""
    size, mod = 8, 7
    hashes = [0] * size  # 0: unused; GLib maps real hashes below 2 to 2
    slots: list[Any] = [None] * size
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


class GHashTableModel:
    """A GLib 2.74 GHashTable of str keys with removals, for the iteration order of a
    table that lost entries (ostree reports the unmatched --statoverride and
    --skip-list paths from one): tombstones, and the resize that clears them (on
    growth past 15/16 occupied, or shrinking below 1/4 full)."""

    def __init__(self) -> None:
        self._size, self._mod = 8, 7
        self._hashes = [0] * 8  # 0: unused, 1: tombstone, >= 2: a real hash
        self._keys: list[str | None] = [None] * 8
        self._nnodes = self._noccupied = 0

    def _bucket(self, h: int) -> int:
        return ((h * 11) & 0xFFFFFFFF) % self._mod

    def _lookup(self, key: str, h: int) -> tuple[int, bool]:
        """(slot, found): the key's slot, else the first tombstone or unused slot."""
        i, step, tomb = self._bucket(h), 0, -1
        while self._hashes[i]:
            if self._hashes[i] == h and self._keys[i] == key:
                return i, True
            if self._hashes[i] == 1 and tomb < 0:
                tomb = i
            step += 1
            i = (i + step) & (self._size - 1)
        return (tomb if tomb >= 0 else i), False

    def insert(self, key: str) -> None:
        h = max(str_hash(key), 2)
        i, found = self._lookup(key, h)
        if found:
            return  # GLib keeps the first key in its slot
        was_unused = self._hashes[i] == 0
        self._hashes[i], self._keys[i] = h, key
        self._nnodes += 1
        if was_unused:
            self._noccupied += 1
            self._maybe_resize()

    def remove(self, key: str) -> bool:
        i, found = self._lookup(key, max(str_hash(key), 2))
        if not found:
            return False
        self._hashes[i], self._keys[i] = 1, None
        self._nnodes -= 1
        self._maybe_resize()
        return True

    def keys(self) -> list[str]:
        return [k for h, k in zip(self._hashes, self._keys, strict=True) if h >= 2 and k]

    def _maybe_resize(self) -> None:
        size, occupied = self._size, self._noccupied
        if (size > self._nnodes * 4 and size > 8) or size <= occupied + occupied // 16:
            self._resize()

    def _resize(self) -> None:
        old = self._size
        n, shift = int(self._nnodes * 1.333), 0
        while n:
            n, shift = n >> 1, shift + 1
        shift = max(shift, 3)
        self._size, self._mod = 1 << shift, _PRIME_MOD[shift]
        if self._size > old:
            self._hashes += [0] * (self._size - old)
            self._keys += [None] * (self._size - old)
        moved = [False] * max(old, self._size)
        hashes, keys = self._hashes, self._keys
        for j in range(old):
            if hashes[j] < 2:
                hashes[j] = 0  # tombstones go
                continue
            if moved[j]:
                continue
            nh, k = hashes[j], keys[j]
            hashes[j], keys[j] = 0, None
            while True:
                t, step = self._bucket(nh), 0
                while moved[t]:
                    step += 1
                    t = (t + step) & (self._size - 1)
                moved[t] = True
                displaced = hashes[t]
                hashes[t] = nh
                keys[t], k = k, keys[t]
                if displaced < 2:
                    break
                nh = displaced
        del hashes[self._size :], keys[self._size :]
        self._noccupied = self._nnodes
