"""Remotes: sysroot and the real ostree read and write the same files, byte for byte."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest

from sysroot.errors import FormatError, NotFoundError, SysrootError
from sysroot.store import remotes
from sysroot.store.repo import Repo
from tests.conftest import one_error_line
from tests.helpers.keys import gpg_keys
from tests.helpers.twins import twin_repos, with_tools

# one remote add of each shape ostree accepts, as argument lists after `remote add`
ADDS = [
    [
        "--set=a=1",
        "--no-gpg-verify",
        "--contenturl=http://c.example/",
        "--set=b=x y",
        "--collection-id=org.example.Os",
        "n1",
        "http://n1.example/repo",
        "br1",
        "br/2",
    ],
    ["--set=branches=only", "n2", "file:///srv/repo", "ignored"],
    ["n3", "metalink=https://m.example/metalink.xml"],
    ["--set=gpg-verify=false", "--no-gpg-verify", "n4", "https://n4.example/"],
    ["--if-not-exists", "n1", "http://other.example/"],
    ["--force", "n4", "https://n4b.example/", "--set=k=v"],
]


def test_remote_add_writes_config_like_ostree(tmp_path, ostree, sysroot):
    pair = with_tools(ostree, sysroot, twin_repos(ostree, tmp_path, "archive"))
    outputs = []
    for tool, repo in pair:
        for args in ADDS:
            tool("remote", "add", f"--repo={repo}", *args)
        outputs.append(
            [
                tool("remote", "list", f"--repo={repo}").stdout,
                tool("remote", "show-url", f"--repo={repo}", "n4").stdout,
                tool("remote", "list", "-u", f"--repo={repo}", check=False),
            ]
        )
    assert (pair[0][1] / "config").read_bytes() == (pair[1][1] / "config").read_bytes()
    o, s = outputs
    assert o[:2] == s[:2]
    assert o[0] == b"n1\nn2\nn3\nn4\n"
    # list -u stops at the metalink remote, which has no url, with the same words
    assert o[2].returncode != 0 and s[2].returncode != 0
    assert o[2].stdout == s[2].stdout == b"n1  http://n1.example/repo\nn2  file:///srv/repo\n"
    assert one_error_line(s[2]) == o[2].stderr.decode().strip()


def test_existing_remote_error_and_delete_like_ostree(tmp_path, ostree, sysroot):
    pair = with_tools(ostree, sysroot, twin_repos(ostree, tmp_path, "archive"))
    results = []
    for tool, repo in pair:
        tool("remote", "add", f"--repo={repo}", "a", "http://a.example/")
        tool("remote", "add", f"--repo={repo}", "b", "http://b.example/")
        dup = tool("remote", "add", f"--repo={repo}", "a", "http://x.example/", check=False)
        gone = tool("remote", "delete", f"--repo={repo}", "zz", check=False)
        tool("remote", "delete", f"--repo={repo}", "--if-exists", "zz")
        tool("remote", "delete", f"--repo={repo}", "a")
        results.append(
            (
                dup.returncode != 0,
                dup.stderr.decode().strip().splitlines()[-1],
                gone.returncode != 0,
                gone.stderr.decode().strip().splitlines()[-1],
            )
        )
    assert results[0] == results[1]
    assert results[1][1] == 'error: Remote configuration for "a" already exists: (in config)'
    assert (pair[0][1] / "config").read_bytes() == (pair[1][1] / "config").read_bytes()


def test_each_tool_uses_the_others_remotes(tmp_path, ostree, sysroot):
    repo = tmp_path / "repo"
    ostree("init", f"--repo={repo}")
    ostree(
        "remote",
        "add",
        f"--repo={repo}",
        "--no-gpg-verify",
        "byostree",
        "https://o.example/",
        "main",
    )
    sysroot(
        "remote",
        "add",
        f"--repo={repo}",
        "--set=gpg-verify-summary=true",
        "bysysroot",
        "http://s.example/",
    )
    for tool in (ostree, sysroot):
        assert tool.out("remote", "list", f"--repo={repo}") == "byostree\nbysysroot"
        assert tool.out("remote", "show-url", f"--repo={repo}", "bysysroot") == "http://s.example/"
    with Repo.open(repo) as r:
        o = remotes.load_remote(r, "byostree")
        assert (o.url, o.gpg_verify, o.branches, o.source) == (
            "https://o.example/",
            False,
            ["main"],
            str(repo / "config"),
        )
        s = remotes.load_remote(r, "bysysroot")
        assert (s.gpg_verify, s.gpg_verify_summary, s.sign_verify) == (True, True, [])
    ostree("remote", "delete", f"--repo={repo}", "bysysroot")
    sysroot("remote", "delete", f"--repo={repo}", "byostree")
    assert ostree.out("remote", "list", f"--repo={repo}") == ""
    assert "[remote" not in (repo / "config").read_text()


def _sysroots(tmp_path: Path, ostree) -> list[Path]:
    out = []
    for name in ("o", "s"):
        root = tmp_path / name
        root.mkdir()
        ostree("admin", "init-fs", root)
        out.append(root)
    return out


def test_sysroot_remotes_d_like_ostree(tmp_path, ostree, sysroot):
    """--sysroot: the physical root keeps remotes in the repo config; a deployment root
    (one with a sysroot/ directory) gets etc/ostree/remotes.d/NAME.conf, as 2022.7 does."""
    roots = _sysroots(tmp_path, ostree)
    for tool, root in zip((ostree, sysroot), roots, strict=True):
        tool("remote", "add", f"--sysroot={root}", "phys", "http://p.example/", "x")
        (root / "sysroot").mkdir()
        tool(
            "remote",
            "add",
            f"--sysroot={root}",
            "--no-gpg-verify",
            "dep",
            "http://d.example/",
            "b1",
            "b2",
        )
        tool("remote", "add", f"--sysroot={root}", "gone", "http://g.example/")
        tool(
            "remote",
            "add",
            f"--sysroot={root}",
            "--force",
            "dep",
            "https://d2.example/",
            "--set=k=v",
        )
        tool("remote", "delete", f"--sysroot={root}", "gone")
    o, s = roots
    assert (o / "ostree/repo/config").read_bytes() == (s / "ostree/repo/config").read_bytes()
    assert "phys" in (s / "ostree/repo/config").read_text()
    assert sorted(os.listdir(s / "etc/ostree/remotes.d")) == ["dep.conf"]
    assert (o / "etc/ostree/remotes.d/dep.conf").read_bytes() == (
        s / "etc/ostree/remotes.d/dep.conf"
    ).read_bytes()
    # each tool finds (and deletes) what the other wrote into remotes.d
    ostree("remote", "delete", f"--sysroot={s}", "dep")
    sysroot("remote", "delete", f"--sysroot={o}", "dep")
    assert not (o / "etc/ostree/remotes.d/dep.conf").exists()
    assert not (s / "etc/ostree/remotes.d/dep.conf").exists()


def test_remotes_d_is_read_and_other_groups_are_kept(tmp_path, ostree, sysroot):
    root = _sysroots(tmp_path, ostree)[0]
    d = root / "etc/ostree/remotes.d"
    d.mkdir(parents=True)
    (d / "multi.conf").write_text(
        '# vendor remotes\n[remote "m1"]\nurl=http://m1.example/\n'
        'gpg-verify=false\n\n[remote "m2"]\nurl=http://m2.example/\n'
    )
    (d / "ignored.txt").write_text('[remote "nope"]\nurl=http://n.example/\n')
    with Repo.open(root / "ostree/repo") as r:
        names = [x.name for x in remotes.list_remotes(r, sysroot=str(root))]
        assert names == ["m1", "m2"]
        assert remotes.load_remote(r, "m1", sysroot=str(root)).gpg_verify is False
        # without the sysroot, the repo alone has no remotes.d (as `ostree --repo`)
        assert remotes.list_remotes(r) == []
    sysroot("remote", "delete", f"--sysroot={root}", "m1")
    assert (
        d / "multi.conf"
    ).read_text() == '# vendor remotes\n[remote "m2"]\nurl=http://m2.example/\n'
    # ostree still reads the rewritten file
    ostree("remote", "delete", f"--sysroot={root}", "m2")
    assert not (d / "multi.conf").exists()


def test_duplicate_remote_is_an_error(tmp_path, ostree):
    root = _sysroots(tmp_path, ostree)[0]
    ostree("remote", "add", f"--repo={root}/ostree/repo", "dup", "http://a.example/")
    d = root / "etc/ostree/remotes.d"
    d.mkdir(parents=True)
    (d / "dup.conf").write_text('[remote "dup"]\nurl=http://b.example/\n')
    o = ostree("remote", "delete", f"--sysroot={root}", "--if-exists", "x", check=False)
    assert (
        o.returncode != 0 and 'Multiple specifications found for remote "dup"' in o.stderr.decode()
    )
    with Repo.open(root / "ostree/repo") as r, pytest.raises(FormatError, match="Multiple specif"):
        remotes.list_remotes(r, sysroot=str(root))


def test_sign_verify_layout_follows_ostree(tmp_path, ostree, sysroot):
    """Debian's ostree has no ed25519; its `dummy` engine shows the layout --sign-verify
    writes, which must be the same with ed25519 and a real key."""
    key = base64.b64encode(bytes(range(32))).decode()
    pair = with_tools(ostree, sysroot, twin_repos(ostree, tmp_path, "archive"))
    ostree(
        "remote",
        "add",
        f"--repo={pair[0][1]}",
        "--set=a=1",
        "--sign-verify=dummy=inline:K",
        "--sign-verify=dummy=file:/keys/f",
        "r",
        "http://r.example/",
    )
    sysroot(
        "remote",
        "add",
        f"--repo={pair[1][1]}",
        "--set=a=1",
        f"--sign-verify=ed25519=inline:{key}",
        "--sign-verify=ed25519=file:/keys/f",
        "r",
        "http://r.example/",
    )
    expected = (
        (pair[0][1] / "config")
        .read_text()
        .replace("dummy", "ed25519")
        .replace("ed25519-key=K", f"ed25519-key={key}")
    )
    assert (pair[1][1] / "config").read_text() == expected
    with Repo.open(pair[1][1]) as r:
        remote = remotes.load_remote(r, "r")
        assert remote.sign_verify == ["ed25519"] and remote.sign_verify_is_list
    for tool, repo in pair:
        tool("remote", "add", f"--repo={repo}", "--no-sign-verify", "off", "http://o.example/")
    assert (pair[0][1] / "config").read_text().split('[remote "off"]')[1] == (
        pair[1][1] / "config"
    ).read_text().split('[remote "off"]')[1]


def test_gpg_import_writes_the_same_keyring(tmp_path, ostree, sysroot):
    with gpg_keys(tmp_path, "one", "two") as keys:
        both = tmp_path / "both.gpg"
        both.write_bytes(b"".join(k.keyring.read_bytes() for k in keys))
        one = subprocess.run(
            ["gpg", "--homedir", keys[0].home, "--armor", "--export"],
            check=True,
            capture_output=True,
        ).stdout
    pair = with_tools(ostree, sysroot, twin_repos(ostree, tmp_path, "archive"))
    out = []
    for tool, repo in pair:
        tool("remote", "add", f"--repo={repo}", "a", "http://a.example/")
        tool("remote", "add", f"--repo={repo}", "b", "http://b.example/")
        out.append(
            [
                tool.out("remote", "gpg-import", f"--repo={repo}", "a", "-k", both),
                tool.out("remote", "gpg-import", f"--repo={repo}", "a", "-k", both),
                tool.out("remote", "gpg-import", f"--repo={repo}", "b", "--stdin", input=one),
            ]
        )
    assert (
        out[0]
        == out[1]
        == [
            'Imported 2 GPG keys to remote "a"',
            'Imported 0 GPG keys to remote "a"',
            'Imported 1 GPG key to remote "b"',
        ]
    )
    for name in ("a", "b"):
        assert (pair[0][1] / f"{name}.trustedkeys.gpg").read_bytes() == (
            pair[1][1] / f"{name}.trustedkeys.gpg"
        ).read_bytes()
    # deleting a remote deletes its keyring, in both tools
    for tool, repo in pair:
        tool("remote", "delete", f"--repo={repo}", "a")
        assert not (repo / "a.trustedkeys.gpg").exists()


BAD_ADDS = [
    (["r", "ftp://x.example/"], "Invalid URL"),
    (["r", "not a url"], "Invalid URL"),
    (["--set=novalue", "r", "http://x.example/"], "Missing '='"),
    (["--set==v", "r", "http://x.example/"], "Invalid remote option name"),
    (["b/d", "http://x.example/"], "Invalid remote name b/d"),
    (["--sign-verify=ed25519=inline:not-base64!", "r", "http://x.example/"], "not base64"),
    (
        [
            "--sign-verify=ed25519=inline:" + base64.b64encode(b"short").decode(),
            "r",
            "http://x.example/",
        ],
        "expected 32",
    ),
    (["--sign-verify=ed25519", "r", "http://x.example/"], "Failed to parse"),
    (["--sign-verify=rsa=inline:x", "r", "http://x.example/"], "not implemented"),
    (["--if-not-exists", "--force", "r", "http://x.example/"], "Can only specify one"),
    (["--gpg-import=/nonexistent.gpg", "r", "http://x.example/"], "/nonexistent.gpg"),
    (["existing", "http://x.example/"], "already exists"),
]


@pytest.mark.parametrize(("args", "message"), BAD_ADDS)
def test_bad_remote_add_changes_nothing(tmp_path, ostree, sysroot, args, message):
    repo = tmp_path / "repo"
    ostree("init", f"--repo={repo}")
    ostree("remote", "add", f"--repo={repo}", "existing", "http://e.example/")
    before = (repo / "config").read_bytes()
    entries = sorted(os.listdir(repo))
    proc = sysroot("remote", "add", f"--repo={repo}", *args, check=False)
    assert message in one_error_line(proc)
    assert (repo / "config").read_bytes() == before
    assert sorted(os.listdir(repo)) == entries
    assert not list(repo.glob("*.trustedkeys.gpg"))


@pytest.mark.parametrize(
    "cmd", [["show-url", "nope"], ["delete", "nope"], ["gpg-import", "nope", "-k", "/dev/null"]]
)
def test_unknown_remote_is_one_line(tmp_path, ostree, sysroot, cmd):
    repo = tmp_path / "repo"
    ostree("init", f"--repo={repo}")
    before = (repo / "config").read_bytes()
    proc = sysroot("remote", cmd[0], f"--repo={repo}", *cmd[1:], check=False)
    assert 'Remote "nope" not found' in one_error_line(proc)
    assert (repo / "config").read_bytes() == before


def test_remote_model(tmp_path, ostree):
    repo = tmp_path / "repo"
    ostree("init", f"--repo={repo}")
    ostree(
        "remote",
        "add",
        f"--repo={repo}",
        "--set=gpg-verify=maybe",
        "--set=sign-verify=true",
        "--set=sign-verify-summary=ed25519;",
        "r",
        "http://r.example/",
    )
    with Repo.open(repo) as r:
        remote = remotes.load_remote(r, "r")
        assert remote.option("url") == "http://r.example/"
        assert remote.option("missing", "d") == "d"
        with pytest.raises(SysrootError, match="not a boolean"):
            remote.gpg_verify  # noqa: B018 - the property raises
        assert remote.option_bool("other", True) is True
        assert remote.sign_verify == ["ed25519"] and not remote.sign_verify_is_list
        assert remote.sign_verify_summary == ["ed25519"]
        assert remote.gpg_verify_summary is False
        with pytest.raises(NotFoundError, match='Remote "zz" not found'):
            remotes.load_remote(r, "zz")
        url_remote = remotes.load_remote(r, "file:///srv/repo")
        assert (url_remote.url, url_remote.gpg_verify) == ("file:///srv/repo", False)
        added = remotes.add_remote(
            r, "api", "https://a.example/", options={"x": "1"}, branches=["b"]
        )
        assert (added.url, added.options, added.branches) == (
            "https://a.example/",
            {"branches": "b;", "x": "1"},
            ["b"],
        )
        same = remotes.add_remote(r, "api", "https://z.example/", options={}, if_not_exists=True)
        assert same.url == "https://a.example/"
    assert ostree.out("remote", "show-url", f"--repo={repo}", "api") == "https://a.example/"


def test_remote_refs_and_summary_like_ostree(tmp_path, ostree, sysroot):
    src = tmp_path / "src"
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("x\n")
    ostree("init", f"--repo={src}", "--mode=archive")
    for ref in ("main", "other/branch"):
        ostree(
            "commit",
            f"--repo={src}",
            "-b",
            ref,
            f"--tree=dir={tree}",
            "--add-metadata-string=version=1.0",
        )
    client = tmp_path / "client"
    ostree("init", f"--repo={client}")
    ostree("remote", "add", f"--repo={client}", "--no-gpg-verify", "o", f"file://{src}")
    for cmd, missing in (
        ("refs", "Remote refs not available; server has no summary file"),
        ("summary", "Remote server has no summary file"),
    ):
        proc = sysroot("remote", cmd, f"--repo={client}", "o", check=False)
        assert one_error_line(proc) == f"error: {missing}"
        assert (
            ostree("remote", cmd, f"--repo={client}", "o", check=False).stderr.decode().strip()
            == f"error: {missing}"
        )
    ostree("summary", f"--repo={src}", "-u")
    for cmd in ("refs", "summary"):
        assert (
            sysroot("remote", cmd, f"--repo={client}", "o").stdout
            == ostree("remote", cmd, f"--repo={client}", "o").stdout
        )
    assert sysroot.out("remote", "refs", f"--repo={client}", "o") == "o:main\no:other/branch"
