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

import dataclasses
import os
import tempfile
from collections.abc import Callable, Sequence

from sysroot.errors import NotFoundError, SysrootError
from sysroot.formats.objects import ObjectType, is_checksum
from sysroot.sign import detached, dummy, ed25519, gpg
from sysroot.store.pull_local import resolve_pull_targets
from sysroot.store.remotes import SIGN_ENGINES, Remote, load_remote
from sysroot.store.repo import Repo
from sysroot.store.summary import Summary


class SignatureError(SysrootError):
    """A signature a remote requires is missing or does not verify."""


def _gpg_check(
    repo: Repo,
    remote: Remote,
    data: bytes,
    meta: detached.Metadata,
    what: str,
    gpg_homedir: str | None,
) -> str:
    checks = _gpg_checks(repo, remote, data, meta, what, gpg_homedir)
    return next(f"GPG signature by key {c.key_id}" for c in checks if c.valid)


def _gpg_checks(
    repo: Repo,
    remote: Remote,
    data: bytes,
    meta: detached.Metadata,
    what: str,
    gpg_homedir: str | None,
) -> list[gpg.SigCheck]:
    """Every signature's check; raises unless one is good."""
    sigs = detached.signatures(meta, detached.KEY_GPG)
    if not sigs:
        raise SignatureError(
            f"{what}: GPG verification enabled, but no signatures found "
            "(use gpg-verify=false in remote config to disable)"
        )
    with tempfile.TemporaryDirectory(prefix="sysroot-keyrings-") as work:
        try:
            keyrings = gpg.remote_keyrings(repo, remote, work, gpg_homedir=gpg_homedir)
        except SysrootError as e:
            raise SignatureError(f"{what}: {e}") from None
        checks = gpg.verify_signatures(data, sigs, keyrings)
    if any(c.valid for c in checks):
        return checks
    details = "; ".join(c.describe() for c in checks)
    raise SignatureError(
        f"{what}: GPG signatures found, but none are in trusted keyring ({details})"
    )


def _ed25519_keys(
    remote: Remote, required: bool, keys_dirs: Sequence[str]
) -> tuple[list[bytes], set[bytes]]:
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


def _sign_check(
    remote: Remote,
    engines: list[str],
    required_keys: bool,
    data: bytes,
    meta: detached.Metadata,
    what: str,
    keys_dirs: Sequence[str],
) -> str:
    reasons = []
    found = False
    for engine in engines:
        if engine == dummy.NAME:  # only when listed: `true` means ed25519, as in Debian's
            sigs = _dummy_signatures(remote, meta, what)
            if not sigs:
                continue
            found = True
            if dummy.find_valid(sigs, _dummy_keys(remote, what)) is not None:
                return "dummy signature"
            reasons.append(f"dummy: incorrect signatures found: {len(sigs)}")  # ostree's
            continue
        if engine not in SIGN_ENGINES:
            raise SignatureError(f"{what}: Requested signature type is not implemented: {engine}")
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
        raise SignatureError(
            f"{what}: signature verification enabled "
            f"({', '.join(engines)}), but no signatures found"
        )
    raise SignatureError(f"{what}: {reasons[0]}")


def _dummy_signatures(remote: Remote, meta: detached.Metadata, what: str) -> list[bytes]:
    if not dummy.enabled():
        raise SignatureError(f"{what}: dummy signature type is only for ostree testing")
    return detached.signatures(meta, dummy.METADATA_KEY)


def _dummy_keys(remote: Remote, what: str) -> list[bytes]:
    """The remote's verification-dummy-key; ostree reads no key files for this type."""
    if remote.option("verification-dummy-file") is not None:
        raise SignatureError(f"{what}: dummy: key files are not implemented")
    inline = remote.option("verification-dummy-key")
    if inline is None:
        raise SignatureError(f"{what}: No keys found for required signapi type dummy")
    return [dummy.key_bytes(inline)]


def _parse_meta(data: bytes | None, what: str) -> detached.Metadata:
    try:
        return detached.parse(data, what)
    except SysrootError as e:
        raise SignatureError(str(e)) from None


# what a remote requires: (gpg on?, sign engines, engines listed explicitly?)
_Required = tuple[bool, list[str], bool]


