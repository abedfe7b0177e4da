"""Boot counting per back end (sysroot.boot-counting-tries), driven through several
boots by models of the boot loaders that are independent of the code under test:

- systemd-boot 252: among loader/entries/*.conf whose `linux` exists, entries with a
  counter `+0[-D]` last, then by id (the name without .conf) descending in version
  order; booting a counted entry renames `+L[-D]` to `+<L-1>-<D+1>` (L stays 0).
- GRUB: a small interpreter of the script our grub.cfg carries (if/elif/else, [ ],
  set, load_env/save_env), reading and writing grubenv with the real grub-editenv.

Every write is also checked at each of its file operations (an interruption there
leaves that state): the modelled boot is the old default or the new one, and the
reader (select(), SysrootState) agrees with the model.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from sysroot.boot import backends, grub2, systemd_boot
from sysroot.boot.backends import CountStatus
from sysroot.boot.bls import BootEntry
from sysroot.deploy import bootcount, sdwriter
from sysroot.deploy import deploy as dep
from sysroot.deploy import operations as ops
from sysroot.deploy.admin import Sysroot
from sysroot.deploy.invariant import check_boot_invariant
from sysroot.deploy.state import Deployment, SysrootState
from sysroot.deploy.transaction import transaction
from sysroot.formats import grubenv
from sysroot.formats.keyfile import KeyFile
from sysroot.util import fsutil
from tests.boot.test_systemd_boot_vfat import fat, fat_sysroot  # noqa: F401 (fixtures)
from tests.conftest import one_error_line
from tests.helpers.sysroots import OSNAME, TIMESTAMP, make_os_tree

GRUB_EDITENV = shutil.which("grub-editenv")
GRUB_SCRIPT_CHECK = shutil.which("grub-script-check")


# ============================================================== sysroots
def make_sysroot(root: Path, ostree, bootloader: str, tries: int | None, commits: int = 3):
    """A sysroot (init-fs, os-init) with commits testos/1..N of different kernels;
    returns (Sysroot, {n: checksum})."""
    sr = Sysroot(str(root))
    sr.init_fs()
    sr.os_init(OSNAME)
    csums = {}
    for n in range(1, commits + 1):
        tree = make_os_tree(
            root.parent / f"{root.name}-tree{n}",
            kernel=f"vmlinuz {n}\n".encode(),
            initramfs=f"initramfs {n}\n".encode(),
        )
        csums[n] = ostree.out(
            f"--repo={root}/ostree/repo",
            "commit",
            f"--branch={OSNAME}/{n}",
            f"--timestamp={TIMESTAMP}",
            f"--tree=dir={tree}",
            "--subject=test",
        )
    repo = f"--repo={root}/ostree/repo"
    if tries is not None:
        ostree(repo, "config", "set", "sysroot.boot-counting-tries", str(tries))
    # last: ostree 2022.7 refuses to open a repo with sysroot.bootloader=systemd-boot
    ostree(repo, "config", "set", "sysroot.bootloader", bootloader)
    return sr, csums


def deploy(sr: Sysroot, n: int):
    return sr.deploy(f"{OSNAME}/{n}", dep.DeployOptions(osname=OSNAME))


def names(sr: Sysroot) -> list[str]:
    """csum.serial of the deployments as the reader lists them (boot order)."""
    return [d.name for d in sr.load().deployments]


def dname(csums: dict, n: int) -> str:
    return f"{csums[n]}.0"


def deployment(sr: Sysroot, name: str) -> Deployment:
    return next(d for d in sr.load().deployments if d.name == name)


def bless(sr: Sysroot, booted: str) -> bool:
    with transaction(sr.layout) as tx:
        return bootcount.bless(tx, deployment(sr, booted))


def mark_bad(sr: Sysroot, booted: str) -> bool:
    with transaction(sr.layout) as tx:
        return bootcount.mark_bad(tx, deployment(sr, booted))


def make_permanent(sr: Sysroot, booted: str):
    with transaction(sr.layout) as tx:
        return bootcount.make_fallback_permanent(tx, deployment(sr, booted))


def status(sr: Sysroot) -> backends.CountingState:
    return bootcount.status(sr.load())


# ============================================================== systemd-boot 252 model
_COUNTER = re.compile(r"^(.*)\+([0-9]+)(?:-([0-9]+))?\.conf$")


def _vkey(text: str) -> list:
    return [(1, int(p), "") if p.isdigit() else (0, 0, p) for p in re.findall(r"\d+|\D+", text)]


def _keys(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        k, _, v = line.partition(" ")
        out.setdefault(k, v)
    return out


def sd_order(root: Path, *, strip_counter: bool = False) -> list[str]:
    """Entry file names in systemd-boot's order, bootable ones only (linux exists).
    systemd-boot 252 uses the whole name as the id; newer ones leave the counter out
    (strip_counter): for our names both must give the same order."""
    edir = root / "boot/loader/entries"
    found = []
    for p in edir.iterdir():
        if not p.name.endswith(".conf"):
            continue
        linux = _keys(p).get("linux")
        if not linux or not (root / "boot" / linux.lstrip("/")).is_file():
            continue
        m = _COUNTER.match(p.name)
        left = int(m.group(2)) if m else None
        done = int(m.group(3) or 0) if m else None
        ident = m.group(1) if (m and strip_counter) else p.name[:-5]
        found.append((left == 0, _vkey(ident), -(left or 0), done or 0, p.name))
    # bad last; id descending; more tries left first; fewer done first
    found.sort(key=lambda t: (t[0], [(-a, -b, tuple(-ord(ch) for ch in c)) for a, b, c in t[1]]))
    return [t[4] for t in found]


def sd_choice(root: Path) -> str | None:
    """The entry systemd-boot boots (no rename)."""
    order = sd_order(root)
    assert order == sd_order(root, strip_counter=True), "id with or without the counter differ"
    return order[0] if order else None


def deployment_of(root: Path, entry_name: str) -> str:
    options = _keys(root / "boot/loader/entries" / entry_name)["options"]
    return os.path.basename(re.search(r"(?:^| )ostree=(\S+)", options).group(1))


def sd_boot(root: Path) -> str:
    """One boot: systemd-boot picks an entry and counts a try in its name. Returns the
    deployment (csum.serial) that boots."""
    name = sd_choice(root)
    assert name is not None, "nothing would boot"
    booted = deployment_of(root, name)
    m = _COUNTER.match(name)
    if m:
        left, done = int(m.group(2)), int(m.group(3) or 0)
        edir = root / "boot/loader/entries"
        os.rename(edir / name, edir / f"{m.group(1)}+{max(left - 1, 0)}-{done + 1}.conf")
    return booted


def agrees(sr: Sysroot) -> None:
    """The reader's default is what systemd-boot would boot; the invariant holds."""
    root = Path(sr.path)
    sel = systemd_boot.select(sr.layout.boot, sr.layout.loader_entries_dir)
    assert sel.default is not None and sel.default[0].filename == sd_choice(root)
    assert names(sr)[0] == deployment_of(root, sd_choice(root))
    assert check_boot_invariant(sr.path) == []


