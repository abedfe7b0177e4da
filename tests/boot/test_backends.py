"""Boot-loader back ends as objects (sysroot/boot/backends.py): the config values of
sysroot.bootloader as BootloaderKind, `auto` resolved on real sysroot layouts (a real
FAT file system for the systemd-boot case), the on-disk scheme each back end owns and
the writer deploy/ maps it to, and the exact refusal of values ostree does not know.
"""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest

from sysroot.boot import backends, grub2
from sysroot.boot.backends import (
    BootloaderKind,
    BootScheme,
    Grub2Backend,
    NoneBackend,
    SystemdBootBackend,
    backend_for,
    detect,
)
from sysroot.deploy import transaction
from sysroot.deploy.layout import SysrootLayout
from sysroot.deploy.sdwriter import SdBootWriter
from sysroot.deploy.state import SysrootState
from sysroot.deploy.writer import BootWriter
from sysroot.errors import SysrootError
from sysroot.formats.keyfile import KeyFile
from tests.boot.test_systemd_boot_vfat import FatMounts, make_image
from tests.helpers.sysroots import OSNAME, clear_immutable_under, init_sysroot, make_os_tree

CONFIG_VALUES = ("none", "grub2", "systemd-boot", "auto")  # ostree's, ostree-sysroot.c


def fake_repo(path: Path, value: str | None) -> types.SimpleNamespace:
    """What backend_for reads of a repo: its config and its path."""
    group = f"[sysroot]\nbootloader={value}\n" if value is not None else ""
    return types.SimpleNamespace(
        config=KeyFile.parse("[core]\nrepo_version=1\n" + group), path=str(path / "repo")
    )


def layout_of(root: Path) -> SysrootLayout:
    (root / "boot").mkdir(parents=True, exist_ok=True)
    return SysrootLayout(str(root))


# ---------------------------------------------------------------- the config values
@pytest.mark.parametrize("value", CONFIG_VALUES)
@pytest.mark.unit
def test_kind_round_trips_the_config_string(value):
    kind = BootloaderKind(value)
    assert kind.value == value
    assert BootloaderKind(kind.value) is kind


@pytest.mark.unit
def test_kinds_are_exactly_ostrees_values():
    assert sorted(k.value for k in BootloaderKind) == sorted(CONFIG_VALUES)


# ---------------------------------------------------------------- auto
def _plain(root: Path) -> None:
    pass


def _grub(root: Path) -> None:
    (root / "boot/grub").mkdir()
    (root / "boot/grub/grub.cfg").write_text("# made by grub-mkconfig\n")


def _grub2_dir(root: Path) -> None:
    (root / "boot/grub2").mkdir()
    (root / "boot/grub2/grub.cfg").write_text("# made by grub2-mkconfig\n")


def _grub_link(root: Path) -> None:
    (root / "boot/grub").mkdir()
    os.symlink("../loader/grub.cfg", root / "boot/grub/grub.cfg")  # dangling counts too


def _loader_dir(root: Path) -> None:
    (root / "boot/loader/entries").mkdir(parents=True)


def _loader_dir_and_grub(root: Path) -> None:
    _loader_dir(root)
    _grub(root)  # the entries directory wins: that scheme cannot be switched


def _loader_symlink(root: Path) -> None:
    (root / "boot/loader.0/entries").mkdir(parents=True)
    os.symlink("loader.0", root / "boot/loader")


@pytest.mark.parametrize(
    "make, expected",
    [
        (_plain, BootloaderKind.NONE),
        (_loader_symlink, BootloaderKind.NONE),
        (_grub, BootloaderKind.GRUB2),
        (_grub2_dir, BootloaderKind.GRUB2),
        (_grub_link, BootloaderKind.GRUB2),
        (_loader_dir, BootloaderKind.SYSTEMD_BOOT),
        (_loader_dir_and_grub, BootloaderKind.SYSTEMD_BOOT),
    ],
)
@pytest.mark.unit
def test_auto_resolves_as_detect_says(tmp_path, make, expected):
    layout = layout_of(tmp_path)
    make(tmp_path)
    assert detect(layout) is expected
    assert BootloaderKind.AUTO.resolve(layout) is expected
    for value in (None, "", "auto"):  # unset and empty mean auto, as in ostree
        assert backend_for(layout, fake_repo(tmp_path, value)).kind is expected


