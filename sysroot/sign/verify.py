"""What a remote requires of a commit or summary before it is accepted, and the check.

As in ostree: `gpg-verify` (default true) requires a good GPG signature in the commit's
detached metadata; `sign-verify` requires a good signature from one of the listed
engines (`true` = any engine this build has, keys optional: the system's trusted keys
are used when the remote names none; an explicit list requires the remote's
`verification-ENGINE-key`/`verification-ENGINE-file`). When both are on, both must pass.
Summaries: `gpg-verify-summary` (default false) and `sign-verify-summary`, against
`summary.sig`. Keys listed in the system's revoked.ed25519 files never verify.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence

from sysroot.errors import SysrootError
from sysroot.pull.remotes import SIGN_ENGINES, Remote
from sysroot.sign import detached, ed25519, gpg


class SignatureError(SysrootError):
    """A signature a remote requires is missing or does not verify."""


def _gpg_check(repo, remote: Remote, data: bytes, meta: detached.Metadata, what: str,
               gpg_homedir: str | None) -> str:
    sigs = detached.signatures(meta, detached.KEY_GPG)
    if not sigs:
        raise SignatureError(f"{what}: GPG verification enabled, but no signatures found "
                             "(use gpg-verify=false in remote config to disable)")
    with tempfile.TemporaryDirectory(prefix="sysroot-keyrings-") as work:
        try:
            keyrings = gpg.remote_keyrings(repo, remote, work, gpg_homedir=gpg_homedir)
        except SysrootError as e:
            raise SignatureError(f"{what}: {e}") from None
        checks = gpg.verify_signatures(data, sigs, keyrings)
    for c in checks:
        if c.valid:
            return f"GPG signature by key {c.key_id}"
    details = "; ".join(c.describe() for c in checks)
    raise SignatureError(f"{what}: GPG signatures found, but none are in trusted keyring "
                         f"({details})")


def _ed25519_keys(remote: Remote, required: bool,
                  keys_dirs: Sequence[str]) -> tuple[list[bytes], set[bytes]]:
    trusted: list[bytes] = []
    path = remote.option("verification-ed25519-file")
    inline = remote.option("verification-ed25519-key")
    if path is not None:
        trusted += ed25519.read_keys_file(path)
    if inline is not None:
        trusted.append(ed25519.parse_public_key(inline))
    system_trusted, revoked = ed25519.system_keys(keys_dirs)
    if path is None and inline is None:
        if required:
            raise SysrootError("No keys found for required signapi type ed25519")
        trusted = system_trusted
    return trusted, revoked


def _sign_check(remote: Remote, engines: list[str], required_keys: bool, data: bytes,
                meta: detached.Metadata, what: str, keys_dirs: Sequence[str]) -> str:
    reasons = []
    found = False
    for engine in engines:
        if engine not in SIGN_ENGINES:
            raise SignatureError(f"{what}: Requested signature type is not implemented: "
                                 f"{engine}")
        try:
            trusted, revoked = _ed25519_keys(remote, required_keys, keys_dirs)
        except SysrootError as e:
            raise SignatureError(f"{what}: {e}") from None
        sigs = detached.signatures(meta, detached.KEY_ED25519)
        if not sigs:
            continue
        found = True
        key, why = ed25519.find_valid(data, sigs, trusted, revoked)
        if key is not None:
            return f"ed25519 signature by key {ed25519.encode_key(key)}"
        reasons.append(why)
    if not found:
        raise SignatureError(f"{what}: signature verification enabled "
                             f"({', '.join(engines)}), but no signatures found")
    raise SignatureError(f"{what}: {reasons[0]}")


def _parse_meta(data: bytes | None, what: str) -> detached.Metadata:
    try:
        return detached.parse(data, what)
    except SysrootError as e:
        raise SignatureError(str(e)) from None


def _verify(repo, remote: Remote, what: str, data: bytes, sig_bytes: bytes | None,
            required, keys_dirs: Sequence[str], gpg_homedir: str | None) -> str:
    """required(remote) -> (gpg on?, engines, explicit engine list?) names what to check."""
    try:
        use_gpg, engines, explicit = required(remote)
    except SysrootError as e:
        raise SignatureError(f"{what}: {e}") from None
    if not use_gpg and not engines:
        return ""
    meta = _parse_meta(sig_bytes, what)
    done = []
    if use_gpg:
        done.append(_gpg_check(repo, remote, data, meta, what, gpg_homedir))
    if engines:
        done.append(_sign_check(remote, engines, explicit, data, meta, what, keys_dirs))
    return "; ".join(done)


def verify_commit(repo, remote: Remote, checksum: str, commit_bytes: bytes,
                  commitmeta_bytes: bytes | None, *,
                  keys_dirs: Sequence[str] = ed25519.SYSTEM_KEY_DIRS,
                  gpg_homedir: str | None = None) -> str:
    """Raise SignatureError unless the commit carries the signatures remote requires;
    returns what verified ("" when the remote requires nothing)."""
    return _verify(repo, remote, f'Commit {checksum} from remote "{remote.name}"',
                   commit_bytes, commitmeta_bytes,
                   lambda r: (r.gpg_verify, r.sign_verify, r.sign_verify_is_list),
                   keys_dirs, gpg_homedir)


def verify_summary(repo, remote: Remote, summary_bytes: bytes, sig_bytes: bytes | None, *,
                   keys_dirs: Sequence[str] = ed25519.SYSTEM_KEY_DIRS,
                   gpg_homedir: str | None = None) -> str:
    """The same for a remote's summary and its summary.sig."""
    def required(r: Remote):
        raw = (r.option("sign-verify-summary") or "").strip()
        return r.gpg_verify_summary, r.sign_verify_summary, raw not in ("true", "1")

    return _verify(repo, remote, f'Summary of remote "{remote.name}"', summary_bytes,
                   sig_bytes, required, keys_dirs, gpg_homedir)
