"""Signing keys for tests: GPG keys in throw-away homes, and ed25519 key pairs.

The keys are made without the code under test: GPG keys by `gpg` itself, ed25519 pairs
by the `cryptography` package, so a test that checks our signatures does not trust our
key handling to make them.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class GpgKey:
    """One signing key, alone in its GPG home."""

    home: Path  # --homedir / --gpg-homedir (holds the secret key)
    fpr: str
    keyring: Path  # the exported public key, for `remote gpg-import -k`

    @property
    def long_id(self) -> str:
        return self.fpr[-16:]


def make_gpg_key(base: Path, name: str) -> GpgKey:
    """An ed25519 signing key for "NAME <NAME@example.com>", no passphrase, in base/NAME;
    its public key exported to base/NAME.gpg. Signing with it starts a gpg-agent: see
    stop_gpg_agents."""
    home = base / name
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch"]
    subprocess.run(
        [
            *gpg,
            "--passphrase",
            "",
            "--quick-gen-key",
            f"{name} <{name}@example.com>",
            "ed25519",
            "sign",
            "never",
        ],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [*gpg, "--with-colons", "--list-keys"], check=True, capture_output=True, text=True
    ).stdout
    fpr = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))
    keyring = base / f"{name}.gpg"
    keyring.write_bytes(subprocess.run([*gpg, "--export"], check=True, capture_output=True).stdout)
    return GpgKey(home, fpr, keyring)


def stop_gpg_agents(*keys: GpgKey) -> None:
    """Stop the agents gpg started for these keys' homes (they outlive the test)."""
    for key in keys:
        subprocess.run(["gpgconf", "--homedir", str(key.home), "--kill", "all"], check=False)


@contextmanager
def gpg_keys(base: Path, *names: str) -> Iterator[list[GpgKey]]:
    """make_gpg_key for each name; their agents stopped on the way out."""
    made = [make_gpg_key(base, name) for name in names]
    try:
        yield made
    finally:
        stop_gpg_agents(*made)


def new_ed25519_key() -> tuple[bytes, bytes]:
    """(secret, public): the secret in ostree's 64-byte form (seed, then public key)."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes_raw()
    return private.private_bytes_raw() + public, public


def b64(raw: bytes) -> str:
    """Base64 text, as ostree's ed25519 keys and key files are written."""
    return base64.b64encode(raw).decode()
