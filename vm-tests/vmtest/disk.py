"""Stage 3: a GPT disk with the sysroot set up by `sysroot admin`, per boot-loader back end.

Partitions are attached as loop devices by offset (no partition device nodes or udev
needed), formatted with fixed UUIDs so that kernel arguments and fstab can name them,
and mounted; then `sysroot admin init-fs/os-init/deploy` runs on the real file systems
and the boot loader from Debian's packages is put on the ESP.

Layouts:
- systemd-boot: ESP (vfat) mounted at /boot, holding entries and kernels; root (ext4).
- grub2: ESP (vfat, only GRUB's EFI binary); /boot (ext4: loader.N symlink swap);
  root (ext4).

Beside each disk: `update-repo`, an archive repository with commit 3 on testos/stable
(commit 1 plus a changed default and file), signed with ed25519, that the upgrade
scenario serves over HTTP to the guest.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass

from sysroot.util.run import run
from vmtest.cache import HERE, SOURCE, cached, hash_inputs
from vmtest.ostree_tree import sysroot_layer

OS = "testos"
ROOT_UUID = "5a1d0b5e-0000-4000-8000-000000000001"
BOOT_UUID = "5a1d0b5e-0000-4000-8000-000000000002"  # ext4 /boot (grub2)
ESP_ID = "5A1D0B5E"  # vfat volume id; the UUID is shown as 5A1D-0B5E
ESP_UUID = "5A1D-0B5E"
DISK_MIB = 4096
KARGS = [
    "root=UUID=" + ROOT_UUID,
    "rw",
    "console=ttyS0,115200",
    "systemd.firstboot=off",
    "loglevel=4",
    "systemd.show_status=true",
]
COUNTING_TRIES = 3  # greenboot's default GREENBOOT_MAX_BOOT_ATTEMPTS
SYSTEMD_BOOT_EFI = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
GRUB_MODULES = [
    "part_gpt",
    "fat",
    "ext2",
    "normal",
    "linux",
    "search",
    "search_fs_uuid",
    "configfile",
    "echo",
    "test",
    "ls",
    "cat",
    "all_video",
    "efi_gop",
    "gzio",
    "serial",
    "terminal",
    "sleep",
    "reboot",
    "halt",
    # grubenv: load_env/save_env of the boot-counting script grub.cfg carries
    "loadenv",
]


@dataclass(frozen=True)
class Partition:
    start: int  # bytes
    size: int  # bytes


@dataclass(frozen=True)
class BaseDisk:
    backend: str
    image: str
    commit1: str
    commit2: str
    commit3: str = ""  # on testos/stable in update_repo
    update_repo: str = ""
    update_key: str = ""  # base64 ed25519 public key that signed commit 3


def sysroot_cli(*args: str):
    """Our CLI from this checkout, as the host's python3 runs it."""
    env = {"PYTHONPATH": SOURCE, "PYTHONDONTWRITEBYTECODE": "1"}
    return run(["python3", "-m", "sysroot", *args], env=env)


def partition(image: str, layout: list[tuple[str, int | None]]) -> list[Partition]:
    lines = ["label: gpt"]
    for ptype, mib in layout:
        lines.append(f"type={ptype}" + (f", size={mib}MiB" if mib else ""))
    run(["sfdisk", "--quiet", image], input=("\n".join(lines) + "\n").encode())
    table = json.loads(run(["sfdisk", "--json", image]).stdout)["partitiontable"]
    sector = table.get("sectorsize", 512)
    return [Partition(p["start"] * sector, p["size"] * sector) for p in table["partitions"]]


@contextlib.contextmanager
def loop_devices(image: str, parts: list[Partition]):
    devices = []
    try:
        for part in parts:
            dev = (
                run(
                    [
                        "losetup",
                        "--find",
                        "--show",
                        "--offset",
                        str(part.start),
                        "--sizelimit",
                        str(part.size),
                        image,
                    ]
                )
                .stdout.decode()
                .strip()
            )
            devices.append(dev)
        yield devices
    finally:
        for dev in devices:
            run(["losetup", "--detach", dev], check=False)


@contextlib.contextmanager
def mounted(dev: str, target: str, bind: bool = False):
    os.makedirs(target, exist_ok=True)
    run(["mount", *(["--bind"] if bind else []), dev, target])
    try:
        yield target
    finally:
        run(["umount", target], check=False)


def write_overlay(path: str, files: dict[str, str]) -> str:
    for rel, text in files.items():
        os.makedirs(os.path.join(path, os.path.dirname(rel)), exist_ok=True)
        with open(os.path.join(path, rel), "w") as f:
            f.write(text)
    return path


def make_update_repo(path: str, repo: str, work: str) -> tuple[str, str]:
    """An archive repository as a build server would publish it: testos/stable moved
    on to commit 3, signed, with a summary. Returns (commit 3, base64 public key)."""
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


def setup_sysroot(root: str, tree: str, backend: str, work: str) -> tuple[str, str]:
    sysroot_cli("admin", "init-fs", root)
    sysroot_cli("admin", "os-init", f"--sysroot={root}", OS)
    repo = os.path.join(root, "ostree/repo")
    sysroot_cli(f"--repo={repo}", "config", "set", "sysroot.bootloader", backend)
    # the booted system sees /sysroot read-only; only sysroot admin writes there
    sysroot_cli(f"--repo={repo}", "config", "set", "sysroot.readonly", "true")
    c1, c2 = commit_trees(repo, tree, work)
    sysroot_cli(
        "admin",
        "deploy",
        f"--sysroot={root}",
        f"--os={OS}",
        *[f"--karg={k}" for k in KARGS],
        f"{OS}/stable",
    )
    # boot counting from here on, as an installed system turns it on: later deploys
    # arm it (GREENBOOT_MAX_BOOT_ATTEMPTS of the booted /etc, or these 3 tries)
    tries = str(COUNTING_TRIES)
    sysroot_cli(f"--repo={repo}", "config", "set", "sysroot.boot-counting-tries", tries)
    return c1, c2


