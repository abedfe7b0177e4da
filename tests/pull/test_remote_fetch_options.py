"""`remote refs` and `remote summary` reach a server with the options `pull` uses.

They once built their own fetch options from the remote's config and dropped the TLS
client certificate, so a server that requires one refused them while `pull` worked.
ostree is the oracle: both tools must list the same refs and print the same summary.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from sysroot.pull.fetch import FetchOptions
from sysroot.pull.pull import fetch_options
from sysroot.store.remotes import Remote
from tests.conftest import one_error_line
from tests.helpers.twins import twin_repos
from tests.pull.serve_helpers import RepoServer, new_repo, refs_of
from tests.pull.test_http_pull import _tls_files


def _served(ostree, tmp_path: Path) -> Path:
    src = new_repo(ostree, tmp_path / "src", "archive")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("x\n")
    for ref in ("main", "other/branch"):
        ostree(
            "commit",
            f"--repo={src}",
            "-b",
            ref,
            f"--tree=dir={tree}",
            "--add-metadata-string=version=1.0",
        )
    ostree("summary", f"--repo={src}", "-u")
    return src


def test_remote_refs_and_summary_send_the_client_certificate(ostree, sysroot, tmp_path):
    src = _served(ostree, tmp_path)
    cert, key = _tls_files(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no connection
    ctx.load_verify_locations(cert)  # the self-signed certificate doubles as the client's
    with RepoServer(src, tls_context=ctx) as server:
        theirs, ours = twin_repos(ostree, tmp_path, "archive", server.url)
        for repo in (theirs, ours):
            ostree("config", f"--repo={repo}", "set", 'remote "origin".tls-ca-path', str(cert))
        # without a client certificate both tools are refused
        assert ostree("remote", "refs", f"--repo={theirs}", "origin", check=False).returncode
        one_error_line(sysroot("remote", "refs", f"--repo={ours}", "origin", check=False))
        for repo in (theirs, ours):
            ostree(
                "config", f"--repo={repo}", "set", 'remote "origin".tls-client-cert-path', str(cert)
            )
            ostree(
                "config", f"--repo={repo}", "set", 'remote "origin".tls-client-key-path', str(key)
            )
        for cmd in ("refs", "summary"):
            ok = sysroot("remote", cmd, f"--repo={ours}", "origin", check=False)
            assert ok.returncode == 0, ok.stderr.decode()
            assert ok.stdout == ostree("remote", cmd, f"--repo={theirs}", "origin").stdout
        assert (
            sysroot.out("remote", "refs", f"--repo={ours}", "origin")
            == "origin:main\norigin:other/branch"
        )
        # and pull, through the same options, gets in too
        sysroot("pull", f"--repo={ours}", "origin", "main")
        ostree("pull", f"--repo={theirs}", "origin", "main")
    assert refs_of(ours) == refs_of(theirs)


def test_fetch_options_take_every_remote_setting():
    remote = Remote(
        "r",
        "https://r.example/",
        {
            "tls-permissive": "true",
            "tls-ca-path": "/ca.pem",
            "tls-client-cert-path": "/c.pem",
            "tls-client-key-path": "/k.pem",
            "proxy": "http://proxy.example:3128",
            "stall-timeout-secs": "7",
            "max-metadata-size": "1234",
        },
    )
    got = fetch_options(remote)
    assert (
        got.tls_permissive,
        got.tls_ca_path,
        got.tls_client_cert_path,
        got.tls_client_key_path,
        got.proxy,
        got.stall_timeout,
        got.max_metadata_size,
    ) == (True, "/ca.pem", "/c.pem", "/k.pem", "http://proxy.example:3128", 7.0, 1234)
    # the caller's own options (pull's command line) are kept; its proxy wins
    base = FetchOptions(connections=3, retries=1, proxy="http://cli.example:1/")
    got = fetch_options(remote, base)
    assert (got.connections, got.retries, got.proxy) == (3, 1, "http://cli.example:1/")
    assert fetch_options(None, base) is base


def test_remote_summary_raw_and_cache_dir(ostree, sysroot, tmp_path):
    src = _served(ostree, tmp_path)
    with RepoServer(src) as server:
        theirs, ours = twin_repos(ostree, tmp_path, "archive", server.url)
        (tmp_path / "cache").mkdir()
        for args in (["--raw"], [f"--cache-dir={tmp_path / 'cache'}"], []):
            a = ostree("remote", "summary", f"--repo={theirs}", *args, "origin")
            b = sysroot("remote", "summary", f"--repo={ours}", *args, "origin")
            assert b.stdout == a.stdout, args
        cache = f"--cache-dir={tmp_path / 'cache'}"
        a = ostree("remote", "refs", f"--repo={theirs}", cache, "origin")
        b = sysroot("remote", "refs", f"--repo={ours}", cache, "origin")
        assert b.stdout == a.stdout
    # and the local summary, as `summary --view --raw` prints it
    a = ostree("summary", f"--repo={src}", "--view", "--raw")
    b = sysroot("summary", f"--repo={src}", "--view", "--raw")
    assert b.stdout == a.stdout and a.stdout.startswith(b"([('main', (uint64 ")
