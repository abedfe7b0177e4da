"""Words that would break a boot entry line, a grub.cfg or a path are refused before
anything is written (sysroot/boot/words.py and its callers).

For each input, the real ostree 2022.7 is given the same on a twin sysroot, and what
it does is recorded here: mostly it writes the entry (an injected `initrd` or
`options` line, a stateroot name that splits ostree=) and then fails reading it back,
or does not notice at all. sysroot refuses with one error line and a nonzero exit,
and the sysroot is byte for byte as before (conftest.snapshot).

Back ends: BLS only (bootloader none), grub2 and systemd-boot on a FAT image.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sysroot.boot import grub2, systemd_boot
from sysroot.boot.bls import BootEntry
from sysroot.boot.kargs import KernelArgs
from sysroot.errors import FormatError
from tests.boot import test_systemd_boot_vfat as vfat
from tests.deploy import test_staged as harness
from tests.helpers.sysroots import OSNAME, make_os_tree, snapshot

# fixtures shared with those modules: FAT images, the booted-system harness
fat, fat_sysroot, make_booted = vfat.fat, vfat.fat_sysroot, harness.make_booted

OS = f"--os={OSNAME}"
REF = f"{OSNAME}/x"
EVIL = "root=/dev/sda\ninitrd /evil.img"


def _entries_text(root: Path) -> str:
    return "".join(p.read_text() for p in sorted((root / "boot/loader/entries").glob("*.conf")))


def _refused(proc, message: str, rc: int) -> None:
    """One error line, exactly message, exit rc, no traceback."""
    err = proc.stderr.decode() if isinstance(proc.stderr, bytes) else proc.stderr
    assert proc.returncode == rc, err
    assert err == f"error: {message}\n", err


@pytest.fixture
def deployed(pair, os_tree):
    """The pair (a: ostree, b: sysroot) with one deployment each."""
    pair.commit(os_tree)
    pair.admin("deploy", OS, REF)
    return pair


# ====================================================================== kernel arguments
KARGS = [
    # option, value, ostree 2022.7's exit code (it writes what it gets, except deletes)
    ("--karg", EVIL, 1),  # writes the `initrd /evil.img` line, then fails re-reading
    ("--karg-append", EVIL, 1),
    ("--karg-delete", EVIL, 1),  # "No key 'root' found"
    ("--karg", "a b", 0),  # written; read back as two arguments
    ("--karg", "console=tty\tS0", 0),
    ("--karg-append", "x=\x1b[2J", 0),
    ("--karg", "x=a\rinitrd /evil.img", 0),  # a line end for some readers
]
WHY = {
    EVIL: r"'root=/dev/sda\ninitrd /evil.img': contains a control character (U+000A)",
    "a b": "'a b': contains a space",
    "console=tty\tS0": r"'console=tty\tS0': contains a control character (U+0009)",
    "x=\x1b[2J": r"'x=\x1b[2J': contains a control character (U+001B)",
    "x=a\rinitrd /evil.img": r"'x=a\rinitrd /evil.img': contains a control character "
    "(U+000D)",
}


@pytest.mark.parametrize("option,value,ostree_rc", KARGS)
def test_deploy_refuses_hostile_kernel_arguments(deployed, option, value, ostree_rc):
    a, b = deployed.a, deployed.b
    before = snapshot(b.path)
    rb = b.admin("deploy", OS, f"{option}={value}", REF, check=False)
    _refused(rb, f"Invalid kernel argument {WHY[value]}", 2)
    assert snapshot(b.path) == before
    ra = a.oadmin("deploy", OS, f"{option}={value}", REF, check=False)
    assert ra.returncode == ostree_rc, ra.stderr
    if value == EVIL and option != "--karg-delete":
        assert "\ninitrd /evil.img\n" in _entries_text(a.path)  # ostree's injection


def test_kargs_edit_in_place_refuses_hostile_words(deployed):
    a, b = deployed.a, deployed.b
    before = snapshot(b.path)
    for option in ("--append-if-missing", "--delete-if-present"):
        rb = b.tool(
            "admin",
            "kargs",
            "edit-in-place",
            f"--sysroot={b.path}",
            f"{option}={EVIL}",
            check=False,
        )
        _refused(rb, f"Invalid kernel argument {WHY[EVIL]}", 2)
        assert snapshot(b.path) == before
    # ostree 2022.7 edits the entry in place, injection included, and exits 0
    ra = a.ostree(
        "admin", "kargs", "edit-in-place", f"--sysroot={a.path}", f"--append-if-missing={EVIL}"
    )
    assert ra.returncode == 0 and "\ninitrd /evil.img\n" in _entries_text(a.path)


@pytest.mark.unit
def test_proc_cmdline_words_are_checked():
    assert KernelArgs.from_proc_cmdline("BOOT_IMAGE=/vmlinuz root=/dev/vda quiet \n").words == [
        "root=/dev/vda",
        "quiet",
    ]
    with pytest.raises(FormatError, match=r"/proc/cmdline 'a\\tb': contains a control"):
        KernelArgs.from_proc_cmdline("root=/dev/vda a\tb\n")


# ====================================================================== the commit
def _commit_both(deployed, tree: Path, **kw) -> None:
    deployed.commit(tree, f"{OSNAME}/y", **kw)


def _refuse_both(deployed, message: str) -> str:
    """sysroot refuses the deploy of testos/y (nothing changed); returns the entries
    ostree wrote for it."""
    a, b = deployed.a, deployed.b
    before = snapshot(b.path)
    rb = b.admin("deploy", OS, f"{OSNAME}/y", check=False)
    _refused(rb, message, 1)
    assert snapshot(b.path) == before
    ra = a.oadmin("deploy", OS, f"{OSNAME}/y", check=False)
    assert ra.returncode == 1, ra.stderr  # ostree: writes the entry, fails reading it
    return _entries_text(a.path)


def test_kernel_version_directory_with_a_newline(deployed, tmp_path):
    tree = make_os_tree(tmp_path / "evil-kver", kver="5.0.0\noptions init=sh")
    _commit_both(deployed, tree)
    ostree_wrote = _refuse_both(
        deployed,
        r"Invalid kernel file name from the commit 'vmlinuz-5.0.0\noptions "
        r"init=sh': contains a control character (U+000A)",
    )
    assert "\noptions init=sh\n" in ostree_wrote


def test_commit_version_with_a_newline_in_the_title(deployed, os_tree):
    _commit_both(deployed, os_tree, version="1\ninitrd /evil.img")
    csum = deployed.b.ostree.out(f"--repo={deployed.b.repo}", "rev-parse", f"{OSNAME}/y")
    ostree_wrote = _refuse_both(
        deployed,
        rf"Invalid version of commit {csum} '1\ninitrd /evil.img': contains a "
        "control character (U+000A)",
    )
    assert "\ninitrd /evil.img (ostree:0)\n" in ostree_wrote


def test_os_release_name_with_a_control_character(deployed, tmp_path):
    tree = make_os_tree(
        tmp_path / "esc", extra={"usr/lib/os-release": 'ID=testos\nPRETTY_NAME="Test\x1b[2J OS"\n'}
    )
    _commit_both(deployed, tree)
    a, b = deployed.a, deployed.b
    csum = b.ostree.out(f"--repo={b.repo}", "rev-parse", f"{OSNAME}/y")
    before = snapshot(b.path)
    rb = b.admin("deploy", OS, f"{OSNAME}/y", check=False)
    _refused(
        rb,
        rf"Invalid os-release name (PRETTY_NAME or ID) of commit {csum} "
        r"'Test\x1b[2J OS': contains a control character (U+001B)",
        1,
    )
    assert snapshot(b.path) == before
    # ostree writes the escape sequence into the title, and succeeds
    a.oadmin("deploy", OS, f"{OSNAME}/y")
    assert "title Test\x1b[2J OS (ostree:0)\n" in _entries_text(a.path)


# ====================================================================== stateroot names
@pytest.mark.parametrize(
    "name,why",
    [
        ("with space", "'with space': contains a space"),
        ("nl\nx", r"'nl\nx': contains a control character (U+000A)"),
        ("tab\tx", r"'tab\tx': contains a control character (U+0009)"),
    ],
)
def test_os_init_refuses_names_that_are_no_words(make_sysroot, ostree, name, why):
    """ostree 2022.7 creates all of these; "with space" then makes an ostree= that
    neither tool can parse."""
    sr = make_sysroot(by="sysroot")
    before = snapshot(sr.path)
    r = sr.admin("os-init", name, check=False)
    _refused(r, f"Invalid stateroot name {why}", 2)
    assert snapshot(sr.path) == before
    assert sr.oadmin("os-init", name).returncode == 0
    assert (sr.path / "ostree/deploy" / name).is_dir()


def test_deploy_refuses_a_stateroot_ostree_created(deployed, os_tree):
    """The stateroot exists (ostree made it); deploying into it is refused."""
    a, b = deployed.a, deployed.b
    for sr in (a, b):
        sr.oadmin("os-init", "with space")
    before = snapshot(b.path)
    rb = b.admin("deploy", "--os=with space", REF, check=False)
    _refused(rb, "Invalid stateroot name 'with space': contains a space", 2)
    assert snapshot(b.path) == before
    ra = a.oadmin("deploy", "--os=with space", REF, check=False)
    assert ra.returncode == 1 and b"Invalid ostree= argument '/ostree/boot.0/with'" in ra.stderr
    # and from then on every ostree command on it fails the same way
    assert a.oadmin("status", check=False).returncode == 1


# ====================================================================== staged
def test_stage_refuses_hostile_kargs_and_ostree_staged_ones_do_not_finalize(make_booted):
    b = make_booted()
    before = snapshot(b.path)
    r = b("sysroot", "admin", "deploy", "--stage", f"--karg={EVIL}", f"{OSNAME}/x", check=False)
    _refused(r, f"Invalid kernel argument {WHY[EVIL]}", 2)
    assert not b.staged_file.exists() and snapshot(b.path) == before
    # ostree stages it; our finalize refuses the record (stamped), nothing written
    b("ostree", "admin", "deploy", "--stage", f"--karg={EVIL}", f"{OSNAME}/x")
    assert b.staged_file.exists()
    entries = _entries_text(b.path)
    r = b("sysroot", "admin", "finalize-staged", check=False)
    assert r.returncode == 1 and b"Traceback" not in r.stderr
    assert (
        f"kargs: Invalid kernel argument {WHY[EVIL]}"
        in (b.path / "boot/ostree/finalize-failure.stamp").read_text()
    )
    assert _entries_text(b.path) == entries


def test_stage_refuses_a_commit_whose_title_would_break(make_booted, tmp_path):
    b = make_booted()
    tree = harness.booted_tree(tmp_path / "evil-tree")
    csum = subprocess.run(
        [
            "ostree",
            f"--repo={b.path}/ostree/repo",
            "commit",
            f"--branch={OSNAME}/evil",
            f"--tree=dir={tree}",
            "--add-metadata-string=version=1\ninitrd /evil.img",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    before = snapshot(b.path)
    r = b("sysroot", "admin", "deploy", "--stage", f"{OSNAME}/evil", check=False)
    _refused(
        r,
        rf"Invalid version of commit {csum} '1\ninitrd /evil.img': contains a "
        "control character (U+000A)",
        1,
    )
    assert not b.staged_file.exists()
    after = snapshot(b.path)
    # only the ostree/repo/tmp cache of the checkout may differ; no deployment was added
    assert {k: v for k, v in after.items() if "/repo/" not in k} == {
        k: v for k, v in before.items() if "/repo/" not in k
    }


# ====================================================================== the last gate
@pytest.mark.parametrize(
    "key,value,why",
    [
        (
            "title",
            "Test\ninitrd /evil.img",
            r"'title' value in boot entry 'Test\ninitrd "
            r"/evil.img': contains a control character (U+000A)",
        ),
        (
            "options",
            "ostree=/x a\tb",
            r"kernel argument in boot entry 'a\tb': contains a "
            "control character (U+0009)",
        ),
        (
            "linux",
            "/ostree/with space/vmlinuz",
            r"'linux' value in boot entry '/ostree/with "
            "space/vmlinuz': contains a space",
        ),
        (
            "initrd",
            "/x\u2028initrd",
            r"'initrd' value in boot entry '/x\u2028initrd': "
            "contains a control character (U+2028)",
        ),
    ],
)
@pytest.mark.unit
def test_entry_writer_refuses_what_would_not_read_back(key, value, why):
    """BootEntry.to_text (every BLS writer) and grub2.render_config refuse on their
    own, whatever their callers checked."""
    entry = BootEntry([("title", "T"), ("options", "ostree=/x"), ("linux", "/k")])
    entry.set(key, value)
    with pytest.raises(FormatError) as e:
        entry.to_text()
    assert str(e.value) == f"Invalid {why}"
    with pytest.raises(FormatError):
        grub2.render_config([entry])


@pytest.mark.unit
def test_systemd_boot_entry_names_hold_only_stateroot_names():
    assert systemd_boot.EntryName(1, 9999, "testos").filename == "ostree-1-9999-testos.conf"
    for bad in ("with space", "a/b", "..", "nl\nx"):
        with pytest.raises(FormatError):
            _ = systemd_boot.EntryName(1, 9999, bad).filename
        # such a file on disk is debris to the reader, never a stateroot
        assert systemd_boot.EntryName.parse(f"ostree-1-9999-{bad}.conf") is None


# ====================================================================== grub2
@pytest.fixture
def grub_sr(deployed, ostree):
    b = deployed.b
    ostree(f"--repo={b.repo}", "config", "set", "sysroot.bootloader", "grub2")
    b.admin("deploy", OS, REF)
    assert (b.path / "boot/grub/grub.cfg").exists()
    return b


def test_grub2_refuses_hostile_words(grub_sr, tmp_path):
    b = grub_sr
    cfg = (b.path / "boot/loader/grub.cfg").read_text()
    before = snapshot(b.path)
    r = b.admin("deploy", OS, f"--karg-append={EVIL}", REF, check=False)
    _refused(r, f"Invalid kernel argument {WHY[EVIL]}", 2)
    r = b.tool(
        "admin",
        "kargs",
        "edit-in-place",
        f"--sysroot={b.path}",
        f"--append-if-missing={EVIL}",
        check=False,
    )
    _refused(r, f"Invalid kernel argument {WHY[EVIL]}", 2)
    tree = make_os_tree(tmp_path / "evil-kver", kver="5.0.0\nmenuentry x")
    b.commit(tree, f"{OSNAME}/y")
    r = b.admin("deploy", OS, f"{OSNAME}/y", check=False)
    assert r.returncode == 1 and r.stderr.decode().count("\n") == 1
    assert "Invalid kernel file name from the commit" in r.stderr.decode()
    assert (b.path / "boot/loader/grub.cfg").read_text() == cfg
    after = snapshot(b.path)
    assert {k: v for k, v in after.items() if "/repo/" not in k} == {
        k: v for k, v in before.items() if "/repo/" not in k
    }


# ====================================================================== systemd-boot
def test_systemd_boot_refuses_hostile_words(fat, fat_sysroot, tmp_path):
    root = fat_sysroot
    vfat.admin(root, "deploy", OS, f"{OSNAME}/1")
    tree = make_os_tree(tmp_path / "evil-kver", kver="5.0.0\noptions init=sh")
    subprocess.run(
        [
            "ostree",
            f"--repo={root}/ostree/repo",
            "commit",
            f"--branch={OSNAME}/evil",
            f"--tree=dir={tree}",
        ],
        capture_output=True,
        check=True,
    )
    names = vfat.entry_names(root)
    before = snapshot(root)
    r = vfat.admin(root, "deploy", OS, f"--karg={EVIL}", f"{OSNAME}/2", check=False)
    _refused(r, f"Invalid kernel argument {WHY[EVIL]}", 2)
    r = vfat.cli(
        "admin",
        "kargs",
        "edit-in-place",
        f"--sysroot={root}",
        f"--append-if-missing={EVIL}",
        check=False,
    )
    _refused(r, f"Invalid kernel argument {WHY[EVIL]}", 2)
    r = vfat.admin(root, "deploy", OS, f"{OSNAME}/evil", check=False)
    _refused(
        r,
        r"Invalid kernel file name from the commit 'vmlinuz-5.0.0\noptions "
        r"init=sh': contains a control character (U+000A)",
        1,
    )
    assert vfat.entry_names(root) == names
    assert snapshot(root) == before


# ====================================================================== origin files
def test_origin_file_contents_never_reach_the_entries(deployed, tmp_path):
    """An origin is a key file: its values are escaped there, and neither tool puts
    any of them in a boot entry (both deploy, with the same entries)."""
    origin = tmp_path / "origin"
    origin.write_text(
        "[origin]\nrefspec=testos/x\\ninitrd /evil.img\n"
        "[libostree-transient]\npinned=true\\noptions init=sh\n"
    )
    deployed.admin("deploy", OS, f"--origin-file={origin}", REF)
    a, b = deployed.a, deployed.b
    assert _entries_text(a.path) == _entries_text(b.path)
    assert "evil" not in _entries_text(b.path) and "init=sh" not in _entries_text(b.path)
    origins = b.path.glob(f"ostree/deploy/{OSNAME}/deploy/*.origin")
    assert any("refspec=testos/x\\ninitrd /evil.img\n" in p.read_text() for p in origins)


def test_invariant_reports_a_hand_made_entry_grub_cfg_cannot_hold(grub_sr):
    """An entry edited by hand (or written by ostree) with a control character: the
    invariant checker reports it instead of failing on render_config's refusal."""
    from sysroot.deploy.invariant import check_boot_invariant

    assert check_boot_invariant(grub_sr.path) == []
    for entry in (grub_sr.path / "boot/loader/entries").glob("*.conf"):
        entry.write_text(entry.read_text().replace("title Test OS", "title Test\x1bOS"))
    (problem,) = check_boot_invariant(grub_sr.path)
    assert "grub.cfg: Invalid 'title' value in" in problem and "(U+001B)" in problem


