"""GPG signatures: what one tool signs, the other verifies (ostree pull is the oracle)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from sysroot.formats.gvariant import Variant
from sysroot.sign import detached
from sysroot.sign.verify import SignatureError, verify_commit, verify_summary
from sysroot.store import remotes
from sysroot.store.repo import Repo
from tests.conftest import one_error_line
from tests.helpers.keys import gpg_keys


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    with gpg_keys(tmp_path_factory.mktemp("gnupg"), "alice", "mallory") as made:
        yield made


@pytest.fixture
def served(tmp_path, ostree, keys):
    """An archive repo with one commit, and a client repo whose remote 'origin' points
    at it (file://) trusting alice's key."""
    src = tmp_path / "src"
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "file").write_text("content\n")
    ostree("init", f"--repo={src}", "--mode=archive")
    checksum = ostree.out(
        "commit", f"--repo={src}", "-b", "main", f"--tree=dir={tree}", "-s", "subject"
    )
    client = tmp_path / "client"
    ostree("init", f"--repo={client}")
    ostree("remote", "add", f"--repo={client}", "origin", f"file://{src}")
    ostree("remote", "gpg-import", f"--repo={client}", "origin", "-k", keys[0].keyring)
    return src, client, checksum


def _verify(src: Path, client: Path, checksum: str) -> str:
    with Repo.open(src) as s, Repo.open(client) as c:
        commit = s.read_metadata(detached.ObjectType.COMMIT, checksum)
        return verify_commit(
            c,
            remotes.load_remote(c, "origin"),
            checksum,
            commit,
            detached.read_commitmeta(s, checksum),
        )


def _ostree_pulls(ostree, client: Path) -> bool:
    return ostree("pull", f"--repo={client}", "origin", "main", check=False).returncode == 0


def test_ostree_signature_verifies_in_sysroot(served, ostree, keys):
    src, client, checksum = served
    ostree("gpg-sign", f"--repo={src}", f"--gpg-homedir={keys[0].home}", checksum, keys[0].long_id)
    assert _verify(src, client, checksum) == f"GPG signature by key {keys[0].fpr}"
    assert _ostree_pulls(ostree, client)


def test_sysroot_signature_verifies_in_ostree(served, ostree, sysroot, keys):
    src, client, checksum = served
    sysroot("gpg-sign", f"--repo={src}", f"--gpg-homedir={keys[0].home}", checksum, keys[0].fpr)
    # `ostree show` needs the commit locally: check it in the source, trusting alice
    ostree("remote", "add", f"--repo={src}", "self", f"file://{src}")
    ostree("remote", "gpg-import", f"--repo={src}", "self", "-k", keys[0].keyring)
    shown = ostree.out("show", f"--repo={src}", "--gpg-verify-remote=self", checksum)
    assert 'Good signature from "alice <alice@example.com>"' in shown
    assert _ostree_pulls(ostree, client)
    assert _verify(src, client, checksum) == f"GPG signature by key {keys[0].fpr}"


def _flip_signature_byte(src: Path, checksum: str) -> None:
    with Repo.open(src) as repo:
        meta = detached.load_commitmeta(repo, checksum)
        sig = bytearray(detached.signatures(meta, detached.KEY_GPG)[0])
        sig[-5] ^= 0x01
        detached.write_commitmeta(
            repo, checksum, detached.with_signatures(meta, detached.KEY_GPG, [bytes(sig)])
        )


@pytest.mark.parametrize("case", ["unsigned", "wrong-key", "corrupted"])
def test_bad_signatures_fail_in_both(served, ostree, sysroot, keys, case):
    src, client, checksum = served
    if case == "wrong-key":
        sysroot(
            "gpg-sign", f"--repo={src}", f"--gpg-homedir={keys[1].home}", checksum, keys[1].long_id
        )
    elif case == "corrupted":
        sysroot(
            "gpg-sign", f"--repo={src}", f"--gpg-homedir={keys[0].home}", checksum, keys[0].long_id
        )
        _flip_signature_byte(src, checksum)
    with pytest.raises(SignatureError) as err:
        _verify(src, client, checksum)
    message = str(err.value)
    assert "\n" not in message and checksum in message and '"origin"' in message
    expected = {
        "unsigned": "no signatures found",
        "wrong-key": "public key not found",
        "corrupted": "bad signature",
    }[case]
    assert expected in message
    assert not _ostree_pulls(ostree, client)


def test_gpg_verify_false_requires_nothing(served, ostree):
    src, client, checksum = served
    ostree("config", f"--repo={client}", "set", 'remote "origin".gpg-verify', "false")
    assert _verify(src, client, checksum) == ""