@pytest.fixture
def sd(tmp_path, ostree):
    """systemd-boot scheme (on a plain file system), 3 tries."""
    return make_sysroot(tmp_path / "sr", ostree, "systemd-boot", 3)


def set_tries(sr: Sysroot, value: str) -> None:
    """sysroot.boot-counting-tries=value in the repo config (ostree 2022.7 cannot open
    a repo configured for systemd-boot, so not with its config command)."""
    path = Path(sr.path) / "ostree/repo/config"
    config = KeyFile.parse(path.read_text())
    config.set("sysroot", "boot-counting-tries", value)
    path.write_text(config.to_text())


# ============================================================== systemd-boot tests
@pytest.mark.parametrize("tries", [1, 2, 3, 5])
def test_sd_falls_back_after_exactly_n_failed_boots(tmp_path, ostree, tries):
    sr, c = make_sysroot(tmp_path / "sr", ostree, "systemd-boot", tries)
    root = Path(sr.path)
    deploy(sr, 1)
    assert os.listdir(root / "boot/loader/entries") == ["ostree-1-9999-testos.conf"]  # alone
    change = deploy(sr, 2)
    head = f"ostree-2-9999-testos+{tries}.conf"
    assert f"default entry: {head}" in change.summary
    assert sorted(os.listdir(root / "boot/loader/entries")) == [
        "ostree-1-9998-testos.conf",
        head,
    ]
    st = status(sr)
    assert (st.status, st.tries_left, st.tries_done) == (CountStatus.ARMED, tries, 0)
    assert st.deployment == f"{OSNAME}/deploy/{dname(c, 2)}"
    agrees(sr)
    boots = []
    while len(boots) < tries + 3:
        boots.append(sd_boot(root))  # and every boot fails: nobody blesses
        agrees(sr)
    assert boots == [dname(c, 2)] * tries + [dname(c, 1)] * 3
    assert names(sr) == [dname(c, 1), dname(c, 2)]  # the bad one sorts last
    st = status(sr)
    assert (st.status, st.tries_left, st.tries_done) == (CountStatus.FELL_BACK, 0, tries)
    assert bless(sr, dname(c, 1)) is False  # the fall-back is not the counted one
    assert status(sr).status is CountStatus.FELL_BACK


def test_sd_no_fallback_after_a_bless(sd):
    sr, c = sd
    root = Path(sr.path)
    deploy(sr, 1)
    deploy(sr, 2)
    assert sd_boot(root) == dname(c, 2)
    assert sorted(os.listdir(root / "boot/loader/entries"))[1] == "ostree-2-9999-testos+2-1.conf"
    assert bless(sr, dname(c, 1)) is False  # not the booted counted one: nothing
    assert bless(sr, dname(c, 2)) is True
    assert "ostree-2-9999-testos.conf" in os.listdir(root / "boot/loader/entries")
    assert status(sr).status is CountStatus.OFF
    assert [sd_boot(root) for _ in range(6)] == [dname(c, 2)] * 6
    assert sorted(os.listdir(root / "boot/loader/entries")) == [
        "ostree-1-9998-testos.conf",
        "ostree-2-9999-testos.conf",
    ]
    assert bless(sr, dname(c, 2)) is False  # twice: nothing left to do
    agrees(sr)


