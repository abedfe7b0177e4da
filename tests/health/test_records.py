"""sysroot/health/records.py: one JSON record per run under the stateroot's /var, written
atomically, kept bounded, read back as records or one clear error line."""

from __future__ import annotations

import json
import os
import stat

import pytest

from sysroot.deploy.layout import SysrootLayout
from sysroot.errors import FormatError
from sysroot.health import (
    Check,
    CheckKind,
    CheckResult,
    HealthReport,
    Outcome,
    OutputLine,
    list_records,
    read_record,
    records_dir,
    run_checks,
    stateroot_records_dir,
    write_record,
)
from sysroot.health import records as records_mod
from sysroot.health.records import MAX_RECORD_SIZE
from tests.health.conftest import USR_REQUIRED, USR_WANTED
from tests.util.test_run_streaming import within

BOOT = "0123456789abcdef0123456789abcdef"


def report(started: float = 1700000000.0, *, checks: int = 2, tail: int = 2) -> HealthReport:
    results = tuple(
        CheckResult(
            Check(CheckKind.REQUIRED, f"{USR_REQUIRED}/{i:02d}.sh", f"{i:02d}.sh"),
            Outcome.FAILED if i == checks - 1 else Outcome.PASSED,
            1 if i == checks - 1 else 0,
            0.25,
            tuple(OutputLine(6, f"line {j} of {i}") for j in range(tail)),
            tail,
        )
        for i in range(checks)
    )
    return HealthReport(results, started, started + 1, BOOT, ("a warning",))


def test_round_trip_of_a_real_run(root, config, tmp_path):
    root.script(USR_REQUIRED, "01_ok.sh", "echo '<3>bad news'; echo fine")
    root.script(USR_WANTED, "01_fail.sh", "exit 4")
    rep = run_checks(str(root), config, boot_id=BOOT)
    directory = records_dir(str(root))
    path = write_record(directory, rep, deployment="abc.0")
    assert os.path.dirname(path) == str(root.path / "var/lib/sysroot/health")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(directory) == [os.path.basename(path)]  # no temp file left
    rec = read_record(path)
    assert (rec.report, rec.deployment, rec.name) == (rep, "abc.0", os.path.basename(path))
    with open(path) as f:
        doc = json.load(f)
    assert doc["healthy"] is True and doc["boot_id"] == BOOT
    assert doc["checks"][0]["tail"] == [[3, "bad news"], [6, "fine"]]
    assert doc["checks"][1]["outcome"] == "failed" and doc["checks"][1]["exit_status"] == 4


def test_stateroot_dir_is_under_the_stateroots_var(tmp_path):
    layout = SysrootLayout(str(tmp_path))
    assert stateroot_records_dir(layout, "os") == str(
        tmp_path / "ostree/deploy/os/var/lib/sysroot/health"
    )


def test_only_the_newest_are_kept(tmp_path):
    d = str(tmp_path / "records")
    paths = [write_record(d, report(1700000000.0 + i), keep=10) for i in range(15)]
    assert sorted(os.listdir(d)) == sorted(os.path.basename(p) for p in paths[5:])
    records, errors = list_records(d)
    assert errors == [] and [r.report.started for r in records] == [
        1700000000.0 + i for i in range(5, 15)
    ]


def test_the_write_is_atomic(tmp_path, monkeypatch):
    d = tmp_path / "records"
    old = write_record(str(d), report(1.0))
    real_write = os.write

    def half_then_fail(fd: int, data) -> int:  # a crash (or ENOSPC) in the middle
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_fail)
    with pytest.raises(OSError):
        write_record(str(d), report(2.0))
    monkeypatch.undo()
    assert os.listdir(d) == [os.path.basename(old)]  # no partial record, no temp file
    assert list_records(str(d))[1] == []