def test_gpgkeypath_and_global_dir(served, ostree, keys, monkeypatch, tmp_path):
    src, client, checksum = served
    ostree("gpg-sign", f"--repo={src}", f"--gpg-homedir={keys[1].home}", checksum, keys[1].long_id)
    armored = tmp_path / "mallory.asc"
    armored.write_bytes(
        subprocess.run(
            ["gpg", "--homedir", str(keys[1].home), "--armor", "--export"],
            check=True,
            capture_output=True,
        ).stdout
    )
    ostree("config", f"--repo={client}", "set", 'remote "origin".gpgkeypath', str(armored))
    assert _verify(src, client, checksum) == f"GPG signature by key {keys[1].fpr}"
    assert _ostree_pulls(ostree, client)
    ostree("config", f"--repo={client}", "unset", 'remote "origin".gpgkeypath')
    trusted = tmp_path / "trusted.gpg.d"
    trusted.mkdir()
    (trusted / "mallory.gpg").write_bytes(keys[1].keyring.read_bytes())
    monkeypatch.setenv("OSTREE_GPG_HOME", str(trusted))
    assert _verify(src, client, checksum) == f"GPG signature by key {keys[1].fpr}"


def test_gpg_sign_delete(served, ostree, sysroot, keys):
    src, client, checksum = served
    for k in (keys[0], keys[1], keys[0]):
        sysroot("gpg-sign", f"--repo={src}", f"--gpg-homedir={k.home}", checksum, k.long_id)
    assert (
        sysroot.out("gpg-sign", f"--repo={src}", "--delete", checksum, keys[0].fpr[-8:])
        == "Signatures deleted: 2"
    )
    with Repo.open(src) as repo:
        meta = detached.load_commitmeta(repo, checksum)
    assert list(meta) == ["ostree.gpgsigs"] and len(meta["ostree.gpgsigs"].value) == 1
    shown = ostree.out("show", f"--repo={src}", checksum)
    assert f"key ID {keys[1].long_id}" in shown and keys[0].long_id not in shown
    with pytest.raises(SignatureError, match="public key not found"):
        _verify(src, client, checksum)


def test_commitmeta_keeps_other_keys(served, sysroot, keys):
    src, _, checksum = served
    with Repo.open(src) as repo:
        detached.write_commitmeta(repo, checksum, {"custom": Variant("s", "kept")})
    sysroot("gpg-sign", f"--repo={src}", f"--gpg-homedir={keys[0].home}", checksum, keys[0].long_id)
    with Repo.open(src) as repo:
        meta = detached.load_commitmeta(repo, checksum)
    assert meta["custom"] == Variant("s", "kept") and len(meta["ostree.gpgsigs"].value) == 1


def test_unknown_key_is_one_line_and_changes_nothing(served, sysroot, keys):
    src, _, checksum = served
    meta = src / "objects" / checksum[:2] / f"{checksum[2:]}.commitmeta"
    proc = sysroot(
        "gpg-sign",
        f"--repo={src}",
        f"--gpg-homedir={keys[0].home}",
        checksum,
        "DEADBEEFDEADBEEF",
        check=False,
    )
    assert "No gpg key found with ID DEADBEEFDEADBEEF" in one_error_line(proc)
    assert not meta.exists()
    proc = sysroot("gpg-sign", f"--repo={src}", checksum, check=False)
    assert "Need at least one GPG KEY-ID" in one_error_line(proc)


def test_summary_signatures(served, ostree, sysroot, keys):
    src, client, _ = served
    ostree("config", f"--repo={client}", "set", 'remote "origin".gpg-verify-summary', "true")
    sysroot(
        "summary",
        f"--repo={src}",
        "-u",
        f"--gpg-sign={keys[0].long_id}",
        f"--gpg-homedir={keys[0].home}",
    )
    shown = ostree.out("remote", "summary", f"--repo={client}", "origin")
    assert 'Good signature from "alice <alice@example.com>"' in shown

    def check() -> str:
        with Repo.open(client) as c:
            sig = src / "summary.sig"
            return verify_summary(
                c,
                remotes.load_remote(c, "origin"),
                (src / "summary").read_bytes(),
                sig.read_bytes() if sig.exists() else None,
            )

    assert check() == f"GPG signature by key {keys[0].fpr}"
    assert "Latest Commit" in sysroot.out("remote", "summary", f"--repo={client}", "origin")
    # ostree's own signed summary verifies here too; a changed summary does not
    ostree(
        "summary",
        f"--repo={src}",
        "-u",
        f"--gpg-sign={keys[0].long_id}",
        f"--gpg-homedir={keys[0].home}",
    )
    assert check() == f"GPG signature by key {keys[0].fpr}"
    data = bytearray((src / "summary").read_bytes())
    data[-1] ^= 0x01
    (src / "summary").write_bytes(bytes(data))
    with pytest.raises(SignatureError, match="bad signature"):
        check()
    proc = sysroot("remote", "refs", f"--repo={client}", "origin", check=False)
    assert "bad signature" in one_error_line(proc)
    # ostree agrees (once its summary cache, keyed by the unchanged summary.sig, is gone)
    shutil.rmtree(client / "tmp/cache", ignore_errors=True)
    assert ostree("remote", "summary", f"--repo={client}", "origin", check=False).returncode != 0
    sysroot("summary", f"--repo={src}", "-u")  # regenerating drops the stale signature
    assert not (src / "summary.sig").exists()
    with pytest.raises(SignatureError, match="no signatures found"):
        check()