def test_sd_systemd_bless_boot_may_bless_instead(sd):
    """systemd-bless-boot good renames the booted entry to its name without counter:
    the reader takes that as ours, and the next write goes on from it."""
    sr, c = sd
    root = Path(sr.path)
    deploy(sr, 1)
    deploy(sr, 2)
    sd_boot(root)
    edir = root / "boot/loader/entries"
    os.rename(edir / "ostree-2-9999-testos+2-1.conf", edir / "ostree-2-9999-testos.conf")
    assert status(sr).status is CountStatus.OFF
    agrees(sr)
    deploy(sr, 3)
    assert sorted(os.listdir(edir)) == ["ostree-2-9998-testos.conf", "ostree-3-9999-testos+3.conf"]
    assert sd_choice(root) == "ostree-3-9999-testos+3.conf"
    agrees(sr)


def test_sd_mark_bad_falls_back_at_the_next_boot(sd):
    sr, c = sd
    root = Path(sr.path)
    deploy(sr, 1)
    deploy(sr, 2)
    assert sd_boot(root) == dname(c, 2)
    assert mark_bad(sr, dname(c, 1)) is False
    assert mark_bad(sr, dname(c, 2)) is True
    assert "ostree-2-9999-testos+0-1.conf" in os.listdir(root / "boot/loader/entries")
    assert sd_boot(root) == dname(c, 1)
    assert status(sr).status is CountStatus.FELL_BACK
    agrees(sr)


def test_sd_counter_is_kept_while_the_default_stays(sd):
    """A round that keeps the default (kernel arguments) carries its counter; a
    rollback to the booted one is not counted; one to another is."""
    sr, c = sd
    root = Path(sr.path)
    deploy(sr, 1)
    deploy(sr, 2)
    sd_boot(root)  # +2-1
    with transaction(sr.layout) as tx:
        ops.kargs_edit_in_place(tx, ["quiet"], [])
    assert sd_choice(root) == "ostree-3-9999-testos+2-1.conf"
    assert [sd_boot(root) for _ in range(3)] == [dname(c, 2)] * 2 + [dname(c, 1)]
    agrees(sr)


def test_sd_rollback_and_set_default_arm_unless_booted(sd, monkeypatch):
    sr, c = sd
    deploy(sr, 1)
    deploy(sr, 2)
    sr.rollback()  # c1, not booted (no booted deployment here): armed
    assert sd_choice(Path(sr.path)) == "ostree-3-9999-testos+3.conf"
    # pretend c1 is booted: a rollback to it is not counted
    booted = deployment(sr, dname(c, 1))
    real_load = SysrootState._load

    def load_booted(self):
        real_load(self)
        self.booted = next((d for d in self.deployments if d.identity == booted.identity), None)

    monkeypatch.setattr(SysrootState, "_load", load_booted)
    sr.set_default("1")  # c2: counted
    assert sd_choice(Path(sr.path)) == "ostree-4-9999-testos+3.conf"
    sr.rollback()  # back to the booted c1: not counted
    assert sd_choice(Path(sr.path)) == "ostree-5-9999-testos.conf"
    agrees(sr)


def test_sd_fallback_made_permanent_and_recorded(sd):
    sr, c = sd
    root = Path(sr.path)
    deploy(sr, 1)
    deploy(sr, 2)
    for _ in range(4):
        sd_boot(root)
    assert status(sr).status is CountStatus.FELL_BACK
    assert make_permanent(sr, dname(c, 2)) is None  # the failed one is not the fall-back
    change = make_permanent(sr, dname(c, 1))
    assert change is not None
    assert names(sr) == [dname(c, 1), dname(c, 2)]
    edir = root / "boot/loader/entries"
    # one level down (the bad head sorted last): c1 heads, c2 below it, no counters
    assert sorted(os.listdir(edir)) == ["ostree-0-9998-testos.conf", "ostree-1-9999-testos.conf"]
    assert status(sr).status is CountStatus.OFF
    failed = deployment(sr, dname(c, 2))
    assert failed.origin.get(bootcount.FAILED_GROUP, "failed")
    assert deployment(sr, dname(c, 1)).origin.get(bootcount.FAILED_GROUP, "failed") is None
    assert [sd_boot(root) for _ in range(3)] == [dname(c, 1)] * 3
    assert make_permanent(sr, dname(c, 1)) is None  # done: nothing fell back now
    agrees(sr)


def test_sd_deploy_while_fallen_back(sd):
    """A new deployment written while the bad head sorts last: counted again, and its
    own fall-back is the list's second entry."""
    sr, c = sd
    root = Path(sr.path)
    deploy(sr, 1)
    deploy(sr, 2)
    for _ in range(4):
        sd_boot(root)
    deploy(sr, 3)
    listed = names(sr)
    assert listed[0] == dname(c, 3)
    assert sd_choice(root) == "ostree-1-9999-testos+3.conf"
    boots = [sd_boot(root) for _ in range(5)]
    assert boots == [dname(c, 3)] * 3 + [listed[1]] * 2
    agrees(sr)


