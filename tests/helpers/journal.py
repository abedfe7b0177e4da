"""A journal socket of a test's own, and the journal's native protocol decoded.

journald does not run on the test machines, so tests that check what reaches the
journal run the sender in a mount namespace of their own (`unshare --mount`, a tmpfs on
/run) with a datagram socket bound at /run/systemd/journal/socket, print each datagram
(hex, one per line) and decode it here: the bytes journald would have received.
"""

from __future__ import annotations

# Child-side prelude of the script run under `unshare --mount --propagation private`:
# binds the socket, collects datagrams in a thread (a full socket queue would block the
# sender) into `got`; the script ends with `print_datagrams()`.
SOCKET_PRELUDE = r"""
import os, socket, subprocess, threading, time
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
os.makedirs("/run/systemd/journal")
_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
_sock.bind("/run/systemd/journal/socket")
got = []
def _receive():
    while True:
        got.append(_sock.recv(1 << 20))
threading.Thread(target=_receive, daemon=True).start()
def print_datagrams(settle=0.5):
    time.sleep(settle)
    for data in got:
        print(data.hex())
"""


def decode_native(data: bytes) -> dict[str, str]:
    """One datagram of the native protocol: `KEY=VALUE\\n`, or `KEY\\n` + 64-bit
    little-endian length + VALUE + `\\n` for values with a newline."""
    fields: dict[str, str] = {}
    while data:
        line, _, rest = data.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            data = rest
        else:
            n = int.from_bytes(rest[:8], "little")
            key, value, data = line, rest[8 : 8 + n], rest[8 + n + 1 :]
        fields[key.decode()] = value.decode()
    return fields


def entries_of(stdout: bytes) -> list[dict[str, str]]:
    """The entries a SOCKET_PRELUDE script printed, decoded, in the order received."""
    return [decode_native(bytes.fromhex(line)) for line in stdout.decode().split()]
