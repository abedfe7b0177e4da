"""Detached metadata: the `a{sv}` next to a commit (`.commitmeta`) or a summary
(`summary.sig`) that carries its signatures.

Signatures are `aay` values under one key per engine, appended on each signing. ostree
edits the dictionary through a GVariantDict, so the rewritten `a{sv}` comes out in
GLib hash-table order; we reproduce that so the bytes match ostree's.
"""

from __future__ import annotations

import os

from sysroot.errors import CorruptObjectError, FormatError, NotFoundError
from sysroot.formats import gvariant
from sysroot.formats.gvariant import Variant
from sysroot.formats.objects import ObjectType
from sysroot.store.repo import Repo
from sysroot.store.summary import hash_table_order
from sysroot.util import fsutil

KEY_GPG = "ostree.gpgsigs"
KEY_ED25519 = "ostree.sign.ed25519"

Metadata = dict[str, Variant]


def parse(data: bytes | None, what: str) -> Metadata:
    """Decode detached metadata; None (no file) is an empty dictionary."""
    if not data:
        return {}
    try:
        return dict(gvariant.decode("a{sv}", data))
    except FormatError as e:
        raise FormatError(f"{what}: invalid detached metadata: {e}") from None


def serialize(meta: Metadata) -> bytes:
    return gvariant.encode("a{sv}", meta)


def signatures(meta: Metadata, key: str) -> list[bytes]:
    """The signatures stored under key (an empty list when there are none)."""
    value = meta.get(key)
    if value is None or value.signature != "aay":
        return []  # g_variant_lookup_value with a type ignores a mistyped entry
    return [bytes(s) for s in value.value]


def with_signatures(meta: Metadata, key: str, sigs: list[bytes]) -> Metadata:
    """meta with key's signatures replaced by sigs (GVariantDict insert semantics)."""
    values = dict(meta)
    values[key] = Variant("aay", list(sigs))
    return {k: values[k] for k in hash_table_order(list(meta) + [key])}


def append_signature(meta: Metadata, key: str, sig: bytes) -> Metadata:
    return with_signatures(meta, key, signatures(meta, key) + [sig])


def read_commitmeta(repo: Repo, checksum: str) -> bytes | None:
    """The raw `.commitmeta` bytes of a commit, or None if it has none."""
    try:
        return repo.read_metadata(ObjectType.COMMIT_META, checksum)
    except NotFoundError:
        return None


def load_commitmeta(repo: Repo, checksum: str) -> Metadata:
    try:
        return parse(read_commitmeta(repo, checksum), f"commit {checksum}")
    except FormatError as e:
        raise CorruptObjectError(checksum, "commitmeta", str(e)) from None


def write_commitmeta(repo: Repo, checksum: str, meta: Metadata) -> None:
    """Replace a commit's detached metadata atomically (it is not content-addressed)."""
    path = repo.object_path(checksum, ObjectType.COMMIT_META)
    with repo.lock(exclusive=False):
        fsutil.atomic_write(path, serialize(meta), mode=0o644, fsync=repo.fsync_enabled)


def read_summary_sig(repo: Repo) -> bytes | None:
    try:
        with open(os.path.join(repo.path, "summary.sig"), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def write_summary_sig(repo: Repo, meta: Metadata) -> None:
    fsutil.atomic_write(
        os.path.join(repo.path, "summary.sig"),
        serialize(meta),
        mode=0o644,
        fsync=repo.fsync_enabled,
    )
