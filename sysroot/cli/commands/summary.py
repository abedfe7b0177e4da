"""sysroot summary: regenerate or show the repository summary, like ostree summary."""

from __future__ import annotations

from sysroot.cli.common import summary_raw_text, summary_view_text
from sysroot.cli.main import add_repo_option, open_repo
from sysroot.errors import SysrootError, UsageError
from sysroot.formats.gvariant import Variant
from sysroot.formats.gvariant_text import parse_text
from sysroot.store import summary as summ


def register(sub) -> None:
    p = sub.add_parser("summary", help="Manage summary metadata")
    add_repo_option(p)
    p.add_argument("-u", "--update", action="store_true", help="Update the summary")
    # ostree's help lists -v for --view, but its global -v (verbose) wins: only --view
    p.add_argument("--view", action="store_true", help="View the local summary file")
    p.add_argument("--raw", action="store_true", help="Show raw variant data")
    p.add_argument(
        "-m",
        "--add-metadata",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Additional metadata field to add to the summary (GVariant text)",
    )
    p.add_argument(
        "--gpg-sign",
        action="append",
        default=[],
        metavar="KEY-ID",
        help="GPG Key ID to sign the summary with",
    )
    p.add_argument(
        "--gpg-homedir", metavar="HOMEDIR", help="GPG Homedir to use when looking for keyrings"
    )
    p.add_argument(
        "--sign",
        action="append",
        default=[],
        metavar="KEY-ID",
        help="Key ID to sign the summary with",
    )
    p.add_argument(
        "--sign-type",
        default="ed25519",
        metavar="NAME",
        help="Signature type to use (defaults to 'ed25519')",
    )
    p.set_defaults(func=run)


def _additional_metadata(items: list[str]) -> list[tuple[str, Variant]]:
    out = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"Missing '=' in KEY=VALUE metadata '{item}'")
        out.append((key, parse_text(text)))
    return out


def run(args) -> int:
    # as ostree 2022.7: -u updates (and signs, only then); else --view views; signing
    # options alone are "no option", and -u with --view does not view
    if not args.update and not args.view:
        raise SysrootError("No option specified; use -u to update summary")
    with open_repo(args) as repo:
        if args.update:
            _update(repo, args)
        elif args.raw:
            print(summary_raw_text(summ.read_summary_bytes(repo)), end="")
        else:
            print(summary_view_text(summ.read_summary(repo)), end="")
    return 0


def _update(repo, args) -> None:
    additional = _additional_metadata(args.add_metadata)
    secrets = _summary_secret_keys(args)  # bad keys fail before anything is written
    # ostree feeds -m entries through a GVariantDict too: a repeated key keeps its first
    # position and its last value
    summ.regenerate_summary(repo, dict(additional))
    if args.gpg_sign or args.sign:
        from sysroot.sign import commit as sign_commit

        # as ostree 2022.7: the ostree-metadata commit -u just wrote (with a collection
        # ID) is signed with the same keys as the summary
        metadata_commit = None
        if repo.config.get("core", "collection-id"):
            metadata_commit = repo.resolve_rev(summ.METADATA_REF, allow_noent=True)
        if args.gpg_sign:
            if metadata_commit:
                sign_commit.gpg_sign_commit(repo, metadata_commit, args.gpg_sign, args.gpg_homedir)
            sign_commit.gpg_sign_summary(repo, args.gpg_sign, args.gpg_homedir)
        if secrets and args.sign_type == "dummy":
            if metadata_commit:
                sign_commit.dummy_sign_commit(repo, metadata_commit, secrets)
            sign_commit.dummy_sign_summary(repo, secrets)
        elif secrets:
            if metadata_commit:
                sign_commit.ed25519_sign_commit(repo, metadata_commit, secrets)
            sign_commit.ed25519_sign_summary(repo, secrets)


def _summary_secret_keys(args) -> list[bytes]:
    if not args.sign:
        return []
    from sysroot.sign import dummy, ed25519

    if args.sign_type == dummy.NAME:
        # ostree's test engine: the key is the signature. Checked before -u writes
        # anything (ostree 2022.7 updates the summary first, then fails unsigned)
        dummy.require_enabled()
        return [dummy.key_bytes(k) for k in args.sign]
    if args.sign_type != ed25519.NAME:
        raise UsageError(f"Requested signature type is not implemented: {args.sign_type}")
    return [ed25519.parse_secret_key(k) for k in args.sign]
