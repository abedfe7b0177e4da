"""sysroot osmet: coreos-installer's osmet files (sysroot/formats/osmet.py).

sysroot osmet info FILE [--json]
                    the header, the image's size and SHA-256, per partition its byte
                    range, mapping count and mapped bytes, and the length of the xz
                    stream (not decompressed); --json: the same as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os

from sysroot.formats import osmet


def register(sub) -> argparse._SubParsersAction:
    p = sub.add_parser("osmet", help="Read and write osmet files (packed disk images)")
    # a group of verbs: pack and unpack join info here
    osub = p.add_subparsers(dest="osmet_command", metavar="COMMAND", parser_class=type(p))
    i = osub.add_parser("info", help="Describe an osmet file")
    i.add_argument("file", metavar="FILE", help="The osmet file")
    i.add_argument("--json", action="store_true", help="Print one JSON object")
    i.set_defaults(func=run_info)
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
