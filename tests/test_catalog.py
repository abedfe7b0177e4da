"""units/sysroot.catalog: the journal catalog explains every MESSAGE_ID sysroot sends.

Read by the real journalctl (`--update-catalog`, `--list-catalog`, `--dump-catalog` on a
root of the test's own), so a malformed entry fails here and not on a user's machine.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "units/sysroot.catalog"
ID_CONSTANT = re.compile(r'^([A-Z_]+_ID) = "([0-9a-f]{32})"', re.MULTILINE)


def ids_in_code() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((ROOT / "sysroot").rglob("*.py")):
        for name, value in ID_CONSTANT.findall(path.read_text()):
            assert value not in found.values() or found.get(name) == value, (name, path)
            found[name] = value
    return found


def entries() -> dict[str, str]:
    """message id -> the entry's text (header lines and body)."""
    parts = re.split(r"^-- ([0-9a-f]{32})\n", CATALOG.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_message_id_has_an_entry_and_no_entry_is_stale():
    ids = ids_in_code()
    assert len(ids) >= 9  # finalize, stage, boot writes, pulls and the health ones
    assert set(entries()) == set(ids.values())


def test_fields_named_by_entries_are_fields_we_send():
    sources = "\n".join(p.read_text() for p in (ROOT / "sysroot").rglob("*.py"))
    for message_id, text in entries().items():
        assert re.search(r"^Subject: .+$", text, re.MULTILINE), message_id
        assert "Defined-By: sysroot" in text
        for field in re.findall(r"@([A-Z_]+)@", text):
            assert f"{field}=" in sources or f'"{field}"' in sources, (message_id, field)


def test_journalctl_reads_the_installed_catalog(tmp_path):
    subprocess.run([str(ROOT / "units/install"), str(tmp_path)], check=True)
    installed = tmp_path / "usr/lib/systemd/catalog/sysroot.catalog"
    assert installed.read_bytes() == CATALOG.read_bytes()
    subprocess.run(["journalctl", f"--root={tmp_path}", "--update-catalog"], check=True)
    listed = subprocess.run(
        ["journalctl", f"--root={tmp_path}", "--list-catalog"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ours = {line.split()[0] for line in listed.splitlines() if " sysroot: " in line}
    assert ours == set(entries())
    boot_id = ids_in_code()["BOOT_CONFIG_ID"]
    dumped = subprocess.run(
        ["journalctl", f"--root={tmp_path}", "--dump-catalog", boot_id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Subject: Boot configuration written by @SYSROOT_OPERATION@" in dumped
