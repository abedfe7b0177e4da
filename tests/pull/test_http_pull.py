"""`sysroot pull` against `ostree pull` (the oracle), over HTTP, HTTPS and file://.

One archive repository made by ostree is served by http.server (once by nginx); both
tools pull it into fresh repositories of each mode, and the results must match: refs,
object sets (bytes too for archive), and `ostree fsck` clean on sysroot's repo.
"""

from __future__ import annotations

import datetime as dt
import http.server
import re
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import one_error_line
from tests.helpers.keys import gpg_keys
from tests.helpers.twins import assert_same_repos, twin_repos
from tests.pull.serve_helpers import (
    Nginx,
    RepoServer,
    make_served_repo,
    new_repo,
    object_names,
    refs_of,
)

SUMMARY_LINE = re.compile(
    r"^\d+ metadata, \d+ content objects fetched; \d+ (B|KiB|MiB) "
    r"transferred in \d+ seconds; .+ content written$"
)


@pytest.fixture(scope="module")
def served(tmp_path_factory, ostree):
    data = make_served_repo(ostree, tmp_path_factory.mktemp("served"))
    with RepoServer(data["repo"]) as server:
        data["server"] = server
        yield data


def both(ostree, sysroot, tmp_path: Path, mode: str, url: str, *args: str):
    """Pull with each tool into a fresh repo of mode; return the two repo paths."""
    theirs, ours = twin_repos(ostree, tmp_path, mode, url, (f"ostree-{mode}", f"sysroot-{mode}"))
    ostree("pull", f"--repo={theirs}", *args)
    out = sysroot.out("pull", f"--repo={ours}", *args)
    assert SUMMARY_LINE.match(out), out
    return theirs, ours


def test_pull_every_mode_like_ostree(served, ostree, sysroot, tmp_path, mode):
    if mode == "bare-user-only":
        # the rich tree has setuid files: both refuse them, and move no ref
        theirs, ours = twin_repos(ostree, tmp_path, mode, served["server"].url)
        err = ostree("pull", f"--repo={theirs}", "origin", "main", check=False).stderr
        assert b"invalid mode" in err
        line = one_error_line(sysroot("pull", f"--repo={ours}", "origin", "main", check=False))
        assert "invalid mode" in line and "bare-user-only" in line
        assert refs_of(ours) == refs_of(theirs) == {}
        ostree("fsck", f"--repo={ours}")
        theirs, ours = both(
            ostree, sysroot, tmp_path, mode, served["server"].url, "origin", "other"
        )
        assert_same_repos(ostree, theirs, ours, mode)
        return
    theirs, ours = both(ostree, sysroot, tmp_path, mode, served["server"].url, "origin", "main")
    assert_same_repos(ostree, theirs, ours, mode)
    assert refs_of(ours) == {"refs/remotes/origin/main": served["c2"]}
    # a checkout through ostree reproduces the tree ostree itself pulled
    if mode != "archive":
        for repo in (theirs, ours):
            ostree(
                "checkout",
                f"--repo={repo}",
                "-U" if mode != "bare" else "-H",
                "origin:main",
                str(repo.parent / f"co-{repo.name}"),
            )
        diff = subprocess.run(
            [
                "diff",
                "-r",
                "--no-dereference",
                str(tmp_path / f"co-{theirs.name}"),
                str(tmp_path / f"co-{ours.name}"),
            ],
            capture_output=True,
        )
        assert diff.returncode == 0, diff.stdout


def test_second_pull_fetches_nothing_new(served, ostree, sysroot, tmp_path):
    server = served["server"]
    repo = new_repo(ostree, tmp_path / "r", "bare-user", server.url)
    sysroot("pull", f"--repo={repo}", "origin", "main")
    server.reset()
    out = sysroot.out("pull", f"--repo={repo}", "origin", "main")
    assert out.startswith("0 metadata, 0 content objects fetched;")
    assert server.object_requests() == []


@pytest.mark.parametrize("depth", ["1", "-1"])
def test_depth_like_ostree(served, ostree, sysroot, tmp_path, depth):
    theirs, ours = both(
        ostree,
        sysroot,
        tmp_path,
        "archive",
        served["server"].url,
        f"--depth={depth}",
        "origin",
        "main",
    )
    assert_same_repos(ostree, theirs, ours, "archive")
    assert (ours / f"objects/{served['c1'][:2]}/{served['c1'][2:]}.commit").exists()


def test_commit_metadata_only_like_ostree(served, ostree, sysroot, tmp_path):
    theirs, ours = both(
        ostree,
        sysroot,
        tmp_path,
        "bare-user",
        served["server"].url,
        "--commit-metadata-only",
        "origin",
        "main",
    )
    assert_same_repos(ostree, theirs, ours, "bare-user")
    assert [p.name for p in (ours / "state").iterdir()] == [f"{served['c2']}.commitpartial"]
    # a full pull afterwards completes the commit and clears the marker
    sysroot("pull", f"--repo={ours}", "origin", "main")
    ostree("pull", f"--repo={theirs}", "origin", "main")
    assert_same_repos(ostree, theirs, ours, "bare-user")
    assert list((ours / "state").iterdir()) == []