# -------------------------------------------------------------- every step of a write
class StepChecker:
    """Checks the state after each file operation of a write: what an interruption
    there would leave. The modelled boot and the reader's list are the old ones or
    the new ones, together."""

    def __init__(self, sr: Sysroot, monkeypatch):
        self.sr = sr
        self.root = Path(sr.path)
        self.seen: list[tuple[str, tuple[str, ...]]] = []
        # steps where, were the counted default bad, the reader and systemd-boot
        # would disagree: (before the commit, step number)
        self.disagree: list[tuple[bool, int]] = []
        self.old_choice = sd_choice(self.root)
        real_write, real_remove = sdwriter.SdBootWriter._write_file, systemd_boot.remove_leftover

        def write_file(writer, parent, name, **kw):
            real_write(writer, parent, name, **kw)
            self.check()

        def remove(path):
            ok = real_remove(path)
            self.check()
            return ok

        monkeypatch.setattr(sdwriter.SdBootWriter, "_write_file", write_file)
        monkeypatch.setattr(systemd_boot, "remove_leftover", remove)

    def now(self) -> tuple[str, tuple[str, ...]]:
        return (deployment_of(self.root, sd_choice(self.root)), tuple(names(self.sr)))

    def check(self) -> None:
        boot, listing = self.now()
        assert listing[0] == boot, f"the reader's default {listing[0]}, the boot {boot}"
        self.seen.append((boot, listing))
        if not self.agrees_once_bad():
            self.disagree.append((self.old_choice == sd_choice(self.root), len(self.seen)))

    def agrees_once_bad(self) -> bool:
        """Whether, were every counted entry out of tries now, systemd-boot would boot
        the entry the reader calls the default (tried with the names renamed, and
        renamed back)."""
        edir = self.root / "boot/loader/entries"
        renamed = []
        for name in os.listdir(edir):
            m = _COUNTER.match(name)
            if m and int(m.group(2)) > 0:
                bad = f"{m.group(1)}+0-{int(m.group(3) or 0) + 1}.conf"
                os.rename(edir / name, edir / bad)
                renamed.append((name, bad))
        try:
            sel = systemd_boot.select(self.sr.layout.boot, str(edir))
            return sel.default is not None and sel.default[0].filename == sd_choice(self.root)
        finally:
            for name, bad in renamed:
                os.rename(edir / bad, edir / name)

    def assert_old_or_new(self, old) -> None:
        new = self.now()
        states = {s for s in self.seen}
        assert states <= {old, new}, f"{states - {old, new}} between {old} and {new}"


@pytest.mark.parametrize("case", ["deploy", "deploy-fallen-back", "permanent", "kargs-kept"])
def test_sd_every_step_boots_old_or_new(sd, monkeypatch, case):
    sr, c = sd
    root = Path(sr.path)
    deploy(sr, 1)
    if case != "deploy":
        deploy(sr, 2)
        if case != "kargs-kept":
            for _ in range(4):
                sd_boot(root)  # c2 went bad: c1 boots
        else:
            sd_boot(root)
    old = (deployment_of(root, sd_choice(root)), tuple(names(sr)))
    checker = StepChecker(sr, monkeypatch)
    if case in ("deploy", "deploy-fallen-back"):
        deploy(sr, 3)
    elif case == "permanent":
        make_permanent(sr, dname(c, 1))
    else:
        with transaction(sr.layout) as tx:
            ops.kargs_edit_in_place(tx, ["quiet"], [])
    assert len(checker.seen) > 3
    checker.assert_old_or_new(old)
    # Were the counted default(s) to go bad at any step, systemd-boot would boot what
    # the reader calls the default; the one known exception (systemd_boot.py): a
    # write replacing a counted default, cut before its commit.
    if case == "kargs-kept":
        assert checker.disagree and all(before for before, _ in checker.disagree)
    else:
        assert checker.disagree == []
    assert check_boot_invariant(sr.path) == []


def test_sd_counting_off_writes_no_counter(tmp_path, ostree):
    for tries in (None, 0):
        sr, c = make_sysroot(tmp_path / f"sr{tries}", ostree, "systemd-boot", tries)
        deploy(sr, 1)
        deploy(sr, 2)
        assert sorted(os.listdir(Path(sr.path) / "boot/loader/entries")) == [
            "ostree-1-9998-testos.conf",
            "ostree-2-9999-testos.conf",
        ]
        assert status(sr).status is CountStatus.OFF
        # and with nothing armed, bless and mark-bad change nothing
        before = sorted(os.listdir(Path(sr.path) / "boot/loader/entries"))
        assert bless(sr, dname(c, 2)) is False and mark_bad(sr, dname(c, 2)) is False
        assert sorted(os.listdir(Path(sr.path) / "boot/loader/entries")) == before


