"""Booting a disk image under qemu: UEFI firmware, a serial log, a script disk.

KVM: /dev/kvm may exist and still not run guests (on the project's machines a KVM
guest hangs), so a short probe boots the kernel with KVM and watches for its first
console line; without it, TCG.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS.fd"
MARK_RE = re.compile(r"@@VMT-MARK (\S+)")
OUT_RE = re.compile(r"@@VMT: ?(.*)")
END_RE = re.compile(r"@@VMT-END rc=(\d+)")
LOCKUP = "watchdog: BUG: soft lockup"
BEGIN = "@@VMT-BEGIN"
END = "@@VMT-END"
# One vCPU per guest: under TCG a vCPU is one host thread, and the runner runs one
# guest per host core side by side (vmtest/schedule.py), which gets more boots done
# than one guest with two vCPUs (measured in vm-tests/README.md).
VCPUS = 1
# Set when the run is stopped (SIGTERM, ^C): every running boot kills its qemu and
# raises Stopped, so the worker threads end and the runner's cleanup can run.
STOP = threading.Event()


@dataclass(frozen=True)
class Drive:
    """A disk image a guest sees as a virtio disk."""

    path: str
    sector_size: int = 512  # logical and physical: 4096 makes a 4K-native disk
    serial: str = ""  # the guest finds it as /dev/disk/by-id/virtio-SERIAL
    readonly: bool = False


def drive_args(drive: Drive, index: int) -> list[str]:
    """qemu's arguments for drive as virtio disk number index. Every disk is a -device
    of its own, in order (the guest names them vda, vdb, ... in that order; `-drive
    if=virtio` would be created after every -device), and only the first is booted."""
    ident = f"disk{index}"
    backing = f"if=none,id={ident},format=raw,file={drive.path}"
    device = f"virtio-blk-pci,drive={ident}"
    if drive.readonly:
        backing += ",readonly=on"
    if drive.sector_size != 512:
        size = drive.sector_size
        device += f",logical_block_size={size},physical_block_size={size}"
    if drive.serial:
        device += f",serial={drive.serial}"
    if index == 0:
        device += ",bootindex=0"
    return ["-drive", backing, "-device", device]


def disk_list_args(drives: list[Drive]) -> list[str]:
    return [arg for i, drive in enumerate(drives) for arg in drive_args(drive, i)]


class Stopped(BaseException):
    """Not an Exception: no scenario may take it for a failure and go on."""


def _qemu_base(accel: str, vcpus: int = VCPUS, network: bool = False) -> list[str]:
    return [
        "qemu-system-x86_64",
        "-machine",
        "q35",
        "-accel",
        accel,
        "-m",
        "2048",
        "-smp",
        str(vcpus),
        "-display",
        "none",
        "-monitor",
        "none",
        # no graphics card: the console is serial, and under TCG the kernel spent
        # 10 s of every boot drawing its frame-buffer console on the emulated one
        "-vga",
        "none",
        # a network card only for a scenario that uses it: qemu's user network (the
        # host's loopback is 10.0.2.2 to the guest)
        *(["-nic", "user,model=virtio-net-pci"] if network else ["-nic", "none"]),
        "-no-reboot",
    ]


def probe_accel(kernel: str, timeout: float = 10.0) -> str:
    """'kvm' if a KVM guest prints its first kernel line within timeout, else 'tcg'."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    with tempfile.TemporaryDirectory(prefix="kvmprobe-") as tmp:
        log = os.path.join(tmp, "serial.log")
        proc = subprocess.Popen(
            _qemu_base("kvm")
            + ["-kernel", kernel, "-append", "console=ttyS0 panic=-1", "-serial", f"file:{log}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        ok = False
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                with open(log, "rb") if os.path.exists(log) else open(os.devnull, "rb") as f:
                    if b"Linux version" in f.read():
                        ok = True
                        break
                time.sleep(0.2)
        finally:
            proc.kill()
            proc.wait()
    return "kvm" if ok else "tcg"


@dataclass
class BootResult:
    log: str  # the whole serial console
    output: list[str] = field(default_factory=list)  # the script's output lines
    rc: int | None = None  # the script's exit status; None if it never finished
    killed: bool = False
    seconds: float = 0.0
    locked_up: bool = False  # killed by us: the guest hung before the script began
    # host-side times (seconds after qemu started) at which the console showed the
    # script begin and end; None if it never did
    script_began: float | None = None
    script_ended: float | None = None

    def phases(self) -> tuple[float, float, float]:
        """(firmware to the script's start, the script, the script's end to qemu's exit)
        in seconds; a boot cut or hung mid-script counts up to its end as script time."""
        if self.script_began is None:
            return self.seconds, 0.0, 0.0
        end = self.script_ended if self.script_ended is not None else self.seconds
        return self.script_began, end - self.script_began, self.seconds - end

    def values(self) -> dict[str, str]:
        """`R: key=value` lines the script printed."""
        out = {}
        for line in self.output:
            if line.startswith("R: ") and "=" in line:
                k, _, v = line[3:].partition("=")
                out[k.strip()] = v.strip()
        return out


class Machine:
    """One disk image booted again and again, as one machine would be."""

    def __init__(
        self,
        image: str,
        workdir: str,
        accel: str,
        log=print,
        on_boot: Callable[[BootResult], None] | None = None,
        sector_size: int = 512,
    ):
        self.image = image
        self.sector_size = sector_size  # of the machine's disk, as the guest sees it
        self.workdir = workdir
        self.accel = accel
        self.log = log
        self.on_boot = on_boot  # told of every boot, e.g. to add up the suite's time
        self.vars = os.path.join(workdir, "OVMF_VARS.fd")
        shutil.copyfile(OVMF_VARS, self.vars)
        self.boots = 0
        self.lockups = 0

    def boot(
        self,
        script: str,
        *,
        timeout: float = 900,
        kill_after: str | None = None,
        kill_delay: float = 0.0,
        network: bool = False,
        extra: tuple[Drive, ...] = (),
    ) -> BootResult:
        """Boot, run script in the guest, wait for qemu to exit (or kill it kill_delay
        seconds after the console showed the text kill_after, e.g. a script's mark).
        network: give the guest a network card (qemu's user network). extra: more
        disks, after the machine's disk (vda) and the script's (vdb).

        A guest that locks up before the script starts (seen now and then under TCG with
        two vCPUs: "soft lockup" on both, in early user space) is booted again, at most
        twice; each time is logged and counted in self.lockups."""
        for attempt in range(3):
            result = self._boot_once(script, timeout, kill_after, kill_delay, network, extra)
            self.log(f"boot {self.boots}: {boot_summary(result)}")
            if not result.locked_up:
                return result
            self.lockups += 1
            self.log(
                f"boot {self.boots}: the guest locked up before the test script ran "
                f"(TCG soft lockup); booting again ({attempt + 1}/2)"
            )
        return result

    def _boot_once(
        self,
        script: str,
        timeout: float,
        kill_after: str | None,
        kill_delay: float,
        network: bool,
        extra: tuple[Drive, ...],
    ) -> BootResult:
        self.boots += 1
        log = os.path.join(self.workdir, f"serial-{self.boots}.log")
        disk = os.path.join(self.workdir, f"script-{self.boots}.img")
        data = (PREAMBLE + script).encode()
        with open(disk, "wb") as f:
            f.write(data + b"\0" * (-len(data) % 512 or 512))
        argv = _qemu_base(self.accel, network=network) + [
            "-drive",
            f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive",
            f"if=pflash,format=raw,unit=1,file={self.vars}",
            *disk_list_args(
                [Drive(self.image, self.sector_size), Drive(disk, readonly=True), *extra]
            ),
            "-serial",
            f"file:{log}",
        ]
        start = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        console = Console(log)
        killed = locked_up = False
        began = ended = mark_seen_at = None
        try:
            while proc.poll() is None:
                if STOP.is_set():
                    raise Stopped("the run was stopped")
                now = time.monotonic()
                console.read()
                if began is None and console.has(BEGIN):
                    began = now - start
                if ended is None and console.has(END):
                    ended = now - start
                if began is None and console.has(LOCKUP):
                    locked_up = True
                    break
                if now - start > timeout:
                    raise TimeoutError(
                        f"guest did not finish within {timeout:.0f} s (serial log: {log})"
                    )
                if kill_after:
                    if mark_seen_at is None and console.has(kill_after):
                        mark_seen_at = now
                    if mark_seen_at is not None and now - mark_seen_at >= kill_delay:
                        os.kill(proc.pid, signal.SIGKILL)  # the power cut
                        killed = True
                        proc.wait()
                        break
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        seconds = time.monotonic() - start
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        with open(log, "rb") as f:
            text = f.read().decode(errors="replace")
        if not killed and proc.returncode not in (0, None) and err:
            text += f"\n[qemu exited with {proc.returncode}: {err.strip()}]\n"
        result = parse_console(text, killed, seconds)
        result.locked_up = locked_up
        if began is None and BEGIN in text:  # qemu exited between two reads
            began = seconds
        if ended is None and END in text:
            ended = seconds
        result.script_began, result.script_ended = began, ended
        if self.on_boot is not None:
            self.on_boot(result)
        return result


def boot_summary(result: BootResult) -> str:
    """How long a boot took and how it ended, for the log."""
    if result.locked_up:
        end = "locked up before the script"
    elif result.killed:
        end = "killed (power cut)"
    elif result.rc is None:
        end = "ended without finishing the script"
    else:
        end = f"script exit {result.rc}"
    return f"qemu ran {result.seconds:.0f} s, {end}"


def mark(name: str) -> str:
    """The console text of a script's `mark NAME`."""
    return f"@@VMT-MARK {name}"


class Console:
    """The serial log as qemu writes it, read as it grows (not again from the start
    at every look: the host looks 20 times a second)."""

    def __init__(self, path: str):
        self.path = path
        self.data = bytearray()

    def read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(len(self.data))
                self.data += f.read()
        except FileNotFoundError:
            pass

    def has(self, text: str) -> bool:
        return text.encode() in self.data


def parse_console(text: str, killed: bool, seconds: float) -> BootResult:
    result = BootResult(log=text, killed=killed, seconds=seconds)
    for line in text.splitlines():
        line = line.rstrip("\r")
        m = OUT_RE.search(line)
        if m:
            result.output.append(m.group(1))
            continue
        m = END_RE.search(line)
        if m:
            result.rc = int(m.group(1))
    return result


# Every script starts with this: helpers the scenarios share.
PREAMBLE = r"""
set -u
mark() { echo "@@VMT-MARK $1" > /dev/ttyS0; }
result() { printf 'R: %s=%s\n' "$1" "$2"; }  # printf: dash's echo expands backslashes
action() { echo "$1" > /run/vmtest-action; }
"""
