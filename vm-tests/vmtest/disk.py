"""Stage 3: a disk per boot-loader back end, made by `sysroot install to-disk`.

The product's installer partitions the image file, makes the file systems, deploys
commit 1 and puts the boot loader from Debian's packages on the ESP: one code path for
users and tests (sysroot/install/). What is the harness's own is around it:

- the test commits, in a bare build repository: commit 1 (the tree with sysroot as a
  layer on top), commit 2 on testos/next (a changed default and file);
- the kernel arguments the scenarios read (the serial console, quiet boots);
- after the install, on the root file system (attached by offset, as hostcheck.py
  does): testos/next pulled into the sysroot's repository for the upgrade scenarios,
  `sysroot.boot-counting-tries 3` (an installed system turning boot counting on after
  its first deploy), and no boot menu delay (GRUB's custom.cfg on the ext4 /boot;
  systemd-boot's loader.conf on the ESP, rewritten with mtools: the host's kernel need
  not have vfat).

Beside each disk: `update-repo`, an archive repository with commit 3 on testos/stable
(commit 1 plus a changed default and file), signed with ed25519, that the upgrade
scenario serves over HTTP to the guest.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
from dataclasses import dataclass

from sysroot.util.run import run
from vmtest.cache import HERE, SOURCE, cached, hash_inputs
from vmtest.imagefile import Partition, loop_device, parse_partitions
from vmtest.ostree_tree import sysroot_layer

RECIPE = "disk-install-1"  # the disk is made by `sysroot install to-disk`
OS = "testos"
DISK_MIB = 4096
# after the root=UUID=... rw that the installer puts first
KARGS = [
    "console=ttyS0,115200",
    "systemd.firstboot=off",
    "loglevel=4",
    "systemd.show_status=true",
]
COUNTING_TRIES = 3  # greenboot's default GREENBOOT_MAX_BOOT_ATTEMPTS
MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1"}


@dataclass(frozen=True)
class BaseDisk:
    backend: str
    image: str
    commit1: str
    commit2: str
    commit3: str = ""  # on testos/stable in update_repo
    update_repo: str = ""
    update_key: str = ""  # base64 ed25519 public key that signed commit 3


def host_python() -> str:
    """The checkout's virtual environment (.ci/run makes it: it has sysroot's
    dependencies, pyudev for `install to-disk` among them), else this Python."""
    venv = os.path.join(SOURCE, ".venv/bin/python")
    return venv if os.path.exists(venv) else sys.executable


def sysroot_cli(*args: str):
    """Our CLI from this checkout, as the host runs it."""
    env = {"PYTHONPATH": SOURCE, "PYTHONDONTWRITEBYTECODE": "1"}
    return run([host_python(), "-m", "sysroot", *args], env=env)


def install_argv(image: str, repo: str, backend: str) -> list[str]:
    """The `sysroot install to-disk` call that makes backend's disk from repo."""
    return [
        "install",
        "to-disk",
        image,
        f"--source-repo={repo}",
        f"--ref={OS}/stable",
        f"--bootloader={backend}",
        f"--stateroot={OS}",
        *[f"--karg={k}" for k in KARGS],
    ]


def write_overlay(path: str, files: dict[str, str]) -> str:
    for rel, text in files.items():
        os.makedirs(os.path.join(path, os.path.dirname(rel)), exist_ok=True)
        with open(os.path.join(path, rel), "w") as f:
            f.write(text)
    return path