def test_select_counted_names():
    """EntryName reads counters from the last `+`, as systemd-boot; a stateroot name
    that ends like a counter is refused for writing."""
    en = systemd_boot.EntryName.parse("ostree-3-9999-a+b+2-1.conf")
    assert (en.g, en.r, en.osname, en.left, en.done) == (3, 9999, "a+b", 2, 1)
    assert en.filename == "ostree-3-9999-a+b+2-1.conf"
    assert en.counted(None).filename == "ostree-3-9999-a+b.conf"
    assert systemd_boot.EntryName.parse("ostree-3-9999-os+0.conf").bad
    assert systemd_boot.EntryName.parse("ostree-3-9999-os+1234567890.conf") is None
    with pytest.raises(Exception, match="ends like a boot counter"):
        _ = systemd_boot.EntryName(1, 9999, "os+3").filename


# ============================================================== GRUB model
class GrubModel:
    """Runs a generated grub.cfg the way GRUB would, for the commands it uses; grubenv
    is read and written with grub-editenv (not with the module under test)."""

    def __init__(self, grub_dir: Path):
        self.grub_dir = grub_dir
        self.env: dict[str, str] = {}

    def expand(self, word: str) -> str:
        return re.sub(
            r"\$\{(\w+)\}|\$(\w+)", lambda m: self.env.get(m.group(1) or m.group(2), ""), word
        )

    def test(self, words: list[str]) -> bool:
        """[ ... ] with = != -n -z -f -s, -a binding tighter than -o."""

        def atom(w: list[str]) -> bool:
            if len(w) == 3 and w[1] in ("=", "!="):
                return (w[0] == w[2]) == (w[1] == "=")
            if len(w) == 2 and w[0] in ("-n", "-z"):
                return bool(w[1]) == (w[0] == "-n")
            if len(w) == 2 and w[0] in ("-f", "-s"):
                p = Path(w[1])
                return p.is_file() and (w[0] == "-f" or p.stat().st_size > 0)
            raise AssertionError(f"test {w} not modelled")

        def split(w: list[str], op: str) -> list[list[str]]:
            out: list[list[str]] = [[]]
            for x in w:
                if x == op:
                    out.append([])
                else:
                    out[-1].append(x)
            return out

        return any(all(atom(a) for a in split(o, "-a")) for o in split(words, "-o"))

    def condition(self, words: list[str]) -> bool:
        assert words[0] == "[" and words[-1] == "then", words
        inner = words[1:-1]
        assert inner[-1] == "];", words
        return self.test([self.expand(w) for w in inner[:-1]])

    def run(self, cfg: str) -> int:
        """Run cfg (a fresh boot); returns the index of the menu entry that boots."""
        self.env = {"prefix": str(self.grub_dir), "config_directory": str(self.grub_dir)}
        stack: list[tuple[bool, bool]] = []  # (enclosing active, a branch was taken)
        active = True
        in_menu = False
        for line in cfg.splitlines():
            line = line.strip()
            if in_menu:
                in_menu = line != "}"
                continue
            if not line or line.startswith("#"):
                continue
            words = shlex.split(line)
            cmd = words[0]
            if cmd == "if":
                cond = active and self.condition(words[1:])
                stack.append((active, cond))
                active = cond
            elif cmd == "elif":
                outer, taken = stack[-1]
                cond = outer and not taken and self.condition(words[1:])
                stack[-1] = (outer, taken or cond)
                active = cond
            elif cmd == "else":
                outer, taken = stack[-1]
                active = outer and not taken
                stack[-1] = (outer, True)
            elif cmd == "fi":
                active, _ = stack.pop()
            elif cmd == "menuentry":
                in_menu = True
            elif not active:
                continue
            elif cmd == "set":
                name, _, value = words[1].partition("=")
                self.env[name] = self.expand(value)
            elif cmd == "load_env":
                assert words[1] == "-f"
                path, wanted = self.expand(words[2]), words[3:]
                out = subprocess.run(
                    [GRUB_EDITENV, path, "list"], capture_output=True, text=True, check=True
                ).stdout
                for item in out.splitlines():
                    name, _, value = item.partition("=")
                    if name in wanted:
                        self.env[name] = value
            elif cmd == "save_env":
                assert words[1] == "-f"
                path = self.expand(words[2])
                subprocess.run(
                    [GRUB_EDITENV, path, "set", *(f"{n}={self.env.get(n, '')}" for n in words[3:])],
                    check=True,
                )
            elif cmd == "source":
                raise AssertionError("no custom.cfg in these tests")
            else:
                raise AssertionError(f"command {cmd} not modelled")
        assert not stack, "unbalanced if/fi"
        return int(self.env.get("default", "0"))


def editenv(path: Path, *args: str) -> str:
    return subprocess.run(
        [GRUB_EDITENV, str(path), *args], capture_output=True, text=True, check=True
    ).stdout


def two_entries() -> list[BootEntry]:
    return [
        BootEntry([("title", f"OS {i}"), ("linux", f"/k{i}"), ("options", "ostree=x")])
        for i in range(2)
    ]


