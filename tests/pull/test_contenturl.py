"""What a pull sends to which server, against ostree 2022.7: a remote's `contenturl`
(the objects there, the summary, config, refs and detached metadata from `url`),
credentials in the URL (HTTP basic authentication, to that URL's server only) and
`--http-header` (on every request)."""

from __future__ import annotations

import base64

import pytest

from tests.conftest import one_error_line
from tests.helpers.twins import assert_same_repos, twin_repos
from tests.pull.serve_helpers import RepoServer, refs_of, repo_servers


def is_object(path: str) -> bool:
    """What ostree fetches from contenturl: every object but the detached metadata."""
    return path.startswith("objects/") and not path.endswith(".commitmeta")


@pytest.fixture(scope="module")
def servers(served_repo):
    """(data, meta, content): the served repo; a server of all but the objects, one of
    the objects only (each answers 404 for the rest)."""
    with repo_servers(served_repo["repo"], lambda path: not is_object(path), is_object) as (
        meta,
        content,
    ):
        yield served_repo, meta, content


def requests_by_tool(ostree, sysroot, tmp_path, url, servers, *args, setup=()):
    """Pull with each tool into its own repo (remote origin at url, then each `remote
    add` option of setup): {tool: (repo, {server: [(path, headers)]})}."""
    out = {}
    theirs, ours = twin_repos(ostree, tmp_path, "archive", None)
    for name, tool, repo in (("ostree", ostree, theirs), ("sysroot", sysroot, ours)):
        ostree("remote", "add", f"--repo={repo}", "--no-gpg-verify", *setup, "origin", url)
        for server in servers:
            server.reset()
        tool("pull", f"--repo={repo}", *args)
        out[name] = (repo, {server: list(server.headers) for server in servers})
    return out


def object_paths(requests) -> set[str]:
    return {path for path, _ in requests if is_object(path)}


def test_objects_from_contenturl_like_ostree(servers, ostree, sysroot, tmp_path):
    data, meta, content = servers
    both = requests_by_tool(
        ostree,
        sysroot,
        tmp_path,
        meta.url,
        (meta, content),
        "--depth=1",
        "origin",
        "main",
        setup=(f"--contenturl={content.url}",),
    )
    (theirs, their_requests), (ours, our_requests) = both["ostree"], both["sysroot"]
    assert_same_repos(ostree, theirs, ours, "archive")
    assert refs_of(ours) == {"refs/remotes/origin/main": data["c2"]}
    # both asked the content server for the same objects, and for nothing else
    assert object_paths(our_requests[content]) == object_paths(their_requests[content])
    assert {p for p, _ in our_requests[content]} == object_paths(our_requests[content])
    assert len(object_paths(our_requests[content])) > 4  # commits, trees, files
    # and the metadata server for no object, but the detached metadata
    for requests in (our_requests[meta], their_requests[meta]):
        assert not object_paths(requests)
        assert {"summary", "objects/" + data["c2"][:2] + "/" + data["c2"][2:] + ".commitmeta"} <= {
            p for p, _ in requests
        }


def test_contenturl_file_and_url_option(servers, ostree, sysroot, tmp_path):
    data, meta, content = servers
    for sub in ("file", "url"):
        (tmp_path / sub).mkdir()
    # contenturl may be a file:// URL beside an http:// url
    both = requests_by_tool(
        ostree,
        sysroot,
        tmp_path / "file",
        meta.url,
        (meta,),
        "origin",
        "main",
        setup=(f"--contenturl=file://{data['repo']}",),
    )
    assert_same_repos(ostree, both["ostree"][0], both["sysroot"][0], "archive")
    # --url stands for both url and contenturl (a dead contenturl is not asked)
    with RepoServer(data["repo"]) as full:
        both = requests_by_tool(
            ostree,
            sysroot,
            tmp_path / "url",
            "http://127.0.0.1:1/",
            (full,),
            f"--url={full.url}",
            "origin",
            "main",
            setup=("--contenturl=http://127.0.0.1:1/",),
        )
    assert_same_repos(ostree, both["ostree"][0], both["sysroot"][0], "archive")
    assert object_paths(both["sysroot"][1][full]) == object_paths(both["ostree"][1][full])


