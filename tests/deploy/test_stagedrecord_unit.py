"""The staged-deployment record (sysroot/deploy/stagedrecord.py) from bytes, without the
booted harness: a good record decodes and encodes back byte for byte, and every hostile
one is refused with one FormatError line naming the file (never another exception),
before any of its names becomes a path.

tests/deploy/test_staged_record.py runs the same hostile records through `admin status`
and `finalize-staged` on a booted sysroot, against ostree.
"""

from __future__ import annotations

import random

import pytest

from sysroot.deploy.stagedrecord import DeploymentRef, StagedRecord, staged_path
from sysroot.errors import FormatError
from sysroot.formats import gvariant
from sysroot.formats.gvariant import Variant

pytestmark = pytest.mark.unit  # needs neither root nor ostree nor mounts

C1, C2 = "1" * 64, "2" * 64
B1, B2 = "a" * 64, "b" * 64
TARGET = DeploymentRef("testos", C2, 0, B2)
MERGE = DeploymentRef("testos", C1, 1, B1)


def ref(name: str = f"{C2}.0", osname: str = "testos", bootcsum: str = B2) -> Variant:
    return Variant(
        "a{sv}",
        {
            "name": Variant("s", name),
            "osname": Variant("s", osname),
            "bootcsum": Variant("s", bootcsum),
        },
    )


def record(**entries: Variant) -> bytes:
    d = {"target": ref(), **entries}
    return gvariant.encode("a{sv}", {k: v for k, v in d.items() if v is not None})


def refused(data: bytes) -> str:
    """The one-line message decode() refuses data with."""
    with pytest.raises(FormatError) as e:
        StagedRecord.decode(data)
    msg = str(e.value)
    assert "\n" not in msg, msg
    assert msg.startswith(staged_path() + ": "), msg
    return msg


# ------------------------------------------------------------------ good records
def test_a_full_record_decodes():
    data = record(
        locked=Variant("b", True),
        **{"merge-deployment": ref(f"{C1}.1", bootcsum=B1)},
        kargs=Variant("as", ["root=/dev/vda1", "rw", "console="]),
    )
    r = StagedRecord.decode(data)
    assert r == StagedRecord(TARGET, MERGE, ("root=/dev/vda1", "rw", "console="), True, {})
    assert r.target.identity == ("testos", C2, 0)


def test_a_minimal_record_decodes():
    assert StagedRecord.decode(record()) == StagedRecord(TARGET)


@pytest.mark.parametrize(
    "rec",
    [
        StagedRecord(TARGET),
        StagedRecord(TARGET, MERGE),
        StagedRecord(TARGET, MERGE, ("a", "b=c"), True),
        StagedRecord(TARGET, None, (), False),  # an empty kargs list is not "none given"
        StagedRecord(TARGET, MERGE, None, False, {"x-future": Variant("u", 7)}),
    ],
)
def test_encode_decode_round_trip(rec):
    data = rec.encode()
    assert StagedRecord.decode(data) == rec
    assert StagedRecord.decode(data).encode() == data


def test_encoding_keeps_libostrees_key_order():
    rec = StagedRecord(TARGET, MERGE, ("a",), True, {"x-future": Variant("s", "kept")})
    assert list(gvariant.decode("a{sv}", rec.encode())) == [
        "target",
        "locked",
        "merge-deployment",
        "kargs",
        "x-future",
    ]
    # unlocked: no `locked` key at all, as libostree writes it
    assert "locked" not in gvariant.decode("a{sv}", StagedRecord(TARGET).encode())


def test_unknown_keys_are_kept_for_the_rewrite():
    data = record(**{"x-future": Variant("as", ["v"])})
    r = StagedRecord.decode(data)
    assert r.other == {"x-future": Variant("as", ["v"])}
    assert StagedRecord.decode(r.encode()).other == r.other


@pytest.mark.parametrize(
    "data",
    [
        gvariant.encode("a{sv}", {}),
        b"",  # an empty file: the empty dictionary
        gvariant.encode("a{sv}", {"kargs": Variant("as", ["a"])}),
    ],
)
def test_no_target_means_nothing_staged(data):
    assert StagedRecord.decode(data) is None


@pytest.mark.parametrize("locked", [Variant("s", "true"), Variant("u", 1), Variant("b", False)])
def test_locked_is_only_a_true_boolean(locked):
    assert StagedRecord.decode(record(locked=locked)).locked is False


