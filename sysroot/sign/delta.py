"""Signed static delta superblocks (`(taya{sv})`, shared/docs/static-deltas.md §2.6):
checking their `ostree.sign.<type>` signatures over the unsigned superblock bytes, as
`ostree static-delta verify` and `apply-offline KEY…` do."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sysroot.errors import SysrootError, UsageError
from sysroot.formats import delta_write
from sysroot.formats import static_delta as sd
from sysroot.sign import dummy, ed25519


def check_type(sign_type: str) -> None:
    if sign_type not in (dummy.NAME, ed25519.NAME):
        raise UsageError("Requested signature type is not implemented")


def verify(data: bytes, sign_type: str, keys: Sequence[str]) -> None:
    """Return if one of the superblock's signatures of sign_type verifies with one of
    keys; raise the reason otherwise (in ostree's words where it has them)."""
    check_type(sign_type)
    if not keys:
        raise UsageError("No keys given to verify the delta with")
    if sign_type == dummy.NAME and not dummy.enabled():
        raise SysrootError("dummy signature type is only for ostree testing")
    inner, sigdict = sd.unwrap_signed(data)
    if sigdict is None:
        raise SysrootError("no signatures in static-delta")
    v = sigdict.get(f"ostree.sign.{sign_type}")
    sigs = [bytes(s) for s in v.value] if v is not None and v.signature == "aay" else []
    if not sigs:
        raise SysrootError(f"signature: {sign_type}: no signatures found")
    if sign_type == dummy.NAME:
        if dummy.find_valid(sigs, [dummy.key_bytes(k) for k in keys]) is None:
            raise SysrootError(f"signature: dummy: incorrect signatures found: {len(sigs)}")
        return
    publics = [ed25519.parse_public_key(k) for k in keys]
    key, why = ed25519.find_valid(inner, sigs, publics)
    if key is None:
        raise SysrootError(f"signature: ed25519: {why}")


def signer(sign_type: str, keys: Sequence[str]) -> Callable[[bytes], bytes]:
    """A function wrapping an unsigned superblock into a signed one with one signature
    per key (generate --sign); keys are checked now, before anything is generated."""
    check_type(sign_type)
    if sign_type == dummy.NAME:
        dummy.require_enabled()
        raw = [dummy.key_bytes(k) for k in keys]

        def sign_all(data: bytes) -> list[bytes]:
            return list(raw)  # the dummy engine's "signature" is the key itself

    else:
        secrets = [ed25519.parse_secret_key(k) for k in keys]

        def sign_all(data: bytes) -> list[bytes]:
            return [ed25519.sign(data, s) for s in secrets]

    def sign(data: bytes) -> bytes:
        return delta_write.wrap_signed(data, sign_type, sign_all(data))

    return sign