def test_mirror_all_refs_like_ostree(served, ostree, sysroot, tmp_path):
    theirs, ours = both(
        ostree, sysroot, tmp_path, "archive", served["server"].url, "--mirror", "origin"
    )
    assert_same_repos(ostree, theirs, ours, "archive")
    assert refs_of(ours) == {"refs/heads/main": served["c2"], "refs/heads/other": served["other"]}
    assert (ours / "summary").read_bytes() == (served["repo"] / "summary").read_bytes()
    assert (theirs / "summary").read_bytes() == (ours / "summary").read_bytes()


def test_mirror_one_ref_and_refspec_spelling(served, ostree, sysroot, tmp_path):
    theirs, ours = both(
        ostree, sysroot, tmp_path, "archive", served["server"].url, "--mirror", "origin:other"
    )
    assert_same_repos(ostree, theirs, ours, "archive")
    assert refs_of(ours) == {"refs/heads/other": served["other"]}
    assert not (ours / "summary").exists() and not (theirs / "summary").exists()


def test_pull_by_checksum_moves_no_ref(served, ostree, sysroot, tmp_path):
    theirs, ours = both(
        ostree, sysroot, tmp_path, "bare", served["server"].url, "origin", served["c1"]
    )
    assert_same_repos(ostree, theirs, ours, "bare")
    assert refs_of(ours) == {}


@pytest.mark.parametrize(
    "args",
    [
        ["--dry-run", "origin", "main"],  # ostree: requires static deltas
        ["origin"],  # no refs and no configured branches
        ["origin", "nosuch"],  # not in the summary
        ["nosuchremote", "main"],
        ["origin", "0" * 64],  # no such commit on the server
    ],
)
def test_refusals_like_ostree(served, ostree, sysroot, tmp_path, args):
    theirs, ours = twin_repos(ostree, tmp_path, "archive", served["server"].url)
    assert ostree("pull", f"--repo={theirs}", *args, check=False).returncode != 0
    proc = sysroot("pull", f"--repo={ours}", *args, check=False)
    line = one_error_line(proc)
    assert line.startswith("error: ")
    assert object_names(ours) == set() and refs_of(ours) == {}


def test_no_summary_uses_refs_heads(served, ostree, sysroot, tmp_path):
    """Without a summary, refs come from refs/heads/REF, as ostree reads them."""
    copy = tmp_path / "nosummary"
    subprocess.run(["cp", "-a", str(served["repo"]), str(copy)], check=True)
    (copy / "summary").unlink()
    ostree("refs", f"--repo={copy}", "--create=stray", served["c1"])  # c1 is bound to main
    with RepoServer(copy) as server:
        theirs, ours = both(ostree, sysroot, tmp_path, "archive", server.url, "origin", "main")
        assert "refs/heads/main" in server.requests
        assert_same_repos(ostree, theirs, ours, "archive")
        # a commit served under a ref it was not made for is refused by both...
        err = ostree("pull", f"--repo={theirs}", "origin", "stray", check=False).stderr
        assert b"ref binding" in err
        line = one_error_line(sysroot("pull", f"--repo={ours}", "origin", "stray", check=False))
        assert "has no requested ref 'stray' in ref binding metadata ('main')" in line
        # (ostree stores the commit, marked partial, before refusing it; we store nothing)
        assert refs_of(ours) == refs_of(theirs)
        assert not (ours / f"objects/{served['c1'][:2]}/{served['c1'][2:]}.commit").exists()
        # ...unless bindings are not verified
        for tool, repo in ((ostree, theirs), (sysroot, ours)):
            tool("pull", f"--repo={repo}", "--disable-verify-bindings", "origin", "stray")
    assert_same_repos(ostree, theirs, ours, "archive")
    assert refs_of(ours)["refs/remotes/origin/stray"] == served["c1"]


def test_bare_remote_over_http_refused(ostree, sysroot, tmp_path):
    src = new_repo(ostree, tmp_path / "bare-src", "bare")
    (tmp_path / "t").mkdir()
    (tmp_path / "t/f").write_text("x")
    ostree("commit", f"--repo={src}", "-b", "main", str(tmp_path / "t"))
    ostree("summary", f"--repo={src}", "-u")
    with RepoServer(src) as server:
        theirs, ours = twin_repos(ostree, tmp_path, "archive", server.url)
        err = ostree("pull", f"--repo={theirs}", "origin", "main", check=False)
        assert b'Can\'t pull from archives with mode "bare"' in err.stderr
        line = one_error_line(sysroot("pull", f"--repo={ours}", "origin", "main", check=False))
        assert 'Can\'t pull from archives with mode "bare"' in line
        assert not server.object_requests()


