"""GPG signatures through the real `gpg` and `gpgv`: never a hand-written OpenPGP parser.

* signing: `gpg --detach-sign` (binary) with the key from a GnuPG home directory;
* verifying: `gpgv` once per signature, against the keyrings ostree uses for a remote:
  `$repo/NAME.trustedkeys.gpg` (written by `remote gpg-import`), the files named by the
  remote's `gpgkeypath` option, and the global directory (`$OSTREE_GPG_HOME`, else
  `/usr/share/ostree/trusted.gpg.d/`, its `*.gpg` files);
* importing: keys go through a throw-away GnuPG home into a plain OpenPGP keyring file.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sysroot.errors import SysrootError
from sysroot.store.remotes import Remote, keyring_path
from sysroot.store.repo import Repo
from sysroot.util import fsutil
from sysroot.util.run import Completed, run

GLOBAL_KEYRING_DIR = "/usr/share/ostree/trusted.gpg.d/"
_NOT_KEYRINGS = ("trustdb.gpg", "secring.gpg")


def _gpg(
    homedir: str | None, *args: str, input: bytes | None = None, check: bool = True
) -> Completed:
    argv = ["gpg", "--batch", "--no-tty"]
    if homedir is not None:
        argv += ["--homedir", homedir]
    return run(argv + list(args), input=input, check=check)


def _private_dir(parent: str, name: str) -> str:
    path = os.path.join(parent, name)
    os.mkdir(path, 0o700)  # gpg warns about (and may refuse) a group-readable home
    return path


# ------------------------------------------------------------------ signing


def sign_detached(data: bytes, key_id: str, homedir: str | None) -> bytes:
    """A binary detached signature of data made with key_id's secret key."""
    probe = _gpg(homedir, "--with-colons", "--list-secret-keys", "--", key_id, check=False)
    if probe.returncode != 0:
        raise SysrootError(f"No gpg key found with ID {key_id} (homedir: {homedir or 'default'})")
    return _gpg(
        homedir, "--local-user", key_id, "--detach-sign", "--output", "-", input=data
    ).stdout


def signature_issuer(sig: bytes) -> tuple[str | None, str | None]:
    """(long key ID, fingerprint) of a signature's issuer, as `gpg --list-packets` reads it."""
    with tempfile.TemporaryDirectory(prefix="sysroot-gpg-") as tmp:
        home = _private_dir(tmp, "home")
        out = _gpg(home, "--no-autostart", "--list-packets", input=sig, check=False).stdout.decode(
            errors="replace"
        )
    keyid = re.search(r"^:signature packet: .*keyid ([0-9A-Fa-f]+)", out, re.M)
    fpr = re.search(r"issuer fpr v\d ([0-9A-Fa-f]+)", out)
    return (keyid.group(1).upper() if keyid else None, fpr.group(1).upper() if fpr else None)


def matches_key_id(key_id: str, issuer: tuple[str | None, str | None]) -> bool:
    """Whether a user-given key ID (short, long or fingerprint) names the issuer."""
    want = key_id.upper().removeprefix("0X")
    return any(x is not None and x.endswith(want) for x in issuer) if want else False


# ------------------------------------------------------------------ verifying


# OpenPGP public-key algorithm numbers as gpgme names them (gpgme_pubkey_algo_name)
_ALGO_NAMES = {
    "1": "RSA",
    "2": "RSA-E",
    "3": "RSA-S",
    "16": "ELG-E",
    "17": "DSA",
    "18": "ECDH",
    "19": "ECDSA",
    "20": "ELG",
    "22": "EdDSA",
}


