"""Human-readable sizes, printed as GLib's g_format_size() prints them (ostree's output)."""

from __future__ import annotations

_UNITS = (("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("PB", 1e15))


def format_size(size: int) -> str:
    """SI units, one decimal, a no-break space before the unit: `1.1\u00a0kB`."""
    if size < 1000:
        return "1 byte" if size == 1 else f"{size} bytes"
    for unit, factor in _UNITS:
        if size < factor * 1000:
            return f"{size / factor:.1f}\u00a0{unit}"
    return f"{size / 1e18:.1f}\u00a0EB"
