"""sysroot build: a build directory of disk images per commit (sysroot/install/builds.py).

sysroot build create REF [--repo PATH] [--builds DIR] [--bootloader KIND] [--karg K]...
    [--version V] [--name NAME] [--force]
                    DIR/builds/V/: metal (512-byte sectors), metal4k and qemu images of
                    REF's commit and meta.json; builds.json and latest updated. Nothing
                    is done for a commit built already under V, unless --force.
sysroot build prune --keep N [--builds DIR] [--repo PATH]
                    only the newest N builds are kept; with a repository, the commits
                    of the removed ones are pruned from it (refs and kept builds stay).
sysroot build osmet [--builds DIR] [--version V] [--fast]
                    the build's metal and metal4k images packed into osmet files
                    (sysroot/osmet/builds.py), recorded in meta.json.
sysroot build dehydrate [--builds DIR] [--version V]
                    the raw images and the qcow2 deleted (the osmet files stay).
sysroot build rehydrate --repo PATH [--builds DIR] [--version V]
                    the deleted images made again from the osmet files and the
                    repository, each checked against meta.json's SHA-256.
"""

from __future__ import annotations

import argparse
import os

from sysroot import __version__
from sysroot.boot.backends import BootloaderKind
from sysroot.cli.common import add_disk_options
from sysroot.cli.main import add_repo_option
from sysroot.errors import UsageError
from sysroot.install.builds import BuildOptions, Outcome, build, prune_builds
from sysroot.install.todisk import DEFAULT_STATEROOT
from sysroot.osmet.builds import add_osmet, dehydrate, rehydrate
from sysroot.util.mounts import enter_private_mount_namespace


def register(sub) -> argparse._SubParsersAction:
    p = sub.add_parser("build", help="Build disk images of a commit into a build directory")
    bsub = p.add_subparsers(dest="build_command", metavar="COMMAND", parser_class=type(p))
    c = bsub.add_parser("create", help="Build REF's disk images")
    c.add_argument("ref", metavar="REF", help="A ref or commit checksum in the repository")
    add_repo_option(c)
    c.add_argument("--builds", default=".", metavar="DIR", help="Build directory (default: .)")
    add_disk_options(c)
    c.add_argument(
        "--version",
        dest="build_version",  # not the global --version
        metavar="V",
        help="Build id (default: the commit's version, else its checksum)",
    )
    c.add_argument(
        "--name", default=DEFAULT_STATEROOT, metavar="NAME", help="Stateroot and file name"
    )
    c.add_argument("--force", action="store_true", help="Build even if built already")
    c.set_defaults(func=run_create)
    pr = bsub.add_parser("prune", help="Remove all but the newest builds")
    pr.add_argument(
        "--keep", type=int, required=True, metavar="N", help="How many of the newest builds to keep"
    )
    pr.add_argument("--builds", default=".", metavar="DIR", help="Build directory (default: .)")
    add_repo_option(pr)
    pr.set_defaults(func=run_prune)
    o = bsub.add_parser("osmet", help="Pack a build's raw images into osmet files")
    _build_options(o)
    o.add_argument("--fast", action="store_true", help="xz preset 0 instead of 9")
    o.set_defaults(func=run_osmet)
    d = bsub.add_parser("dehydrate", help="Delete the images the osmet files recreate")
    _build_options(d)
    d.set_defaults(func=run_dehydrate)
    r = bsub.add_parser("rehydrate", help="Make deleted images again from the osmet files")
    _build_options(r)
    add_repo_option(r)
    r.set_defaults(func=run_rehydrate)
    return bsub


def _build_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--builds", default=".", metavar="DIR", help="Build directory")
    parser.add_argument(
        "--version",
        dest="build_version",  # not the global --version
        metavar="V",
        help="The build (default: the latest)",
    )


def _repo(args, *, required: bool) -> str | None:
    repo = getattr(args, "repo", None) or os.environ.get("OSTREE_REPO")
    if repo is None and required:
        raise UsageError("no repository: pass --repo=PATH or set $OSTREE_REPO")
    return repo


def run_create(args) -> int:
    repo = _repo(args, required=True)
    assert repo is not None
    # the staging bind mount is this process's alone, and goes with it however it ends
    enter_private_mount_namespace()
    result = build(
        BuildOptions(
            repo=repo,
            rev=args.ref,
            builds_dir=args.builds,
            bootloader=BootloaderKind(args.bootloader),
            kargs=tuple(args.karg),
            version=args.build_version,
            name=args.name,
            force=args.force,
        )
    )
    if result.outcome is Outcome.UNCHANGED:
        print(f"Build {result.version} of {result.commit} exists; nothing to do (--force)")
    else:
        print(f"Built {result.version} ({result.commit}) in {result.path}")
    return 0


def run_prune(args) -> int:
    result = prune_builds(args.builds, args.keep, _repo(args, required=False))
    for bid in result.removed:
        print(f"Removed build {bid}")
    if not result.removed:
        print(f"No build to remove ({len(result.kept)} kept)")
    if result.repo is not None:
        for line in result.repo.summary():
            print(line)
    return 0


def run_osmet(args) -> int:
    enter_private_mount_namespace()  # the images' partitions are mounted for packing
    kinds = add_osmet(
        args.builds, args.build_version, fast=args.fast, app_version=f"sysroot {__version__}"
    )
    print(f"Packed {', '.join(kinds)}")
    return 0


def run_dehydrate(args) -> int:
    removed = dehydrate(args.builds, args.build_version)
    print(f"Removed {', '.join(removed)}" if removed else "Nothing to remove")
    return 0


def run_rehydrate(args) -> int:
    repo = _repo(args, required=True)
    assert repo is not None
    made = rehydrate(args.builds, args.build_version, repo)
    print(f"Made {', '.join(made)}" if made else "Nothing missing")
    return 0
