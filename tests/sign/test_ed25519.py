"""ed25519 signatures. Debian's ostree is built without ed25519, so these check the
format's facts (RFC 8032, raw 64-byte signatures over the exact .commit bytes in
`ostree.sign.ed25519`) and that ostree still reads everything we write."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sysroot.errors import UsageError
from sysroot.formats import gvariant
from sysroot.sign import detached, ed25519
from sysroot.sign.verify import SignatureError, verify_commit, verify_summary
from sysroot.store import remotes
from sysroot.store.repo import Repo
from tests.conftest import one_error_line
from tests.helpers.keys import b64, new_ed25519_key

# RFC 8032, section 7.1, TEST 1 (empty message)
RFC_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
    "1cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


@pytest.mark.unit
def test_rfc8032_vector_and_key_formats():
    secret = ed25519.parse_secret_key(b64(RFC_SEED + RFC_PUBLIC))
    assert ed25519.sign(b"", secret) == RFC_SIGNATURE
    assert ed25519.check(b"", RFC_SIGNATURE, ed25519.parse_public_key(b64(RFC_PUBLIC)))
    assert not ed25519.check(b"x", RFC_SIGNATURE, RFC_PUBLIC)
    flipped = bytes([RFC_SIGNATURE[0] ^ 1]) + RFC_SIGNATURE[1:]
    assert ed25519.find_valid(b"", [flipped], [RFC_PUBLIC])[0] is None
    assert ed25519.find_valid(b"", [flipped, RFC_SIGNATURE], [RFC_PUBLIC])[0] == RFC_PUBLIC
    assert ed25519.find_valid(b"", [RFC_SIGNATURE], [RFC_PUBLIC], [RFC_PUBLIC])[0] is None
    assert "length" in ed25519.find_valid(b"", [RFC_SIGNATURE[:63]], [RFC_PUBLIC])[1]
    for bad in ("***", b64(RFC_SEED), b64(RFC_SEED + bytes(32))):
        with pytest.raises(UsageError):
            ed25519.parse_secret_key(bad)
    with pytest.raises(UsageError, match="expected 32"):
        ed25519.parse_public_key(b64(RFC_SEED + RFC_PUBLIC))


@pytest.fixture
def repo_commit(tmp_path, ostree):
    repo = tmp_path / "repo"
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "file").write_text("signed\n")
    ostree("init", f"--repo={repo}", "--mode=archive")
    checksum = ostree.out(
        "commit", f"--repo={repo}", "-b", "main", f"--tree=dir={tree}", "-s", "subject"
    )
    return repo, checksum


def _commitmeta(repo: Path, checksum: str) -> Path:
    return repo / "objects" / checksum[:2] / f"{checksum[2:]}.commitmeta"


def test_sign_commit_format(repo_commit, ostree, sysroot, tmp_path):
    repo, checksum = repo_commit
    (s1, p1), (s2, p2) = new_ed25519_key(), new_ed25519_key()
    keys_file = tmp_path / "secret.keys"
    keys_file.write_text(b64(s2) + "\n")
    sysroot("sign", f"--repo={repo}", checksum, b64(s1))
    sysroot("sign", f"--repo={repo}", f"--keys-file={keys_file}", checksum)
    meta = gvariant.decode("a{sv}", _commitmeta(repo, checksum).read_bytes())
    sigs = meta["ostree.sign.ed25519"]
    assert sigs.signature == "aay" and [len(s) for s in sigs.value] == [64, 64]
    commit = (repo / "objects" / checksum[:2] / f"{checksum[2:]}.commit").read_bytes()
    for sig, pub in zip(sigs.value, (p1, p2), strict=True):
        Ed25519PublicKey.from_public_bytes(pub).verify(bytes(sig), commit)  # raises if bad
    assert (
        sysroot.out("sign", f"--repo={repo}", "--verify", checksum, b64(p2))
        == f"ed25519: Signature verified successfully with key '{b64(p2)}'"
    )
    # ostree reads the detached metadata we wrote without complaint
    ostree("fsck", f"--repo={repo}")
    assert "subject" in ostree.out("show", f"--repo={repo}", checksum)
    assert (
        sysroot.out("sign", f"--repo={repo}", "--delete", checksum, b64(p1))
        == "Signatures deleted: 1"
    )
    proc = sysroot("sign", f"--repo={repo}", "--verify", checksum, b64(p1), check=False)
    assert "No valid signatures found" in one_error_line(proc)


def _remote(repo: Path, sysroot, *args: str) -> remotes.Remote:
    sysroot("remote", "add", f"--repo={repo}", "--force", *args, "origin", "http://o.example/")
    with Repo.open(repo) as r:
        return remotes.load_remote(r, "origin")


def _inline(public: bytes) -> str:
    return f"--sign-verify=ed25519=inline:{b64(public)}"


def _check(repo: Path, checksum: str, remote: remotes.Remote, **kw) -> str:
    with Repo.open(repo) as r:
        commit = r.read_metadata(detached.ObjectType.COMMIT, checksum)
        return verify_commit(
            r, remote, checksum, commit, detached.read_commitmeta(r, checksum), **kw
        )


def test_remote_sign_verify(repo_commit, sysroot, tmp_path):
    repo, checksum = repo_commit
    (secret, public), (_, other) = new_ed25519_key(), new_ed25519_key()
    inline = _remote(repo, sysroot, "--no-gpg-verify", _inline(public))
    with pytest.raises(SignatureError, match="no signatures found"):
        _check(repo, checksum, inline)
    sysroot("sign", f"--repo={repo}", checksum, b64(secret))
    assert _check(repo, checksum, inline) == f"ed25519 signature by key {b64(public)}"
    keyfile = tmp_path / "trusted"
    keyfile.write_text(f"{b64(other)}\n\n{b64(public)}\n")
    from_file = _remote(repo, sysroot, "--no-gpg-verify", f"--sign-verify=ed25519=file:{keyfile}")
    assert _check(repo, checksum, from_file) == f"ed25519 signature by key {b64(public)}"
    wrong = _remote(repo, sysroot, "--no-gpg-verify", _inline(other))
    with pytest.raises(SignatureError, match="no valid ed25519 signatures") as err:
        _check(repo, checksum, wrong)
    assert checksum in str(err.value) and '"origin"' in str(err.value)
    # sign-verify=true without keys: the system's trusted keys, minus the revoked ones
    system = tmp_path / "etc-ostree"
    (system / "trusted.ed25519.d").mkdir(parents=True)
    (system / "trusted.ed25519.d/vendor").write_text(b64(public) + "\n")
    any_engine = _remote(repo, sysroot, "--no-gpg-verify", "--set=sign-verify=true")
    assert _check(repo, checksum, any_engine, keys_dirs=[str(system)]) != ""
    (system / "revoked.ed25519").write_text(b64(public) + "\n")
    with pytest.raises(SignatureError, match="revoked"):
        _check(repo, checksum, any_engine, keys_dirs=[str(system)])
    # an explicit engine list needs the remote's own keys
    listed = _remote(repo, sysroot, "--no-gpg-verify", "--set=sign-verify=ed25519;")
    with pytest.raises(SignatureError, match="No keys found for required signapi type"):
        _check(repo, checksum, listed, keys_dirs=[str(system)])
    # gpg-verify stays on by default: both kinds are then required
    both = _remote(repo, sysroot, _inline(public))
    with pytest.raises(SignatureError, match="GPG verification enabled, but no signatures"):
        _check(repo, checksum, both)


def test_flipped_signature_fails(repo_commit, sysroot):
    repo, checksum = repo_commit
    secret, public = new_ed25519_key()
    sysroot("sign", f"--repo={repo}", checksum, b64(secret))
    with Repo.open(repo) as r:
        meta = detached.load_commitmeta(r, checksum)
        sig = bytearray(detached.signatures(meta, detached.KEY_ED25519)[0])
        sig[10] ^= 0x80
        detached.write_commitmeta(
            r, checksum, detached.with_signatures(meta, detached.KEY_ED25519, [bytes(sig)])
        )
    remote = _remote(repo, sysroot, "--no-gpg-verify", _inline(public))
    with pytest.raises(SignatureError, match="no valid ed25519 signatures"):
        _check(repo, checksum, remote)
    proc = sysroot("sign", f"--repo={repo}", "--verify", checksum, b64(public), check=False)
    assert "No valid signatures found" in one_error_line(proc)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["COMMIT", "not-base64!"], "not base64"),
        (["COMMIT", b64(bytes(32))], "expected 64"),
        (["--sign-type=rsa", "COMMIT", b64(bytes(64))], "not implemented"),
        (["--keys-file=/nonexistent", "COMMIT"], "no such file"),
        (["COMMIT"], "Need at least one KEY-ID"),
    ],
)
def test_bad_sign_input_changes_nothing(repo_commit, sysroot, args, message):
    repo, checksum = repo_commit
    argv = [checksum if a == "COMMIT" else a for a in args]
    proc = sysroot("sign", f"--repo={repo}", *argv, check=False)
    assert message in one_error_line(proc)
    assert not _commitmeta(repo, checksum).exists()


def test_summary_sign(repo_commit, ostree, sysroot, tmp_path):
    repo, _ = repo_commit
    secret, public = new_ed25519_key()
    sysroot("summary", f"--repo={repo}", "-u", f"--sign={b64(secret)}")
    summary = (repo / "summary").read_bytes()
    meta = gvariant.decode("a{sv}", (repo / "summary.sig").read_bytes())
    (sig,) = meta["ostree.sign.ed25519"].value
    Ed25519PublicKey.from_public_bytes(public).verify(bytes(sig), summary)
    client = tmp_path / "client"
    ostree("init", f"--repo={client}")
    # ostree (built without ed25519) still reads the summary.sig we wrote
    ostree("remote", "add", f"--repo={client}", "--no-gpg-verify", "plain", f"file://{repo}")
    assert "Latest Commit" in ostree.out("remote", "summary", f"--repo={client}", "plain")
    ostree(
        "remote",
        "add",
        f"--repo={client}",
        "--no-gpg-verify",
        "--set=sign-verify-summary=ed25519",
        f"--set=verification-ed25519-key={b64(public)}",
        "origin",
        f"file://{repo}",
    )
    with Repo.open(client) as c:
        remote = remotes.load_remote(c, "origin")
        sig_bytes = (repo / "summary.sig").read_bytes()
        assert (
            verify_summary(c, remote, summary, sig_bytes)
            == f"ed25519 signature by key {b64(public)}"
        )
        with pytest.raises(SignatureError, match="no valid ed25519"):
            verify_summary(c, remote, summary + b"x", sig_bytes)
        with pytest.raises(SignatureError, match="no signatures found"):
            verify_summary(c, remote, summary, None)
    proc = sysroot("summary", f"--repo={repo}", "-u", "--sign=bad", check=False)
    assert "not base64" in one_error_line(proc)