@pytest.mark.parametrize("src_mode", ["bare", "archive"])
def test_file_remote_like_ostree(served, ostree, sysroot, tmp_path, src_mode):
    src = served["repo"]
    if src_mode == "bare":
        src = new_repo(ostree, tmp_path / "bare-src", "bare")
        ostree("pull-local", f"--repo={src}", str(served["repo"]), "main")
    theirs, ours = twin_repos(ostree, tmp_path, "bare-user", f"file://{src}")
    ostree("pull", f"--repo={theirs}", "origin", "main")
    out = sysroot.out("pull", f"--repo={ours}", "origin", "main")
    assert re.match(r"^\d+ metadata, \d+ content objects imported; .+ content written$", out)
    assert_same_repos(ostree, theirs, ours, "bare-user")


def test_url_option_and_nginx(served, ostree, sysroot, tmp_path):
    """Through nginx, with the remote's url pointing nowhere and --url overriding it."""
    with Nginx(served["repo"], tmp_path / "nginx") as nginx:
        theirs, ours = twin_repos(ostree, tmp_path, "archive", "http://127.0.0.1:9/")
        ostree("pull", f"--repo={theirs}", f"--url={nginx.url}", "origin", "main")
        sysroot("pull", f"--repo={ours}", f"--url={nginx.url}", "--depth=-1", "origin", "main")
        ostree("pull", f"--repo={theirs}", f"--url={nginx.url}", "--depth=-1", "origin", "main")
        assert nginx.object_requests() > 0
    assert_same_repos(ostree, theirs, ours, "archive")


class _Redirector(http.server.BaseHTTPRequestHandler):
    """Sends every request on to another server, as a CDN or mirror director does."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits += 1
        self.send_response(302)
        self.send_header("Location", self.server.target + self.path.lstrip("/"))
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_redirects_to_another_host(served, ostree, sysroot, tmp_path):
    """Every file answered with a 302 to the real server on another port."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    httpd.daemon_threads = True
    httpd.target, httpd.hits = served["server"].url, 0
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        theirs, ours = both(
            ostree,
            sysroot,
            tmp_path,
            "archive",
            f"http://127.0.0.1:{httpd.server_address[1]}/",
            "origin",
            "main",
        )
        assert httpd.hits > len(object_names(ours))  # ostree's and ours
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert_same_repos(ostree, theirs, ours, "archive")


def _tls_files(tmp_path: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_with_tls_ca_path(served, ostree, sysroot, tmp_path):
    cert, key = _tls_files(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    with RepoServer(served["repo"], tls_context=ctx) as server:
        theirs, ours = twin_repos(ostree, tmp_path, "archive", server.url)
        # an unknown certificate is refused by both
        assert ostree("pull", f"--repo={theirs}", "origin", "other", check=False).returncode
        line = one_error_line(
            sysroot("pull", f"--repo={ours}", "--network-retries=0", "origin", "other", check=False)
        )
        assert server.url in line and "certificate" in line.lower()
        for repo in (theirs, ours):
            ostree("config", f"--repo={repo}", "set", 'remote "origin".tls-ca-path', str(cert))
        ostree("pull", f"--repo={theirs}", "origin", "main")
        sysroot("pull", f"--repo={ours}", "origin", "main")
    assert_same_repos(ostree, theirs, ours, "archive")


@pytest.fixture(scope="module")
def alice(tmp_path_factory):
    with gpg_keys(tmp_path_factory.mktemp("gnupg"), "alice") as (key,):
        yield key


def test_signed_commits_over_http(ostree, sysroot, tmp_path, alice):
    """gpg-verify (the default for a remote): a good signature pulls in both tools; no
    signature, or a damaged one, is refused by both before anything is stored."""
    src = new_repo(ostree, tmp_path / "src", "archive")
    (tmp_path / "t").mkdir()
    (tmp_path / "t/f").write_text("signed\n")
    unsigned = ostree.out("commit", f"--repo={src}", "-b", "unsigned", str(tmp_path / "t"))
    (tmp_path / "t/g").write_text("also signed\n")
    signed = ostree.out(
        "commit",
        f"--repo={src}",
        "-b",
        "main",
        str(tmp_path / "t"),
        f"--gpg-homedir={alice.home}",
        f"--gpg-sign={alice.long_id}",
    )
    ostree("summary", f"--repo={src}", "-u")
    with RepoServer(src) as server:
        repos = {}
        for name in ("theirs", "ours"):
            repos[name] = repo = tmp_path / name
            ostree("init", f"--repo={repo}", "--mode=bare-user")
            ostree("remote", "add", f"--repo={repo}", "origin", server.url)
            ostree("remote", "gpg-import", f"--repo={repo}", "origin", "-k", alice.keyring)
        theirs, ours = repos["theirs"], repos["ours"]
        assert ostree("pull", f"--repo={theirs}", "origin", "unsigned", check=False).returncode != 0
        line = one_error_line(sysroot("pull", f"--repo={ours}", "origin", "unsigned", check=False))
        assert "no signatures found" in line and unsigned in line
        assert object_names(ours) == set() and refs_of(ours) == {}
        ostree("pull", f"--repo={theirs}", "origin", "main")
        sysroot("pull", f"--repo={ours}", "origin", "main")
        assert_same_repos(ostree, theirs, ours, "bare-user")
        assert refs_of(ours) == {"refs/remotes/origin/main": signed}
