"""The `unit` marker: tests that need neither root nor ostree nor mounts, so that
`python -m pytest -m unit -q` runs them alone, in seconds, anywhere.

Two things keep the marker honest:
- while a unit test runs, starting one of the system tools such a test must not need
  (ostree, strace, mount, losetup, ...) fails it at once (`guard_subprocesses`, used by
  an autouse fixture of tests/conftest.py);
- tests/test_unit_marker.py runs `pytest -m unit` as the user nobody with a PATH that
  has no ostree: a unit test that needs root, or the ostree fixture, fails there.

Most unit tests carry `@pytest.mark.unit` (or a module's `pytestmark`). The modules of
tests/formats and tests/store are marked from the list below instead, by
`mark_listed` (a collection hook): others edit those files, and the list keeps their
marking in one place. A listed name that no longer exists fails the collection, so the
list cannot go stale silently.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable

import pytest

# module path -> the names (test functions, before parametrization) that are unit tests;
# "*" for every test of the module
LISTED: dict[str, str | tuple[str, ...]] = {
    "tests/formats/test_keyfile.py": "*",
    "tests/formats/test_osmet_format.py": "*",
    "tests/formats/test_gvariant.py": (
        "test_malformed_input_is_rejected",
        "test_non_normal_forms_are_detected",
        "test_random_bytes_never_crash",
        "test_multidict_keeps_duplicates_in_order",
        "test_double_is_ieee_little_endian",
    ),
    "tests/formats/test_gvariant_text.py": (
        "test_surrogate_escape_is_refused",
        "test_parse_typed",
        "test_text_round_trip",
        "test_byteswap",
        "test_format_double",
    ),
    "tests/formats/test_sizes.py": (
        "test_entry_without_type_byte_is_a_content_object",
        "test_malformed_entries_are_refused",
        "test_commit_without_sizes",
    ),
    "tests/store/test_prune.py": ("test_format_size_like_glib",),
}

# What a unit test must not start: the oracle, tracing, and anything that mounts,
# attaches or needs privileges.
FORBIDDEN = frozenset(
    {
        "ostree",
        "strace",
        "mount",
        "umount",
        "losetup",
        "unshare",
        "nsenter",
        "chattr",
        "sfdisk",
        "setpriv",
        "runuser",
        "dmsetup",
    }
)
FORBIDDEN_PREFIXES = ("mkfs", "qemu-")


def mark_listed(items: Iterable[pytest.Item], rootdir: str) -> None:
    """Add the unit marker to the LISTED tests among items."""
    seen: dict[str, set[str]] = {}
    for item in items:
        rel = os.path.relpath(str(item.path), rootdir)
        names = LISTED.get(rel)
        if names is None:
            continue
        name = getattr(item, "originalname", item.name)
        seen.setdefault(rel, set()).add(name)
        if names == "*" or name in names:
            item.add_marker(pytest.mark.unit)
    for rel, names in seen.items():
        missing = set() if LISTED[rel] == "*" else set(LISTED[rel]) - names
        if missing:
            raise pytest.UsageError(
                f"tests/helpers/unit.py lists {sorted(missing)} as unit tests of {rel}, "
                "which has no such tests"
            )


def command_name(args, executable=None) -> str:
    """The program a Popen call starts, as a bare name."""
    if executable is not None:
        program = os.fsdecode(executable)
    elif isinstance(args, (str, bytes, os.PathLike)):
        words = os.fsdecode(args).split()
        program = words[0] if words else ""
    else:
        program = os.fsdecode(list(args)[0]) if args else ""
    return os.path.basename(program)


def is_forbidden(name: str) -> bool:
    return name in FORBIDDEN or name.startswith(FORBIDDEN_PREFIXES)


def guard_subprocesses(monkeypatch: pytest.MonkeyPatch) -> None:
    """For the rest of the test, starting a FORBIDDEN program fails the test (pytest's
    Failed is no Exception: code under test cannot swallow it)."""
    original = subprocess.Popen.__init__

    def guarded(self, args, *rest, **kw):
        name = command_name(args, kw.get("executable"))
        if is_forbidden(name):
            pytest.fail(f"a unit test started {name!r}: unit tests run without it", pytrace=False)
        original(self, args, *rest, **kw)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
