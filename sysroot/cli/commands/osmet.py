"""sysroot osmet: coreos-installer's osmet files (sysroot/formats/osmet.py).

sysroot osmet info FILE [--json]
                    the header, the image's size and SHA-256, per partition its byte
                    range, mapping count and mapped bytes, and the length of the xz
                    stream (not decompressed); --json: the same as one JSON object.
sysroot osmet pack --output FILE [--checksum SHA256] [--description TEXT] [--fast]
    IMAGE|DEVICE    pack a metal image (file or whole disk) against its own repository;
                    the file is verified by unpacking it before it gets its name.
sysroot osmet unpack (--osmet FILE | --osmet-dir DIR) [--repo PATH] [--architecture A]
    [--sector-size N] TARGET
                    the image again from the file and a repository (default /ostree/repo,
                    the booted system's), onto a whole disk (its first MiB withheld until
                    the SHA-256 is verified) or into a new image file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from sysroot import __version__
from sysroot.errors import UsageError
from sysroot.formats import osmet
from sysroot.osmet.select import find_osmet
from sysroot.osmet.target import Progress, unpack_to_disk, unpack_to_file
from sysroot.util import blockdev
from sysroot.util.mounts import enter_private_mount_namespace
from sysroot.util.units import format_size

DEFAULT_REPO = "/ostree/repo"  # a booted system's (/ostree -> sysroot/ostree)


def register(sub) -> argparse._SubParsersAction:
    p = sub.add_parser("osmet", help="Read and write osmet files (packed disk images)")
    # a group of verbs: pack and unpack join info here
    osub = p.add_subparsers(dest="osmet_command", metavar="COMMAND", parser_class=type(p))
    i = osub.add_parser("info", help="Describe an osmet file")
    i.add_argument("file", metavar="FILE", help="The osmet file")
    i.add_argument("--json", action="store_true", help="Print one JSON object")
    i.set_defaults(func=run_info)
    p = osub.add_parser("pack", help="Pack a metal image against its own repository")
    p.add_argument("source", metavar="IMAGE|DEVICE", help="A metal image file or a whole disk")
    p.add_argument("--output", required=True, metavar="FILE", help="The osmet file to write")
    p.add_argument("--checksum", metavar="SHA256", help="Refuse an image with another SHA-256")
    p.add_argument("--description", metavar="TEXT", help="Default: the OS's PRETTY_NAME")
    p.add_argument("--fast", action="store_true", help="xz preset 0 instead of 9")
    p.set_defaults(func=run_pack)
    u = osub.add_parser("unpack", help="Write the image again from an osmet file and a repo")
    u.add_argument("target", metavar="TARGET", help="A whole disk, or a new image file")
    source = u.add_mutually_exclusive_group(required=True)
    source.add_argument("--osmet", metavar="FILE", help="The osmet file")
    source.add_argument(
        "--osmet-dir",
        metavar="DIR",
        help="Take the first *.osmet file here for the architecture and sector size",
    )
    u.add_argument("--repo", default=DEFAULT_REPO, metavar="PATH", help=f"Default: {DEFAULT_REPO}")
    u.add_argument(
        "--architecture",
        default=platform.machine(),
        metavar="ARCH",
        help="With --osmet-dir: the architecture to pick (default: this machine's)",
    )
    u.add_argument(
        "--sector-size",
        type=int,
        choices=(512, 4096),
        help="With --osmet-dir and an image file: the sectors to choose for (default 512)",
    )
    u.set_defaults(func=run_unpack)
    return osub


def describe(path: str) -> dict:
    """What `info` prints, read from the file; a malformed file raises
    OsmetFormatError naming the file."""
    with open(path, "rb") as f:
        try:
            header, body = osmet.read(f)
            xz_start = f.tell()
            if f.read(len(osmet.XZ_MAGIC)) != osmet.XZ_MAGIC:
                raise osmet.OsmetFormatError(f"no xz stream at byte {xz_start}, after the body")
        except osmet.OsmetFormatError as e:
            raise osmet.OsmetFormatError(f"{path}: {e}") from e
        xz_length = os.fstat(f.fileno()).st_size - xz_start
    return {
        "file": path,
        "version": header.version,
        "app_version": header.app_version,
        "sector_size": header.sector_size,
        "os_description": header.os_description,
        "os_architecture": header.os_architecture,
        "size": body.size,
        "sha256": body.checksum.hex(),
        "partitions": [
            {
                "start_offset": p.start_offset,
                "end_offset": p.end_offset,
                "mappings": len(p.mappings),
                "mapped_bytes": p.mapped_bytes,
            }
            for p in body.partitions
        ],
        "xz_length": xz_length,
    }


def info_text(info: dict) -> str:
    lines = [
        f"File:            {info['file']}",
        f"Version:         {info['version']}",
        f"App version:     {info['app_version']}",
        f"Sector size:     {info['sector_size']}",
        f"OS description:  {info['os_description']}",
        f"OS architecture: {info['os_architecture']}",
        f"Image size:      {info['size']}",
        f"Image SHA-256:   {info['sha256']}",
        f"Partitions:      {len(info['partitions'])}",
    ]
    for n, p in enumerate(info["partitions"]):
        lines.append(
            f"  {n}: bytes [{p['start_offset']}, {p['end_offset']})"
            f" ({p['end_offset'] - p['start_offset']} bytes),"
            f" {p['mappings']} mappings, {p['mapped_bytes']} bytes mapped"
        )
    lines.append(f"xz stream:       {info['xz_length']} bytes")
    return "".join(line + "\n" for line in lines)


def run_info(args) -> int:
    info = describe(args.file)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(info_text(info), end="")
    return 0


def run_pack(args) -> int:
    # loaded here: packing needs the install and boot code, unpacking does not
    from sysroot.osmet.pack import PackOptions, pack

    # the partitions are mounted in this process's own namespace: nobody else sees them
    enter_private_mount_namespace()
    result = pack(
        PackOptions(
            args.source,
            args.output,
            description=args.description,
            checksum=args.checksum.lower() if args.checksum else None,
            fast=args.fast,
            app_version=f"sysroot {__version__}",
        )
    )
    s = result.stats
    print(
        f"Packed {args.source} ({format_size(result.body.size)}, sha256"
        f" {result.body.checksum.hex()}) into {args.output}: {format_size(result.file_size)};"
        f" {s.mapped_objects} of {s.objects} objects mapped ({s.empty_objects} empty),"
        f" {s.boot_matched} of {s.boot_files} /boot files matched, {s.extents} extents,"
        f" {format_size(result.mapped_bytes)} left to the repository"
    )
    return 0


def _bar() -> Progress:
    """A progress line with throughput, redrawn at most 4 times a second."""
    start = last = time.monotonic()

    def show(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < 0.25 and done < total:
            return
        last = now
        rate = done / max(now - start, 1e-6)
        width = 30
        filled = width * done // max(total, 1)
        print(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {format_size(done)}"
            f" / {format_size(total)}  {format_size(int(rate))}/s ",
            end="\n" if done >= total else "",
            file=sys.stderr,
            flush=True,
        )

    return show


def run_unpack(args) -> int:
    is_disk = blockdev.is_block_device(args.target)
    if args.osmet_dir:
        if is_disk:
            if args.sector_size:
                raise UsageError("--sector-size is for image files: a disk has its own")
            fd = os.open(args.target, os.O_RDONLY | os.O_CLOEXEC)
            try:
                sector = blockdev.logical_sector_size(fd)
            finally:
                os.close(fd)
        else:
            sector = args.sector_size or 512
        path, _header = find_osmet(args.osmet_dir, args.architecture, sector)
    else:
        if args.sector_size:
            raise UsageError("--sector-size goes with --osmet-dir")
        path = args.osmet
    progress = _bar() if sys.stderr.isatty() else None
    if is_disk:
        result = unpack_to_disk(path, args.repo, args.target, progress)
    else:
        result = unpack_to_file(path, args.repo, args.target, progress)
    h = result.header
    print(
        f"Wrote {h.os_description or 'the image'} {h.os_architecture}"
        f" ({h.sector_size}-byte sectors, {format_size(result.body.size)}, sha256"
        f" {result.body.checksum.hex()}) from {path} to {args.target}"
    )
    return 0
