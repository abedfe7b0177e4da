"""sysroot install: put a commit onto a whole disk (sysroot/install/ does the work).

sysroot install to-disk DEVICE (--source-repo PATH | --source-url URL [--remote NAME]
    [--set KEY=VALUE]... [--no-gpg-verify] [--gpg-import FILE]...) --ref REF
    [--bootloader KIND] [--karg K]... [--stateroot NAME] [--wipe] [--root-size SIZE]
    [--sector-size N]
                    DEVICE: a whole disk, or an image file (attached as a loop device
                    with N-byte sectors and partition scanning, detached afterwards).
                    A disk with a partition table is refused unless --wipe.
                    From a URL, the remote is kept in the installed repository and
                    the deployment tracks NAME:REF (its signatures checked first).
                    On a terminal, a line per phase goes to stderr.
sysroot install list-disks [--json]
                    the whole disks an install could go to
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import replace

from sysroot.boot.backends import BootloaderKind
from sysroot.cli.common import add_disk_options
from sysroot.errors import UsageError
from sysroot.install.attach import SECTOR_SIZES, attached_image
from sysroot.install.disks import list_disks
from sysroot.install.todisk import (
    DEFAULT_STATEROOT,
    InstallOptions,
    RemoteSource,
    install_to_disk,
)
from sysroot.util.mounts import enter_private_mount_namespace
from sysroot.util.units import format_size

_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def register(sub) -> argparse._SubParsersAction:
    p = sub.add_parser("install", help="Install a commit onto a disk, or the system files")
    isub = p.add_subparsers(dest="install_command", metavar="COMMAND", parser_class=type(p))
    t = isub.add_parser("to-disk", help="Partition DEVICE and install REF from a local repo")
    t.add_argument("device", metavar="DEVICE", help="A whole disk, or a disk image file")
    source = t.add_mutually_exclusive_group(required=True)
    source.add_argument("--source-repo", metavar="PATH", help="A local repository holding REF")
    source.add_argument(
        "--source-url",
        metavar="URL",
        help="Pull REF from this remote; the installed system keeps it as --remote",
    )
    t.add_argument("--remote", default="origin", metavar="NAME", help="With --source-url")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="With --source-url: an option of the remote, as `remote add --set`",
    )
    t.add_argument(
        "--no-gpg-verify", action="store_true", help="With --source-url: gpg-verify=false"
    )
    t.add_argument(
        "--gpg-import",
        action="append",
        default=[],
        metavar="FILE",
        help="With --source-url: trust the keys in FILE for the remote",
    )
    t.add_argument("--ref", required=True, metavar="REF", help="The ref or commit to install")
    add_disk_options(t)
    t.add_argument(
        "--stateroot",
        default=DEFAULT_STATEROOT,
        metavar="NAME",
        help=f"Stateroot of the deployment (default: {DEFAULT_STATEROOT})",
    )
    t.add_argument("--wipe", action="store_true", help="Overwrite an existing partition table")
    t.add_argument("--root-size", metavar="SIZE", help="Root partition size (e.g. 8G)")
    t.add_argument(
        "--sector-size", type=int, choices=SECTOR_SIZES, help="Logical sector size (image files)"
    )
    t.set_defaults(func=run_to_disk)
    sf = isub.add_parser(
        "system-files",
        help="Install the systemd units, journal catalog and dracut module onto a system",
    )
    sf.add_argument(
        "--root", default="/", metavar="DIR", help="The system's root directory (default: /)"
    )
    sf.add_argument(
        "--entry-point",
        metavar="PATH",
        help="The sysroot program the units run, as seen from the root (default: this one)",
    )
    sf.set_defaults(func=run_system_files)
    ls = isub.add_parser("list-disks", help="List the whole disks")
    ls.add_argument("--json", action="store_true", help="Print the disks as JSON")
    ls.set_defaults(func=run_list_disks)
    return isub


def parse_size(text: str) -> int:
    """A size in bytes from "512M", "8G", "8GiB", "1048576"."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise UsageError(f"invalid size {text!r}: expected a number with K, M, G or T")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]


def _is_image_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such disk or image file") from None


def run_to_disk(args) -> int:
    # the install's mounts are this process's alone, and go with it however it ends
    enter_private_mount_namespace()
    options = InstallOptions(
        device=args.device,
        source_repo=args.source_repo or "",
        remote=_remote_source(args),
        progress=_terminal_progress() if sys.stderr.isatty() else None,
        ref=args.ref,
        bootloader=BootloaderKind(args.bootloader),
        kargs=tuple(args.karg),
        stateroot=args.stateroot,
        wipe=args.wipe,
        root_size=parse_size(args.root_size) if args.root_size else None,
    )
    if _is_image_file(args.device):
        with attached_image(args.device, args.sector_size or 512) as device:
            result = install_to_disk(replace(options, device=device))
    else:
        if args.sector_size:
            raise UsageError("--sector-size is only for image files")
        result = install_to_disk(options)
    d = result.deployment
    print(f"Installed {args.ref} ({d.csum}) to {args.device}: {args.bootloader}, {d.osname}")
    return 0


def _remote_source(args) -> RemoteSource | None:
    if not args.source_url:
        if args.set or args.no_gpg_verify or args.gpg_import:
            raise UsageError("--set, --no-gpg-verify and --gpg-import go with --source-url")
        return None
    options = []
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set: expected KEY=VALUE, got '{item}'")
        options.append((key, value))
    if args.no_gpg_verify:
        options.append(("gpg-verify", "false"))
    return RemoteSource(args.remote, args.source_url, tuple(options), tuple(args.gpg_import))


def _terminal_progress() -> Callable[[str], None]:
    """A line per phase, with the time the install has taken so far."""
    start = time.monotonic()

    def say(phase: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {phase}", file=sys.stderr, flush=True)

    return say


def run_list_disks(args) -> int:
    disks = list_disks()
    if args.json:
        json.dump([d.as_json() for d in disks], sys.stdout, indent=2)
        print()
        return 0
    for d in disks:
        print(
            f"{d.path}\t{format_size(d.size)}\t{d.logical_sector_size}\t{d.model or '-'}"
            f"\t{d.serial or '-'}"
        )
    return 0


def run_system_files(args) -> int:
    from sysroot.install.systemfiles import current_entry_point, install_system_files

    entry_point = args.entry_point or current_entry_point()
    if entry_point is None:
        raise UsageError("cannot tell where the sysroot program is: give --entry-point")
    install_system_files(args.root, entry_point)
    print(f"Installed units (running {entry_point}), journal catalog and dracut module")
    return 0
