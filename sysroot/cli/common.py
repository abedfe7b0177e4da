"""What several command modules share, so that no command module imports another.

Command modules import from here, from sysroot.cli.main (the entry point's helpers)
and from the library; never from each other (tests/test_lint.py checks it). Imports
beyond the standard library stay inside the functions: every command's start-up loads
this module.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sysroot.deploy.transaction import Change
    from sysroot.formats.gvariant import Variant
    from sysroot.store.summary import Summary


# ------------------------------------------------------------------ argument parsing


def allow_intermixed(parser: argparse.ArgumentParser) -> None:
    """Accept options between positional arguments, as ostree's option parser does
    (`pull-local SRC --depth=1 REF`); plain argparse stops filling positionals."""
    plain = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        parser.parse_known_args = plain  # the intermixed parser calls it twice itself
        try:
            return parser.parse_known_intermixed_args(args, namespace)
        finally:
            parser.parse_known_args = parse_known_args

    # replaced on this one parser object, on purpose: argparse has no hook for it, and
    # its subparsers are made by add_parser(), not by a subclass of ours
    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


def add_disk_options(parser: argparse.ArgumentParser) -> None:
    """--bootloader and --karg: how a disk is made bootable (install to-disk, build)."""
    from sysroot.boot.backends import BootloaderKind

    parser.add_argument(
        "--bootloader",
        choices=[BootloaderKind.SYSTEMD_BOOT.value, BootloaderKind.GRUB2.value],
        default=BootloaderKind.SYSTEMD_BOOT.value,
        help="Boot loader to install (default: systemd-boot)",
    )
    parser.add_argument(
        "--karg",
        action="append",
        default=[],
        metavar="KARG",
        help="A kernel argument for the deployment (may be repeated)",
    )


def add_sysroot_options(parser: argparse.ArgumentParser, *, os_option: bool = True) -> None:
    """`ostree admin`'s --sysroot, and --os/--stateroot unless os_option is False."""
    parser.add_argument(
        "--sysroot",
        default=os.environ.get("OSTREE_SYSROOT") or "/",  # as libostree's default sysroot
        metavar="PATH",
        help="Use the sysroot at PATH (default: $OSTREE_SYSROOT, else /)",
    )
    if os_option:
        parser.add_argument(
            "--os",
            "--stateroot",
            dest="os",
            metavar="OSNAME",
            help="Use a different operating system root than the current one",
        )


# ------------------------------------------------------------------ output


def say_change(change: Change) -> None:
    """What `ostree admin deploy/upgrade/switch/...` print after changing the boot
    configuration: the /etc merge summary, the change, the space cleanup freed."""
    if change.etc_summary:
        print(change.etc_summary)
    print(f"{change.summary}, deployment count change: {change.count_change}")
    if change.cleanup is not None and change.cleanup.freed_bytes:
        from sysroot.util.units import format_size

        print(f"Freed objects: {format_size(change.cleanup.freed_bytes)}")


def summary_view_text(s: Summary) -> str:
    """A summary as `ostree summary --view` (and `ostree remote summary`) print it."""
    from sysroot.store import summary as summ
    from sysroot.util.units import format_size

    lines = []
    collection = s.metadata.get(summ.KEY_COLLECTION_ID)
    main: str | None = None
    if collection is not None and collection.signature == "s":
        main = collection.value
    listed: list[tuple[str | None, summ.SummaryRef]] = [(main, ref) for ref in s.refs]
    # then the other collections' refs (ostree.summary.collection-map), as ostree does
    for other, refs in summ.collection_map(s).items():
        listed += [(other, ref) for ref in refs]
    for cid, ref in listed:
        lines.append(f"* {ref.name}" if cid is None else f"* ({cid}, {ref.name})")
        lines.append(f"    Latest Commit ({format_size(ref.commit_size)}):")
        lines.append(f"      {ref.checksum}")
        lines.extend(f"    {_summary_field(k, v)}" for k, v in ref.metadata.items())
        lines.append("")
    lines.extend(_summary_field(k, v) for k, v in s.metadata.items())
    return "".join(line + "\n" for line in lines)


def summary_raw_text(data: bytes) -> str:
    """A summary as `ostree summary --view --raw` prints it: the variant's text after
    a byteswap, as ostree dumps every variant (so its big-endian fields read right)."""
    from sysroot.formats import gvariant
    from sysroot.formats.gvariant_text import print_value
    from sysroot.store.summary import SUMMARY_TYPE, Summary

    Summary.parse(data)  # a malformed summary is an error, not text
    return print_value(SUMMARY_TYPE, gvariant.decode(SUMMARY_TYPE, data), byteswap=True) + "\n"


def _summary_field(key: str, v: Variant) -> str:
    """One metadata line as `ostree summary --view` words it."""
    from sysroot.formats.gvariant_text import print_value
    from sysroot.store import summary as summ

    labels = {
        summ.KEY_LAST_MODIFIED: "Last-Modified",
        summ.KEY_EXPIRES: "Expires",
        summ.KEY_COLLECTION_ID: "Collection ID",
        summ.KEY_STATIC_DELTAS: "Static Deltas",
        summ.KEY_MODE: "Repository Mode",
        summ.KEY_TOMBSTONES: "Has Tombstone Commits",
        summ.KEY_VERSION: "Version",
        summ.KEY_TIMESTAMP: "Timestamp",
    }
    if key == summ.KEY_COLLECTION_MAP:
        return f"Collection Map ({key}): (printed above)"
    label = labels.get(key)
    sig = v.signature
    if label is None:
        return f"{key}: {print_value(sig, v.value, type_annotate=False)}"
    if key in (summ.KEY_LAST_MODIFIED, summ.KEY_EXPIRES, summ.KEY_TIMESTAMP) and sig == "t":
        text = summ.format_timestamp(v.value)
    elif key == summ.KEY_TOMBSTONES and sig == "b":
        text = "Yes" if v.value else "No"
    elif sig == "s":
        text = v.value
    else:
        text = print_value(sig, v.value, type_annotate=False)
    return f"{label} ({key}): {text}"
