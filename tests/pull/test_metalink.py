"""`metalink=URL` remotes against ostree 2022.7: the summary's size and checksum from
the XML, its URLs tried in turn, the first that serves a matching summary the remote's
url; a document without what ostree requires, or with a DOCTYPE, refused in one line."""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.conftest import one_error_line
from tests.helpers.twins import assert_same_repos, pulled_by_both
from tests.pull.serve_helpers import RepoServer, free_port, refs_of


@pytest.fixture(scope="module")
def servers(served_repo, tmp_path_factory):
    """(data, links dir, links server, repo server)."""
    links = tmp_path_factory.mktemp("links")
    with RepoServer(links) as link_server, RepoServer(served_repo["repo"]) as repo_server:
        yield served_repo, links, link_server, repo_server


def _metalink(summary: bytes, urls: list[str], *, hashes=("sha256",), size=None) -> str:
    checks = "".join(
        f'<hash type="{kind}">{hashlib.new(kind, summary).hexdigest()}</hash>' for kind in hashes
    )
    resources = "".join(
        f'<url protocol="{u.split(":")[0]}" type="{u.split(":")[0]}" location="US" '
        f'preference="{100 - i}">{u}</url>'
        for i, u in enumerate(urls)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<metalink version="3.0" xmlns="http://www.metalinker.org/"><files>'
        '<file name="other"><size>1</size></file>'
        f'<file name="summary"><size>{len(summary) if size is None else size}</size>'
        f"<verification>{checks}</verification>"
        f'<resources maxconnections="1">{resources}</resources></file></files></metalink>\n'
    )


def _pull_both(ostree, sysroot, tmp_path, servers, name: str, text: str):
    _, links, link_server, _ = servers
    (links / name).write_text(text)
    return pulled_by_both(ostree, sysroot, tmp_path, f"metalink={link_server.url}{name}")


@pytest.mark.parametrize("hashes", [("sha256",), ("sha512",), ("md5", "sha256", "sha512")])
def test_metalink_pull_like_ostree(servers, ostree, sysroot, tmp_path, hashes):
    data, _, _, repo_server = servers
    summary = (data["repo"] / "summary").read_bytes()
    dead = f"http://127.0.0.1:{free_port()}/summary"
    urls = [dead, "ftp://127.0.0.1/x/summary", f"{repo_server.url}summary"]
    text = _metalink(summary, urls, hashes=hashes)
    theirs, ours, procs = _pull_both(ostree, sysroot, tmp_path, servers, "good.xml", text)
    assert [p.returncode for p in procs] == [0, 0], procs
    assert_same_repos(ostree, theirs, ours, "archive")
    assert refs_of(ours) == {"refs/remotes/origin/main": data["c2"]}
    for command in ("refs", "summary"):
        assert sysroot.out("remote", command, f"--repo={ours}", "origin") == ostree.out(
            "remote", command, f"--repo={theirs}", "origin"
        )


def test_checksum_mismatch_like_ostree(servers, ostree, sysroot, tmp_path):
    data, _, _, repo_server = servers
    text = _metalink(b"another summary", [f"{repo_server.url}summary"], size=None)
    summary_size = len((data["repo"] / "summary").read_bytes())
    text = text.replace("<size>15</size>", f"<size>{summary_size}</size>")
    _, ours, (theirs_proc, ours_proc) = _pull_both(
        ostree, sysroot, tmp_path, servers, "badsum.xml", text
    )
    expected = theirs_proc.stderr.decode().strip().splitlines()[-1]
    assert "Exhausted 1 metalink targets, last error: Expected checksum is" in expected
    assert one_error_line(ours_proc) == expected
    assert refs_of(ours) == {}


def test_size_mismatch_fails_like_ostree(servers, ostree, sysroot, tmp_path):
    data, _, _, repo_server = servers
    summary = (data["repo"] / "summary").read_bytes()
    text = _metalink(summary, [f"{repo_server.url}summary"], size=len(summary) - 1)
    _, ours, (theirs_proc, ours_proc) = _pull_both(
        ostree, sysroot, tmp_path, servers, "badsize.xml", text
    )
    assert theirs_proc.returncode != 0
    assert one_error_line(ours_proc).startswith("error: Exhausted 1 metalink targets")
    assert refs_of(ours) == {}


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace('type="sha256"', 'type="crc32"'), "No <verification> element"),
        (lambda t: t.replace("</files>", ""), "not well-formed"),
        (lambda t: re.sub(r">([0-9a-f]{64})<", lambda m: f">{m[1].upper()}<", t), "Invalid hash"),
    ],
    ids=["no-known-hash", "not-xml", "uppercase-digest"],
)
def test_bad_metalink_one_line(servers, ostree, sysroot, tmp_path, edit, message):
    data, _, _, repo_server = servers
    summary = (data["repo"] / "summary").read_bytes()
    text = edit(_metalink(summary, [f"{repo_server.url}summary"]))
    _, ours, (theirs_proc, ours_proc) = _pull_both(
        ostree, sysroot, tmp_path, servers, "bad.xml", text
    )
    assert theirs_proc.returncode != 0
    assert message in one_error_line(ours_proc)
    assert refs_of(ours) == {}


def test_doctype_refused_before_parsing(servers, ostree, sysroot, tmp_path):
    """Entity expansion (a "billion laughs") never happens: a DOCTYPE is refused."""
    data, _, _, repo_server = servers
    summary = (data["repo"] / "summary").read_bytes()
    bomb = '<!DOCTYPE metalink [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
    text = (
        _metalink(summary, [f"{repo_server.url}summary"])
        .replace("<metalink ", bomb + "<metalink ", 1)
        .replace('location="US"', 'location="&b;"')
    )
    _, ours, (_, ours_proc) = _pull_both(ostree, sysroot, tmp_path, servers, "bomb.xml", text)
    assert "DOCTYPE" in one_error_line(ours_proc)
    assert refs_of(ours) == {}