def test_leftover_temp_files_are_removed_when_old(tmp_path):
    d = tmp_path / "records"
    d.mkdir()
    stale, young = d / ".x.json.tmp-0123abcd", d / ".y.json.tmp-4567cdef"
    stale.write_text("{")
    young.write_text("{")
    os.utime(stale, (1, 1))
    write_record(str(d), report())
    assert not stale.exists() and young.exists()


def test_a_huge_record_loses_output_not_results(tmp_path):
    big = report(checks=1500, tail=20)
    big = HealthReport(
        tuple(
            CheckResult(
                r.check, r.outcome, r.exit_status, r.duration,
                tuple(OutputLine(6, "y" * 2048) for _ in range(20)), 20,
            )
            for r in big.results
        ),
        big.started, big.finished, big.boot_id,
    )  # fmt: skip
    path = write_record(str(tmp_path), big)
    assert os.path.getsize(path) <= MAX_RECORD_SIZE
    rec = read_record(path)
    assert len(rec.report.results) == 1500
    assert all(len(r.tail) <= 3 for r in rec.report.results)
    assert [r.lines for r in rec.report.results] == [20] * 1500  # how much there was


def valid_doc() -> dict:
    return records_mod._encode(report(), None)


def corrupt_cases(tmp_path):
    def doc(**changes):
        d = valid_doc()
        d.update(changes)
        return json.dumps(d).encode()

    def check(**changes):
        d = valid_doc()
        d["checks"][0].update(changes)
        return json.dumps(d).encode()

    yield "empty", b"", "invalid JSON"
    yield "garbage", os.urandom(64) + b"\xff", "invalid JSON"
    yield "truncated", json.dumps(valid_doc()).encode()[:-10], "invalid JSON"
    yield "not UTF-8", b'{"format": "\xff"}', "invalid JSON"
    yield "deep", b"[" * 100000 + b"]" * 100000, "invalid JSON"
    yield "a list", b"[1, 2]", "missing 'format'"
    yield "format", doc(format=2), "unknown format 2"
    yield "bool status", check(exit_status=True), "'exit_status' has the wrong type"
    yield "bad outcome", check(outcome="exploded"), "unknown check kind or outcome"
    yield "bad tail", check(tail=[[1, 2, 3]]), "'tail' has the wrong shape"
    yield "no name", json.dumps({**valid_doc(), "checks": [{}]}).encode(), "missing 'kind'"
    yield "warnings", doc(warnings=[1]), "'warnings' has the wrong type"
    yield "huge", b" " * (MAX_RECORD_SIZE + 1), "larger than"


def test_corrupt_records_give_one_line(tmp_path):
    d = tmp_path / "records"
    good = write_record(str(d), report(5.0))
    n = 0
    for what, data, message in corrupt_cases(tmp_path):
        n += 1
        path = d / f"{n:020d}-bad.json"
        path.write_bytes(data)
        with pytest.raises(FormatError) as e:
            read_record(str(path))
        assert str(e.value).startswith(f"{path}: "), what
        assert message in str(e.value) and "\n" not in str(e.value), what
    records, errors = list_records(str(d))
    assert [r.name for r in records] == [os.path.basename(good)]
    assert len(errors) == n


def test_not_regular_files_are_refused_without_hanging(tmp_path):
    d = tmp_path / "records"
    d.mkdir()
    fifo, link, sub = d / f"{1:020d}-a.json", d / f"{2:020d}-b.json", d / f"{3:020d}-c.json"
    os.mkfifo(fifo)
    (tmp_path / "target").write_text(json.dumps(valid_doc()))
    link.symlink_to(tmp_path / "target")  # never follow a link out of the directory
    sub.mkdir()
    records, errors = within(10, lambda: list_records(str(d)))
    assert records == []
    assert errors == [
        f"{fifo}: not a health record: not a regular file",
        f"{link}: cannot read health record: Too many levels of symbolic links",
        f"{sub}: not a health record: not a regular file",
    ]


def test_missing_directory_has_no_records(tmp_path):
    assert list_records(str(tmp_path / "none")) == ([], [])