def test_auto_on_fat_is_systemd_boot(tmp_path):
    """/boot on a real FAT file system (mkfs.vfat, loop mount or fusefat)."""
    layout = layout_of(tmp_path / "sr")
    mounts = FatMounts()
    try:
        mounts.mount(make_image(tmp_path / "esp.img"), tmp_path / "sr/boot")
        assert detect(layout) is BootloaderKind.SYSTEMD_BOOT
        assert BootloaderKind.AUTO.resolve(layout) is BootloaderKind.SYSTEMD_BOOT
        backend = backend_for(layout, fake_repo(tmp_path, "auto"))
        assert isinstance(backend, SystemdBootBackend)
        assert transaction.WRITERS[backend.scheme] is SdBootWriter
    finally:
        mounts.release()


@pytest.mark.parametrize("kind", [k for k in BootloaderKind if k is not BootloaderKind.AUTO])
@pytest.mark.unit
def test_explicit_kinds_resolve_to_themselves(tmp_path, kind):
    layout = layout_of(tmp_path)
    _grub(tmp_path)  # would make auto grub2
    assert kind.resolve(layout) is kind


# ---------------------------------------------------------------- what each owns
@pytest.mark.parametrize(
    "value, cls, scheme, writer",
    [
        ("none", NoneBackend, BootScheme.LOADER_SYMLINK, BootWriter),
        ("grub2", Grub2Backend, BootScheme.LOADER_SYMLINK, BootWriter),
        ("systemd-boot", SystemdBootBackend, BootScheme.ENTRIES_DIR, SdBootWriter),
    ],
)
@pytest.mark.unit
def test_each_backend_reports_its_scheme_and_writer(tmp_path, value, cls, scheme, writer):
    backend = backend_for(layout_of(tmp_path), fake_repo(tmp_path, value))
    assert type(backend) is cls
    assert backend.kind is BootloaderKind(value)
    assert backend.scheme is scheme
    assert transaction.WRITERS[backend.scheme] is writer
    assert backend.edits_entries_in_place() == (scheme is BootScheme.LOADER_SYMLINK)


@pytest.mark.unit
def test_every_scheme_has_a_writer_and_an_invariant_check():
    from sysroot.deploy import invariant

    assert set(transaction.WRITERS) == set(BootScheme) == set(invariant._CHECKS)


@pytest.mark.parametrize(
    "make, cls",
    [
        (_plain, NoneBackend),
        (_loader_symlink, NoneBackend),
        (_loader_dir, SystemdBootBackend),
    ],
)
@pytest.mark.unit
def test_state_reads_with_the_backend_on_disk(tmp_path, make, cls):
    layout_of(tmp_path)
    make(tmp_path)
    state = SysrootState.load(str(tmp_path))
    assert type(state.backend) is cls
    assert state.scheme is cls.scheme
    assert state.deployments == []


@pytest.mark.unit
def test_grub_cfg_in_the_live_loader_means_grub2_on_disk(tmp_path):
    layout = layout_of(tmp_path)
    _loader_symlink(tmp_path)
    (tmp_path / "boot/loader.1").mkdir()
    (tmp_path / "boot/loader.1" / grub2.CONFIG_NAME).write_text("# inactive half\n")
    assert type(backends.on_disk(layout)) is NoneBackend
    (tmp_path / "boot/loader.0" / grub2.CONFIG_NAME).write_text(grub2.render_config([]))
    assert type(backends.on_disk(layout)) is Grub2Backend


