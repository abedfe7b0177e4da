"""A remote's cookie jar: `remote add-cookie/delete-cookie/list-cookies` write the file
ostree's curl back end reads, and pulls send the matching cookies (a server that hands
out access tokens as cookies refuses requests without them)."""

from __future__ import annotations

from sysroot.store.cookies import Cookie, cookie_header
from tests.conftest import one_error_line
from tests.helpers.twins import twin_repos
from tests.pull.serve_helpers import RepoServer, make_served_repo, refs_of


def test_pull_sends_the_jar_as_ostree_does(ostree, sysroot, tmp_path):
    served = make_served_repo(ostree, tmp_path / "served")
    with RepoServer(served["repo"]) as server:
        server.required_cookie = "TOKEN=s3cret"
        theirs, ours = twin_repos(ostree, tmp_path, "archive", server.url)
        # without the cookie both are refused
        assert ostree("pull", f"--repo={theirs}", "origin", "main", check=False).returncode
        one_error_line(sysroot("pull", f"--repo={ours}", "origin", "main", check=False))
        ostree(
            "remote",
            "add-cookie",
            f"--repo={theirs}",
            "origin",
            "127.0.0.1",
            "/",
            "TOKEN",
            "s3cret",
        )
        sysroot(
            "remote", "add-cookie", f"--repo={ours}", "origin", "127.0.0.1", "/", "TOKEN", "s3cret"
        )
        # the same jar line, but for the expiry (ostree's is now + about 25 years)
        a = (theirs / "origin.cookies.txt").read_text().split("\t")
        b = (ours / "origin.cookies.txt").read_text().split("\t")
        assert a[:4] + a[5:] == b[:4] + b[5:] and abs(int(a[4]) - int(b[4])) < 60
        server.cookies.clear()
        ostree("pull", f"--repo={theirs}", "origin", "main")
        sysroot("pull", f"--repo={ours}", "origin", "main")
        assert refs_of(ours) == refs_of(theirs)
        assert server.cookies and all(c == "TOKEN=s3cret" for c in server.cookies)
        # each tool reads the other's jar
        ostree("remote", "delete-cookie", f"--repo={ours}", "origin", "127.0.0.1", "/", "TOKEN")
        assert (ours / "origin.cookies.txt").read_text().strip() == ""
        sysroot("remote", "delete-cookie", f"--repo={theirs}", "origin", "127.0.0.1", "/", "TOKEN")
        assert (theirs / "origin.cookies.txt").read_text().strip() == ""


def test_cookie_commands(ostree, sysroot, tmp_path):
    theirs, ours = twin_repos(ostree, tmp_path, "archive", "http://127.0.0.1:9/")
    for repo in (theirs, ours):
        sysroot(
            "remote", "add-cookie", f"--repo={repo}", "origin", ".example.org", "/p", "A", "x y"
        )
    listing = sysroot.out("remote", "list-cookies", f"--repo={ours}", "origin")
    assert listing.splitlines()[:5] == [
        "--",
        "Domain: .example.org",
        "Path: /p",
        "Name: A",
        "Value: x y",
    ]
    # deleting a cookie that is not there: ostree's words
    a = ostree("remote", "delete-cookie", f"--repo={theirs}", "origin", "x", "/", "B", check=False)
    b = sysroot("remote", "delete-cookie", f"--repo={ours}", "origin", "x", "/", "B", check=False)
    assert (
        a.returncode == b.returncode == 1
        and b.stderr == a.stderr == b"error: Cookie not found in jar\n"
    )
    # an unknown remote (ostree writes a jar for it anyway)
    b = sysroot("remote", "add-cookie", f"--repo={ours}", "nosuch", "a", "/", "n", "v", check=False)
    assert b.returncode != 0 and not (ours / "nosuch.cookies.txt").exists()
    one_error_line(b)


def test_which_cookies_go_with_a_request():
    now = 1_000_000
    jar = (
        Cookie("example.org", False, "/", False, 0, "exact", "1"),
        Cookie(".example.org", True, "/repo", False, now + 10, "sub", "2"),
        Cookie("example.org", False, "/", True, 0, "secure", "3"),
        Cookie("example.org", False, "/", False, now - 1, "expired", "4"),
    )
    assert cookie_header(jar, "http://example.org/repo/objects/x", now) == "exact=1; sub=2"
    assert cookie_header(jar, "https://example.org/repository", now) == "exact=1; secure=3"
    assert cookie_header(jar, "http://cdn.example.org/repo/x", now) == "sub=2"
    assert cookie_header(jar, "http://evil.org/repo/x", now) is None
    assert cookie_header(jar, "http://notexample.org/", now) is None
