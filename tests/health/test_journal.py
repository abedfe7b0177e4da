"""The journal entries of a health-check run.

journald does not run on this machine (`journalctl -n1`: "No journal files were found",
no /run/systemd/journal/socket), so nothing can be read back with journalctl here. As
tests/util/test_journal.py does, the run happens in a mount namespace of its own with a
datagram socket bound at /run/systemd/journal/socket, and the test decodes what
systemd-python's sd_journal_send() wrote to it: the journal's native protocol, the same
bytes journald would receive.
"""

from __future__ import annotations

import json
import subprocess
import sys

from sysroot.health import CHECK_ID, RESULT_ID
from tests.health.conftest import USR_REQUIRED, USR_WANTED

RECEIVER = r"""
import json, os, socket, subprocess, sys, threading, time
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
os.makedirs("/run/systemd/journal")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind("/run/systemd/journal/socket")
got = []
def receive():  # a thread: a full socket queue would block the sender
    while True:
        got.append(sock.recv(1 << 20))
threading.Thread(target=receive, daemon=True).start()
from sysroot.health import HealthConfig, run_checks
run_checks(sys.argv[1], HealthConfig(timeout=30), boot_id="b00t")
time.sleep(0.5)
entries = []
for data in got:
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
    entries.append(fields)
print(json.dumps(entries))
"""


def test_entries_reach_the_journal_socket(root):
    root.script(USR_REQUIRED, "01_ok.sh", "echo '<4>a warning line'; echo plain")
    root.script(USR_WANTED, "01_w.sh", "echo 'multi'; echo 'line tail'; exit 3")
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private"]
        + [sys.executable, "-c", RECEIVER, str(root)],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b""  # all went to the journal
    entries = json.loads(proc.stdout)
    checks = [e for e in entries if e.get("MESSAGE_ID") == CHECK_ID]
    results = [e for e in entries if e.get("MESSAGE_ID") == RESULT_ID]
    lines = [e for e in entries if "MESSAGE_ID" not in e]

    ok, wanted = checks
    assert ok["MESSAGE"] == "Script '01_ok.sh' SUCCESS" and ok["PRIORITY"] == "6"
    assert ok["SYSLOG_IDENTIFIER"] == "sysroot"
    assert ok["SYSROOT_CHECK"] == "01_ok.sh"
    assert ok["SYSROOT_CHECK_PATH"] == f"/{USR_REQUIRED}/01_ok.sh"
    assert ok["SYSROOT_CHECK_KIND"] == "required"
    assert ok["SYSROOT_RESULT"] == "passed" and ok["SYSROOT_EXIT_STATUS"] == "0"
    assert 0 < float(ok["SYSROOT_DURATION"]) < 30
    assert ok["SYSROOT_OUTPUT_LINES"] == "2"
    assert ok["SYSROOT_OUTPUT_TAIL"] == "a warning line\nplain"
    assert wanted["MESSAGE"] == "Script '01_w.sh' FAILURE (exit code '3'). Continuing..."
    assert wanted["PRIORITY"] == "3"
    assert (wanted["SYSROOT_RESULT"], wanted["SYSROOT_EXIT_STATUS"]) == ("failed", "3")
    assert wanted["SYSROOT_OUTPUT_TAIL"] == "multi\nline tail"

    (verdict,) = results
    assert verdict["MESSAGE"] == "Boot Status is GREEN - Health Check SUCCESS"
    assert verdict["PRIORITY"] == "5"
    assert verdict["SYSROOT_RESULT"] == "green" and verdict["SYSROOT_BOOT_ID"] == "b00t"
    assert (verdict["SYSROOT_CHECKS_RUN"], verdict["SYSROOT_CHECKS_FAILED"]) == ("2", "1")
    assert verdict["SYSROOT_FAILED_CHECKS"] == "01_w.sh"

    # each output line, at its own priority, as systemd-cat would have sent it
    assert [(e["MESSAGE"], e["PRIORITY"], e["SYSROOT_CHECK"]) for e in lines] == [
        ("a warning line", "4", "01_ok.sh"),
        ("plain", "6", "01_ok.sh"),
        ("multi", "6", "01_w.sh"),
        ("line tail", "6", "01_w.sh"),
    ]
