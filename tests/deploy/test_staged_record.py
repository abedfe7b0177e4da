"""/run/ostree/staged-deployment as untrusted input (sysroot/deploy/staged.py).

Every field of the record becomes a path, an entry name or an options line at
finalize; each is checked when the record is read. A record that fails the check
breaks nothing: `admin status` lists the deployments with a one-line warning (exit 0),
`finalize-staged` fails with one error line and the failure stamp, nothing else is
written. ostree 2022.7 crashes (SIGSEGV) on a garbage or truncated record, so every
`ostree admin status` fails until the file is deleted; it shows a stateroot name
like `../../../x` as is and tries to install a kernel under it.

The booted-system harness is tests/deploy/test_staged.py's.
"""

from __future__ import annotations

import pytest

from sysroot.formats import gvariant
from sysroot.formats.gvariant import Variant
from tests.deploy import test_staged as harness
from tests.deploy.test_staged import Booted
from tests.helpers.sysroots import OSNAME, assert_dicts_equal, boot_state

make_booted = harness.make_booted  # the booted-system fixture, shared

STAMP = "boot/ostree/finalize-failure.stamp"


def _stage(b: Booted, tool: str = "sysroot") -> dict:
    b(tool, "admin", "deploy", "--stage", f"{OSNAME}/x")
    return dict(gvariant.decode("a{sv}", b.staged_file.read_bytes()))


def _with_target(record: dict, **fields: str) -> bytes:
    target = dict(record["target"].value)
    for k, v in fields.items():
        target[k] = Variant("s", v)
    return gvariant.encode("a{sv}", {**record, "target": Variant("a{sv}", target)})


def _hostile(record: dict, case: str) -> bytes:
    """The record as staged, made hostile in one way."""
    good = gvariant.encode("a{sv}", record)
    if case == "garbage":
        return b"garbage\x00\x01"
    if case == "truncated":
        return good[: len(good) // 2]
    if case == "traversing-osname":
        # resolves (through /ostree -> sysroot/ostree) to the real staged deployment,
        # while the kernel directory /boot/ostree/$os-$bootcsum leaves /boot
        return _with_target(record, osname="../../../sysroot/ostree/deploy/" + OSNAME)
    if case == "evil-osname":
        return _with_target(record, osname="../../../evilos")
    if case == "osname-with-space":
        return _with_target(record, osname="with space")
    if case == "bootcsum":
        return _with_target(record, bootcsum="../../x")
    if case == "name":
        csum = record["target"].value["name"].value.split(".")[0]
        return _with_target(record, name=f"{csum}.0\n")
    if case == "kargs":
        return gvariant.encode(
            "a{sv}", {**record, "kargs": Variant("as", ["root=/dev/sda\ninitrd /evil.img"])}
        )
    if case == "not-utf8":
        bad = _with_target(record, osname="\u00e9vil")
        return bad.replace("\u00e9".encode(), b"\xff\xfe")
    raise AssertionError(case)


CASES = [
    "garbage",
    "truncated",
    "traversing-osname",
    "evil-osname",
    "osname-with-space",
    "bootcsum",
    "name",
    "kargs",
    "not-utf8",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_record_is_one_line_stamped_and_changes_nothing(make_booted, case):
    b = make_booted()
    hostile = _hostile(_stage(b), case)
    b.staged_file.write_bytes(hostile)
    before = boot_state(b.path)
    deployments = b.deployments()

    # status: the deployments, one warning line, exit 0
    r = b("sysroot", "admin", "status", check=False)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert (
        err.startswith("warning: ignoring the staged deployment: /run/ostree/staged-deployment: ")
        and err.count("\n") == 1
    ), err
    assert r.stdout.decode().splitlines()[0] == f"* {OSNAME} {b.booted}"
    assert "(staged)" not in r.stdout.decode()

    # finalize: one error line, the stamp says the same, nothing written
    r = b("sysroot", "admin", "finalize-staged", check=False)
    errors = [ln for ln in r.stderr.decode().splitlines() if ln.startswith("error: ")]
    assert r.returncode == 1 and b"Traceback" not in r.stderr, r.stderr.decode()
    assert len(errors) == 1 and errors[0].startswith("error: /run/ostree/staged-deployment: ")
    assert "\n" not in (b.path / STAMP).read_text()
    assert (b.path / STAMP).read_text() == errors[0].removeprefix("error: ")
    assert b.staged_file.read_bytes() == hostile
    (b.path / STAMP).unlink()
    assert_dicts_equal(before, boot_state(b.path), f"finalize with a {case} record")
    assert b.deployments() == deployments
    assert not list(b.path.glob("**/*evil*")) and not list(b.path.glob("ostree/deploy/*-*"))

    # staging again replaces the bad record, and that one finalizes
    _stage(b)
    b("sysroot", "admin", "finalize-staged")
    assert not (b.path / STAMP).exists()
    first = b.out("sysroot", "admin", "status").splitlines()[0]
    assert first.startswith(f"  {OSNAME} {b.v2}.") and first.endswith(" (pending)")


@pytest.mark.parametrize("case", ["garbage", "truncated"])
def test_ostree_crashes_on_a_garbage_record(make_booted, case):
    """The oracle: ostree 2022.7 dies with SIGSEGV on these (status included)."""
    b = make_booted()
    b.staged_file.parent.mkdir(exist_ok=True)
    b.staged_file.write_bytes(_hostile(_stage(b), case))
    for cmd in ("status", "finalize-staged"):
        r = b("ostree", "admin", cmd, check=False)
        assert r.returncode != 0, (cmd, r.returncode)


def test_ostree_lists_a_traversing_stateroot_and_fails_at_install(make_booted):
    """The oracle with the same record: ostree shows the stateroot as given, then
    fails installing the kernel under it (having dropped the record)."""
    b = make_booted()
    b.staged_file.write_bytes(_hostile(_stage(b), "traversing-osname"))
    r = b("ostree", "admin", "status")
    assert "../../../sysroot/ostree/deploy/testos" in r.stdout.decode()
    r = b("ostree", "admin", "finalize-staged", check=False)
    assert r.returncode != 0 and b"Installing kernel" in r.stderr
    assert (b.path / STAMP).exists()


def test_empty_record_means_nothing_staged_as_ostree(make_booted):
    """A record without `target` (here: empty) is no staged deployment, for both."""
    b = make_booted()
    b.staged_file.parent.mkdir(exist_ok=True)
    b.staged_file.write_bytes(b"")
    before = boot_state(b.path)
    outs = {}
    for tool in ("ostree", "sysroot"):
        r = b(tool, "admin", "status")
        assert b"warning" not in r.stderr
        outs[tool] = r.stdout
        assert b(tool, "admin", "finalize-staged").stdout == b""
    assert outs["ostree"] == outs["sysroot"]
    assert boot_state(b.path) == before and not (b.path / STAMP).exists()


def test_record_that_is_a_directory(make_booted):
    b = make_booted()
    b.staged_file.mkdir(parents=True)
    r = b("sysroot", "admin", "status")
    assert r.stderr.decode().count("\n") == 1 and b"Is a directory" in r.stderr
    r = b("sysroot", "admin", "finalize-staged", check=False)
    assert r.returncode == 1 and (b.path / STAMP).exists()
    r = b("sysroot", "admin", "lock-finalization", check=False)
    assert r.returncode == 1 and r.stderr.decode().count("\n") == 1
