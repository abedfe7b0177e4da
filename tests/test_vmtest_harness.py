"""The parts of the VM test harness (vm-tests/vmtest) that need no VM: the build cache
and reading a guest's results off its serial console. The boots themselves are
vm-tests/run's job."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "vm-tests"))

from vmtest import cache, disk, hostcheck  # noqa: E402
from vmtest.health_scenarios import (  # noqa: E402
    LOOP_BREAKER_SETUP,
    REBOOTED,
    WATCH,
    expect_red_reboot,
    tries_of,
)
from vmtest.healthguest import (  # noqa: E402
    HEALTH,
    booted_on_console,
    expect_armed,
    expect_blessed,
)
from vmtest.imagefile import Partition, loop_device  # noqa: E402
from vmtest.install_scenarios import (  # noqa: E402
    HOLDER,
    RUNS,
    InstallRun,
    check_install,
    check_osmet,
    install_script,
)
from vmtest.osmet_files import OsmetFiles, osmet_name  # noqa: E402
from vmtest.qemu import PREAMBLE, BootResult, boot_summary, parse_console  # noqa: E402
from vmtest.scenarios import check_after_cut, guest_check_timing  # noqa: E402
from vmtest.verdict import ScenarioFailed  # noqa: E402

from tests.helpers.sysroots import make_os_tree  # noqa: E402

CONSOLE = """\
[    3.1] Linux version 6.1.0
@@VMT-BEGIN
@@VMT: + status_report
@@VMT: R: booted=abc.0
[   40.2] some kernel message
@@VMT: R: cmdline=root=UUID=x ostree=/ostree/deploy/os/deploy/abc.0
@@VMT: plain output
@@VMT-END rc=0
"""


@pytest.mark.unit
def test_console_results_are_read_between_the_markers():
    result = parse_console(CONSOLE, killed=False, seconds=1.0)
    assert result.rc == 0
    assert result.values() == {
        "booted": "abc.0",
        "cmdline": "root=UUID=x ostree=/ostree/deploy/os/deploy/abc.0",
    }
    assert "plain output" in result.output


@pytest.mark.unit
def test_a_guest_that_never_finished_has_no_exit_status():
    result = parse_console(CONSOLE.split("@@VMT-END")[0], killed=True, seconds=1.0)
    assert result.rc is None and result.killed


@pytest.mark.unit
def test_preamble_defines_the_script_helpers():
    for helper in ("mark()", "result()", "action()"):
        assert helper in PREAMBLE


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("SYSROOT_VM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.unit
def test_a_product_is_built_once_per_key_and_old_versions_go(cache_root, tmp_path):
    builds = []

    def build(path):
        builds.append(path)
        Path(path).mkdir()
        (Path(path) / "content").write_text(str(len(builds)))

    first = cache.cached("thing", "0123456789abcdef", build, log=lambda m: None)
    again = cache.cached("thing", "0123456789abcdef", build, log=lambda m: None)
    assert first == again and len(builds) == 1
    assert builds[0].endswith(".building")  # built under a temporary name
    newer = cache.cached("thing", "fedcba9876543210", build, log=lambda m: None)
    assert len(builds) == 2
    products = [p.name for p in cache_root.iterdir() if not p.name.startswith(".")]
    assert products == [Path(newer).name]  # beside the lock file, .thing.lock


@pytest.mark.unit
def test_an_interrupted_build_is_never_taken_for_a_product(cache_root):
    def failing(path):
        Path(path).mkdir()
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.cached("thing", "0123456789abcdef", failing, log=lambda m: None)
    built = []
    cache.cached(
        "thing",
        "0123456789abcdef",
        lambda p: (built.append(p), Path(p).mkdir()),
        log=lambda m: None,
    )
    assert built  # rebuilt, not reused


@pytest.mark.unit
def test_the_key_follows_the_inputs(tmp_path):
    tree = tmp_path / "inputs"
    tree.mkdir()
    (tree / "a").write_text("1")
    key1 = cache.hash_inputs("recipe", trees=[str(tree)])
    assert cache.hash_inputs("recipe", trees=[str(tree)]) == key1
    (tree / "a").write_text("2")
    key2 = cache.hash_inputs("recipe", trees=[str(tree)])
    assert key2 != key1
    assert cache.hash_inputs("other recipe", trees=[str(tree)]) != key2
    single = cache.hash_inputs("recipe", trees=[str(tree / "a")])  # a file as a tree
    (tree / "a").write_text("3")
    assert cache.hash_inputs("recipe", trees=[str(tree / "a")]) != single


# --- host-side checks of a stopped guest's disk (vmtest/hostcheck.py) ---

SFDISK_JSON = """{"partitiontable": {"label": "gpt", "sectorsize": 512, "partitions": [
  {"node": "disk.img1", "start": 2048, "size": 1048576, "type": "U"},
  {"node": "disk.img2", "start": 1050624, "size": 7337983, "type": "L"}]}}"""


@pytest.mark.unit
def test_partitions_are_read_in_bytes_from_sfdisk_json():
    assert hostcheck.parse_partitions(SFDISK_JSON) == [
        Partition(2048 * 512, 1048576 * 512),
        Partition(1050624 * 512, 7337983 * 512),
    ]
    four_k = SFDISK_JSON.replace('"sectorsize": 512', '"sectorsize": 4096')
    assert hostcheck.parse_partitions(four_k)[0] == Partition(2048 * 4096, 1048576 * 4096)


@pytest.mark.unit
def test_only_listed_deployments_and_their_origins_may_stay_after_cleanup():
    names = ["a.0", "a.0.origin", "b.1", "b.1.origin", "b.2", "c.0.origin", "tmp-staging"]
    assert hostcheck.stray_deploy_entries(names, ["a.0", "b.1"]) == [
        "b.2",
        "c.0.origin",
        "tmp-staging",
    ]
    assert hostcheck.stray_deploy_entries(["a.0", "a.0.origin"], ["a.0"]) == []


@pytest.mark.unit
def test_the_boot_log_line_says_how_each_boot_ended():
    assert boot_summary(BootResult(log="", rc=0, seconds=61.4)) == "qemu ran 61 s, script exit 0"
    assert "power cut" in boot_summary(BootResult(log="", killed=True, seconds=3))
    assert "without finishing" in boot_summary(BootResult(log="", seconds=3))
    assert "locked up" in boot_summary(BootResult(log="", seconds=3, locked_up=True))


def _loops_of(image: Path) -> str:
    return subprocess.run(
        ["losetup", "-j", str(image)], capture_output=True, text=True, check=True
    ).stdout.strip()


def _sysroot(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(cache.SOURCE))}
    subprocess.run(
        [sys.executable, "-m", "sysroot", *args], env=env, check=True, capture_output=True
    )


def on_root(image: Path, mnt: Path, script: str) -> None:
    """Run shell script with the image's root file system mounted read-write at $1, in
    a mount namespace of its own (as disk.finish_sysroot does, for its reason)."""
    mnt.mkdir()
    with loop_device(str(image), _root_partition(image), read_only=False) as dev:
        subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-ec"]
            + [f'mount "$2" "$1"; {script}; umount "$1"', "sh", str(mnt), dev],
            check=True,
        )


def _root_partition(image: Path) -> Partition:
    table = subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, check=True)
    return hostcheck.parse_partitions(table.stdout)[-1]


def harness_disk(tmp_path: Path, backend: str) -> tuple[Path, Path]:
    """A disk made as vmtest/disk.py makes the VM tests' disks (its `sysroot install
    to-disk` call, then its own changes), from a tiny bootable tree holding a file
    "hello" on testos/stable and testos/next; and the build repository."""
    tree = make_os_tree(tmp_path / "tree", extra={"usr/share/hello": "hello\n"})
    repo = tmp_path / "build-repo"
    _sysroot(f"--repo={repo}", "init", "--mode=bare")
    for ref in ("testos/stable", "testos/next"):
        _sysroot(f"--repo={repo}", "commit", "-b", ref, f"--tree=dir={tree}")
    image = tmp_path / f"{backend}.img"
    with open(image, "wb") as f:
        f.truncate(1 << 30)
    _sysroot(*disk.install_argv(str(image), str(repo), backend))
    disk.finish_sysroot(str(image), backend, str(repo), str(tmp_path / f"finish-{backend}"))
    return image, repo


@pytest.fixture
def small_disk(tmp_path):
    """The systemd-boot disk of the harness, with a deployment directory left over
    that no boot entry lists (what a cleanup should remove)."""
    image, _ = harness_disk(tmp_path, "systemd-boot")
    on_root(image, tmp_path / "mnt", 'mkdir -p "$1/ostree/deploy/testos/deploy/leftover.0"')
    yield image
    assert _loops_of(image) == "", "a loop device was left attached"


def _entries(root: str) -> list[Path]:
    return sorted(Path(root, "boot/loader/entries").glob("*.conf"))


@pytest.mark.parametrize("backend", ["systemd-boot", "grub2"])
def test_the_harness_disk_is_installed_and_set_up_for_the_scenarios(tmp_path, backend):
    image, repo = harness_disk(tmp_path, backend)
    with hostcheck.mounted_sysroot(
        str(image), backend, str(tmp_path / "check"), writable_device=False
    ) as root:
        sysrepo = Path(root, "ostree/repo")
        config = (sysrepo / "config").read_text()
        assert f"bootloader={backend}" in config
        assert "boot-counting-tries=3" in config.replace(" ", "")
        # testos/next pulled for the upgrade scenarios, as the build repo has it
        next_commit = (repo / "refs/heads/testos/next").read_text()
        assert (sysrepo / "refs/heads/testos/next").read_text() == next_commit
        (deployment,) = [
            p for p in Path(root, "ostree/deploy/testos/deploy").iterdir() if p.is_dir()
        ]
        assert "testos/stable" in Path(str(deployment) + ".origin").read_text()
        (entry,) = _entries(root)
        options = next(x for x in entry.read_text().splitlines() if x.startswith("options "))
        assert options.split()[1].startswith("root=UUID=")
        assert all(k in options.split() for k in disk.KARGS)
        if backend == "systemd-boot":  # no boot menu delay
            assert Path(root, "boot/loader/loader.conf").read_text() == "timeout 0\n"
        else:
            assert Path(root, "boot/grub/custom.cfg").read_text() == "set timeout=0\n"
    assert _loops_of(image) == ""


def test_the_sysroot_is_mounted_read_only_with_the_esp_at_boot_and_always_released(
    small_disk, tmp_path
):
    work = tmp_path / "check"
    with (
        pytest.raises(RuntimeError, match="failed inside"),
        hostcheck.mounted_sysroot(
            str(small_disk), "systemd-boot", str(work), writable_device=False
        ) as root,
    ):
        (entry,) = _entries(root)
        assert entry.read_text().startswith("title ")
        assert Path(root, "ostree/repo/config").is_file()
        with pytest.raises(OSError):
            Path(root, "written").write_text("x")
        with pytest.raises(OSError):
            Path(root, "boot/written").write_text("x")
        assert _loops_of(small_disk) != ""
        raise RuntimeError("failed inside")
    assert _loops_of(small_disk) == ""
    assert not work.exists()
    mounts = Path("/proc/self/mounts").read_text()
    assert str(work) not in mounts


def test_a_disk_check_finds_what_cleanup_left_and_leaves_the_image_alone(small_disk, tmp_path):
    before = small_disk.read_bytes()
    report = hostcheck.check_disk(
        str(small_disk), "systemd-boot", str(tmp_path / "c1"), after_cut=True, cleaned=True
    )
    assert len(report.problems) == 1 and "leftover.0" in report.problems[0], report.problems
    assert len(report.deployments) == 1
    assert {"snapshot", "attach", "fsck", "ostree fsck", "total"} <= set(report.seconds)
    assert not (tmp_path / "c1.snapshot.img").exists()
    assert small_disk.read_bytes() == before
    clean = hostcheck.check_disk(
        str(small_disk), "systemd-boot", str(tmp_path / "c2"), after_cut=False, cleaned=False
    )
    assert clean.problems == []
    assert small_disk.read_bytes() == before


def test_a_corrupt_object_fails_the_host_fsck(small_disk, tmp_path):
    # the object holding "hello\n" (a bare repository's file object is the content)
    on_root(
        small_disk,
        tmp_path / "mnt-corrupt",
        'for f in "$1"/ostree/repo/objects/*/*.file; do '
        'if [ "$(cat "$f")" = hello ]; then printf jello > "$f"; n=$((${n:-0} + 1)); fi; '
        'done; test "${n:-0}" = 1',
    )
    report = hostcheck.check_disk(
        str(small_disk), "systemd-boot", str(tmp_path / "c"), after_cut=False, cleaned=False
    )
    assert len(report.problems) == 2, report.problems
    ours, oracle = report.problems
    assert ours.startswith("sysroot fsck exited with 1: ") and "corrupt" in ours.lower()
    assert oracle.startswith("ostree fsck exited with 1: ") and "corrupt" in oracle.lower()


@pytest.mark.unit
def test_ostree_is_shown_a_bootloader_value_it_knows():
    config = (
        "[core]\nrepo_version=1\nmode=bare\n\n[sysroot]\nbootloader=systemd-boot\nreadonly=true\n"
    )
    assert hostcheck.config_for_ostree(config) == config.replace(
        "bootloader=systemd-boot", "bootloader=none"
    )
    for known in (
        "[sysroot]\nbootloader=grub2\n",
        "[other]\nbootloader=systemd-boot\n",
        "[core]\nmode=bare\n",
    ):
        assert hostcheck.config_for_ostree(known) == known


@pytest.mark.unit
def test_the_guest_check_timing_comes_from_its_uptime_results():
    assert guest_check_timing({"uptime_start": "31.52", "uptime_checked": "52.90"}) == (
        "the guest's checks began 32 s after boot and took 21 s"
    )
    assert "did not finish" in guest_check_timing({"uptime_start": "31.52"})
    assert "did not finish" in guest_check_timing({"uptime_start": "x", "uptime_checked": "1"})


def _boot_reporting(**values: str) -> BootResult:
    return BootResult(log="", output=[f"R: {k}={v}" for k, v in values.items()], rc=0)


@pytest.mark.unit
def test_after_a_cut_the_guest_must_list_what_the_host_read_off_the_disk():
    before = {"deployments": "c1.0", "deploy_commit": "c2"}
    host = hostcheck.HostReport(deployments=["c2.0", "c1.0"])
    boot = _boot_reporting(status_rc="0", deployments="c2.0,c1.0", booted="c2.0", cleanup_rc="0")
    assert check_after_cut(before, boot, host) == "new"
    host.deployments = ["c1.0"]
    with pytest.raises(ScenarioFailed, match="the host read 'c1.0'"):
        check_after_cut(before, boot, host)
    failed_cleanup = _boot_reporting(
        status_rc="0", deployments="c1.0", booted="c1.0", cleanup_rc="1"
    )
    with pytest.raises(ScenarioFailed, match="cleanup_rc"):
        check_after_cut(before, failed_cleanup, host)


@pytest.mark.unit
@pytest.mark.parametrize("script", [WATCH, LOOP_BREAKER_SETUP], ids=["watch", "loop-breaker"])
def test_the_health_scripts_are_valid_shell(script):
    """The guest runs them with sh (dash): a syntax error would only show in a VM."""
    r = subprocess.run(["sh", "-n"], input=(PREAMBLE + script).encode(), capture_output=True)
    assert r.returncode == 0, r.stderr.decode()


@pytest.mark.unit
def test_health_report_reads_the_status_json(tmp_path):
    """health_report, run by sh against a `sysroot` that prints a health status, as
    `admin health status --json` does (the schema is tested with the CLI)."""
    doc = {
        "counting": {"state": "armed", "deployment": "os/deploy/c2.0", "tries_left": 2},
        "deployments": [
            {
                "checksum": "c2",
                "serial": 0,
                "health": "failed",
                "failed_boot": None,
                "failed_checks": [
                    {
                        "name": "50-a.sh",
                        "kind": "required",
                        "outcome": "failed",
                        "tail": ["x", "why"],
                    }
                ],
                "intervention": {"reason": "stuck"},
            }
        ],
    }
    fake = tmp_path / "sysroot"
    fake.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(doc)}\nEOF\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    script = PREAMBLE + HEALTH + "health_report\n"
    r = subprocess.run(["sh"], input=script.encode(), capture_output=True, env=env, check=True)
    result = BootResult(log="", output=r.stdout.decode().splitlines())
    assert result.values() == {
        "health_rc": "0",
        "counting": "armed",
        "counting_deployment": "c2.0",
        "counting_tries_left": "2",
        "health.c2.0": "failed",
        "failed_boot.c2.0": "none",
        "failed_checks.c2.0": "50-a.sh:required:failed",
        "failed_tail.c2.0": "why",
        "intervention.c2.0": "stuck",
    }


@pytest.mark.unit
def test_the_booted_deployment_is_read_off_the_console():
    log = (
        "[ 5.1] sysroot-prepare-root: booting deployment /ostree/deploy/os/deploy/c1.0\n"
        "[ 9.9] sysroot-prepare-root: booting deployment /ostree/deploy/os/deploy/c2.1\r\n"
    )
    boot = BootResult(log=log)
    assert booted_on_console(boot) == "c2.1"
    assert booted_on_console(BootResult(log="no initrd line")) == ""
    assert tries_of([boot, boot, BootResult(log="")], "c2.1") == 2


@pytest.mark.unit
def test_armed_is_the_counter_in_the_entry_name_or_in_grubenv():
    boot = BootResult(log="")
    expect_armed(
        "systemd-boot", {"entries": "ostree-1-9998-os.conf ostree-2-9999-os+3.conf"}, 3, boot
    )
    with pytest.raises(ScenarioFailed, match=r"no entry armed with \+3"):
        expect_armed("systemd-boot", {"entries": "ostree-2-9999-os+2-1.conf"}, 3, boot)
    expect_armed("grub2", {"grubenv": "boot_counter=2 boot_success=0"}, 2, boot)
    with pytest.raises(ScenarioFailed, match="grubenv is not armed"):
        expect_armed("grub2", {"grubenv": "boot_counter=2 boot_success=1"}, 2, boot)


def _blessed(**extra: str) -> dict:
    return {
        "unit.sysroot-health-check.service": "active",
        "unit.sysroot-health-green.service": "active",
        "mark_good": "os/deploy/c2.0: boot marked good (2 tries left), boot counting ended",
        "health.c2.0": "healthy",
        **extra,
    }


_BLESSED = {
    "systemd-boot": (
        _blessed(entries="ostree-1-9998-os.conf ostree-2-9999-os.conf", counting="off"),
        {"entries": "ostree-2-9999-os+2-1.conf"},
        "an entry still counts",
    ),
    "grub2": (
        _blessed(grubenv="boot_success=1", counting="blessed"),
        {"grubenv": "boot_counter=2 boot_success=1"},
        "grubenv is not blessed",
    ),
}


@pytest.mark.unit
@pytest.mark.parametrize("backend", sorted(_BLESSED))
def test_blessed_means_marked_good_after_a_counted_boot_and_no_counter_left(backend):
    boot = BootResult(log="")
    good, still_counting, complaint = _BLESSED[backend]
    expect_blessed(backend, good, "c2.0", 2, boot)
    with pytest.raises(ScenarioFailed, match=complaint):
        expect_blessed(backend, {**good, **still_counting}, "c2.0", 2, boot)
    with pytest.raises(ScenarioFailed, match="with 3 tries left"):
        expect_blessed(backend, good, "c2.0", 3, boot)
    with pytest.raises(ScenarioFailed, match="not healthy"):
        expect_blessed(backend, {**good, "health.c2.0": "failed"}, "c2.0", 2, boot)


@pytest.mark.unit
def test_a_red_reboot_is_told_from_the_drivers_power_off():
    out = ["R: unit.sysroot-health-check.service=failed"]
    red = "Starting sysroot-health-re…s failed: run the red.d scripts...\n"
    expect_red_reboot(BootResult(log=red + REBOOTED, output=out))
    with pytest.raises(ScenarioFailed, match="did not end in a reboot"):
        expect_red_reboot(BootResult(log=red + "reboot: Power down", output=out))
    with pytest.raises(ScenarioFailed, match="did not fail"):
        expect_red_reboot(BootResult(log=red + REBOOTED, output=[]))


# --- scenario 9: install to-disk inside the guest (vmtest/install_scenarios.py) ---


@pytest.mark.unit
def test_the_install_runs_cover_both_back_ends_and_4k_once_and_the_guard_once():
    assert set(RUNS) == {"systemd-boot", "grub2"}
    assert sorted(r.sector_size for r in RUNS.values()) == [512, 4096]
    assert sum(r.busy_check for r in RUNS.values()) == 1


@pytest.mark.unit
@pytest.mark.parametrize("backend", sorted(RUNS))
def test_the_install_script_is_valid_shell_with_the_guard_check_only_when_asked(backend):
    plan = RUNS[backend]
    script = install_script(backend, plan)
    subprocess.run(["sh", "-n"], input=(PREAMBLE + script).encode(), check=True)
    assert not re.search(r"@[A-Z]+@", script)  # every placeholder filled in
    assert f"--bootloader={backend}" in script and "--stateroot=testos" in script
    assert "--karg=console=ttyS0,115200" in script
    assert ("dmsetup create" in script) == plan.busy_check
    assert "--sector-size" not in script  # a real block device in the guest
    # the osmet install in the same boot: its own disk, the file from the read-only one
    assert "sysroot osmet unpack --osmet-dir=/run/osmet-files" in script
    assert "virtio-vmtest-osmet-files /run/osmet-files" in script


@pytest.mark.unit
def test_the_osmet_runs_cover_both_sector_sizes_each_the_other_of_its_install():
    assert sorted(r.osmet_sector_size for r in RUNS.values()) == [512, 4096]
    assert all(r.osmet_sector_size != r.sector_size for r in RUNS.values())


@pytest.mark.unit
def test_the_osmet_files_have_the_names_build_create_gives_them():
    assert osmet_name(512) == "testos-1-metal.x86_64.osmet"
    assert osmet_name(4096) == "testos-1-metal4k.x86_64.osmet"


INSTALLED = {
    "target": "/dev/vdc",
    "target_sector": "512",
    "ref": "testos/stable",
    "blank_before": "yes",
    "dm_create_rc": "0",
    "busy_rc": "1",
    "busy_err_lines": "1",
    "busy_err": f"error: /dev/vdc is in use: /dev/vdc is held by dm-0 ({HOLDER})",
    "busy_untouched": "yes",
    "dm_remove_rc": "0",
    "install_rc": "0",
    "install_seconds": "300",
    "table": "gpt 512 3",
    "root_uuid": "5a1d0b5e-0000-4000-8000-000000000001",
}


@pytest.mark.unit
def test_the_install_boot_passes_only_with_a_named_refusal_then_the_right_table():
    guarded = InstallRun(512, busy_check=True, osmet_sector_size=4096)
    check_install(INSTALLED, "grub2", guarded, _boot_reporting())
    for key, value, why in [
        ("busy_rc", "0", "took a disk held by dm"),
        ("busy_err_lines", "3", "busy_err_lines"),
        ("busy_err", "error: Traceback", "does not name the dm holder"),
        ("busy_untouched", "no", "busy_untouched"),
        ("install_rc", "1", "install_rc"),
        ("table", "gpt 512 2", "table"),
        ("target_sector", "4096", "target_sector"),
    ]:
        with pytest.raises(ScenarioFailed, match=why):
            check_install({**INSTALLED, key: value}, "grub2", guarded, _boot_reporting())
    # without the guard check its values are not needed; a 4K systemd-boot disk
    fourk = {k: v for k, v in INSTALLED.items() if not k.startswith(("busy", "dm_"))}
    fourk.update(target_sector="4096", table="gpt 4096 2")
    check_install(
        fourk,
        "systemd-boot",
        InstallRun(4096, busy_check=False, osmet_sector_size=512),
        _boot_reporting(),
    )
    with pytest.raises(ScenarioFailed, match="table"):
        check_install(
            {**fourk, "table": "gpt 512 2"},
            "systemd-boot",
            InstallRun(4096, busy_check=False, osmet_sector_size=512),
            _boot_reporting(),
        )


UNPACKED = {
    "target": "/dev/vdc",
    "osmet_target": "/dev/vdd",
    "osmet_target_sector": "4096",
    "osmet_blank_before": "yes",
    "files_mount_rc": "0",
    "osmet_rc": "0",
    "osmet_seconds": "120",
    "osmet_chose": "testos-1-metal4k.x86_64.osmet",
    "osmet_table": "gpt 4096 3",
    "osmet_root_uuid": "5a1d0b5e-0000-4000-8000-000000000002",
}


@pytest.mark.unit
def test_the_osmet_unpack_passes_only_with_the_right_file_written_onto_its_own_disk():
    plan = InstallRun(512, busy_check=True, osmet_sector_size=4096)
    files = OsmetFiles("files.img", osmet_name(4096), 4096, 2 << 30)
    check_osmet(UNPACKED, "grub2", plan, files, _boot_reporting())
    for key, value, why in [
        ("osmet_target", "/dev/vdc", "the osmet target is the install's"),
        ("osmet_target", "", "no osmet target disk"),
        ("osmet_target_sector", "512", "osmet_target_sector"),
        ("osmet_blank_before", "no", "osmet_blank_before"),
        ("files_mount_rc", "32", "files_mount_rc"),
        ("osmet_rc", "1", "osmet_rc"),
        ("osmet_chose", "testos-1-metal.x86_64.osmet", "osmet_chose"),
        ("osmet_table", "gpt 512 3", "osmet_table"),
        ("osmet_table", "gpt 4096 2", "osmet_table"),
        ("osmet_root_uuid", "", "no UUID"),
    ]:
        with pytest.raises(ScenarioFailed, match=why):
            check_osmet({**UNPACKED, key: value}, "grub2", plan, files, _boot_reporting())
    # systemd-boot: two partitions, 512-byte sectors
    small = {**UNPACKED, "osmet_target_sector": "512", "osmet_table": "gpt 512 2"}
    small["osmet_chose"] = osmet_name(512)
    sd = InstallRun(4096, busy_check=False, osmet_sector_size=512)
    check_osmet(
        small, "systemd-boot", sd, OsmetFiles("f", osmet_name(512), 512, 1), _boot_reporting()
    )