def make_update_repo(path: str, repo: str, c1: str, work: str) -> tuple[str, str]:
    """An archive repository as a build server would publish it: testos/stable moved
    on to commit 3, signed, a static delta from commit 1 to it, with a summary. Returns
    (commit 3, base64 public key)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes_raw()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    secret_b64 = base64.b64encode(seed + public).decode()  # ostree's 64-byte secret key
    sysroot_cli(f"--repo={path}", "init", "--mode=archive")
    sysroot_cli(f"--repo={path}", "pull-local", repo, f"{OS}/stable")
    overlay = write_overlay(
        os.path.join(work, "overlay3"),
        {"usr/etc/vmtest/defaults.conf": "value=3\n", "usr/share/vmtest/release": "3\n"},
    )
    c3 = (
        sysroot_cli(
            f"--repo={path}",
            "commit",
            "-b",
            f"{OS}/stable",
            "--add-metadata-string=version=3",
            "-s",
            "commit 3",
            f"--tree=ref={OS}/stable",
            f"--tree=dir={overlay}",
        )
        .stdout.decode()
        .strip()
    )
    keys = os.path.join(work, "secret.ed25519")
    with open(keys, "w") as f:
        f.write(secret_b64 + "\n")
    sysroot_cli(f"--repo={path}", "sign", f"--keys-file={keys}", c3)
    # and the update as a static delta from commit 1, the one the guests run: their
    # staged upgrade pulls the superblock and its parts instead of the objects
    sysroot_cli(f"--repo={path}", "pull-local", repo, c1)
    sysroot_cli(f"--repo={path}", "static-delta", "generate", f"--from={c1}", f"--to={c3}")
    sysroot_cli(f"--repo={path}", "summary", "-u")
    return c3, base64.b64encode(public).decode()


def commit_trees(repo: str, tree: str, work: str) -> tuple[str, str]:
    """Commit 1 is the tree with sysroot added; commit 2 layers a changed default in /usr/etc and a
    changed file in /usr on top of it."""
    layer = sysroot_layer(os.path.join(work, "sysroot-layer"))
    c1 = (
        sysroot_cli(
            f"--repo={repo}",
            "commit",
            "-b",
            f"{OS}/stable",
            "--add-metadata-string=version=1",
            "-s",
            "commit 1",
            f"--tree=dir={tree}",
            f"--tree=dir={layer}",
        )
        .stdout.decode()
        .strip()
    )
    overlay = write_overlay(
        os.path.join(work, "overlay"),
        {"usr/etc/vmtest/defaults.conf": "value=2\n", "usr/share/vmtest/release": "2\n"},
    )
    c2 = (
        sysroot_cli(
            f"--repo={repo}",
            "commit",
            "-b",
            f"{OS}/next",
            "--add-metadata-string=version=2",
            "-s",
            "commit 2",
            f"--tree=ref={OS}/stable",
            f"--tree=dir={overlay}",
        )
        .stdout.decode()
        .strip()
    )
    return c1, c2


def finish_sysroot(image: str, backend: str, build_repo: str, work: str) -> None:
    """The harness's own changes to an installed disk (see the module's docstring), in
    a child process with a mount namespace of its own: on this host mounts do not
    propagate, so a process elsewhere that makes its own namespace meanwhile (as every
    `sysroot install to-disk` does) would keep a copy of a mount made here, and with it
    the file system mounted read-write after the umount here (seen: an image whose
    superblock changed later, a file system "needing recovery")."""
    os.makedirs(work, exist_ok=True)
    private_call("vmtest.disk", "finish_privately", image, backend, build_repo, work)


def private_call(module: str, function: str, *args: str) -> None:
    """function(*args) of vmtest module in a child process with a mount namespace of
    its own (see finish_sysroot for why)."""
    code = (
        "import sys; sys.path[:0] = sys.argv[1:3]; "
        f"from {module} import {function}; {function}(*sys.argv[3:])"
    )
    vm_tests = os.path.dirname(HERE)
    run(
        ["unshare", "--mount", "--propagation", "private", host_python(), "-c", code]
        + [vm_tests, SOURCE, *args]
    )


def finish_privately(image: str, backend: str, build_repo: str, work: str) -> None:
    parts = parse_partitions(run(["sfdisk", "--json", image]).stdout.decode())
    with loop_device(image, parts[-1], read_only=False) as dev:
        root = os.path.join(work, "root")
        os.makedirs(root)
        run(["mount", dev, root])
        try:
            repo = os.path.join(root, "ostree/repo")
            # the commit the upgrade scenarios deploy, as an administrator would pull it
            sysroot_cli(f"--repo={repo}", "pull-local", build_repo, f"{OS}/next")
            # boot counting from here on, as an installed system turns it on: later
            # deploys arm it (GREENBOOT_MAX_BOOT_ATTEMPTS of the booted /etc, or these)
            tries = str(COUNTING_TRIES)
            sysroot_cli(f"--repo={repo}", "config", "set", "sysroot.boot-counting-tries", tries)
        finally:
            run(["umount", root])
    if backend == "systemd-boot":
        no_menu_delay_esp(image, parts[0], work)
    else:
        no_menu_delay_grub(image, parts[1], work)


def no_menu_delay_esp(image: str, esp: Partition, work: str) -> None:
    """systemd-boot's loader.conf with `timeout 0`, written into the ESP with mtools."""
    conf = os.path.join(work, "loader.conf")
    with open(conf, "w") as f:
        f.write("timeout 0\n")
    fat = f"{image}@@{esp.start}"
    run(["mcopy", "-o", "-i", fat, conf, "::/loader/loader.conf"], env=MTOOLS_ENV)


def no_menu_delay_grub(image: str, boot: Partition, work: str) -> None:
    """grub.cfg sources custom.cfg from its directory: no menu delay in tests."""
    with loop_device(image, boot, read_only=False) as dev:
        mnt = os.path.join(work, "boot")
        os.makedirs(mnt)
        run(["mount", dev, mnt])
        try:
            with open(os.path.join(mnt, "grub/custom.cfg"), "w") as f:
                f.write("set timeout=0\n")
        finally:
            run(["umount", mnt])


def build_disk(tree: str, backend: str, log) -> BaseDisk:
    key = hash_inputs(
        RECIPE,
        backend,
        os.path.basename(tree),
        trees=[__file__, os.path.join(HERE, "ostree_tree.py"), os.path.join(SOURCE, "sysroot")],
    )

    def build(path: str) -> None:
        os.makedirs(path)
        image = os.path.join(path, "disk.img")
        with open(image, "wb") as f:
            f.truncate(DISK_MIB << 20)
        with tempfile.TemporaryDirectory(prefix="vmdisk-") as work:
            build_repo = os.path.join(work, "build-repo")
            sysroot_cli(f"--repo={build_repo}", "init", "--mode=bare")
            c1, c2 = commit_trees(build_repo, tree, work)
            sysroot_cli(*install_argv(image, build_repo, backend))
            finish_sysroot(image, backend, build_repo, work)
            c3, update_key = make_update_repo(
                os.path.join(path, "update-repo"), build_repo, c1, work
            )
        with open(os.path.join(path, "commits.json"), "w") as f:
            json.dump({"commit1": c1, "commit2": c2, "commit3": c3, "update_key": update_key}, f)

    path = cached(f"disk-{backend}", key, build, log)
    with open(os.path.join(path, "commits.json")) as f:
        meta = json.load(f)
    return BaseDisk(
        backend,
        os.path.join(path, "disk.img"),
        meta["commit1"],
        meta["commit2"],
        meta["commit3"],
        os.path.join(path, "update-repo"),
        meta["update_key"],
    )
