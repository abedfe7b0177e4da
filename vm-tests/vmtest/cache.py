"""Build products cached under a key made of their inputs.

A stage is rebuilt only when its key changes: the key hashes the stage's own
recipe (a version string), its parameters and the files it is made from. A product
is built under a temporary name and renamed into place, so an interrupted build
never leaves something that looks finished.

The cache lives outside the checkout, in /var/cache/sysroot-vmtests (or
$SYSROOT_VM_CACHE): CI runs in a fresh clone each time, and the products are keyed by
content, so a clone can take what an earlier one built on the same machine. Two runs at
once on one machine take a lock per product name while they build or prune it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))  # the project checkout
DEFAULT_CACHE = "/var/cache/sysroot-vmtests"


def cache_dir() -> str:
    path = os.environ.get("SYSROOT_VM_CACHE") or DEFAULT_CACHE
    os.makedirs(path, exist_ok=True)
    return path


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """Hold the lock of product name (between processes: flock on a file beside it)."""
    with open(os.path.join(cache_dir(), f".{name}.lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def hash_inputs(*parts: str, trees: Iterable[str] = ()) -> str:
    """sha256 over the given strings and every file (name and content) under trees
    (a tree may be a single file)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() + b"\0")
    for tree in trees:
        if os.path.isfile(tree):
            with open(tree, "rb") as f:
                h.update(
                    os.path.relpath(tree, SOURCE).encode()
                    + b"\0"
                    + hashlib.sha256(f.read()).digest()
                )
            continue
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", ".cache"))
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                h.update(os.path.relpath(path, SOURCE).encode() + b"\0")
                with open(path, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:16]


def cached(name: str, key: str, build: Callable[[str], None], log) -> str:
    """Return the path of product name-key, building it at a temporary path if absent."""
    final = os.path.join(cache_dir(), f"{name}-{key}")
    if os.path.exists(final):
        log(f"cached: {name} ({key})")
        return final
    with locked(name):
        return _build(name, key, final, build, log)


def _build(name: str, key: str, final: str, build: Callable[[str], None], log) -> str:
    if os.path.exists(final):  # another run built it while this one waited
        log(f"cached: {name} ({key})")
        return final
    tmp = final + ".building"
    remove(tmp)
    log(f"building: {name} ({key})")
    started = time.monotonic()
    build(tmp)
    os.rename(tmp, final)
    log(f"built: {name} in {time.monotonic() - started:.0f} s")
    for other in os.listdir(cache_dir()):  # older versions of this product
        if (
            other.startswith(name + "-")
            and other != os.path.basename(final)
            and len(other) == len(name) + 17
        ):
            remove(os.path.join(cache_dir(), other))
    return final


def remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