def write_fstab(root: str, backend: str) -> None:
    """Machine-local configuration, written as an administrator would: in the
    deployment's /etc, so every later deployment inherits it through the merge."""
    deploy_parent = os.path.join(root, "ostree/deploy", OS, "deploy")
    (name,) = [n for n in os.listdir(deploy_parent) if not n.endswith(".origin")]
    if backend == "systemd-boot":
        boot = f"UUID={ESP_UUID} /boot vfat umask=0077 0 2\n"
    else:
        boot = f"UUID={BOOT_UUID} /boot ext4 defaults 0 2\n"
    with open(os.path.join(deploy_parent, name, "etc/fstab"), "w") as f:
        f.write("# machine-local: written when the disk was made\n" + boot)


def install_systemd_boot(esp: str) -> None:
    os.makedirs(os.path.join(esp, "EFI/BOOT"), exist_ok=True)
    shutil.copyfile(SYSTEMD_BOOT_EFI, os.path.join(esp, "EFI/BOOT/BOOTX64.EFI"))
    os.makedirs(os.path.join(esp, "loader"), exist_ok=True)
    with open(os.path.join(esp, "loader/loader.conf"), "w") as f:
        f.write("timeout 0\n")


def install_grub(esp: str, boot: str, work: str) -> None:
    early = os.path.join(work, "grub-early.cfg")
    with open(early, "w") as f:
        f.write(
            f"search --no-floppy --fs-uuid --set=root {BOOT_UUID}\n"
            "set prefix=($root)/grub\n"
            "configfile ($root)/grub/grub.cfg\n"
        )
    os.makedirs(os.path.join(esp, "EFI/BOOT"), exist_ok=True)
    run(
        [
            "grub-mkimage",
            "-O",
            "x86_64-efi",
            "-o",
            os.path.join(esp, "EFI/BOOT/BOOTX64.EFI"),
            "-p",
            "/grub",
            "-c",
            early,
            *GRUB_MODULES,
        ]
    )
    # the generated grub.cfg sources custom.cfg: no menu delay in tests
    os.makedirs(os.path.join(boot, "grub"), exist_ok=True)
    with open(os.path.join(boot, "grub/custom.cfg"), "w") as f:
        f.write("set timeout=0\n")


def build_disk(tree: str, backend: str, log) -> BaseDisk:
    key = hash_inputs(
        backend,
        os.path.basename(tree),
        trees=[__file__, os.path.join(HERE, "ostree_tree.py"), os.path.join(SOURCE, "sysroot")],
    )

    def build(path: str) -> None:
        os.makedirs(path)
        image = os.path.join(path, "disk.img")
        with open(image, "wb") as f:
            f.truncate(DISK_MIB << 20)
        if backend == "systemd-boot":
            parts = partition(image, [("U", 512), ("L", None)])
        else:
            parts = partition(image, [("U", 64), ("L", 512), ("L", None)])
        with tempfile.TemporaryDirectory(prefix="vmdisk-") as work:
            # The ESP is made as a file with mtools: vfat need not be mountable here.
            esp = os.path.join(work, "esp")
            os.makedirs(esp)
            with loop_devices(image, parts[1:]) as devs:
                run(["mkfs.ext4", "-q", "-U", ROOT_UUID, "-L", "root", devs[-1]])
                mnt = os.path.join(work, "mnt")
                with mounted(devs[-1], mnt):
                    boot = os.path.join(mnt, "boot")
                    if backend == "systemd-boot":
                        # /boot is the ESP: set up in a directory, copied into the ESP below
                        install_systemd_boot(esp)
                        with mounted(esp, boot, bind=True):
                            c1, c2 = setup_sysroot(mnt, tree, backend, work)
                    else:
                        run(["mkfs.ext4", "-q", "-U", BOOT_UUID, "-L", "boot", devs[0]])
                        with mounted(devs[0], boot):
                            os.makedirs(os.path.join(boot, "grub"))
                            c1, c2 = setup_sysroot(mnt, tree, backend, work)
                            install_grub(esp, boot, work)
                    write_fstab(mnt, backend)
                    c3, update_key = make_update_repo(
                        os.path.join(path, "update-repo"), os.path.join(mnt, "ostree/repo"), work
                    )
            write_fat(image, parts[0], esp, work)
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


def write_fat(image: str, part: Partition, content: str, work: str) -> None:
    """A FAT32 file system of exactly the partition's size holding content/, written
    into the disk image at the partition's offset. Made with mtools, not mounted:
    the host's kernel need not have vfat."""
    fat = os.path.join(work, "esp.img")
    with open(fat, "wb") as f:
        f.truncate(part.size)
    run(["mkfs.vfat", "-F", "32", "-i", ESP_ID, "-n", "ESP", fat])
    names = sorted(os.listdir(content))
    if names:
        run(["mcopy", "-s", "-p", "-i", fat, *[os.path.join(content, n) for n in names], "::/"])
    run(
        [
            "dd",
            f"if={fat}",
            f"of={image}",
            "bs=1M",
            f"seek={part.start}",
            "oflag=seek_bytes",
            "conv=notrunc,fsync",
            "status=none",
        ]
    )