def test_basic_auth_to_the_url_server_only(servers, ostree, sysroot, tmp_path):
    data, meta, content = servers
    url = meta.url.replace("http://", "http://alice:s3cret@")
    both = requests_by_tool(
        ostree,
        sysroot,
        tmp_path,
        url,
        (meta, content),
        "origin",
        "main",
        setup=(f"--contenturl={content.url}",),
    )
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    for name in ("ostree", "sysroot"):
        requests = both[name][1]
        assert requests[meta] and all(h.get("Authorization") == expected for _, h in requests[meta])
        assert all("Authorization" not in h for _, h in requests[content]), name
    assert_same_repos(ostree, both["ostree"][0], both["sysroot"][0], "archive")


def test_basic_auth_of_contenturl_on_every_object(servers, ostree, sysroot, tmp_path):
    """The worker processes that fetch the content objects send the credentials too."""
    _, meta, content = servers
    both = requests_by_tool(
        ostree,
        sysroot,
        tmp_path,
        meta.url,
        (meta, content),
        "origin",
        "main",
        setup=(f"--contenturl={content.url.replace('http://', 'http://bob:pw@')}",),
    )
    expected = "Basic " + base64.b64encode(b"bob:pw").decode()
    for name in ("ostree", "sysroot"):
        requests = both[name][1]
        assert len(object_paths(requests[content])) > 4, name
        assert all(h.get("Authorization") == expected for _, h in requests[content]), name
        assert all("Authorization" not in h for _, h in requests[meta]), name
    assert_same_repos(ostree, both["ostree"][0], both["sysroot"][0], "archive")


def test_basic_auth_percent_decoded_and_never_shown(servers, ostree, sysroot, tmp_path):
    """USER:PASSWORD are percent-decoded (RFC 3986; ostree 2022.7 sends them encoded,
    its bug), and an error names the URL without them."""
    data, meta, content = servers
    url = meta.url.replace("http://", "http://a%40b:p%3Aw%25rd@")
    repo = twin_repos(ostree, tmp_path, "archive", None)[1]
    ostree(
        "remote",
        "add",
        f"--repo={repo}",
        "--no-gpg-verify",
        "--contenturl",
        content.url,
        "origin",
        url,
    )
    meta.reset()
    sysroot("pull", f"--repo={repo}", "origin", "other")
    expected = "Basic " + base64.b64encode(b"a@b:p:w%rd").decode()
    assert meta.headers and all(h.get("Authorization") == expected for _, h in meta.headers)
    line = one_error_line(sysroot("pull", f"--repo={repo}", "origin", "nosuch", check=False))
    assert meta.url in line and "p%3Aw" not in line and "a%40b" not in line


def test_http_header_on_every_request(servers, ostree, sysroot, tmp_path):
    data, meta, content = servers
    both = requests_by_tool(
        ostree,
        sysroot,
        tmp_path,
        meta.url,
        (meta, content),
        "--http-header=X-Test=one=two",
        "origin",
        "main",
        setup=(f"--contenturl={content.url}",),
    )
    for name in ("ostree", "sysroot"):
        requests = both[name][1][meta] + both[name][1][content]
        assert len(requests) > 5
        assert all(h.get("X-Test") == "one=two" for _, h in requests), name


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (("--contenturl=ftp://127.0.0.1/",), "Unsupported URL ftp://127.0.0.1/"),
        (("--contenturl=http://[::1/",), "Invalid URL http://[::1/"),
        (("--contenturl=http://127.0.0.1:port/",), "Invalid URL http://127.0.0.1:port/"),
        (
            ("--contenturl=mirrorlist=http://127.0.0.1:1/list",),
            "While fetching mirrorlist 'http://127.0.0.1:1/list'",
        ),
    ],
)
def test_bad_contenturl_one_line(servers, ostree, sysroot, tmp_path, setup, message):
    _, meta, _ = servers
    repo = twin_repos(ostree, tmp_path, "archive", None)[1]
    ostree("remote", "add", f"--repo={repo}", "--no-gpg-verify", *setup, "origin", meta.url)
    line = one_error_line(sysroot("pull", f"--repo={repo}", "origin", "main", check=False))
    assert message in line
    assert refs_of(repo) == {}