@pytest.mark.parametrize("tries", range(1, grub2.MAX_TRIES + 1))
def test_grub_script_passes_grub_script_check(tmp_path, tries):
    assert GRUB_SCRIPT_CHECK, "grub-script-check (package grub-common) is required"
    cfg = tmp_path / "grub.cfg"
    cfg.write_text(grub2.render_config(two_entries(), tries))
    proc = subprocess.run([GRUB_SCRIPT_CHECK, str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert grub2.counting_tries(cfg.read_text()) == tries
    # the checker does catch a broken script (an `if` without its `fi`)
    cfg.write_text(grub2.render_config(two_entries(), tries).replace("\nfi\n", "\n", 1))
    assert subprocess.run([GRUB_SCRIPT_CHECK, str(cfg)], capture_output=True).returncode != 0


def test_grub_script_only_with_counting_and_a_fallback():
    entries = two_entries()
    plain = grub2.render_config(entries)
    assert grub2.render_config(entries, 0) == plain and "boot_counter" not in plain
    assert "boot_counter" not in grub2.render_config(entries[:1], 3)  # nothing to fall to


@pytest.mark.parametrize("tries", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("bless_after", [None, 1, "last"])
def test_grub_state_machine(tmp_path, tries, bless_after):
    """Armed with N: N boots of entry 0, then entry 1 with boot_counter=-1 stored, at
    every later boot too; a bless after boot k ends the counting: entry 0 for good."""
    gdir = tmp_path / "grub"
    gdir.mkdir()
    env = gdir / "grubenv"
    editenv(env, "create")
    editenv(env, "set", "saved_entry=kept")
    grubenv.update(str(env), {"boot_counter": str(tries), "boot_success": "0"})  # arm
    cfg = grub2.render_config(two_entries(), tries)
    model = GrubModel(gdir)
    k = {None: None, 1: 1, "last": tries}[bless_after]
    boots = []
    for i in range(tries + 3):
        boots.append(model.run(cfg))
        if k is not None and i + 1 == k:
            grubenv.update(str(env), {"boot_success": "1", "boot_counter": None})  # bless
    if k is None:
        assert boots == [0] * tries + [1] * 3
        assert editenv(env, "list") == "saved_entry=kept\nboot_counter=-1\nboot_success=0\n"
    else:
        assert boots == [0] * (tries + 3)
        assert editenv(env, "list") == "saved_entry=kept\nboot_success=1\n"


@pytest.mark.parametrize("value", ["0", "-1", "10", "x", ""])
def test_grub_state_machine_odd_counters_fall_back(tmp_path, value):
    gdir = tmp_path / "grub"
    gdir.mkdir()
    env = gdir / "grubenv"
    grubenv.update(str(env), {"boot_counter": value, "boot_success": "0"})
    model = GrubModel(gdir)
    booted = model.run(grub2.render_config(two_entries(), 3))
    # an empty counter is "unset" to the script: not counted
    assert booted == (0 if value == "" else 1)


def test_grub_unarmed_or_missing_grubenv_boots_the_default(tmp_path):
    gdir = tmp_path / "grub"
    gdir.mkdir()
    model = GrubModel(gdir)
    cfg = grub2.render_config(two_entries(), 3)
    assert model.run(cfg) == 0  # no grubenv
    editenv(gdir / "grubenv", "create")
    assert model.run(cfg) == 0  # empty
    editenv(gdir / "grubenv", "set", "boot_success=1")
    assert model.run(cfg) == 0


# -------------------------------------------------------------- GRUB, whole sysroots
def grub_boot(sr: Sysroot) -> str:
    """One boot through the live grub.cfg: the deployment (csum.serial) that boots."""
    layout = sr.layout
    cfg = (Path(layout.boot) / "grub/grub.cfg").read_text()
    index = GrubModel(Path(grub2.grub_dir(layout.boot))).run(cfg)
    entries = re.findall(r"'ostree=(/ostree/boot\.[01]/[^']+)'", cfg)
    target = os.readlink(layout.path(entries[index].lstrip("/")))
    return os.path.basename(target)


def grub_trial_boot(sr: Sysroot, scratch: Path) -> tuple[str, bool]:
    """A boot through the live configuration with a copy of grubenv (the live one is
    left alone): (the deployment that boots, whether that boot was counted)."""
    layout = sr.layout
    link = Path(layout.boot) / "grub/grub.cfg"
    cfg = link.read_text()
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    env = Path(grub2.env_path(layout.boot))
    if env.exists():
        shutil.copy(env, scratch / "grubenv")
    before = editenv(scratch / "grubenv", "list") if env.exists() else ""
    index = GrubModel(scratch).run(cfg)
    after = editenv(scratch / "grubenv", "list") if env.exists() else ""
    entries = re.findall(r"'ostree=(/ostree/boot\.[01]/[^']+)'", cfg)
    target = os.readlink(layout.path(entries[index].lstrip("/")))
    return os.path.basename(target), before != after


@pytest.mark.parametrize("case", ["deploy", "rollback-to-booted"])
def test_grub_every_step_counts_what_is_untested(grub, monkeypatch, tmp_path, case):
    """At each file operation of a write (where an interruption could leave it), a
    boot takes the old default or the new one, and an untested default (the new one
    of a deploy; the armed one a rollback to the booted deployment leaves) is never
    booted uncounted."""
    sr, c = grub
    deploy(sr, 1)
    if case == "rollback-to-booted":
        booted = deployment(sr, dname(c, 1))
        real_load = SysrootState._load

        def load_booted(self):
            real_load(self)
            self.booted = next((d for d in self.deployments if d.identity == booted.identity), None)

        monkeypatch.setattr(SysrootState, "_load", load_booted)
        deploy(sr, 2)  # armed, not booted yet
        old, new, untested = dname(c, 2), dname(c, 1), dname(c, 2)
    else:
        old, new, untested = dname(c, 1), dname(c, 3), dname(c, 3)
    seen = []

    def check():
        booted, counted = grub_trial_boot(sr, tmp_path / "scratch")
        seen.append(booted)
        assert booted in (old, new), f"boots {booted}"
        assert counted or booted != untested, f"{booted} boots uncounted"

    for name in ("atomic_write", "atomic_symlink"):
        real = getattr(fsutil, name)

        def wrapped(*a, _real=real, **kw):
            _real(*a, **kw)
            check()

        monkeypatch.setattr(fsutil, name, wrapped)
    if case == "deploy":
        deploy(sr, 3)
    else:
        sr.rollback()
    assert seen[0] == old and seen[-1] == new and len(seen) >= 4, seen


@pytest.fixture
def grub(tmp_path, ostree):
    return make_sysroot(tmp_path / "sr", ostree, "grub2", 3)


def test_grub_falls_back_after_n_failed_boots_and_is_made_permanent(grub):
    sr, c = grub
    env = Path(sr.layout.boot) / "grub/grubenv"
    deploy(sr, 1)
    assert not env.exists()  # alone: nothing to fall back to, nothing armed
    deploy(sr, 2)
    assert editenv(env, "list") == "boot_counter=3\nboot_success=0\n"
    assert grub2.counting_tries((Path(sr.layout.boot) / "grub/grub.cfg").read_text()) == 3
    st = status(sr)
    assert (st.status, st.tries_left) == (CountStatus.ARMED, 3)
    assert check_boot_invariant(sr.path) == []
    boots = [grub_boot(sr) for _ in range(5)]
    assert boots == [dname(c, 2)] * 3 + [dname(c, 1)] * 2
    assert status(sr).status is CountStatus.FELL_BACK
    assert bless(sr, dname(c, 1)) is False  # blessing the fall-back would undo it
    assert editenv(env, "list") == "boot_counter=-1\nboot_success=0\n"
    assert make_permanent(sr, dname(c, 1)) is not None
    assert names(sr) == [dname(c, 1), dname(c, 2)]
    assert editenv(env, "list") == "boot_success=1\n"
    assert [grub_boot(sr) for _ in range(3)] == [dname(c, 1)] * 3
    assert deployment(sr, dname(c, 2)).origin.get(bootcount.FAILED_GROUP, "failed")
    assert check_boot_invariant(sr.path) == []


def test_grub_bless_and_mark_bad(grub):
    sr, c = grub
    env = Path(sr.layout.boot) / "grub/grubenv"
    deploy(sr, 1)
    deploy(sr, 2)
    assert grub_boot(sr) == dname(c, 2)
    assert bless(sr, dname(c, 1)) is False
    assert bless(sr, dname(c, 2)) is True
    assert editenv(env, "list") == "boot_success=1\n"
    assert status(sr).status is CountStatus.BLESSED
    assert [grub_boot(sr) for _ in range(5)] == [dname(c, 2)] * 5
    deploy(sr, 3)  # armed again
    assert grub_boot(sr) == dname(c, 3)
    assert mark_bad(sr, dname(c, 3)) is True
    assert status(sr).status is CountStatus.BAD
    assert grub_boot(sr) == names(sr)[1]
    assert check_boot_invariant(sr.path) == []


def test_grub_kargs_in_place_keeps_the_script(grub):
    sr, c = grub
    deploy(sr, 1)
    deploy(sr, 2)
    with transaction(sr.layout) as tx:
        ops.kargs_edit_in_place(tx, ["quiet"], [])
    cfg = (Path(sr.layout.boot) / "grub/grub.cfg").read_text()
    assert grub2.counting_tries(cfg) == 3 and "'quiet'" in cfg
    assert check_boot_invariant(sr.path) == []


def test_grub_rollback_to_booted_clears(grub, monkeypatch):
    """The booted deployment made the default again is not counted: grubenv is
    cleared (after the swap)."""
    sr, c = grub
    env = Path(sr.layout.boot) / "grub/grubenv"
    deploy(sr, 1)
    booted = deployment(sr, dname(c, 1))
    real_load = SysrootState._load

    def load_booted(self):
        real_load(self)
        self.booted = next((d for d in self.deployments if d.identity == booted.identity), None)

    monkeypatch.setattr(SysrootState, "_load", load_booted)
    deploy(sr, 2)
    assert editenv(env, "list") == "boot_counter=3\nboot_success=0\n"
    sr.rollback()
    assert names(sr)[0] == dname(c, 1)
    assert editenv(env, "list") == "boot_success=1\n"
    assert [grub_boot(sr) for _ in range(5)] == [dname(c, 1)] * 5


def test_grub_counting_off_changes_nothing(tmp_path, ostree):
    sr, c = make_sysroot(tmp_path / "sr", ostree, "grub2", None)
    deploy(sr, 1)
    deploy(sr, 2)
    cfg = (Path(sr.layout.boot) / "grub/grub.cfg").read_text()
    assert cfg == grub2.render_config([d.entry for d in sr.load().deployments])
    assert not (Path(sr.layout.boot) / "grub/grubenv").exists()
    assert status(sr).status is CountStatus.OFF
    assert bless(sr, dname(c, 2)) is False and mark_bad(sr, dname(c, 2)) is False
    assert not (Path(sr.layout.boot) / "grub/grubenv").exists()


def test_grub_damaged_grubenv_is_one_error_line_and_changes_nothing(grub, sysroot):
    sr, c = grub
    deploy(sr, 1)
    env = Path(sr.layout.boot) / "grub/grubenv"
    env.write_bytes(b"not an environment block\n")
    before = (os.readlink(sr.layout.loader_link), sorted(os.listdir(sr.layout.boot)), names(sr))
    proc = sysroot(
        "admin", "deploy", f"--sysroot={sr.path}", f"--os={OSNAME}", f"{OSNAME}/2", check=False
    )
    assert proc.returncode == 1
    assert one_error_line(proc) == (f"error: {env}: not a GRUB environment block (no signature)")
    assert (
        os.readlink(sr.layout.loader_link),
        sorted(os.listdir(sr.layout.boot)),
        names(sr),
    ) == before
    assert list(Path(sr.path).glob(f"ostree/deploy/{OSNAME}/deploy/{c[2]}.*")) == []
    assert check_boot_invariant(sr.path) == []


# ============================================================== configuration
@pytest.mark.parametrize("value", ["abc", "-1", "10", "3.0", "٣"])
def test_bad_tries_value_is_one_error_line_and_changes_nothing(tmp_path, ostree, sysroot, value):
    sr, c = make_sysroot(tmp_path / "sr", ostree, "systemd-boot", None)
    deploy(sr, 1)
    before = sorted(os.listdir(Path(sr.path) / "boot/loader/entries"))
    set_tries(sr, value)
    proc = sysroot(
        "admin", "deploy", f"--sysroot={sr.path}", f"--os={OSNAME}", f"{OSNAME}/2", check=False
    )
    assert proc.returncode == 1
    assert one_error_line(proc) == (
        f"error: Invalid sysroot.boot-counting-tries '{value}' in {sr.path}/ostree/repo/config "
        "(expected 0 to 9; 0 turns boot counting off)"
    )
    assert sorted(os.listdir(Path(sr.path) / "boot/loader/entries")) == before
    assert names(sr) == [dname(c, 1)]


def test_none_backend_refuses_counting(tmp_path, ostree, sysroot):
    sr, c = make_sysroot(tmp_path / "sr", ostree, "none", 3)
    proc = sysroot(
        "admin", "deploy", f"--sysroot={sr.path}", f"--os={OSNAME}", f"{OSNAME}/1", check=False
    )
    assert one_error_line(proc) == (
        "error: sysroot.boot-counting-tries=3 needs sysroot.bootloader=grub2 or "
        "systemd-boot: with none nothing counts boots (set it to 0 to turn counting off)"
    )
    assert not os.path.lexists(Path(sr.path) / "boot/loader")
    assert list(Path(sr.path).glob(f"ostree/deploy/{OSNAME}/deploy/*")) == []
    set_tries(sr, "0")
    deploy(sr, 1)  # 0: off, fine
    assert backends.NoneBackend().counting_state(sr.layout).status is CountStatus.OFF


# ============================================================== on a real FAT file system
def test_sd_counting_on_fat(fat, fat_sysroot):  # noqa: F811
    """The renames (systemd-boot's, bless, mark bad) on vfat (or fusefat), and the
    file system consistent afterwards (fat_sysroot runs fsck.fat)."""
    root = fat_sysroot
    sr = Sysroot(str(root))
    set_tries(sr, "2")
    deploy(sr, 1)
    deploy(sr, 2)
    c = {n: fat.commits[n] for n in (1, 2, 3)}
    assert sd_choice(root) == "ostree-2-9999-testos+2.conf"
    assert sd_boot(root) == dname(c, 2)
    assert bless(sr, dname(c, 2)) is True
    assert sd_choice(root) == "ostree-2-9999-testos.conf"
    deploy(sr, 3)
    assert sd_boot(root) == dname(c, 3)
    assert mark_bad(sr, dname(c, 3)) is True
    assert sd_choice(root) == "ostree-2-9998-testos.conf"
    assert sd_boot(root) == dname(c, 2)
    assert make_permanent(sr, dname(c, 2)) is not None
    assert [sd_boot(root) for _ in range(2)] == [dname(c, 2)] * 2
    agrees(sr)
