"""ed25519 signatures, in ostree's formats.

* keys are base64 strings: a public key is 32 bytes, a secret key 64 bytes
  (libsodium's layout: 32-byte seed followed by the 32-byte public key);
* a signature is 64 raw bytes over the exact bytes of the signed object, stored as one
  element of the `ostree.sign.ed25519` (`aay`) entry of the detached metadata;
* key files hold one base64 key per line; the system's trusted and revoked keys live in
  `trusted.ed25519`, `trusted.ed25519.d/*`, `revoked.ed25519`, `revoked.ed25519.d/*`
  under `/etc/ostree` and `/usr/share/ostree`.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Iterable, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from sysroot.errors import SysrootError, UsageError

NAME = "ed25519"
PUBLIC_KEY_SIZE = 32
SECRET_KEY_SIZE = 64
SIGNATURE_SIZE = 64
SYSTEM_KEY_DIRS = ("/etc/ostree", "/usr/share/ostree")


def _decode(text: str, size: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"Invalid {what} '{text}': not base64") from None
    if len(raw) != size:
        raise UsageError(f"Invalid {what} '{text}': {len(raw)} bytes, expected {size}")
    return raw


def encode_key(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def parse_public_key(text: str) -> bytes:
    return _decode(text, PUBLIC_KEY_SIZE, "ed25519 public key")


def public_from_seed(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()


def parse_secret_key(text: str) -> bytes:
    raw = _decode(text, SECRET_KEY_SIZE, "ed25519 secret key")
    if public_from_seed(raw[:32]) != raw[32:]:
        raise UsageError(
            f"Invalid ed25519 secret key '{text[:8]}…': its second half is "
            "not the public key of its seed"
        )
    return raw


def generate_secret_key() -> bytes:
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    return seed + public_from_seed(seed)


def sign(data: bytes, secret: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(secret[:32]).sign(data)


def check(data: bytes, sig: bytes, public: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(sig, data)
        return True
    except InvalidSignature:
        return False


def read_keys_file(path: str, parse: Callable[[str], bytes] = parse_public_key) -> list[bytes]:
    """One base64 key per line (blank lines skipped); a bad line names file and line."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise SysrootError(f"Key file {path}: no such file") from None
    except IsADirectoryError:
        raise SysrootError(f"Key file {path}: is a directory") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(parse(line))
        except UsageError as e:
            raise UsageError(f"{path}:{n}: {e}") from None
    return out


def _files(base: str, kind: str) -> list[str]:
    single = os.path.join(base, f"{kind}.ed25519")
    files = [single] if os.path.isfile(single) else []
    d = os.path.join(base, f"{kind}.ed25519.d")
    if os.path.isdir(d):
        files += sorted(e.path for e in os.scandir(d) if e.is_file())
    return files


def system_keys(dirs: Iterable[str] = SYSTEM_KEY_DIRS) -> tuple[list[bytes], set[bytes]]:
    """(trusted public keys, revoked public keys) from the well-known files."""
    trusted: list[bytes] = []
    revoked: set[bytes] = set()
    for base in dirs:
        for path in _files(base, "trusted"):
            trusted += read_keys_file(path)
        for path in _files(base, "revoked"):
            revoked.update(read_keys_file(path))
    return trusted, revoked


def find_valid(
    data: bytes, sigs: Sequence[bytes], trusted: Sequence[bytes], revoked: Iterable[bytes] = ()
) -> tuple[bytes | None, str]:
    """(the trusted key one of sigs verifies with, "") or (None, why not)."""
    for sig in sigs:
        if len(sig) != SIGNATURE_SIZE:
            return None, (
                f"Invalid ed25519 signature length of {len(sig)} bytes, expected {SIGNATURE_SIZE}"
            )
    revoked = set(revoked)
    usable = [k for k in trusted if k not in revoked]
    if not usable:
        why = (
            "all trusted ed25519 keys are revoked"
            if trusted
            else "no ed25519 public keys to verify with"
        )
        return None, why
    for sig in sigs:
        for key in usable:
            if check(data, sig, key):
                return key, ""
    return None, (
        f"no valid ed25519 signatures found ({len(sigs)} signature(s), "
        f"{len(usable)} trusted key(s))"
    )
