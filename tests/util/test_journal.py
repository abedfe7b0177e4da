"""sysroot/util/journal.py: structured messages through systemd-python to a journal
socket, or one stderr line without a journal.

The journal case binds a real datagram socket at /run/systemd/journal/socket, in a
mount namespace of the test's own (unshare, a tmpfs on /run), and decodes what
systemd-python's sd_journal_send() writes to it: the journal's native protocol. No
journald is involved, so nothing here claims a message reached a real journal.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sysroot.util import journal

RECEIVER = r"""
import json, os, socket, subprocess, sys
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
os.makedirs("/run/systemd/journal")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind("/run/systemd/journal/socket")
from sysroot.util import journal
sent = journal.send("Finalizing staged deployment", priority=journal.ERR,
                    message_id=journal.FINALIZE_ID, SYSROOT_DEPLOYMENT="abc.0",
                    SYSROOT_STATEROOT="os", SYSROOT_RESULT="failure", SYSROOT_NONE=None)
sock.settimeout(5)
data = sock.recv(1 << 16)
fields = {}
while data:  # KEY=VALUE\n, or KEY\n + 64-bit little-endian length + VALUE + \n
    line, _, rest = data.partition(b"\n")
    if b"=" in line:
        k, _, v = line.partition(b"=")
        data = rest
    else:
        n = int.from_bytes(rest[:8], "little")
        k, v, data = line, rest[8:8 + n], rest[8 + n + 1:]
    fields[k.decode()] = v.decode()
print(json.dumps({"sent": sent, "fields": fields}))
"""


def test_fields_reach_the_journal_socket():
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", RECEIVER],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    assert out["sent"] is True
    f = out["fields"]
    assert f["MESSAGE"] == "Finalizing staged deployment"
    assert f["PRIORITY"] == "3"
    assert f["MESSAGE_ID"] == journal.FINALIZE_ID
    assert f["SYSLOG_IDENTIFIER"] == "sysroot"
    assert (f["SYSROOT_DEPLOYMENT"], f["SYSROOT_STATEROOT"], f["SYSROOT_RESULT"]) == (
        "abc.0",
        "os",
        "failure",
    )
    assert "SYSROOT_NONE" not in f
    assert proc.stderr == b""  # sent to the journal: not printed as well


@pytest.mark.unit
def test_without_a_journal_socket_one_stderr_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(journal, "JOURNAL_SOCKET", str(tmp_path / "no-socket"))
    assert journal.send("No deployment staged for finalization", SYSROOT_RESULT="x") is False
    assert capsys.readouterr() == ("", "sysroot: No deployment staged for finalization\n")
    assert journal.send("journal only", stderr=False) is False
    assert capsys.readouterr() == ("", "")


@pytest.mark.unit
def test_without_systemd_python_one_stderr_line(monkeypatch, tmp_path, capsys):
    sock = tmp_path / "socket"
    sock.write_bytes(b"")  # exists: only the missing module decides
    monkeypatch.setattr(journal, "JOURNAL_SOCKET", str(sock))
    monkeypatch.setitem(sys.modules, "systemd", None)  # import fails
    assert journal.send("hello") is False
    assert capsys.readouterr().err == "sysroot: hello\n"


@pytest.mark.unit
def test_message_ids_are_journal_ids():
    for mid in (journal.FINALIZE_ID, journal.STAGE_ID):
        assert len(mid) == 32 and int(mid, 16) >= 0 and mid == mid.lower()
    assert journal.FINALIZE_ID != journal.STAGE_ID
