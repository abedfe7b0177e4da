"""The VM test runner's scheduling, timing and locking (vm-tests/vmtest): the job
graph on a worker pool, the time ledger and its table, the boot phases, the growing
serial console, the job plan and the cross-process build lock. No VM is booted."""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

VM_TESTS = Path(__file__).resolve().parent.parent / "vm-tests"
sys.path.insert(0, str(VM_TESTS))

from vmtest import cache, main  # noqa: E402
from vmtest.qemu import (  # noqa: E402
    VCPUS,
    BootResult,
    Console,
    Drive,
    _qemu_base,
    disk_list_args,
)
from vmtest.schedule import Job, Schedule, State  # noqa: E402
from vmtest.timing import BUDGET_SECONDS, Ledger, Stage  # noqa: E402

pytestmark = pytest.mark.unit  # needs neither root nor ostree nor mounts

# --- the job graph (vmtest/schedule.py) ---


class Recorder:
    """Jobs that note when they start and how many run at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[str] = []
        self.start_times: dict[str, float] = {}
        self.running = 0
        self.most = 0

    def job(
        self, name: str, seconds: float = 0.05, fail: bool = False, needs: tuple[str, ...] = ()
    ) -> Job:
        def run() -> str:
            with self.lock:
                self.started.append(name)
                self.start_times[name] = time.monotonic()
                self.running += 1
                self.most = max(self.most, self.running)
            try:
                time.sleep(seconds)
                if fail:
                    raise RuntimeError(f"{name} broke")
                return f"{name} done"
            finally:
                with self.lock:
                    self.running -= 1

        return Job(name, run, needs)


def test_no_more_jobs_run_at_once_than_there_are_workers():
    rec = Recorder()
    jobs = [rec.job(f"j{i}", 0.1) for i in range(6)]
    outcomes = Schedule(jobs, workers=2).run()
    assert rec.most == 2  # the limit, and reached: the jobs did run side by side
    assert all(o.state is State.PASSED for o in outcomes.values())
    assert outcomes["j3"].value == "j3 done"


def test_a_job_waits_for_its_needs_and_the_first_listed_ready_job_starts_first():
    # "disk" first; when it is done, "long" (listed before "short") must start before
    # "short", although "short" was ready all along: a queue filled up front would
    # run "short" second.
    rec = Recorder()
    jobs = [rec.job("disk"), rec.job("long", needs=("disk",)), rec.job("short")]
    Schedule(jobs, workers=1).run()
    assert rec.started == ["disk", "long", "short"]


def test_a_job_is_timed_from_its_start_not_from_when_it_became_ready():
    rec = Recorder()
    jobs = [rec.job(f"j{i}", 0.2) for i in range(3)]
    outcomes = Schedule(jobs, workers=1).run()
    for name, outcome in outcomes.items():  # queued, j2 would show 0.4 s too early
        assert rec.start_times[name] - outcome.started < 0.1, name
        assert outcome.seconds == pytest.approx(0.2, abs=0.1), name


def test_jobs_after_a_failed_one_do_not_run_down_the_whole_chain():
    rec = Recorder()
    jobs = [
        rec.job("a", fail=True),
        rec.job("b", needs=("a",)),
        rec.job("c", needs=("b",)),
        rec.job("d", needs=("c", "a")),
    ]
    told = []
    outcomes = Schedule(jobs, workers=2).run(lambda name, o: told.append((name, o.state)))
    assert rec.started == ["a"]
    assert outcomes["a"].state is State.FAILED
    assert str(outcomes["a"].error) == "a broke"
    assert [outcomes[n].state for n in "bcd"] == [State.NOT_RUN] * 3
    assert "a did not succeed" in str(outcomes["b"].error)
    assert "b did not succeed" in str(outcomes["c"].error)  # names its own need
    assert str(outcomes["d"].error) == "not run: a did not succeed"  # its failed need
    assert told[0] == ("a", State.FAILED)  # and each other job is told of once
    assert sorted(told[1:]) == [(n, State.NOT_RUN) for n in "bcd"]


def test_a_failure_stops_only_the_jobs_that_need_it():
    rec = Recorder()
    jobs = [
        rec.job("disk x", fail=True),
        rec.job("disk y", 0.1),
        rec.job("x/1", needs=("disk x",)),
        rec.job("y/1", needs=("disk y",)),
        rec.job("x/2", needs=("x/1",)),
        rec.job("y/2", needs=("y/1",)),
    ]
    outcomes = Schedule(jobs, workers=2).run()
    assert {n: o.state for n, o in outcomes.items()} == {
        "disk x": State.FAILED,
        "disk y": State.PASSED,
        "x/1": State.NOT_RUN,
        "y/1": State.PASSED,
        "x/2": State.NOT_RUN,
        "y/2": State.PASSED,
    }
    assert sorted(rec.started) == ["disk x", "disk y", "y/1", "y/2"]


@pytest.mark.parametrize("interruption", [SystemExit(143), KeyboardInterrupt()])
def test_an_interruption_while_waiting_sets_stop_and_waits_for_the_running_jobs(interruption):
    stop = threading.Event()
    saw_stop = []

    def quick() -> None:
        pass

    def slow() -> None:  # a boot: ends early once the run is stopped
        saw_stop.append(stop.wait(timeout=3))

    def on_done(name, outcome):
        if name == "quick":
            raise interruption

    jobs = [Job("slow", slow), Job("quick", quick), Job("later", quick, ("quick",))]
    t0 = time.monotonic()
    with pytest.raises(type(interruption)):
        Schedule(jobs, workers=2).run(on_done, stop=stop)
    assert stop.is_set()
    assert saw_stop == [True]  # the slow job was told, and had ended before the raise
    assert time.monotonic() - t0 < 2


def test_a_real_sigint_while_waiting_sets_stop():
    # Python's own ^C handler, even when the suite was started with SIGINT ignored
    # (in the background of a script)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    stop = threading.Event()

    def interrupt() -> None:
        time.sleep(0.2)  # the main thread is waiting by now
        os.kill(os.getpid(), 2)  # SIGINT: delivered to the main thread
        stop.wait(timeout=3)

    try:
        with pytest.raises(KeyboardInterrupt):
            Schedule([Job("i", interrupt)], workers=1).run(stop=stop)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stop.is_set()


def test_a_bad_job_list_is_refused():
    def nothing() -> None:
        pass

    with pytest.raises(ValueError, match="repeat"):
        Schedule([Job("a", nothing), Job("a", nothing)], workers=1)
    with pytest.raises(ValueError, match="unknown"):
        Schedule([Job("a", nothing, ("b",))], workers=1)
    with pytest.raises(ValueError, match="worker"):
        Schedule([Job("a", nothing)], workers=0)


def test_a_cycle_of_needs_fails_instead_of_hanging():
    def nothing() -> None:
        pass

    jobs = [Job("a", nothing, ("b",)), Job("b", nothing, ("a",))]
    with pytest.raises(RuntimeError, match="cannot start"):
        Schedule(jobs, workers=1).run()


# --- where the time goes (vmtest/timing.py) ---


def _ledger() -> Ledger:
    ledger = Ledger()
    ledger.add(Stage.BUILD, "disk grub2", 120.0)
    ledger.add_boot(
        "grub2/4", BootResult(log="", seconds=50.0, script_began=10.0, script_ended=40.0)
    )
    ledger.add_boot("grub2/4", BootResult(log="", seconds=30.0))  # never reached the script
    ledger.add(Stage.HOST_CHECK, "grub2/4", 7.0)
    ledger.add_boot("grub2/5", BootResult(log="", seconds=20.0, script_began=5.0))
    return ledger


def test_the_ledger_adds_up_boots_and_stages_per_job():
    ledger = _ledger()
    assert ledger.boots("grub2/4") == 2 and ledger.boots("grub2/5") == 1
    assert ledger.boots("disk grub2") == 0
    assert ledger.total(Stage.TO_SCRIPT, "grub2/4") == 40.0  # 10 + 30
    assert ledger.total(Stage.SCRIPT, "grub2/4") == 30.0
    assert ledger.total(Stage.SHUTDOWN, "grub2/4") == 10.0
    assert ledger.total(Stage.SCRIPT) == 30.0 + 15.0  # every job
    assert ledger.total(Stage.HOST_CHECK, "grub2/5") == 0.0


def test_the_ledger_takes_entries_from_many_threads():
    ledger = Ledger()

    def add() -> None:
        for _ in range(500):
            ledger.add(Stage.HOST_CHECK, "j", 1.0)

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ledger.total(Stage.HOST_CHECK) == 2000.0


def test_the_time_table_has_stages_jobs_and_the_budget():
    table = _ledger().table(300.0, 2, [("disk grub2", 120.0), ("grub2/4", 95.0)])
    lines = table.splitlines()
    assert "2 worker(s)" in lines[0]
    stage_rows = {
        line.split("  ")[1].strip(): line.split()[-2:]
        for line in lines
        if line.startswith("  boot:") or line.startswith("  build ")
    }
    assert stage_rows["boot: firmware to test script"] == ["3", "45"]  # 10 + 30 + 5
    assert stage_rows["boot: test script (in-guest checks)"] == ["3", "45"]
    assert stage_rows["build"] == ["1", "120"]
    assert "  builds: disk grub2 120 s" in lines
    job_row = next(line for line in lines if line.lstrip().startswith("grub2/4"))
    assert job_row.split() == ["grub2/4", "95", "2", "40", "30", "10", "7"]
    assert not any(line.lstrip().startswith("grub2/5") for line in lines)  # not listed
    assert lines[-1].startswith(f"time budget: 300 s of {BUDGET_SECONDS} s (within")


def test_the_budget_line_says_over_only_past_the_budget():
    ledger = Ledger()
    assert "(within the budget" in ledger.table(BUDGET_SECONDS, 1, []).splitlines()[-1]
    over = ledger.table(BUDGET_SECONDS + 1, 1, []).splitlines()[-1]
    assert "(OVER the budget" in over and "within" not in over


# --- boots (vmtest/qemu.py) ---


def test_a_boot_splits_into_firmware_script_and_shutdown():
    assert BootResult(log="", seconds=50.0, script_began=10.0, script_ended=40.0).phases() == (
        10.0,
        30.0,
        10.0,
    )
    # killed mid-script (a power cut): up to the end is script time
    assert BootResult(log="", seconds=50.0, script_began=10.0, killed=True).phases() == (
        10.0,
        40.0,
        0.0,
    )
    # the script never began: all of it is firmware and kernel
    assert BootResult(log="", seconds=50.0).phases() == (50.0, 0.0, 0.0)


def test_the_console_finds_text_written_in_two_pieces(tmp_path):
    log = tmp_path / "serial.log"
    console = Console(str(log))
    console.read()  # qemu has not created it yet
    assert not console.has("@@VMT-BEGIN")
    log.write_bytes(b"[ 1.0] Linux version\r\n@@VMT-BE")
    console.read()
    assert not console.has("@@VMT-BEGIN")
    with open(log, "ab") as f:
        f.write(b"GIN\r\n")
    console.read()
    assert console.has("@@VMT-BEGIN")
    assert console.has("Linux version")  # still finds what an earlier read brought


def test_the_console_reads_only_what_was_added(tmp_path):
    log = tmp_path / "serial.log"
    log.write_bytes(b"AAAA")
    console = Console(str(log))
    console.read()
    console.read()
    assert bytes(console.data) == b"AAAA"  # not read twice
    log.write_bytes(b"BBBBCC")  # the first 4 bytes are not read again
    console.read()
    assert bytes(console.data) == b"AAAACC"


def test_qemu_runs_without_a_graphics_card_on_one_vcpu_by_default():
    argv = _qemu_base("tcg")
    assert VCPUS == 1
    assert argv[argv.index("-vga") + 1] == "none"
    assert argv[argv.index("-smp") + 1] == "1"
    assert argv[argv.index("-accel") + 1] == "tcg"
    argv = _qemu_base("kvm", vcpus=3)
    assert argv[argv.index("-smp") + 1] == "3"


def test_disks_are_devices_in_order_and_only_the_first_boots():
    argv = disk_list_args(
        [
            Drive("/d/system.img"),
            Drive("/d/script.img", readonly=True),
            Drive("/d/target.img", sector_size=4096, serial="vmtest-target"),
        ]
    )
    assert "if=virtio" not in " ".join(argv)  # created after every -device: out of order
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert drives == [
        "if=none,id=disk0,format=raw,file=/d/system.img",
        "if=none,id=disk1,format=raw,file=/d/script.img,readonly=on",
        "if=none,id=disk2,format=raw,file=/d/target.img",
    ]
    assert devices == [
        "virtio-blk-pci,drive=disk0,bootindex=0",
        "virtio-blk-pci,drive=disk1",
        "virtio-blk-pci,drive=disk2,logical_block_size=4096,physical_block_size=4096,"
        "serial=vmtest-target",
    ]
    # a 4K-native system disk (the installed one of scenario 9) boots as such
    (device,) = [a for a in disk_list_args([Drive("/d/x.img", 4096)]) if "virtio" in a]
    assert "logical_block_size=4096" in device and "bootindex=0" in device


# --- the plan of a run (vmtest/main.py) ---


@pytest.fixture
def a_run(tmp_path):
    return main.Run(str(tmp_path), "tcg", Ledger(), str(tmp_path / "tree"), {})


def test_the_plan_builds_disks_first_then_the_long_scenarios(a_run):
    jobs, labels = main.plan(a_run, ["systemd-boot", "grub2"], list("123456789"))
    assert [j.name for j in jobs] == [
        "disk systemd-boot",
        "disk grub2",
        "systemd-boot/4",
        "grub2/4",
        "systemd-boot/8",
        "grub2/8",
        "systemd-boot/9",
        "grub2/9",
        "systemd-boot/1,2,3",
        "grub2/1,2,3",
        "systemd-boot/7",
        "grub2/7",
        "systemd-boot/6",
        "grub2/6",
        "systemd-boot/5",
        "grub2/5",
    ]
    needs = {j.name: j.needs for j in jobs}
    assert needs["disk grub2"] == () and needs["disk systemd-boot"] == ()
    for job in jobs[2:]:
        assert job.needs == (f"disk {job.name.split('/')[0]}",)
    assert labels["grub2/1,2,3"] == ["grub2/1", "grub2/2", "grub2/3"]
    assert labels["systemd-boot/6"] == ["systemd-boot/6"]
    assert set(labels) == {j.name for j in jobs[2:]}
    shared = next(j for j in jobs if j.name == "grub2/1,2,3").run
    assert isinstance(shared, functools.partial)  # not called: it would boot
    assert shared.func is main.shared_machine_job
    assert shared.args == (a_run, "grub2", ["1", "2", "3"], "grub2/1,2,3")
    fresh = next(j for j in jobs if j.name == "systemd-boot/5").run
    assert fresh.func is main.fresh_disk_job
    assert fresh.args == (a_run, "systemd-boot", "5", "systemd-boot/5")


def test_a_subset_of_scenarios_plans_only_their_jobs(a_run):
    jobs, labels = main.plan(a_run, ["grub2"], ["2", "5"])
    assert [j.name for j in jobs] == ["disk grub2", "grub2/2", "grub2/5"]
    assert labels == {"grub2/2": ["grub2/2"], "grub2/5": ["grub2/5"]}
    assert jobs[1].run.args == (a_run, "grub2", ["2"], "grub2/2")


def test_a_failed_disk_leaves_its_back_ends_scenarios_unrun(a_run):
    jobs, _ = main.plan(a_run, ["systemd-boot", "grub2"], ["1", "2", "3", "4", "5", "6"])
    ran = []

    def fake(name: str) -> None:
        ran.append(name)
        if name == "disk grub2":
            raise RuntimeError("mkfs failed")

    jobs = [dataclasses.replace(j, run=functools.partial(fake, j.name)) for j in jobs]
    outcomes = Schedule(jobs, workers=2).run()
    assert ran[:2] == ["disk systemd-boot", "disk grub2"]
    for name, outcome in outcomes.items():
        expected = (
            State.FAILED
            if name == "disk grub2"
            else State.NOT_RUN
            if name.startswith("grub2/")
            else State.PASSED
        )
        assert outcome.state is expected, name
    assert [n for n in ran if n.startswith("systemd-boot/")] == [
        "systemd-boot/4",
        "systemd-boot/1,2,3",
        "systemd-boot/6",
        "systemd-boot/5",
    ]


def test_the_default_workers_are_one_per_core_as_memory_allows(monkeypatch):
    workers = main.default_workers()
    assert 1 <= workers <= (os.cpu_count() or 1)

    def meminfo(kib: int):
        def fake_open(path, *args, **kwargs):
            assert path == "/proc/meminfo"
            return __import__("io").StringIO(f"MemTotal: 99999999 kB\nMemAvailable: {kib} kB\n")

        return fake_open

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(main, "open", meminfo(1 << 20), raising=False)  # 1 GiB
    assert main.default_workers() == 1
    monkeypatch.setattr(main, "open", meminfo(7 << 20), raising=False)  # 2 guests' worth
    assert main.default_workers() == 2
    monkeypatch.setattr(main, "open", meminfo(1 << 30), raising=False)  # 1 TiB
    assert main.default_workers() == 8


@pytest.mark.parametrize("jobs", ["0", "-1"])
def test_fewer_than_one_job_is_refused(jobs, capsys):
    with pytest.raises(SystemExit) as e:
        main.parse_args(["--jobs", jobs])
    assert e.value.code == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err


def test_the_job_count_is_taken():
    assert main.parse_args(["-j", "3", "4"]).jobs == 3
    assert main.parse_args([]).jobs is None


# --- the build cache across processes (vmtest/cache.py) ---

BUILDER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from vmtest import cache
work = sys.argv[2]
open(os.path.join(work, f"ready-{os.getpid()}"), "w").close()
while not os.path.exists(os.path.join(work, "go")):
    time.sleep(0.01)

def build(path):
    time.sleep(1)
    with open(os.path.join(work, "builds"), "a") as f:
        f.write(f"{os.getpid()}\\n")
    os.mkdir(path)

print(cache.cached("slow", "0123456789abcdef", build, log=lambda m: None))
"""


