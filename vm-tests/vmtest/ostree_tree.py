"""Stage 2: the Debian root file system turned into a tree that sysroot can deploy.

What changes, and why:
- our dracut module and units are installed and the initramfs is rebuilt with them;
  kernel and initramfs go to /usr/lib/modules/$kver/, where deployments look for them;
- sysroot itself is not part of this tree: it is committed as a layer on top (see
  sysroot_layer), so the booted guest can run `sysroot admin`;
- /etc moves to /usr/etc (the defaults the 3-way merge starts from); /var is emptied,
  since each stateroot has its own /var, created by systemd-tmpfiles at boot;
- Python's bytecode is compiled so that it is valid with the deployment's mtime-0
  sources;
- /sysroot (where the physical root appears) and /ostree -> sysroot/ostree exist;
  /root and /home live in /var;
- the test driver unit (vm-tests/guest/) runs the script of the second disk.
"""

from __future__ import annotations

import compileall
import glob
import os
import py_compile
import shutil
import sys

from sysroot.util.run import run
from vmtest.cache import HERE, SOURCE, cached, hash_inputs
from vmtest.chroot import chroot, mounted_api_fs

GUEST = os.path.join(SOURCE, "vm-tests", "guest")
# qemu's user network: the guest at 10.0.2.15, the host's loopback reachable as 10.0.2.2
# (the upgrade scenario pulls from a web server on the host). Static, so that no boot
# waits for DHCP.
NETWORK = """\
[Match]
Name=en*

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
"""
GUEST_CACHE_TAG = "cpython-311"
PYTHON_DIRS = ("/usr/lib/python3.11", "/usr/lib/python3/dist-packages")
# The initramfs holds what a test machine's boot needs and no more: systemd in the
# initrd, our module (sysroot) and the drivers of a virtio disk with ext4. Debian's
# default set adds a dozen more modules (crypt, dm, resume, ...), whose hooks made the
# initrd take about twice as long under TCG (measured: switch root after 34 s instead
# of 74 s on a loaded machine).
INITRD_MODULES = (
    "systemd",
    "systemd-initrd",
    "dracut-systemd",
    "kernel-modules",
    "rootfs-block",
    "udev-rules",
    "base",
    "fs-lib",
    "shutdown",
    "sysroot",
)
INITRD_DRIVERS = ("virtio_pci", "virtio_blk", "ext4", "crc32c_generic")
# Units a test machine has no use for, masked: each costs a fraction of a second of
# every boot under TCG. No graphics card (vmtest/qemu.py), so no gettys on virtual
# consoles; no periodic maintenance in machines that live for minutes.
LEAN_MASKS = (
    "getty@.service",
    "getty-static.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
)
TMPFILES = """\
# sysroot test image: what the deployment layout moved to /var
d /var/roothome 0700 root root -
d /var/home 0755 root root -
"""


def kernel_version(root: str) -> str:
    versions = sorted(os.listdir(os.path.join(root, "usr/lib/modules")))
    if len(versions) != 1:
        raise RuntimeError(f"expected one kernel in {root}/usr/lib/modules, found {versions}")
    return versions[0]


def build_tree(rootfs: str, log) -> str:
    key = hash_inputs(
        os.path.basename(rootfs),
        trees=[
            __file__,
            os.path.join(HERE, "chroot.py"),
            os.path.join(SOURCE, "dracut-module"),
            os.path.join(SOURCE, "units"),
            GUEST,
        ],
    )

    def build(path: str) -> None:
        run(["cp", "-a", "--reflink=auto", rootfs, path])
        install_project(path)
        kver = kernel_version(path)
        moddir = os.path.join(path, "usr/lib/modules", kver)
        shutil.copy2(os.path.join(path, "boot", f"vmlinuz-{kver}"), os.path.join(moddir, "vmlinuz"))
        with mounted_api_fs(path):
            chroot(
                path,
                "dracut",
                "--force",
                "--no-hostonly",
                "--no-hostonly-cmdline",
                "--modules",
                " ".join(INITRD_MODULES),
                "--drivers",
                " ".join(INITRD_DRIVERS),
                "--kver",
                kver,
                f"/usr/lib/modules/{kver}/initramfs.img",
            )
            # A deployment's files have mtime 0, so Debian's timestamp-checked .pyc files
            # never match their sources there and, /usr being read-only, every Python
            # start compiles every module it imports again (seconds each under TCG).
            # Bytecode checked by nothing is right for a tree that never changes.
            chroot(
                path,
                "python3",
                "-m",
                "compileall",
                "-q",
                "-f",
                "-j0",
                "--invalidation-mode=unchecked-hash",
                *PYTHON_DIRS,
            )
        to_deployment_layout(path)

    return cached("tree", key, build, log)