def _with_fake_cmdline(b, tool: str, *args: str):
    """b(tool, *args), with /proc/cmdline replaced by /run/cmdline inside the booted
    system's namespace (the harness of test_staged.py, one bind mount more)."""
    from sysroot.util.run import clean_env

    return subprocess.run(
        b.argv(
            "sh",
            "-c",
            'mount --bind /run/cmdline /proc/cmdline && exec "$@"',
            "sh",
            *harness.tool_argv(tool),
            *args,
        ),
        capture_output=True,
        env=clean_env(),
        timeout=120,
    )


def test_karg_proc_cmdline_words_are_checked_too(make_booted):
    """A /proc/cmdline word with a tab: ostree 2022.7 copies it into the entry; sysroot
    refuses (one line, nothing changed). Clean words are taken as ostree takes them."""
    b = make_booted()
    (b.run / "cmdline").write_text("BOOT_IMAGE=/vmlinuz root=/dev/vda a\tb quiet\n")
    before = snapshot(b.path)
    r = _with_fake_cmdline(b, "sysroot", "admin", "deploy", "--karg-proc-cmdline", f"{OSNAME}/x")
    _refused(
        r,
        r"Invalid kernel argument in /proc/cmdline 'a\tb': contains a control "
        "character (U+0009)",
        1,
    )
    assert snapshot(b.path) == before
    r = _with_fake_cmdline(b, "ostree", "admin", "deploy", "--karg-proc-cmdline", f"{OSNAME}/x")
    assert r.returncode == 0, r.stderr
    assert " a\tb quiet" in _entries_text(b.path)