def _verify(
    repo: Repo,
    remote: Remote,
    what: str,
    data: bytes,
    sig_bytes: bytes | None,
    required: Callable[[Remote], _Required],
    keys_dirs: Sequence[str],
    gpg_homedir: str | None,
) -> str:
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


def verify_commit(
    repo: Repo,
    remote: Remote,
    checksum: str,
    commit_bytes: bytes,
    commitmeta_bytes: bytes | None,
    *,
    keys_dirs: Sequence[str] = ed25519.SYSTEM_KEY_DIRS,
    gpg_homedir: str | None = None,
) -> str:
    """Raise SignatureError unless the commit carries the signatures remote requires;
    returns what verified ("" when the remote requires nothing)."""
    return _verify(
        repo,
        remote,
        f'Commit {checksum} from remote "{remote.name}"',
        commit_bytes,
        commitmeta_bytes,
        lambda r: (r.gpg_verify, r.sign_verify, r.sign_verify_is_list),
        keys_dirs,
        gpg_homedir,
    )


def verify_summary(
    repo: Repo,
    remote: Remote,
    summary_bytes: bytes,
    sig_bytes: bytes | None,
    *,
    keys_dirs: Sequence[str] = ed25519.SYSTEM_KEY_DIRS,
    gpg_homedir: str | None = None,
) -> str:
    """The same for a remote's summary and its summary.sig."""

    def required(r: Remote) -> _Required:
        raw = (r.option("sign-verify-summary") or "").strip()
        return r.gpg_verify_summary, r.sign_verify_summary, raw not in ("true", "1")

    return _verify(
        repo,
        remote,
        f'Summary of remote "{remote.name}"',
        summary_bytes,
        sig_bytes,
        required,
        keys_dirs,
        gpg_homedir,
    )


# (repo, commit checksum, commit bytes, detached metadata bytes or None) -> what verified
CommitCheck = Callable[[Repo, str, bytes, bytes | None], str]


def commit_check(remote: Remote | None) -> CommitCheck | None:
    """The check a commit must pass to become a ref of remote, or None when the remote
    asks for no signatures (then nothing costs a round trip or a gpgv run)."""
    if remote is None or not (remote.gpg_verify or remote.sign_verify):
        return None
    return lambda repo, checksum, data, meta: verify_commit(repo, remote, checksum, data, meta)


def remote_commit_check(
    repo: Repo, name: str | None, *, sysroot: str | None = None
) -> CommitCheck | None:
    """commit_check of the remote called name in repo's configuration; None when there is
    no such remote (a ref name alone carries no policy)."""
    if not name:
        return None
    try:
        return commit_check(load_remote(repo, name, sysroot=sysroot))
    except NotFoundError:
        return None


def local_pull_check(
    dst: Repo,
    src: Repo,
    remote: str | None,
    refs: Sequence[str],
    *,
    force_gpg: bool = False,
    force_gpg_summary: bool = False,
) -> CommitCheck | None:
    """The check of `pull-local --remote=REMOTE` (and of a file:// remote): what dst's
    remote REMOTE requires (gpg-verify, sign-verify; force_gpg and force_gpg_summary:
    ostree's --gpg-verify and --gpg-verify-summary),
    once src's summary has passed the remote's summary policy, if it has one. So
    `--remote` cannot make an unsigned commit a ref of a remote that requires
    signatures (ostree 2022.7 checks only when asked with --gpg-verify). None when the
    remote is not configured or asks for nothing."""
    if not remote:
        return None
    try:
        config = load_remote(dst, remote)
    except NotFoundError:
        if force_gpg or force_gpg_summary:
            raise
        return None  # a remote that is not configured asks for nothing
    forced = {
        k: "true"
        for k, on in (("gpg-verify", force_gpg), ("gpg-verify-summary", force_gpg_summary))
        if on
    }
    config = dataclasses.replace(config, options={**config.options, **forced})
    targets = resolve_pull_targets(src, refs, remote)
    names = list(refs) or list(src.list_refs(include_remotes=False))
    verify_local_summary(
        dst,
        config,
        src.path,
        [(n, c) for n, (_, c) in zip(names, targets, strict=False) if not is_checksum(n)],
    )
    return commit_check(config)


