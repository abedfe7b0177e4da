"""Choosing and fetching a static delta for a pull (shared/docs/static-deltas.md §5).

Discovery as ostree 2022.7: the deltas a remote offers are listed in its summary
(`ostree.static-deltas`, name -> sha256 of the superblock) or, when it says its deltas
are indexed, in `delta-indexes/XX/REST.index` for the commit wanted. A delta FROM -> TO
is used when FROM is a complete commit here (the newest such one); a delta from
scratch only when the ref has no commit here at all (then an object pull is cheaper
than a whole tree). A remote that lists nothing is asked for the superblock the
ref's local commit (or scratch) would have, unchecked, as 2022.7 does.

The superblock is fetched from the content URL, capped at 10 MiB as ostree does, and
must hash to the listed digest before it is parsed. What is done with it (the commit,
the fallback objects, the parts) is the pull's (pull.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sysroot.errors import FormatError, SysrootError
from sysroot.formats import gvariant
from sysroot.formats import static_delta as sd
from sysroot.formats.objects import ObjectType
from sysroot.pull.fetch import Fetcher
from sysroot.store.delta_index import index_relpath
from sysroot.store.repo import Repo
from sysroot.store.static_delta import SUPERBLOCK
from sysroot.store.summary import KEY_INDEXED_DELTAS, KEY_STATIC_DELTAS, Summary

# OSTREE_MAX_METADATA_SIZE: the cap 2022.7 puts on a superblock download
MAX_SUPERBLOCK_FETCH = 10 << 20


@dataclass
class DeltaTable:
    """The deltas a remote lists: name -> sha256 of its superblock (None: unlisted,
    asked for by name without a digest, ostree's legacy path)."""

    summary: dict[sd.DeltaName, bytes]
    indexed: bool

    @property
    def listed(self) -> bool:
        return bool(self.summary) or self.indexed


def _parse_table(value: object, where: str) -> dict[sd.DeltaName, bytes]:
    out: dict[sd.DeltaName, bytes] = {}
    if not isinstance(value, dict):
        raise FormatError(f"Invalid static delta table in {where}")
    for name, v in value.items():
        if not isinstance(v, gvariant.Variant) or v.signature != "ay" or len(v.value) != 32:
            raise FormatError(f"Invalid checksum for static delta {name} in {where}")
        try:
            out[sd.DeltaName.parse(name)] = bytes(v.value)
        except FormatError as e:
            raise FormatError(f"{e} in {where}") from None
    return out


def table_from(summary: Summary | None, config_indexed: bool, url: str) -> DeltaTable:
    """What the summary lists, and whether per-commit index files are to be asked for
    (the summary's `ostree.summary.indexed-deltas`, else the remote config's
    `core.indexed-deltas` when there is no summary)."""
    if summary is None:
        return DeltaTable({}, config_indexed)
    listed: dict[sd.DeltaName, bytes] = {}
    v = summary.metadata.get(KEY_STATIC_DELTAS)
    if v is not None and v.signature == "a{sv}":
        listed = _parse_table(v.value, f"{url}summary")
    flag = summary.metadata.get(KEY_INDEXED_DELTAS)
    indexed = flag is not None and flag.signature == "b" and bool(flag.value)
    return DeltaTable(listed, indexed)


def fetch_index(fetcher: Fetcher, to: str) -> dict[sd.DeltaName, bytes]:
    """The deltas delta-indexes/ lists for TO (none when the file is missing)."""
    path = index_relpath(to)
    data = fetcher.get_optional(path)
    if data is None:
        return {}
    where = f"{fetcher.base_url}{path}"
    try:
        index = gvariant.decode("a{sv}", data)
    except FormatError as e:
        raise FormatError(f"Invalid delta index {where}: {e}") from None
    v = index.get(KEY_STATIC_DELTAS)
    if v is None or v.signature != "a{sv}":
        return {}
    return _parse_table(v.value, where)


@dataclass(frozen=True)
class Choice:
    name: sd.DeltaName
    digest: bytes | None  # None: not listed, fetched on the off chance (legacy)


def complete_commit(repo: Repo, checksum: str) -> bool:
    return repo.has_object(ObjectType.COMMIT, checksum) and not repo.is_partial(checksum)


def choose(
    repo: Repo,
    table: DeltaTable,
    fetcher: Fetcher,
    to: str,
    local_from: str | None,
    pulling_ref: bool,
) -> Choice | None:
    """The delta to reach TO, or None for an object pull (2022.7's
    get_best_static_delta_start_for and the legacy path)."""
    if complete_commit(repo, to):
        return None  # unchanged: the commit scan finds nothing to fetch
    if not table.listed:
        if not pulling_ref:
            return Choice(sd.DeltaName(None, to), None)
        if local_from is not None and complete_commit(repo, local_from):
            return Choice(sd.DeltaName(local_from, to), None)
        return Choice(sd.DeltaName(None, to), None)
    candidates = dict(table.summary)
    if table.indexed:
        candidates.update(fetch_index(fetcher, to))
    best: tuple[int, sd.DeltaName] | None = None
    scratch: sd.DeltaName | None = None
    for name in candidates:
        if name.to != to:
            continue
        if name.from_ is None:
            scratch = name
            continue
        if not complete_commit(repo, name.from_):
            continue
        ts = repo.load_commit(name.from_).timestamp
        if best is None or ts > best[0]:
            best = (ts, name)
    if best is not None:
        return Choice(best[1], candidates[best[1]])
    if scratch is not None and local_from is None:
        return Choice(scratch, candidates[scratch])
    return None


def fetch_superblock(fetcher: Fetcher, choice: Choice) -> sd.Superblock | None:
    """The superblock, checked against its digest; None when the server has none."""
    path = f"{choice.name.relpath}/{SUPERBLOCK}"
    data = fetcher.get_optional(path, MAX_SUPERBLOCK_FETCH)
    if data is None:
        return None
    if choice.digest is not None and hashlib.sha256(data).digest() != choice.digest:
        raise SysrootError(f"Invalid checksum for static delta {choice.name}")
    if data.startswith(sd.SIGNED_MAGIC):
        # 2022.7's pull reads the bytes as an unsigned superblock and fails
        raise FormatError(
            f"Static delta {choice.name} has a signed superblock, which pulls cannot use "
            "(ostree 2022.7 cannot either): publish it unsigned"
        )
    try:
        sb = sd.parse_superblock(data)
    except FormatError as e:
        raise FormatError(f"Static delta {choice.name}: {e}") from None
    if sb.to != choice.name.to or sb.from_ != choice.name.from_:
        raise FormatError(f"Static delta {choice.name}: its superblock is for {sb.name}")
    for fb in sb.fallbacks:
        if fb.objtype is not ObjectType.FILE:
            raise FormatError(f"Static delta {choice.name}: Found metadata object as fallback")
    return sb


def required_error(ref: str, to: str) -> SysrootError:
    return SysrootError(f"Static deltas required, but none found for {ref} to {to}")


def no_listing_error() -> SysrootError:
    return SysrootError(
        "Fetch configured to require static deltas, but no summary deltas or delta index found"
    )