def test_two_processes_asking_at_once_build_a_product_once(tmp_path):
    env = {**os.environ, "SYSROOT_VM_CACHE": str(tmp_path / "cache")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BUILDER, str(VM_TESTS), str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 10
        while len(list(tmp_path.glob("ready-*"))) < 2:  # both started: let them go at once
            assert time.monotonic() < deadline, "the builders did not start"
            time.sleep(0.01)
        (tmp_path / "go").touch()
        outs = [p.communicate(timeout=10)[0].strip() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0]
    assert len((tmp_path / "builds").read_text().splitlines()) == 1
    assert outs[0] == outs[1] == str(tmp_path / "cache" / "slow-0123456789abcdef")
    assert Path(outs[0]).is_dir()


def test_the_cache_is_under_var_cache_unless_told(monkeypatch, tmp_path):
    assert cache.DEFAULT_CACHE == "/var/cache/sysroot-vmtests"
    monkeypatch.delenv("SYSROOT_VM_CACHE", raising=False)
    assert cache.cache_dir() == cache.DEFAULT_CACHE
    assert os.path.isdir(cache.DEFAULT_CACHE)
    monkeypatch.setenv("SYSROOT_VM_CACHE", "")
    assert cache.cache_dir() == cache.DEFAULT_CACHE
    monkeypatch.setenv("SYSROOT_VM_CACHE", str(tmp_path / "c"))
    assert cache.cache_dir() == str(tmp_path / "c") and (tmp_path / "c").is_dir()


def test_a_repeated_back_end_is_refused_or_taken_once(a_run):
    try:
        args = main.parse_args(["--backend", "grub2", "--backend", "grub2"])
    except SystemExit as e:  # refused as bad usage: fine
        assert e.code == 2
        return
    jobs, _ = main.plan(a_run, args.backend, ["4"])
    Schedule(jobs, workers=1)  # must not raise: each back end planned once
