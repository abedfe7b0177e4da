"""Signing commits and summaries: append signatures to their detached metadata."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence

from sysroot.errors import CorruptObjectError, NotFoundError
from sysroot.formats.objects import ObjectType
from sysroot.sign import detached, dummy, ed25519, gpg
from sysroot.store.repo import Repo


def commit_bytes(repo: Repo, checksum: str) -> bytes:
    """The exact bytes signatures are made over, checked against the commit's name."""
    data = repo.read_metadata(ObjectType.COMMIT, checksum)
    actual = hashlib.sha256(data).hexdigest()
    if actual != checksum:  # never sign (or bless) a damaged commit
        raise CorruptObjectError(checksum, "commit", f"content has checksum {actual}")
    return data


def _append_signatures(repo: Repo, checksum: str, key: str, sigs: Iterable[bytes]) -> None:
    """sigs appended under key to the commit's detached metadata (made before it is
    read, so a failing signer writes nothing)."""
    meta = detached.load_commitmeta(repo, checksum)
    for sig in sigs:
        meta = detached.append_signature(meta, key, sig)
    detached.write_commitmeta(repo, checksum, meta)


def _drop_signatures(repo: Repo, checksum: str, key: str, drop: Callable[[bytes], bool]) -> int:
    """The signatures under key for which drop() holds removed; how many were."""
    meta = detached.load_commitmeta(repo, checksum)
    sigs = detached.signatures(meta, key)
    keep = [sig for sig in sigs if not drop(sig)]
    if len(keep) != len(sigs):
        detached.write_commitmeta(repo, checksum, detached.with_signatures(meta, key, keep))
    return len(sigs) - len(keep)


def gpg_sign_commit(repo: Repo, checksum: str, key_ids: Sequence[str], homedir: str | None) -> None:
    data = commit_bytes(repo, checksum)
    sigs = [gpg.sign_detached(data, k, homedir) for k in key_ids]  # all before writing
    _append_signatures(repo, checksum, detached.KEY_GPG, sigs)


def gpg_delete_signatures(repo: Repo, checksum: str, key_ids: Sequence[str]) -> int:
    """Drop the GPG signatures made by any of key_ids; returns how many were dropped."""
    commit_bytes(repo, checksum)

    def made_by_one_of(sig: bytes) -> bool:
        issuer = gpg.signature_issuer(sig)
        return any(gpg.matches_key_id(k, issuer) for k in key_ids)

    return _drop_signatures(repo, checksum, detached.KEY_GPG, made_by_one_of)


def ed25519_sign_commit(repo: Repo, checksum: str, secrets: Sequence[bytes]) -> None:
    data = commit_bytes(repo, checksum)
    sigs = [ed25519.sign(data, secret) for secret in secrets]
    _append_signatures(repo, checksum, detached.KEY_ED25519, sigs)


def ed25519_delete_signatures(repo: Repo, checksum: str, publics: Sequence[bytes]) -> int:
    """Drop the ed25519 signatures that verify with any of publics."""
    data = commit_bytes(repo, checksum)

    def verifies(sig: bytes) -> bool:
        return len(sig) == ed25519.SIGNATURE_SIZE and any(
            ed25519.check(data, sig, k) for k in publics
        )

    return _drop_signatures(repo, checksum, detached.KEY_ED25519, verifies)


def ed25519_verify_commit(
    repo: Repo, checksum: str, publics: Sequence[bytes], revoked: Iterable[bytes] = ()
) -> tuple[bytes | None, str]:
    data = commit_bytes(repo, checksum)
    sigs = detached.signatures(detached.load_commitmeta(repo, checksum), detached.KEY_ED25519)
    if not sigs:
        return None, "no ed25519 signatures found"
    return ed25519.find_valid(data, sigs, publics, revoked)


def dummy_sign_commit(repo: Repo, checksum: str, keys: Sequence[bytes]) -> None:
    """Append a `dummy` signature (the key itself) per key, as ostree's tests do."""
    dummy.require_enabled()
    commit_bytes(repo, checksum)
    _append_signatures(repo, checksum, dummy.METADATA_KEY, keys)


def dummy_delete_signatures(repo: Repo, checksum: str, keys: Sequence[bytes]) -> int:
    """Drop the `dummy` signatures equal to any of keys."""
    commit_bytes(repo, checksum)
    return _drop_signatures(repo, checksum, dummy.METADATA_KEY, lambda sig: sig in keys)


def dummy_verify_commit(repo: Repo, checksum: str, keys: Sequence[bytes]) -> bytes | None:
    """The first of keys a `dummy` signature of the commit equals, or None."""
    commit_bytes(repo, checksum)
    sigs = detached.signatures(detached.load_commitmeta(repo, checksum), dummy.METADATA_KEY)
    return dummy.find_valid(sigs, keys)


def _summary_bytes(repo: Repo) -> bytes:
    try:
        with open(os.path.join(repo.path, "summary"), "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise NotFoundError(
            f"No summary file in repository {repo.path}", hint="generate one with 'summary -u'"
        ) from None


def _summary_meta(repo: Repo) -> detached.Metadata:
    return detached.parse(detached.read_summary_sig(repo), f"{repo.path}/summary.sig")


def gpg_sign_summary(repo: Repo, key_ids: Sequence[str], homedir: str | None) -> None:
    data = _summary_bytes(repo)
    sigs = [gpg.sign_detached(data, k, homedir) for k in key_ids]
    meta = _summary_meta(repo)
    for sig in sigs:
        meta = detached.append_signature(meta, detached.KEY_GPG, sig)
    detached.write_summary_sig(repo, meta)


def ed25519_sign_summary(repo: Repo, secrets: Sequence[bytes]) -> None:
    data = _summary_bytes(repo)
    meta = _summary_meta(repo)
    for secret in secrets:
        meta = detached.append_signature(meta, detached.KEY_ED25519, ed25519.sign(data, secret))
    detached.write_summary_sig(repo, meta)


def dummy_sign_summary(repo: Repo, keys: Sequence[bytes]) -> None:
    """Append a `dummy` signature (the key itself) per key to summary.sig, as ostree's
    `summary --sign-type=dummy` does; the summary must exist, as for the other engines."""
    dummy.require_enabled()
    _summary_bytes(repo)
    meta = _summary_meta(repo)
    for key in keys:
        meta = detached.append_signature(meta, dummy.METADATA_KEY, key)
    detached.write_summary_sig(repo, meta)