@dataclass(frozen=True)
class SigCheck:
    valid: bool
    key_id: str  # fingerprint when known, else the long key ID
    user_id: str
    problem: str  # "" when valid
    # what ostree's signature description shows (0 / "" when gpgv did not say)
    created: int = 0
    algo: str = ""
    expires: int = 0
    primary: str = ""  # the primary key's fingerprint

    def describe(self) -> str:
        if self.valid:
            who = f' from "{self.user_id}"' if self.user_id else ""
            return f"Good signature{who} by key {self.key_id}"
        return f"key {self.key_id or 'unknown'}: {self.problem}"

    def describe_lines(self, format_time: Callable[[int], str]) -> list[str] | None:
        """The lines ostree_gpg_verify_result_describe writes (without its prefix), for
        a good signature or one whose key is missing; None for other failures.
        format_time(unix seconds) -> GLib's %c in local time."""
        if not self.created:
            return None
        made = (
            f"Signature made {format_time(self.created)} using "
            f"{_ALGO_NAMES.get(self.algo, 'unknown')} key ID {self.key_id[-16:]}"
        )
        if not self.valid:
            if self.problem != "public key not found":
                return None
            return [made, "Can't check signature: public key not found"]
        lines = [made, f'Good signature from "{self.user_id}"']
        if self.primary and self.primary != self.key_id:
            lines.append(f"Primary key ID {self.primary[-16:]}")
        if self.expires:
            lines.append(f"Signature expires {format_time(self.expires)}")
        return lines


def _int(fields: list[str], i: int) -> int:
    try:
        return int(fields[i]) if "T" not in fields[i] else 0  # ISO dates: not seen here
    except (IndexError, ValueError):
        return 0


def _parse_status(text: str) -> SigCheck:
    status: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("[GNUPG:] "):
            word, _, rest = line[9:].partition(" ")
            status.setdefault(word, rest.split(" "))
    key = (
        status.get("VALIDSIG")
        or status.get("ERRSIG")
        or status.get("BADSIG")
        or status.get("GOODSIG")
        or [""]
    )[0]
    for word in ("GOODSIG", "BADSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG"):
        if word in status:
            user = " ".join(status[word][1:])
            break
    else:
        user = ""
    if "GOODSIG" in status and "VALIDSIG" in status:
        # VALIDSIG fpr date created expires version 0 pk-algo hash-algo class primary-fpr
        v = status["VALIDSIG"]
        return SigCheck(
            True,
            v[0],
            user,
            "",
            created=_int(v, 2),
            algo=v[6] if len(v) > 6 else "",
            expires=_int(v, 3),
            primary=v[9] if len(v) > 9 else "",
        )
    for word, problem in (
        ("BADSIG", "bad signature"),
        ("EXPKEYSIG", "key expired"),
        ("REVKEYSIG", "key revoked"),
        ("EXPSIG", "signature expired"),
    ):
        if word in status:
            return SigCheck(False, key, user, problem)
    if "ERRSIG" in status:
        # ERRSIG keyid pk-algo hash-algo class created rc [fpr]
        e = status["ERRSIG"]
        missing = "NO_PUBKEY" in status or e[5:6] == ["9"]
        return SigCheck(
            False,
            key,
            "",
            "public key not found" if missing else "signature cannot be checked",
            created=_int(e, 4),
            algo=e[1] if len(e) > 1 else "",
        )
    return SigCheck(False, "", "", "not a valid OpenPGP signature")


def verify_signatures(
    data: bytes, sigs: Sequence[bytes], keyrings: Sequence[str]
) -> list[SigCheck]:
    """Check every signature of data against the keyrings, one gpgv run each."""
    with tempfile.TemporaryDirectory(prefix="sysroot-gpgv-") as tmp:
        home = _private_dir(tmp, "home")
        data_path = os.path.join(tmp, "data")
        with open(data_path, "wb") as f:
            f.write(data)
        argv = ["gpgv", "--homedir", home, "--status-fd", "1"]
        for k in keyrings:
            argv += ["--keyring", os.path.abspath(k)]
        out = []
        for i, sig in enumerate(sigs):
            sig_path = os.path.join(tmp, f"sig{i}")
            with open(sig_path, "wb") as f:
                f.write(sig)
            proc = run(argv + [sig_path, data_path], check=False)
            check = _parse_status(proc.stdout.decode(errors="replace"))
            if check.valid and proc.returncode != 0:
                check = SigCheck(
                    False, check.key_id, check.user_id, f"gpgv exited with status {proc.returncode}"
                )
            out.append(check)
        return out