def verify_stored_commit(
    repo: Repo, check: CommitCheck, checksum: str, commitmeta: bytes | None = None
) -> str:
    """Run check on a commit of repo with commitmeta, or when None the detached metadata
    stored beside the commit (as ostree falls back to it when a remote has none)."""
    data = repo.read_metadata(ObjectType.COMMIT, checksum)
    if commitmeta is None:
        try:
            commitmeta = repo.read_metadata(ObjectType.COMMIT_META, checksum)
        except NotFoundError:
            commitmeta = None
    return check(repo, checksum, data, commitmeta)


def verify_deployable(
    repo: Repo, refspec: str | None, checksum: str, *, sysroot: str | None = None
) -> None:
    """Refuse to deploy a commit that the remote of its origin's refspec would not have
    let become one of its refs (beyond ostree 2022.7, which deploys any local ref): a
    ref or commit that came in unverified (`refs --create`, an older pull, a policy
    turned on since) never boots. The stored detached metadata is what is checked."""
    if not refspec or ":" not in refspec:
        return
    check = remote_commit_check(repo, refspec.split(":", 1)[0], sysroot=sysroot)
    if check is not None:
        verify_stored_commit(repo, check, checksum)


def verify_local_summary(
    repo: Repo, remote: Remote, src_path: str, refs: Sequence[tuple[str, str]]
) -> None:
    """For a remote with gpg-verify-summary / sign-verify-summary, a local source (a
    file:// remote, pull-local --remote) must have a summary signed as the remote
    requires, and every ref taken from it (name, commit) must be the summary's: the
    signed summary is what vouches for the commits."""
    if not (remote.gpg_verify_summary or remote.sign_verify_summary):
        return
    files: dict[str, bytes | None] = {}
    for name in ("summary", "summary.sig"):
        try:
            with open(os.path.join(src_path, name), "rb") as f:
                files[name] = f.read()
        except FileNotFoundError:
            files[name] = None
    summary = files["summary"]
    if summary is None:
        raise SignatureError(
            f"Remote {remote.name} requires a signed summary, but {src_path}/summary does not exist"
        )
    verify_summary(repo, remote, summary, files["summary.sig"])
    heads = {r.name: r.checksum for r in Summary.parse(summary).refs}
    for name, checksum in refs:
        if heads.get(name, checksum) != checksum:
            raise SignatureError(
                f"Ref {name} of {src_path} is not the commit its signed "
                f'summary names ({heads[name]}) (remote "{remote.name}")'
            )


def describe_deployment_signatures(
    repo: Repo,
    remote: Remote,
    checksum: str,
    format_time: Callable[[int], str],
    *,
    keys_dirs: Sequence[str] = ed25519.SYSTEM_KEY_DIRS,
) -> list[str]:
    """What `ostree admin status -V` prints under a deployment of remote's commit
    checksum: the description of each GPG signature ("GPG: " lines, as gpgme's are
    described by ostree) and, for sign-verify, the engine's success message. Raises
    SignatureError (ostree's messages where it has them) when it does not verify."""
    if not remote.gpg_verify and not remote.sign_verify:
        raise SignatureError(
            f"Cannot verify commit for remote {remote.name}; GPG "
            "verification disabled, and no signapi verifiers configured"
        )
    try:
        meta_bytes = repo.read_metadata(ObjectType.COMMIT_META, checksum)
    except NotFoundError:
        raise SignatureError("Can't verify commit without detached metadata") from None
    data = repo.read_metadata(ObjectType.COMMIT, checksum)
    what = f'Commit {checksum} from remote "{remote.name}"'
    meta = _parse_meta(meta_bytes, what)
    lines = []
    if remote.gpg_verify:
        for c in _gpg_checks(repo, remote, data, meta, what, None):
            described = c.describe_lines(format_time)
            lines += [f"GPG: {ln}" for ln in described or [c.describe()]]
    if remote.sign_verify:
        done = _sign_check(
            remote, remote.sign_verify, remote.sign_verify_is_list, data, meta, what, keys_dirs
        )
        engine, _, key = done.partition(" signature by key ")
        lines.append(f"{engine}: Signature verified successfully with key '{key}'")
    return lines