def sysroot_layer(dest: str) -> str:
    """sysroot itself as a tree to commit on top of the OS tree: the package where
    Debian's python3 finds it and a /usr/bin/sysroot launcher. A layer of its own, so
    a change to sysroot's code does not rebuild the initramfs."""
    pkg = os.path.join(dest, "usr/lib/python3/dist-packages/sysroot")
    shutil.copytree(
        os.path.join(SOURCE, "sysroot"), pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    # bytecode the guest can use with mtime-0 sources (see build_tree); compiled here,
    # so only when this Python's bytecode is the guest's (Debian 12: 3.11)
    if sys.implementation.cache_tag == GUEST_CACHE_TAG:
        compileall.compile_dir(
            pkg,
            quiet=1,
            ddir="/usr/lib/python3/dist-packages/sysroot",
            invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
        )
    launcher = os.path.join(dest, "usr/bin/sysroot")
    os.makedirs(os.path.dirname(launcher), exist_ok=True)
    with open(launcher, "w") as f:
        f.write(
            "#!/usr/bin/python3\nimport sys\nfrom sysroot.cli.main import main\nsys.exit(main())\n"
        )
    os.chmod(launcher, 0o755)
    return dest


def install_project(root: str) -> None:
    run([os.path.join(SOURCE, "dracut-module", "install"), root])
    run([os.path.join(SOURCE, "units", "install"), root])
    driver_dir = os.path.join(root, "usr/lib/sysroot-vmtest")
    os.makedirs(driver_dir, exist_ok=True)
    shutil.copy2(os.path.join(GUEST, "vmtest-driver"), driver_dir)
    unitdir = os.path.join(root, "usr/lib/systemd/system")
    shutil.copy2(os.path.join(GUEST, "sysroot-vmtest.service"), unitdir)
    wants = os.path.join(unitdir, "multi-user.target.wants")
    os.makedirs(wants, exist_ok=True)
    os.symlink("../sysroot-vmtest.service", os.path.join(wants, "sysroot-vmtest.service"))
    # The driver owns the serial console: no login prompt there (agetty would hang up
    # the driver's terminal).
    masks = os.path.join(root, "etc/systemd/system")
    os.makedirs(masks, exist_ok=True)
    for unit in ("serial-getty@ttyS0.service", *LEAN_MASKS):
        os.symlink("/dev/null", os.path.join(masks, unit))
    with open(os.path.join(root, "usr/lib/tmpfiles.d/sysroot-vmtest.conf"), "w") as f:
        f.write(TMPFILES)
    with open(os.path.join(root, "usr/lib/systemd/network/10-vmtest.network"), "w") as f:
        f.write(NETWORK)
    run(["systemctl", "--root", root, "enable", "systemd-networkd.service"])
    # test content that commit 2 changes (see vmtest.disk)
    os.makedirs(os.path.join(root, "etc/vmtest"), exist_ok=True)
    os.makedirs(os.path.join(root, "usr/share/vmtest"), exist_ok=True)
    for rel, text in (
        ("etc/vmtest/local.conf", "local=default\n"),
        ("etc/vmtest/defaults.conf", "value=1\n"),
        ("usr/share/vmtest/release", "1\n"),
    ):
        with open(os.path.join(root, rel), "w") as f:
            f.write(text)


def to_deployment_layout(root: str) -> None:
    def p(rel: str) -> str:
        return os.path.join(root, rel)

    os.rename(p("etc"), p("usr/etc"))
    # an empty machine-id: systemd creates one on the first boot of each machine
    with open(p("usr/etc/machine-id"), "w"):
        pass
    # API file systems and state: mount points only, empty in a commit
    for rel in ("var", "boot", "dev", "proc", "sys", "run"):
        shutil.rmtree(p(rel))
        os.mkdir(p(rel), 0o555 if rel in ("proc", "sys") else 0o755)
    for rel in ("vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"):
        if os.path.lexists(p(rel)):  # Debian's links into /boot
            os.unlink(p(rel))
    for rel in ("root", "home"):
        shutil.rmtree(p(rel), ignore_errors=True)
    os.symlink("var/roothome", p("root"))
    os.symlink("var/home", p("home"))
    os.mkdir(p("sysroot"), 0o755)
    os.symlink("sysroot/ostree", p("ostree"))
    for leftover in glob.glob(p("tmp/*")):
        shutil.rmtree(leftover) if os.path.isdir(leftover) else os.unlink(leftover)
