"""`remote gpg-list-keys` prints what ostree prints for the same keyrings: keys with
their user ids (and Web Key Directory URLs), subkeys, expiry dates."""

from __future__ import annotations

import hashlib
import subprocess

from sysroot.sign.gpg import wkd_urls, zbase32
from tests.helpers.keys import gpg_keys


def test_list_keys_as_ostree(ostree, sysroot, tmp_path):
    repo = tmp_path / "repo"
    ostree("init", f"--repo={repo}", "--mode=archive")
    ostree("remote", "add", f"--repo={repo}", "--no-gpg-verify", "o", "http://127.0.0.1:9/")
    ostree("remote", "add", f"--repo={repo}", "--no-gpg-verify", "empty", "http://127.0.0.1:9/")
    (tmp_path / "keys").mkdir()
    with gpg_keys(tmp_path / "keys", "alice", "bob") as (alice, bob):
        gpg = ["gpg", "--homedir", str(alice.home), "--batch", "--passphrase", ""]
        # a second user id (mixed case: the WKD part is lowercased) and an expiring subkey
        subprocess.run(
            [*gpg, "--quick-add-uid", alice.fpr, "Al Ice <Al.Ice@Example.ORG>"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*gpg, "--quick-add-key", alice.fpr, "cv25519", "encr", "1y"],
            check=True,
            capture_output=True,
        )
        alice.keyring.write_bytes(
            subprocess.run([*gpg, "--export"], check=True, capture_output=True).stdout
        )
        for key in (alice, bob):
            ostree("remote", "gpg-import", f"--repo={repo}", "o", "-k", key.keyring)
    for name in ("o", "empty"):
        a = ostree("remote", "gpg-list-keys", f"--repo={repo}", name)
        b = sysroot("remote", "gpg-list-keys", f"--repo={repo}", name)
        assert b.stdout == a.stdout
    assert a.stdout == b""  # "empty" has no keys
    out = sysroot.out("remote", "gpg-list-keys", f"--repo={repo}", "o")
    assert out.count("Key: ") == 2 and "Subkey: " in out and "Expires: " in out
    a = ostree("remote", "gpg-list-keys", f"--repo={repo}", "nosuch", check=False)
    b = sysroot("remote", "gpg-list-keys", f"--repo={repo}", "nosuch", check=False)
    assert a.returncode == b.returncode == 1 and b.stderr == a.stderr


def test_wkd_hash():
    # the Web Key Directory's z-base-32 of SHA-1 of the lowercased local part
    assert zbase32(hashlib.sha1(b"test").digest()) == "iffe93qcsgp4c8ncbb378rxjo6cn9q6u"
    assert wkd_urls("Two <Two.Names@Example.org>") == (
        "https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/"
        "bp76tx6fzt3pzpcxdfmy4uteozdze719?l=two.names",
        "https://example.org/.well-known/openpgpkey/hu/bp76tx6fzt3pzpcxdfmy4uteozdze719"
        "?l=two.names",
    )
    assert wkd_urls("No Mail Here") is None
