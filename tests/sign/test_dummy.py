"""The `dummy` signature type, against ostree 2022.7 (Debian's build has it, though
not ed25519): signing appends the key itself under `ostree.sign.dummy`, verifying
looks for one of the keys given, and both need OSTREE_DUMMY_SIGN_ENABLED=1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import one_error_line
from tests.helpers.twins import copied_twins

ON = {"OSTREE_DUMMY_SIGN_ENABLED": "1"}
OFF = {"OSTREE_DUMMY_SIGN_ENABLED": None}  # unset, whatever the test's environment


@pytest.fixture
def twins(tmp_path, ostree):
    """(theirs, ours, commit): two copies of a repository with one unsigned commit."""
    src = tmp_path / "src"
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "file").write_text("signed\n")
    ostree("init", f"--repo={src}", "--mode=archive")
    commit = ostree.out("commit", f"--repo={src}", "-b", "main", "--timestamp=2021-01-01", tree)
    theirs, ours = copied_twins(src, tmp_path)
    return theirs, ours, commit


def commitmeta(repo: Path, commit: str) -> bytes | None:
    path = repo / f"objects/{commit[:2]}/{commit[2:]}.commitmeta"
    return path.read_bytes() if path.exists() else None


def test_sign_and_verify_like_ostree(ostree, sysroot, twins):
    theirs, ours, commit = twins
    ostree("sign", f"--repo={theirs}", "--sign-type=dummy", commit, "k1", "k2", env=ON)
    sysroot("sign", f"--repo={ours}", "--sign-type=dummy", commit, "k1", "k2", env=ON)
    assert commitmeta(ours, commit) == commitmeta(theirs, commit) is not None
    # each tool verifies what the other signed, with the same words
    for tool, repo in ((ostree, ours), (sysroot, theirs)):
        for keys in (["k2"], ["nope", "k1"]):
            proc = tool("sign", f"--repo={repo}", "-s", "dummy", "--verify", commit, *keys, env=ON)
            assert proc.stdout == b"dummy: Signature verified\n"
    # a key that signed nothing, or no OSTREE_DUMMY_SIGN_ENABLED: nothing verifies
    for env, key in ((ON, "k3"), (OFF, "k1")):
        args = ("sign", "-s", "dummy", "--verify", commit, key)
        assert ostree(*args, f"--repo={theirs}", check=False, env=env).returncode == 1
        line = one_error_line(sysroot(*args, f"--repo={ours}", check=False, env=env))
        assert line == "error: No valid signatures found"


def test_signing_refused_without_the_variable(ostree, sysroot, twins, tmp_path):
    theirs, ours, commit = twins
    for tool, repo in ((ostree, theirs), (sysroot, ours)):
        proc = tool("sign", f"--repo={repo}", "-s", "dummy", commit, "k1", check=False, env=OFF)
        assert proc.returncode == 1
        assert b"dummy signature type is only for ostree testing" in proc.stderr
        assert commitmeta(repo, commit) is None
    line = one_error_line(
        sysroot("sign", f"--repo={ours}", "-s", "dummy", commit, env=ON, check=False)
    )
    assert "Need at least one KEY-ID" in line
    line = one_error_line(
        sysroot("sign", f"--repo={ours}", "-s", "dummy", "--verify", commit, env=ON, check=False)
    )
    assert "needs the KEYs" in line
    assert commitmeta(ours, commit) is None


def test_commit_sign_like_ostree(ostree, sysroot, twins, tmp_path):
    theirs, ours, _ = twins
    tree = tmp_path / "tree"
    args = ("commit", "-b", "signed", "--timestamp=2021-01-02", "-s", "dummy")
    made = {}
    for tool, repo in ((ostree, theirs), (sysroot, ours)):
        made[repo] = tool.out(
            *args, f"--repo={repo}", "--sign-type=dummy", "--sign=kc", "--sign=kd", tree, env=ON
        )
    assert made[ours] == made[theirs]
    assert commitmeta(ours, made[ours]) == commitmeta(theirs, made[theirs]) is not None
    ostree("sign", f"--repo={ours}", "-s", "dummy", "--verify", made[ours], "kd", env=ON)
    # refused without the variable, before anything is written
    refs = sorted(p.name for p in (ours / "refs/heads").iterdir())
    cmd = (*args, f"--repo={ours}", "--sign-type=dummy", "--sign=kc", "-b", "other", tree)
    assert "only for ostree testing" in one_error_line(sysroot(*cmd, check=False, env=OFF))
    assert sorted(p.name for p in (ours / "refs/heads").iterdir()) == refs


def test_delete_deletes(ostree, sysroot, twins):
    """ostree 2022.7's --delete signs again (not wired up there); sysroot deletes the
    signatures equal to the keys given, as it does for ed25519."""
    _, ours, commit = twins
    sysroot("sign", f"--repo={ours}", "-s", "dummy", commit, "k1", "k2", "k1", env=ON)
    out = sysroot.out("sign", f"--repo={ours}", "-s", "dummy", "--delete", commit, "k1", env=ON)
    assert out == "Signatures deleted: 2"
    verify = ("sign", f"--repo={ours}", "-s", "dummy", "--verify", commit)
    ostree(*verify, "k2", env=ON)
    assert ostree(*verify, "k1", env=ON, check=False).returncode == 1


@pytest.fixture
def signed_source(tmp_path, ostree):
    """A repository where main is dummy-signed with k1 and unsigned is not."""
    src = tmp_path / "signed-src"
    tree = tmp_path / "signed-tree"
    tree.mkdir()
    (tree / "file").write_text("pulled\n")
    ostree("init", f"--repo={src}", "--mode=archive")
    ostree("commit", f"--repo={src}", "-b", "main", "--sign-type=dummy", "--sign=k1", tree, env=ON)
    ostree("commit", f"--repo={src}", "-b", "unsigned", tree)
    return src


@pytest.mark.parametrize(
    ("key", "ref", "env", "message"),
    [
        ("k1", "main", ON, None),
        ("k2", "main", ON, "dummy: incorrect signatures found: 1"),
        ("k1", "unsigned", ON, "no signatures found"),
        ("k1", "main", OFF, "dummy signature type is only for ostree testing"),
    ],
)
def test_pull_verifies_like_ostree(
    ostree, sysroot, tmp_path, signed_source, key, ref, env, message
):
    repos = {}
    for name, tool in (("theirs", ostree), ("ours", sysroot)):
        repo = repos[name] = tmp_path / name
        ostree("init", f"--repo={repo}", "--mode=archive")
        tool(
            "remote",
            "add",
            f"--repo={repo}",
            "--no-gpg-verify",
            f"--sign-verify=dummy=inline:{key}",
            "origin",
            f"file://{signed_source}",
        )
    assert (repos["ours"] / "config").read_text() == (repos["theirs"] / "config").read_text()
    pulls = [
        tool("pull", f"--repo={repos[name]}", "origin", ref, check=False, env=env)
        for name, tool in (("theirs", ostree), ("ours", sysroot))
    ]
    if message is None:
        assert [p.returncode for p in pulls] == [0, 0]
        assert (repos["ours"] / "refs/remotes/origin/main").exists()
        return
    assert pulls[0].returncode != 0
    assert message in one_error_line(pulls[1])
    assert not (repos["ours"] / "refs/remotes").exists() or not any(
        (repos["ours"] / "refs/remotes").rglob("*")
    )


def test_summary_sign_like_ostree(ostree, sysroot, twins):
    """summary -u --sign-type=dummy: summary.sig holds the keys, byte for byte as
    ostree's (the summary itself carries a time stamp; its signature here does not)."""
    theirs, ours, _ = twins
    for keys in (["--sign=k1", "--sign=k2"], ["--sign=k3"]):
        for tool, repo in ((ostree, theirs), (sysroot, ours)):
            tool("summary", f"--repo={repo}", "-u", "--sign-type=dummy", *keys, env=ON)
        assert (ours / "summary.sig").read_bytes() == (theirs / "summary.sig").read_bytes()
    assert b"k3" in (ours / "summary.sig").read_bytes()
    # sysroot reads the signed summary ostree serves, the remote checking it with dummy
    for tool in (ostree, sysroot):
        tool(
            "remote",
            "add",
            f"--repo={ours}",
            "--no-gpg-verify",
            "--set=sign-verify-summary=dummy",
            "--set=verification-dummy-key=k3",
            "--if-not-exists",
            "theirs",
            f"file://{theirs}",
        )
        proc = tool("remote", "summary", f"--repo={ours}", "theirs", env=ON)
        assert b"* main" in proc.stdout


@pytest.mark.parametrize(
    "env, sign_type, message",
    [
        (OFF, "dummy", "dummy signature type is only for ostree testing"),
        (ON, "nope", "Requested signature type is not implemented"),
    ],
)
def test_summary_sign_refusals(ostree, sysroot, twins, env, sign_type, message):
    theirs, ours, _ = twins
    args = ("summary", "-u", f"--sign-type={sign_type}", "--sign=k1")
    proc = ostree(*args, f"--repo={theirs}", check=False, env=env)
    assert proc.returncode == 1 and message.encode() in proc.stderr
    assert message in one_error_line(sysroot(*args, f"--repo={ours}", check=False, env=env))
    # ostree 2022.7 has written an unsigned summary by then; sysroot writes nothing
    assert not (ours / "summary").exists() and not (ours / "summary.sig").exists()
