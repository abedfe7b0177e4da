"""A fast decoder of dirtree objects, `(a(say)a(sayay))`, for the checkout's hot loop.

Checking out is dominated by dirtree parsing once files are hardlinks, and the
generic GVariant decoder spends most of its time being generic. `parse_fast`
handles well-formed input only: on anything unexpected it returns None and the
caller falls back to `DirTree.parse`, which then reports the error (or decodes
the odd-but-valid form).
"""

from __future__ import annotations

from sysroot.formats.objects import DirTree

# (name, checksum) or (name, dirtree checksum, dirmeta checksum)
_Entry = tuple[str, ...]


def _width(size: int) -> int:
    """The width of a GVariant framing offset in a container of size bytes."""
    return 1 if size <= 0xFF else 2 if size <= 0xFFFF else 4 if size <= 0xFFFFFFFF else 8


def parse_fast(data: bytes) -> DirTree | None:
    """The dirtree in data, or None when this decoder is not sure (see the module)."""
    n = len(data)
    if n == 0:
        return None
    w = _width(n)
    split = int.from_bytes(data[n - w :], "little")
    if split > n - w:
        return None
    files = _array(data, 0, split, 1)
    dirs = _array(data, split, n - w, 2)
    if files is None or dirs is None:
        return None
    # _array made each entry with exactly 1 + nsums strings
    return DirTree(tuple(files), tuple(dirs))  # type: ignore[arg-type]


def _array(data: bytes, start: int, end: int, nsums: int) -> list[_Entry] | None:
    """Elements (name, checksum, ...) of an array of (s, ay * nsums) structs."""
    size = end - start
    if size == 0:
        return []
    w = _width(size)
    frombytes = int.from_bytes
    table = start + frombytes(data[end - w : end], "little")
    if table > end or (end - table) % w or table == end:
        return None
    out: list[_Entry] = []
    append = out.append
    pos = start
    sum_ends: tuple[int, ...]
    for t in range(table, end, w):
        elem_end = start + frombytes(data[t : t + w], "little")
        esize = elem_end - pos
        if esize <= 0 or elem_end > table:
            return None
        ew = 1 if esize <= 0xFF else _width(esize)
        # the member framing offsets sit at the element's end, the name's last
        name_end = pos + frombytes(data[elem_end - ew : elem_end], "little")
        if nsums == 1:
            sum_ends = (elem_end - ew,)
        else:
            mid = pos + frombytes(data[elem_end - 2 * ew : elem_end - ew], "little")
            sum_ends = (mid, elem_end - 2 * ew)
        if not pos < name_end <= elem_end or data[name_end - 1] != 0:
            return None
        raw = data[pos : name_end - 1]
        if b"\0" in raw:
            return None
        try:
            entry = [raw.decode("utf-8")]
        except UnicodeDecodeError:
            return None
        a = name_end
        for b in sum_ends:
            if b - a != 32:
                return None
            entry.append(data[a:b].hex())
            a = b
        append(tuple(entry))
        pos = elem_end
    return out