# ------------------------------------------------------------------ hostile records
HOSTILE_IDS = [
    "garbage",
    "truncated",
    "target-a-string",
    "target-a-string-dict",
    "name-newline",
    "name-no-serial",
    "name-short-csum",
    "name-uppercase",
    "name-serial-too-long",
    "name-traversing",
    "bootcsum-traversing",
    "bootcsum-newline",
    "osname-traversing",
    "osname-dotdot",
    "osname-empty",
    "osname-space",
    "osname-newline",
    "merge-osname-slash",
    "merge-a-list",
    "kargs-a-string",
    "kargs-newline",
    "kargs-space",
]


@pytest.mark.parametrize(
    "data, why",
    [
        (b"garbage\x00\x01", ""),
        (record()[: len(record()) // 2], ""),
        (gvariant.encode("a{sv}", {"target": Variant("s", "x")}), "'target' is not a dictionary"),
        (
            gvariant.encode("a{sv}", {"target": Variant("a{ss}", {"name": "x"})}),
            "'target' is not a dictionary",
        ),
        (record(target=ref(name=f"{C2}.0\n")), "target: invalid deployment name"),
        (record(target=ref(name=f"{C2}")), "target: invalid deployment name"),
        (record(target=ref(name=f"{C2[:-1]}.0")), "target: invalid deployment name"),
        (record(target=ref(name=f"{B2.upper()}.0")), "target: invalid deployment name"),
        (record(target=ref(name=f"{C2}.1234567890")), "target: invalid deployment name"),
        (record(target=ref(name=f"../{C2}.0")), "target: invalid deployment name"),
        (record(target=ref(bootcsum="../../x")), "target: invalid boot checksum"),
        (record(target=ref(bootcsum=B2 + "\n")), "target: invalid boot checksum"),
        (record(target=ref(osname="../../../evilos")), "target: Invalid stateroot name"),
        (record(target=ref(osname="..")), "target: Invalid stateroot name"),
        (record(target=ref(osname="")), "target: Invalid stateroot name"),
        (record(target=ref(osname="with space")), "target: Invalid stateroot name"),
        (record(target=ref(osname="nl\n")), "target: Invalid stateroot name"),
        (record(**{"merge-deployment": ref(osname="a/b")}), "merge-deployment: Invalid stateroot"),
        (record(**{"merge-deployment": Variant("as", [])}), "'merge-deployment' is not a dict"),
        (record(kargs=Variant("s", "root=/dev/vda")), "'kargs' is not a string array"),
        (record(kargs=Variant("as", ["root=/dev/sda\ninitrd /evil.img"])), "kargs: Invalid"),
        (record(kargs=Variant("as", ["a b"])), "kargs: Invalid kernel argument 'a b'"),
    ],
    ids=HOSTILE_IDS,
)
def test_hostile_records_are_one_line_refusals(data, why):
    assert why in refused(data)


@pytest.mark.parametrize("missing", ["name", "osname", "bootcsum"])
def test_a_reference_without_a_field_names_it(missing):
    fields = dict(ref().value)
    del fields[missing]
    data = record(target=Variant("a{sv}", fields))
    assert refused(data).endswith(f"target: Missing key: {missing}")
    # the same field with another type is as good as missing
    fields[missing] = Variant("u", 0)
    assert refused(record(target=Variant("a{sv}", fields))).endswith(f"Missing key: {missing}")


def test_a_name_that_is_no_utf8_is_refused():
    good = record(target=ref(osname="\u00e9vil"))
    refused(good.replace("\u00e9".encode(), b"\xff\xfe"))


def test_damaged_records_never_raise_anything_else():
    """Every truncation, and random bytes flipped in a good record: a record, None or
    one FormatError line; never another exception (the finalize path must not crash)."""
    good = StagedRecord(TARGET, MERGE, ("root=/dev/vda1", "quiet"), True).encode()
    rng = random.Random(14)
    samples = [good[:n] for n in range(len(good))]
    for _ in range(400):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        samples.append(bytes(data))
    samples += [rng.randbytes(rng.randint(0, 80)) for _ in range(200)]
    for data in samples:
        try:
            StagedRecord.decode(data)
        except FormatError as e:
            assert "\n" not in str(e) and str(e).startswith(staged_path() + ": "), (data, e)