@pytest.mark.unit
def test_boot_serials_per_backend():
    found = [("a", 0), ("b", 0), ("a", 1), ("a", 1)]  # (bootcsum, serial its entry names)
    assert NoneBackend().boot_serials(found) == [0, 0, 1, 1]
    assert Grub2Backend().boot_serials(found) == [0, 0, 1, 1]
    assert SystemdBootBackend().boot_serials(found) == [0, 0, 1, 2]  # by order


@pytest.mark.unit
def test_every_backend_implements_every_method():
    """A back end without one of Backend's abstract methods cannot be made."""
    for cls in backends._BACKENDS.values():
        cls()

    class Incomplete(backends.Backend):
        kind = BootloaderKind.NONE
        scheme = BootScheme.LOADER_SYMLINK

    with pytest.raises(TypeError):
        Incomplete()


# ---------------------------------------------------------------- refusals
@pytest.mark.parametrize("value", ["grub", "GRUB2", "systemd", "syslinux", "zipl"])
@pytest.mark.unit
def test_unsupported_value_keeps_the_exact_message(tmp_path, value):
    repo = fake_repo(tmp_path, value)
    with pytest.raises(SysrootError) as exc:
        backend_for(layout_of(tmp_path), repo)
    assert str(exc.value) == (
        f"Unsupported sysroot.bootloader '{value}' in "
        f"{tmp_path}/repo/config (supported: auto, grub2, none, "
        "systemd-boot)"
    )


@pytest.mark.parametrize("value", ["none", "grub2"])
@pytest.mark.unit
def test_symlink_backends_refuse_an_entries_dir(tmp_path, value):
    layout = layout_of(tmp_path)
    _loader_dir(tmp_path)
    with pytest.raises(SysrootError) as exc:
        backend_for(layout, fake_repo(tmp_path, value))
    assert str(exc.value) == (
        f"sysroot.bootloader={value}, but {tmp_path}/boot/loader is a "
        "directory (the systemd-boot scheme): use systemd-boot or auto"
    )


@pytest.mark.unit
def test_systemd_boot_refuses_a_loader_symlink(tmp_path):
    layout = layout_of(tmp_path)
    _loader_symlink(tmp_path)
    with pytest.raises(SysrootError) as exc:
        backend_for(layout, fake_repo(tmp_path, "systemd-boot"))
    assert str(exc.value) == (
        f"sysroot.bootloader=systemd-boot, but {tmp_path}/boot/loader "
        "is a symlink (the loader.N scheme): switching schemes is not "
        "supported"
    )


def test_deploy_with_an_unknown_bootloader_is_refused_like_ostree(tmp_path, ostree, sysroot):
    """Both tools refuse sysroot.bootloader=grub with exit 1 and leave boot/ and the
    deployments as they were; ours names the value, the file and what is supported."""
    results = {}
    for name, tool in (("ostree", ostree), ("sysroot", sysroot)):
        sr = init_sysroot(tmp_path / name, tool, ostree)
        sr.commit(make_os_tree(tmp_path / f"tree-{name}"), f"{OSNAME}/1")
        ostree(f"--repo={sr.repo}", "config", "set", "sysroot.bootloader", "grub")
        proc = tool(
            "admin", "deploy", f"--sysroot={sr.path}", f"--os={OSNAME}", f"{OSNAME}/1", check=False
        )
        deploy_dir = sr.path / "ostree/deploy" / OSNAME / "deploy"
        results[name] = (
            proc.returncode,
            sorted(os.listdir(sr.path / "boot")),
            sorted(os.listdir(deploy_dir)) if deploy_dir.exists() else [],
        )
        if name == "sysroot":
            assert proc.stderr.decode() == (
                f"error: Unsupported sysroot.bootloader 'grub' in {sr.repo}/config "
                "(supported: auto, grub2, none, systemd-boot)\n"
            )
        else:
            assert b"'grub'" in proc.stderr
    clear_immutable_under(tmp_path)
    assert results["sysroot"] == results["ostree"] == (1, [], [])
