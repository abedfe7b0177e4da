"""The systemd-boot scheme on a real FAT file system mounted at the sysroot's boot/.

FAT has no symlinks, so boot/loader is a directory and entry names decide the boot
(sysroot/boot/systemd_boot.py). Every check here asks a small model of systemd-boot,
written from its documented rule and independent of the code under test: among
loader/entries/*.conf whose `linux` file exists, the highest id (file name without
.conf) by version compare (digit runs as numbers) boots.

The image is made by mkfs.vfat and attached with losetup; the kernel's vfat driver
mounts it where it has one, else fusefat (a FAT implementation in user space, package
fusefat) does. Mounts and loop devices are released in finalizers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from sysroot.boot import systemd_boot
from sysroot.deploy.invariant import check_boot_invariant
from sysroot.deploy.state import SysrootState
from sysroot.util.fsutil import shares_extents
from tests.helpers import crash, tracing
from tests.helpers.sysroots import clear_immutable_under, make_os_tree

OSNAME = "testos"
MKFS = shutil.which("mkfs.vfat")
LOSETUP = shutil.which("losetup")
FUSEFAT = shutil.which("fusefat")
KILLS_PER_OPERATION = 12


# ============================================================== FAT images
class FatMounts:
    """Mounts FAT images and remembers what to release; release() undoes all of it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.active: list[tuple[Path, str | None]] = []  # mount point, loop device
        self.daemons: dict[Path, subprocess.Popen] = {}  # fusefat, kept in the foreground

    def mount(self, image: Path, mountpoint: Path) -> None:
        assert MKFS and LOSETUP, "mkfs.vfat (dosfstools) and losetup are required"
        mountpoint.mkdir(parents=True, exist_ok=True)
        loop = subprocess.run(
            [LOSETUP, "--find", "--show", str(image)], capture_output=True, text=True, check=True
        ).stdout.strip()
        proc = subprocess.run(
            ["mount", "-t", "vfat", loop, str(mountpoint)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            # no vfat in this kernel: the user-space FAT driver on the image itself
            subprocess.run([LOSETUP, "-d", loop], check=True)
            loop = None
            assert FUSEFAT, f"cannot mount vfat ({proc.stderr.strip()}) and no fusefat"
            # foreground and single-threaded: unmounting then waits for it to exit, so
            # the image is complete before anyone copies or checks it
            daemon = subprocess.Popen(
                [FUSEFAT, "-f", "-s", "-o", "rw+,hard_remove", str(image), str(mountpoint)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while not os.path.ismount(mountpoint):
                assert daemon.poll() is None, f"fusefat exited with {daemon.returncode}"
                assert time.monotonic() < deadline, "fusefat did not mount in 10 s"
                time.sleep(0.01)
            with self.lock:
                self.daemons[mountpoint] = daemon
        with self.lock:
            self.active.append((mountpoint, loop))

    def umount(self, mountpoint: Path) -> None:
        with self.lock:
            found = [m for m in self.active if m[0] == mountpoint]
            for m in found:
                self.active.remove(m)
        for mp, loop in found:
            # a process killed in a FUSE request lets go of the mount a moment later
            for _ in range(50):
                if subprocess.run(["umount", str(mp)], capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
            else:
                subprocess.run(["umount", "--lazy", str(mp)], check=True)
            if loop is not None:
                subprocess.run([LOSETUP, "-d", loop], capture_output=True)
            with self.lock:
                daemon = self.daemons.pop(mp, None)
            if daemon is not None:
                assert daemon.wait(timeout=30) == 0, f"fusefat for {mp} failed"

    def release(self) -> None:
        for mp, _loop in reversed(list(self.active)):
            self.umount(mp)


def make_image(path: Path, size_mb: int = 32) -> Path:
    with open(path, "wb") as f:
        f.truncate(size_mb << 20)
    subprocess.run([MKFS, "-n", "ESP", str(path)], capture_output=True, check=True)
    return path


def fsck_fat(image: Path) -> None:
    proc = subprocess.run(["fsck.fat", "-n", str(image)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ============================================================== systemd-boot model
def _version_key(text: str) -> list:
    return [(1, int(p), "") if p.isdigit() else (0, 0, p) for p in re.findall(r"\d+|\D+", text)]


def _entry_keys(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        out.setdefault(key, value)
    return out


@dataclass
class Choice:
    name: str
    deployment: str  # csum.serial from ostree=
    linux: str
    initrd: str


def boot_choice(root: Path) -> Choice | None:
    """What systemd-boot boots: the highest id among the entries whose kernel exists."""
    edir = root / "boot/loader/entries"
    best = None
    for p in edir.iterdir():
        if not p.name.endswith(".conf"):
            continue
        keys = _entry_keys(p)
        linux = keys.get("linux")
        if not linux or not (root / "boot" / linux.lstrip("/")).is_file():
            continue
        if best is None or _version_key(p.name[:-5]) > _version_key(best.name[:-5]):
            best = p
    if best is None:
        return None
    keys = _entry_keys(best)
    ostree = re.search(r"(?:^| )ostree=(\S+)", keys["options"]).group(1)
    return Choice(best.name, os.path.basename(ostree), keys["linux"], keys.get("initrd", ""))


def check_choice(root: Path, expected: str) -> list[str]:
    """The modelled choice boots deployment `expected`, whose kernel hashes right."""
    c = boot_choice(root)
    if c is None:
        return ["nothing would boot"]
    problems = []
    if c.deployment != expected:
        problems.append(f"{c.name} boots {c.deployment}, expected {expected}")
    bootcsum = re.search(r"-([0-9a-f]{64})/", c.linux).group(1)
    h = hashlib.sha256((root / "boot" / c.linux.lstrip("/")).read_bytes())
    h.update((root / "boot" / c.initrd.lstrip("/")).read_bytes())
    if h.hexdigest() != bootcsum:
        problems.append(f"{c.name}: kernel files do not hash to {bootcsum}")
    deployments = list(root.glob(f"ostree/deploy/*/deploy/{c.deployment}"))
    if not deployments:
        problems.append(f"{c.name}: deployment {c.deployment} does not exist")
    return problems


_NAME_RE = re.compile(r"^ostree-([0-9]+)-([0-9]+)-(.+)\.conf$")


def boot_list(root: Path) -> list[tuple[str, str, str]]:
    """The whole deployment list by the scheme's documented rule (independent of the
    reader): the entry that boots, then the entries of its round (G one lower, R below
    9999) by R descending; each as (deployment csum.serial, linux, options). An entry
    of the list whose kernel is missing shows as linux "MISSING"."""
    c = boot_choice(root)
    if c is None:
        return []
    top = _NAME_RE.match(c.name)
    if top is None or int(top.group(2)) != 9999:
        return [("not a default name", c.name, "")]
    g = int(top.group(1))
    edir = root / "boot/loader/entries"
    rest = []
    for p in edir.iterdir():
        m = _NAME_RE.match(p.name)
        if m and int(m.group(1)) == g - 1 and int(m.group(2)) < 9999:
            rest.append((int(m.group(2)), p))
    out = []
    for p in [edir / c.name] + [p for _r, p in sorted(rest, reverse=True)]:
        keys = _entry_keys(p)
        linux = keys.get("linux", "")
        if not linux or not (root / "boot" / linux.lstrip("/")).is_file():
            linux = "MISSING"
        ostree = re.search(r"(?:^| )ostree=(\S+)", keys.get("options", ""))
        out.append(
            (
                os.path.basename(ostree.group(1)) if ostree else "no ostree=",
                linux,
                keys.get("options", ""),
            )
        )
    return out


def check_list(root: Path, expected: list[tuple[str, str, str]]) -> list[str]:
    """The whole list is `expected`, and the reader (SysrootState) agrees with it."""
    got = boot_list(root)
    problems = []
    if got != expected:
        problems.append(
            f"deployment list {[d for d, *_ in got]} "
            f"(entries {got}), expected {[d for d, *_ in expected]}"
        )
    reader = [d.name for d in SysrootState.load(str(root)).deployments]
    if reader != [d for d, *_ in got]:
        problems.append(f"the reader lists {reader}, the model {[d for d, *_ in got]}")
    return problems


def entry_names(root: Path) -> list[str]:
    return sorted(
        os.listdir(root / "boot/loader/entries"), key=lambda n: _version_key(n), reverse=True
    )


def tidy(root: Path) -> list[str]:
    """Nothing but what the configuration uses: valid entries, their kernels and
    deployments (no debris, no temporary files)."""
    state = SysrootState.load(str(root))
    problems = []
    names = entry_names(root)
    want = [os.path.basename(d.entry.filename) for d in state.deployments]
    if names != want:
        problems.append(f"entries {names}, expected exactly {want}")
    kernels = sorted(os.listdir(root / "boot/ostree")) if (root / "boot/ostree").exists() else []
    want_k = sorted({f"{d.osname}-{d.bootcsum}" for d in state.deployments})
    if kernels != want_k:
        problems.append(f"kernel dirs {kernels}, expected {want_k}")
    for k in kernels:
        tmp = [n for n in os.listdir(root / "boot/ostree" / k) if n.endswith(".tmp")]
        if tmp:
            problems.append(f"temporary files left in {k}: {tmp}")
    deployed = sorted(p.name for p in root.glob("ostree/deploy/*/deploy/*"))
    want_d = sorted(
        [d.name for d in state.deployments] + [d.name + ".origin" for d in state.deployments]
    )
    if deployed != want_d:
        problems.append(f"deploy dir holds {deployed}, expected {want_d}")
    if list(root.glob("ostree/boot.*")):
        problems.append("ostree/boot.* links exist in the systemd-boot scheme")
    return problems


# ============================================================== sysroots on FAT
def cli(*args, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        crash.cli(*args), capture_output=True, text=True, env=tracing.ENV, stdin=subprocess.DEVNULL
    )
    if check:
        assert proc.returncode == 0, f"{args}: {proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def admin(root: Path, cmd: str, *args, check: bool = True) -> subprocess.CompletedProcess:
    return cli("admin", cmd, f"--sysroot={root}", *args, check=check)


def status(root: Path) -> dict:
    return json.loads(admin(root, "status", "--json").stdout)


def image_of(root: Path) -> Path:
    return root.with_name(root.name + ".img")


class FatWorld:
    """Sysroots whose boot/ is a FAT image (`<root>.img`), kept unmounted between uses
    so they can be copied; mounted(root) mounts one for a while."""

    def __init__(self, base: Path, mounts: FatMounts):
        self.base = base
        self.mounts = mounts
        self.commits: dict[int, str] = {}
        self.states: dict[str, Path] = {}
        self.counter = 0
        self.lock = threading.Lock()

    def scratch(self, name: str) -> Path:
        with self.lock:
            self.counter += 1
            return self.base / f"{name}-{self.counter}"

    def mount(self, root: Path) -> None:
        self.mounts.mount(image_of(root), root / "boot")

    def umount(self, root: Path) -> None:
        self.mounts.umount(root / "boot")

    def clone(self, src: Path, dst: Path) -> Path:
        crash.clone(src, dst)
        subprocess.run(
            ["cp", "--sparse=always", str(image_of(src)), str(image_of(dst))], check=True
        )
        return dst

    def discard(self, root: Path) -> None:
        self.umount(root)
        crash.discard(root)
        image_of(root).unlink(missing_ok=True)

    def state(self, name: str) -> Path:
        if name not in self.states:
            getattr(self, "_make_" + name)()
        return self.states[name]

    def _make_base(self) -> None:
        root = self.base / "base"
        (root / "boot").mkdir(parents=True)
        make_image(image_of(root))
        self.mount(root)
        admin_init = cli("admin", "init-fs", str(root))
        assert admin_init.returncode == 0
        # on FAT, init-fs makes the entries directory: no boot/loader link can exist
        assert (root / "boot/loader/entries").is_dir()
        admin(root, "os-init", OSNAME)
        for n, kernel in ((1, "K1"), (2, "K2"), (3, "K3"), (4, "K1")):
            tree = make_os_tree(
                self.base / f"tree{n}",
                kernel=f"vmlinuz {kernel}\n".encode(),
                initramfs=f"initramfs {kernel}\n".encode(),
                extra={"usr/share/marker": f"c{n}\n"},
            )
            self.commits[n] = subprocess.run(
                [
                    "ostree",
                    f"--repo={root}/ostree/repo",
                    "commit",
                    f"--branch={OSNAME}/{n}",
                    f"--timestamp={crash.TIMESTAMP}",
                    f"--tree=dir={tree}",
                    "--subject=test",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        self.umount(root)
        self.states["base"] = root

    def _make_two(self) -> None:
        """[c2, c1], deployed by the CLI with `auto` (FAT detected)."""
        root = self.clone(self.state("base"), self.base / "two")
        self.mount(root)
        admin(root, "deploy", f"--os={OSNAME}", f"{OSNAME}/1")
        admin(root, "deploy", f"--os={OSNAME}", f"{OSNAME}/2")
        self.umount(root)
        self.states["two"] = root


@pytest.fixture(scope="module")
def fat(tmp_path_factory):
    mounts = FatMounts()
    world = FatWorld(tmp_path_factory.mktemp("fat"), mounts)
    yield world
    mounts.release()
    clear_immutable_under(world.base)


@pytest.fixture
def fat_sysroot(fat, tmp_path):
    """A copy of the base sysroot (init-fs, os-init, commits) with its FAT boot/ mounted."""
    root = fat.clone(fat.state("base"), tmp_path / "sr")
    fat.mount(root)
    yield root
    fat.umount(root)
    fsck_fat(image_of(root))  # the file system itself is consistent afterwards
    clear_immutable_under(tmp_path)


def dname(fat: FatWorld, n: int) -> str:
    return f"{fat.commits[n]}.0"


# ============================================================== tests
def test_operations(fat, fat_sysroot):
    """deploy, rollback, set-default, pin, retention, kargs, undeploy, cleanup: entry
    names, order and the modelled boot choice after each."""
    root = fat_sysroot
    assert not os.path.islink(root / "boot/loader")

    def check(expected_order: list[int], names: list[str]) -> None:
        order = [f"{d['checksum']}.{d['serial']}" for d in status(root)["deployments"]]
        assert order == [dname(fat, n) for n in expected_order]
        assert entry_names(root) == names
        assert check_choice(root, dname(fat, expected_order[0])) == []
        assert check_boot_invariant(root) == []
        assert tidy(root) == []

    admin(root, "deploy", f"--os={OSNAME}", f"{OSNAME}/1")
    check([1], ["ostree-1-9999-testos.conf"])
    out = admin(root, "deploy", f"--os={OSNAME}", f"{OSNAME}/2").stdout
    assert "default entry: ostree-2-9999-testos.conf" in out
    check([2, 1], ["ostree-2-9999-testos.conf", "ostree-1-9998-testos.conf"])
    out = admin(root, "rollback").stdout
    assert f"Next boot: {OSNAME} {dname(fat, 1)}" in out
    check([1, 2], ["ostree-3-9999-testos.conf", "ostree-2-9998-testos.conf"])
    admin(root, "set-default", "1")
    check([2, 1], ["ostree-4-9999-testos.conf", "ostree-3-9998-testos.conf"])
    # a pin only changes the origin; the pinned c1 then survives the next deploy
    admin(root, "pin", "1")
    check([2, 1], ["ostree-4-9999-testos.conf", "ostree-3-9998-testos.conf"])
    assert status(root)["deployments"][1]["pinned"] is True
    admin(root, "deploy", f"--os={OSNAME}", f"{OSNAME}/3")
    check(
        [3, 2, 1],
        ["ostree-5-9999-testos.conf", "ostree-4-9998-testos.conf", "ostree-4-9997-testos.conf"],
    )
    data = status(root)
    assert (data["bootversion"], data["subbootversion"]) == (0, 0)
    assert [d["boot_entry"].rsplit("/", 1)[1] for d in data["deployments"]] == entry_names(root)
    assert "Pinned: yes" in admin(root, "status").stdout
    # kargs: a whole new round, never an edit in place
    cli("admin", "kargs", "edit-in-place", f"--sysroot={root}", "--append-if-missing=quiet")
    check(
        [3, 2, 1],
        ["ostree-6-9999-testos.conf", "ostree-5-9998-testos.conf", "ostree-5-9997-testos.conf"],
    )
    for name in entry_names(root):
        assert (root / "boot/loader/entries" / name).read_text().count(" quiet\n") == 1
    admin(root, "pin", "--unpin", "2")
    admin(root, "undeploy", "2")
    check([3, 2], ["ostree-7-9999-testos.conf", "ostree-6-9998-testos.conf"])
    admin(root, "undeploy", "0")
    check([2], ["ostree-8-9999-testos.conf"])
    # debris of interrupted rounds: cleanup removes it, the boot stays
    edir = root / "boot/loader/entries"
    # a non-default of a round that never committed (G of the default: not valid)
    (edir / "ostree-8-9998-testos.conf").write_text(
        (edir / "ostree-8-9999-testos.conf").read_text()
    )
    (edir / "ostree-9-9998-testos.conf.tmp").write_text("partial")
    assert check_choice(root, dname(fat, 2)) == []
    admin(root, "cleanup")
    check([2], ["ostree-8-9999-testos.conf"])
    # and no boot.N links, so nothing resolves through them
    assert "ostree=/ostree/deploy/testos/deploy/" in (edir / entry_names(root)[0]).read_text()


def test_same_kernel_dir_is_verified_and_repaired(fat, fat_sysroot):
    """An existing kernel directory is not trusted: a damaged file is rewritten."""
    root = fat_sysroot
    admin(root, "deploy", f"--os={OSNAME}", f"{OSNAME}/1")
    kdir = next((root / "boot/ostree").iterdir())
    vmlinuz = next(kdir.glob("vmlinuz-*"))
    vmlinuz.unlink()  # (fusefat mishandles truncating a file: replace it instead)
    vmlinuz.write_bytes(b"damaged\n")
    (kdir / "initramfs-6.1.0.img.tmp").write_bytes(b"leftover of a killed write\n")
    assert check_boot_invariant(root), "the invariant must see the bad kernel"
    # testos/4 has c1's kernel: the deploy reuses that directory, after repairing it
    admin(root, "deploy", f"--os={OSNAME}", f"{OSNAME}/4")
    assert vmlinuz.read_bytes() == b"vmlinuz K1\n"
    assert check_choice(root, dname(fat, 4)) == []
    assert check_boot_invariant(root) == []
    assert tidy(root) == []


def test_scheme_mismatch_is_refused(fat, fat_sysroot):
    root = fat_sysroot
    admin(root, "deploy", f"--os={OSNAME}", f"{OSNAME}/1")
    subprocess.run(
        ["ostree", f"--repo={root}/ostree/repo", "config", "set", "sysroot.bootloader", "grub2"],
        check=True,
    )
    before = entry_names(root)
    proc = admin(root, "deploy", f"--os={OSNAME}", f"{OSNAME}/2", check=False)
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and "boot/loader is a directory" in proc.stderr
    assert entry_names(root) == before


def test_systemd_boot_on_any_fs_and_symlink_refusal(tmp_path, ostree):
    """sysroot.bootloader=systemd-boot selects the scheme on ext4 too; on a sysroot
    already using the loader.N symlink it is refused (no scheme switching)."""
    roots = {}
    for name in ("plain", "linked"):
        root = roots[name] = tmp_path / name
        cli("admin", "init-fs", str(root))
        admin(root, "os-init", OSNAME)
        tree = make_os_tree(tmp_path / f"tree-{name}")
        ostree(f"--repo={root}/ostree/repo", "commit", f"--branch={OSNAME}/1", f"--tree=dir={tree}")
    admin(roots["linked"], "deploy", f"--os={OSNAME}", f"{OSNAME}/1")
    for root in roots.values():
        # set last: ostree 2022.7 refuses to open a repo with this value
        ostree(f"--repo={root}/ostree/repo", "config", "set", "sysroot.bootloader", "systemd-boot")
    admin(roots["plain"], "deploy", f"--os={OSNAME}", f"{OSNAME}/1")
    assert entry_names(roots["plain"]) == ["ostree-1-9999-testos.conf"]
    assert check_boot_invariant(roots["plain"]) == []
    proc = admin(roots["linked"], "deploy", f"--os={OSNAME}", f"{OSNAME}/1", check=False)
    assert proc.returncode == 1 and "is a symlink" in proc.stderr
    clear_immutable_under(tmp_path)


@pytest.mark.unit
def test_shares_extents_and_leftover_removal(tmp_path, capsys):
    """A leftover that shares its data with a live sibling (here: a hard link, which
    is what a FAT rename cut short looks like to FIEMAP) stays; a copy goes."""
    d = tmp_path / "k"
    d.mkdir()
    (d / "vmlinuz").write_bytes(b"kernel\n" * 1000)
    os.link(d / "vmlinuz", d / "vmlinuz.tmp")
    (d / "initrd.tmp").write_bytes(b"kernel\n" * 1000)  # same bytes, own blocks
    (d / "empty.tmp").write_bytes(b"")
    assert shares_extents(d / "vmlinuz", d / "vmlinuz.tmp")
    assert not shares_extents(d / "vmlinuz", d / "initrd.tmp")
    assert not shares_extents(d / "empty.tmp", d / "empty.tmp")
    systemd_boot.remove_tmp_under(str(d))
    assert sorted(os.listdir(d)) == ["vmlinuz", "vmlinuz.tmp"]
    assert "vmlinuz.tmp may share its data" in capsys.readouterr().err


def test_leftover_removal_on_fat(fat, fat_sysroot):
    """On the FAT mount: a leftover with other bytes than its rename target goes; one
    with the same bytes stays unless FIEMAP proves it separate."""
    d = fat_sysroot / "boot/x"
    d.mkdir()
    (d / "a").write_bytes(b"A" * 5000)
    (d / "b").write_bytes(b"A" * 5000)
    (d / "b.tmp").write_bytes(b"B" * 5000)
    (d / "c.tmp").write_bytes(b"A" * 5000)
    (d / "a.tmp").write_bytes(b"A" * 5000)
    (d / "vmlinuz-6.1.0").write_bytes(b"K" * 5000)
    (d / "vmlinuz-6.1.0.1.tmp").write_bytes(b"K" * 5000)
    systemd_boot.remove_tmp_under(str(d))
    left = sorted(os.listdir(d))
    try:
        shares_extents(d / "a", d / "a")
        fiemap = True
    except OSError:
        fiemap = False
    assert left == (
        ["a", "b", "vmlinuz-6.1.0"]
        if fiemap
        else ["a", "a.tmp", "b", "vmlinuz-6.1.0", "vmlinuz-6.1.0.1.tmp"]
    )


# ============================================================== crash safety
@dataclass(frozen=True)
class Op:
    name: str
    args: tuple[str, ...]
    old: int  # commit number booted before
    new: int  # and after

    def argv(self, root: Path) -> list[str]:
        return crash.cli("admin", self.args[0], f"--sysroot={root}", *self.args[1:])


OPS = {
    "deploy": Op("deploy", ("deploy", f"--os={OSNAME}", f"{OSNAME}/3"), 2, 3),
    "rollback": Op("rollback", ("rollback",), 2, 1),
    "undeploy": Op("undeploy", ("undeploy", "0"), 2, 1),
}


def _kill_and_check(
    fat: FatWorld, op: Op, point: tracing.Point, target: str, dry: Path, lists: tuple[list, list]
) -> list[str]:
    root = fat.clone(fat.state("two"), fat.scratch(op.name))
    try:
        fat.mount(root)
        res = tracing.run_interrupted(op.argv(root), point, "signal=KILL", root.with_suffix(".log"))
        if res.hit is None:
            return [f"{point}: the kill did not land (rc {res.returncode})"]
        committed = res.committed({target.replace(str(dry), str(root))})
        expected = dname(fat, op.new if committed else op.old)
        whole = lists[1] if committed else lists[0]
        problems = check_choice(root, expected)
        # not only the default: every entry (the rollback too), in order
        problems += check_list(root, whole)
        problems += [f"invariant: {p}" for p in check_boot_invariant(root)]
        if not problems:
            # the next command finishes the job: only valid entries stay
            admin(root, "cleanup")
            problems += check_choice(root, expected)
            problems += check_list(root, whole)
            problems += [f"invariant after cleanup: {p}" for p in check_boot_invariant(root)]
            problems += [f"after cleanup: {p}" for p in tidy(root)]
        fat.umount(root)
        try:
            fsck_fat(image_of(root))
        except AssertionError as e:
            problems.append(f"fsck.fat: {e}")
        return [f"{op.name} killed at {point}: {p}" for p in problems]
    finally:
        fat.discard(root)


@pytest.mark.parametrize("name", list(OPS))
def test_killed_anywhere(fat, name):
    """SIGKILL at a spread of calls (strace when=N, as tests/deploy/test_crash_safety.py):
    systemd-boot boots the old default or the new one, with a sound kernel and an
    existing deployment, and the whole list of entries (the rollback too, in order) is
    the old one or the new one; the next command leaves only valid entries."""
    op = OPS[name]
    dry = fat.clone(fat.state("two"), fat.scratch(f"dry-{name}"))
    fat.mount(dry)
    try:
        assert check_choice(dry, dname(fat, op.old)) == []
        old = boot_list(dry)
        assert [d for d, *_ in old] == [dname(fat, 2), dname(fat, 1)]
        proc, calls = tracing.traced_run(op.argv(dry), dry.with_suffix(".log"))
        assert proc.returncode == 0, proc.stderr.decode()
        assert check_choice(dry, dname(fat, op.new)) == []
        new = boot_list(dry)
        assert len(new) >= 2 or name == "undeploy", new  # a rollback entry to lose
        assert check_list(dry, new) == []
        target = str(dry / "boot/loader/entries" / boot_choice(dry).name)
        points = tracing.interruption_points(calls, dry, KILLS_PER_OPERATION, {target})
        assert any(p.what.endswith(f"{os.path.basename(target)}) = 0") for p in points), (
            "the commit (the new default's rename) must be among the points"
        )
    finally:
        fat.umount(dry)
    problems = crash.run_all(
        _kill_and_check, [(fat, op, p, target, dry, (old, new)) for p in points]
    )
    assert not problems, "\n".join(problems)
