"""A static web server on the host for the guest: a directory served read-only over
HTTP on 127.0.0.1, which qemu's user network shows the guest as 10.0.2.2."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading

GUEST_HOST = "10.0.2.2"  # the host's loopback as the guest sees it (qemu user network)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        self.server.requests.append(self.path)


@contextlib.contextmanager
def serving(directory: str):
    """Yields (the URL the guest uses, the list of paths requested so far)."""
    handler = functools.partial(_QuietHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{GUEST_HOST}:{server.server_address[1]}", server.requests
    finally:
        server.shutdown()
        server.server_close()