def _keyring_files(directory: str) -> list[str]:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    return [
        e.path
        for e in entries
        if e.is_file() and e.name.endswith(".gpg") and e.name not in _NOT_KEYRINGS
    ]


def _as_keyring(path: str, workdir: str, n: int) -> str:
    """gpgkeypath files are usually ASCII-armored keys: gpgv wants binary keyrings."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        raise SysrootError(f"GPG key file {path} (gpgkeypath) does not exist") from None
    if not head.lstrip().startswith(b"-----BEGIN PGP"):
        return path
    out = os.path.join(workdir, f"gpgkeypath-{n}.gpg")
    home = os.path.join(workdir, "dearmor-home")
    if not os.path.isdir(home):
        _private_dir(workdir, "dearmor-home")
    _gpg(home, "--no-autostart", "--yes", "--output", out, "--dearmor", path)
    return out


def remote_keyrings(
    repo: Repo, remote: Remote, workdir: str, *, gpg_homedir: str | None = None
) -> list[str]:
    """The keyrings ostree trusts for remote, in the order it adds them."""
    out = own_keyrings(repo, remote, workdir)
    if gpg_homedir is not None:
        out += _keyring_files(gpg_homedir)
        kbx = os.path.join(gpg_homedir, "pubring.kbx")
        if os.path.isfile(kbx):
            out.append(kbx)
    out += _keyring_files(os.environ.get("OSTREE_GPG_HOME") or GLOBAL_KEYRING_DIR)
    return out


def own_keyrings(repo: Repo, remote: Remote, workdir: str) -> list[str]:
    """The remote's own keyrings: `remote gpg-import`'s, then its gpgkeypath files."""
    out = []
    own = keyring_path(repo, remote.name)
    if os.path.isfile(own):
        out.append(own)
    paths = [p.strip() for p in (remote.option("gpgkeypath") or "").split(";") if p.strip()]
    for path in paths:
        files = (
            sorted(e.path for e in os.scandir(path) if e.is_file())
            if os.path.isdir(path)
            else [path]
        )
        out += [_as_keyring(f, workdir, len(out)) for f in files]
    return out


# ------------------------------------------------------------------ importing


def import_keys(
    repo: Repo,
    remote_name: str,
    sources: Sequence[bytes] | None,
    key_ids: Sequence[str] = (),
    *,
    homedir: str | None = None,
) -> int:
    """Add keys to the remote's keyring; returns how many were new, as ostree counts.

    sources: key data (armored or binary keyrings) to take keys from; None means the
    keys of the GnuPG home `homedir` (the user's default one when None).
    """
    target = keyring_path(repo, remote_name)
    with tempfile.TemporaryDirectory(prefix="sysroot-gpg-") as tmp:
        if sources is None:
            source_home = homedir
        else:
            source_home = _private_dir(tmp, "source")
            for data in sources:
                _gpg(source_home, "--no-autostart", "--import", input=data)
        exported = _gpg(source_home, "--no-autostart", "--export", "--", *key_ids).stdout
        if not exported:
            raise SysrootError("GPG: Unable to export keys: no matching keys found")
        # an existing (possibly empty) pubring.gpg makes gpg keep a plain OpenPGP
        # keyring instead of creating a keybox: the format ostree's keyrings have
        target_home = _private_dir(tmp, "target")
        ring = os.path.join(target_home, "pubring.gpg")
        try:
            with open(target, "rb") as f:
                current = f.read()
        except FileNotFoundError:
            current = b""
        with open(ring, "wb") as f:
            f.write(current)
        status = _gpg(
            target_home, "--no-autostart", "--status-fd", "1", "--import", input=exported
        ).stdout.decode(errors="replace")
        m = re.search(r"^\[GNUPG:\] IMPORT_RES \d+ \d+ (\d+)", status, re.M)
        with open(ring, "rb") as f:
            new = f.read()
    if new != current:
        fsutil.atomic_write(target, new, mode=0o644, fsync=repo.fsync_enabled)
    return int(m.group(1)) if m else 0


# ------------------------------------------------------------------ listing


@dataclass(frozen=True)
class SubKey:
    fingerprint: str
    created: int
    expires: int | None


@dataclass(frozen=True)
class KeyInfo:
    """A public key as `remote gpg-list-keys` shows it."""

    fingerprint: str
    created: int
    expires: int | None
    uids: tuple[str, ...]
    subkeys: tuple[SubKey, ...]


def _colon_field(text: str) -> str:
    """A field of gpg's colon listing: `\\xNN` escapes decoded."""
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def parse_key_listing(listing: str) -> list[KeyInfo]:
    """Keys from `gpg --with-colons --show-keys`: pub, its fpr, uids, subs and theirs."""
    keys: list[KeyInfo] = []
    current: dict | None = None
    pending: dict | None = None  # the pub or sub whose fpr comes next

    def finish() -> None:
        if current is not None:
            keys.append(
                KeyInfo(
                    current["fpr"],
                    current["created"],
                    current["expires"],
                    tuple(current["uids"]),
                    tuple(SubKey(s["fpr"], s["created"], s["expires"]) for s in current["subs"]),
                )
            )

    for line in listing.splitlines():
        f = line.split(":")
        kind = f[0]
        if kind in ("pub", "sub"):
            record = {
                "fpr": "",
                "created": int(f[5] or 0),
                "expires": int(f[6]) if f[6] else None,
            }
            if kind == "pub":
                finish()
                current = {**record, "uids": [], "subs": []}
            elif current is not None:
                current["subs"].append(record)
            pending = current if kind == "pub" else record
        elif kind == "fpr" and pending is not None:
            pending["fpr"] = f[9]
            pending = None
        elif kind == "uid" and current is not None:
            current["uids"].append(_colon_field(f[9]))
    finish()
    return keys


def remote_keys(repo: Repo, remote: Remote) -> list[KeyInfo]:
    """The keys of remote's own keyring and its gpgkeypath files, as ostree lists them."""
    out: list[KeyInfo] = []
    with tempfile.TemporaryDirectory(prefix="sysroot-gpg-") as tmp:
        home = _private_dir(tmp, "list-home")
        for ring in own_keyrings(repo, remote, tmp):
            listing = _gpg(
                home, "--no-autostart", "--with-colons", "--show-keys", ring, check=False
            ).stdout.decode(errors="replace")
            out += parse_key_listing(listing)
    return out


_ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"


def zbase32(data: bytes) -> str:
    bits = int.from_bytes(data, "big")
    n = len(data) * 8
    pad = (-n) % 5
    bits <<= pad
    return "".join(_ZBASE32[(bits >> s) & 31] for s in range(n + pad - 5, -1, -5))


def wkd_urls(uid: str) -> tuple[str, str] | None:
    """(advanced, direct) Web Key Directory URLs of the uid's mail address, if any."""
    m = re.search(r"<([^<>@\s]+)@([^<>@\s]+)>\s*$", uid) or re.fullmatch(
        r"\s*([^<>@\s]+)@([^<>@\s]+)\s*", uid
    )
    if m is None:
        return None
    local, domain = m.group(1).lower(), m.group(2).lower()
    digest = zbase32(hashlib.sha1(local.encode()).digest())
    advanced = f"https://openpgpkey.{domain}/.well-known/openpgpkey/{domain}/hu/{digest}?l={local}"
    direct = f"https://{domain}/.well-known/openpgpkey/hu/{digest}?l={local}"
    return advanced, direct
