"""sysroot gpg-sign and sign: add, delete and check commit signatures, like ostree's."""

from __future__ import annotations

from sysroot.cli.main import add_repo_option, open_repo
from sysroot.errors import SysrootError, UsageError
from sysroot.sign import commit as signing
from sysroot.sign import dummy, ed25519


def register(sub) -> None:
    g = sub.add_parser("gpg-sign", help="Sign a commit")
    add_repo_option(g)
    g.add_argument(
        "-d",
        "--delete",
        action="store_true",
        help="Delete signatures having any of the GPG KEY-IDs",
    )
    g.add_argument(
        "--gpg-homedir", metavar="HOMEDIR", help="GPG Homedir to use when looking for keyrings"
    )
    g.add_argument("commit", nargs="?", metavar="COMMIT")
    g.add_argument("key_ids", nargs="*", metavar="KEY-ID")
    g.set_defaults(func=run_gpg_sign)

    s = sub.add_parser("sign", help="Sign a commit")
    add_repo_option(s)
    s.add_argument(
        "-d",
        "--delete",
        action="store_true",
        help="Delete signatures made by any of the (public) KEYs",
    )
    s.add_argument("--verify", action="store_true", help="Verify signatures")
    s.add_argument(
        "-s",
        "--sign-type",
        default=ed25519.NAME,
        metavar="NAME",
        help="Signature type to use (defaults to 'ed25519')",
    )
    s.add_argument(
        "--keys-file", metavar="FILE", help="Read key(s) from FILE, one base64 key per line"
    )
    s.add_argument(
        "--keys-dir",
        metavar="DIR",
        action="append",
        help="With --verify and no keys given: read trusted/revoked.ed25519 "
        "from DIR instead of /etc/ostree and /usr/share/ostree",
    )
    s.add_argument("commit", nargs="?", metavar="COMMIT")
    s.add_argument("keys", nargs="*", metavar="KEY")
    s.set_defaults(func=run_sign)


def run_gpg_sign(args) -> int:
    if args.commit is None:
        raise UsageError("Need a COMMIT to sign")
    if not args.key_ids:
        raise UsageError("Need at least one GPG KEY-ID to sign with")
    with open_repo(args) as repo:
        checksum = repo.resolve_rev(args.commit)
        if args.delete:
            n = signing.gpg_delete_signatures(repo, checksum, args.key_ids)
            print(f"Signatures deleted: {n}")
        else:
            signing.gpg_sign_commit(repo, checksum, args.key_ids, args.gpg_homedir)
    return 0


def _keys(args, parse) -> list[bytes]:
    keys = [parse(k) for k in args.keys]
    if args.keys_file is not None:
        keys += ed25519.read_keys_file(args.keys_file, parse)
    return keys


def run_sign(args) -> int:
    if args.commit is None:
        raise UsageError("Need a COMMIT to sign or verify")
    if args.sign_type == dummy.NAME:
        return _run_dummy(args)
    if args.sign_type != ed25519.NAME:
        raise UsageError(f"Requested signature type is not implemented: {args.sign_type}")
    public = args.verify or args.delete
    keys = _keys(args, ed25519.parse_public_key if public else ed25519.parse_secret_key)
    if not keys and not args.verify:
        raise UsageError("Need at least one KEY-ID to sign with")
    with open_repo(args) as repo:
        checksum = repo.resolve_rev(args.commit)
        if args.verify:
            trusted, revoked = ed25519.system_keys(args.keys_dir or ed25519.SYSTEM_KEY_DIRS)
            key, why = signing.ed25519_verify_commit(repo, checksum, keys or trusted, revoked)
            if key is None:
                raise SysrootError(f"No valid signatures found: {why}")
            print(
                f"{ed25519.NAME}: Signature verified successfully with key "
                f"'{ed25519.encode_key(key)}'"
            )
        elif args.delete:
            n = signing.ed25519_delete_signatures(repo, checksum, keys)
            print(f"Signatures deleted: {n}")
        else:
            signing.ed25519_sign_commit(repo, checksum, keys)
    return 0


def _run_dummy(args) -> int:
    """ostree's test engine: keys are words, the signature is the key (sign.dummy)."""
    keys = [dummy.key_bytes(k) for k in args.keys]
    if args.keys_file is not None:
        raise UsageError("--keys-file: the dummy signature type takes its keys as arguments")
    if not keys and args.verify:
        # ostree 2022.7 looks for key files this type cannot have ("not implemented")
        raise UsageError("--verify with the dummy signature type needs the KEYs to check")
    if not keys:
        raise UsageError("Need at least one KEY-ID to sign with")  # ostree's words
    with open_repo(args) as repo:
        checksum = repo.resolve_rev(args.commit)
        if args.verify:
            if signing.dummy_verify_commit(repo, checksum, keys) is None:
                raise SysrootError("No valid signatures found")
            print(f"{dummy.NAME}: Signature verified")
        elif args.delete:
            # ostree 2022.7 signs again here (its --delete is not wired up): deleted
            # instead, as for ed25519
            print(f"Signatures deleted: {signing.dummy_delete_signatures(repo, checksum, keys)}")
        else:
            signing.dummy_sign_commit(repo, checksum, keys)
    return 0
