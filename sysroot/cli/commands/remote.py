"""sysroot remote: add, delete, list and show remotes and import their GPG keys, with
ostree remote's options and output."""

from __future__ import annotations

import os
import sys

from sysroot.cli.common import summary_raw_text, summary_view_text
from sysroot.cli.main import add_repo_option, open_repo
from sysroot.errors import SysrootError, UsageError
from sysroot.sign import dummy, ed25519
from sysroot.store import remotes


def _subparser(sub, name: str, help: str, func):
    p = sub.add_parser(name, help=help)
    add_repo_option(p)
    p.set_defaults(func=func)
    return p


def register(sub) -> None:
    p = sub.add_parser("remote", help="Remote commands that may involve internet access")
    rsub = p.add_subparsers(dest="remote_command", metavar="COMMAND", parser_class=type(p))

    a = _subparser(rsub, "add", "Add a remote repository", run_add)
    a.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Set config option KEY=VALUE for remote",
    )
    a.add_argument("--no-gpg-verify", action="store_true", help="Disable GPG verification")
    a.add_argument("--no-sign-verify", action="store_true", help="Disable signature verification")
    a.add_argument(
        "--sign-verify",
        action="append",
        default=[],
        metavar="KEYTYPE=[inline|file]:PUBKEY",
        help="Verify signatures using KEYTYPE=inline:PUBKEY or KEYTYPE=file:/path/to/key",
    )
    a.add_argument(
        "--if-not-exists", action="store_true", help="Do nothing if the provided remote exists"
    )
    a.add_argument("--force", action="store_true", help="Replace the provided remote if it exists")
    a.add_argument("--gpg-import", metavar="FILE", help="Import GPG key from FILE")
    a.add_argument(
        "--custom-backend", metavar="NAME", help="This remote has content not fetched via libostree"
    )
    a.add_argument("--contenturl", metavar="URL", help="Use URL when fetching content")
    a.add_argument(
        "--collection-id",
        metavar="COLLECTION-ID",
        help="Globally unique ID for this repository as an collection of refs",
    )
    a.add_argument("--sysroot", metavar="PATH", help="Use sysroot at PATH (overrides --repo)")
    a.add_argument("name", nargs="?", metavar="NAME")
    a.add_argument("url", nargs="?", metavar="URL")
    a.add_argument("branches", nargs="*", metavar="BRANCH")

    d = _subparser(rsub, "delete", "Delete a remote repository", run_delete)
    d.add_argument(
        "--if-exists", action="store_true", help="Do nothing if the provided remote does not exist"
    )
    d.add_argument("--sysroot", metavar="PATH", help="Use sysroot at PATH (overrides --repo)")
    d.add_argument("name", metavar="NAME")

    s = _subparser(rsub, "show-url", "Show remote repository URL", run_show_url)
    s.add_argument("name", metavar="NAME")

    ls = _subparser(rsub, "list", "List remote repository names", run_list)
    ls.add_argument("-u", "--show-urls", action="store_true", help="Show remote URLs in list")

    g = _subparser(rsub, "gpg-import", "Import GPG keys", run_gpg_import)
    g.add_argument(
        "-k",
        "--keyring",
        action="append",
        default=[],
        metavar="FILE",
        help="Import keys from a keyring file (repeatable)",
    )
    g.add_argument("--stdin", action="store_true", help="Import keys from standard input")
    g.add_argument("name", metavar="NAME")
    g.add_argument("key_ids", nargs="*", metavar="KEY-ID")

    rf = _subparser(rsub, "refs", "List remote refs", run_refs)
    rf.add_argument("name", metavar="NAME")
    sm = _subparser(rsub, "summary", "Show remote summary", run_summary)
    sm.add_argument("name", metavar="NAME")
    sm.add_argument("--raw", action="store_true", help="Show raw variant data")
    for cmd in (rf, sm):  # ostree keeps a summary cache there; sysroot fetches afresh
        cmd.add_argument("--cache-dir", metavar="DIR", help="Accepted for compatibility; unused")

    ac = _subparser(rsub, "add-cookie", "Add a cookie to remote", run_add_cookie)
    dc = _subparser(rsub, "delete-cookie", "Remove one cookie from remote", run_delete_cookie)
    for cmd in (ac, dc):
        for word in ("name", "domain", "path", "cookie_name"):
            cmd.add_argument(word, metavar=word.upper())
    ac.add_argument("value", metavar="VALUE")
    lc = _subparser(rsub, "list-cookies", "Show remote cookies", run_list_cookies)
    lc.add_argument("name", metavar="NAME")
    gl = _subparser(rsub, "gpg-list-keys", "Show remote GPG keys", run_gpg_list_keys)
    gl.add_argument("name", metavar="NAME")
    p.set_defaults(func=lambda args: _no_subcommand(p))


def _no_subcommand(parser) -> int:
    parser.print_help(sys.stderr)
    raise UsageError('No "remote" subcommand specified')


def _open(args):
    """The repository: --sysroot's (ostree/repo inside it) or --repo's."""
    from sysroot.store.repo import Repo

    sysroot = getattr(args, "sysroot", None)
    if sysroot is not None:
        if not os.path.isdir(os.path.join(sysroot, "ostree", "repo")):
            raise SysrootError(f"Sysroot {sysroot}: no ostree/repo inside it")
        return Repo.open(os.path.join(sysroot, "ostree", "repo")), sysroot
    return open_repo(args), None


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep:
        raise UsageError("Missing '=' in KEY=VALUE for --set")
    remotes.validate_option_key(key)
    return key, value


def _sign_verify_options(items: list[str]) -> list[tuple[str, str]]:
    """--sign-verify=ENGINE=inline:KEY|ENGINE=file:PATH as ostree stores it."""
    out = []
    engines = []
    for item in items:
        engine, sep, ref = item.partition("=")
        if not sep:
            raise UsageError(f"Failed to parse KEYTYPE=[inline|file]:DATA in {item}")
        if engine not in remotes.SIGN_ENGINES and engine != dummy.NAME:
            raise UsageError(f"Requested signature type is not implemented: {engine}")
        kind, sep, data = ref.partition(":")
        if not sep or kind not in ("inline", "file"):
            raise UsageError(f"Invalid key reference {kind}, expected inline|file")
        if kind == "inline":
            if engine == ed25519.NAME:  # a dummy key is any word
                ed25519.parse_public_key(data)
            out.append((f"verification-{engine}-key", data))
        else:
            if not data:
                raise UsageError(f"Empty key file name in --sign-verify={item}")
            out.append((f"verification-{engine}-file", data))
        engines.append(engine)
    if engines:
        out.append(("sign-verify", ",".join(engines)))  # ostree joins with commas
    return out


def run_add(args) -> int:
    if args.url is None:
        raise UsageError("NAME and URL must be specified")
    if args.sign_verify and args.no_sign_verify:
        raise UsageError("Cannot specify both --sign-verify and --no-sign-verify")
    # the order ostree builds its option dictionary in: the keys come out in it
    options: dict[str, str] = {}
    if args.contenturl is not None:
        options["contenturl"] = args.contenturl
    if args.custom_backend is not None:
        options["custom-backend"] = args.custom_backend
    for item in args.set:
        key, value = _key_value(item)
        options[key] = value
    if args.no_gpg_verify or args.no_sign_verify:
        options["gpg-verify"] = "false"
    for key, value in _sign_verify_options(args.sign_verify):
        options[key] = value
    if args.no_sign_verify:
        options["sign-verify"] = "false"
    if args.collection_id is not None:
        options["collection-id"] = args.collection_id
    key_data = None
    if args.gpg_import is not None:
        key_data = _read_file(args.gpg_import)  # before changing anything
    repo, sysroot = _open(args)
    with repo:
        remotes.add_remote(
            repo,
            args.name,
            args.url,
            options=options,
            branches=args.branches,
            if_not_exists=args.if_not_exists,
            force=args.force,
            sysroot=sysroot,
        )
        if key_data is not None:
            from sysroot.sign import gpg

            n = gpg.import_keys(repo, args.name, [key_data])
            _print_imported(n, args.name)
    return 0


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise SysrootError(f"Error opening file {path}: {e.strerror}") from None


def _print_imported(n: int, name: str) -> None:
    print(f'Imported {n} GPG key{"" if n == 1 else "s"} to remote "{name}"')


def run_delete(args) -> int:
    repo, sysroot = _open(args)
    with repo:
        remotes.delete_remote(repo, args.name, if_exists=args.if_exists, sysroot=sysroot)
    return 0


def _url(remote: remotes.Remote) -> str:
    if not remote.url:
        raise SysrootError(f'No "url" option in remote "{remote.name}"')
    return remote.url


def run_show_url(args) -> int:
    with open_repo(args) as repo:
        print(_url(remotes.load_remote(repo, args.name)))
    return 0


def run_list(args) -> int:
    with open_repo(args) as repo:
        found = remotes.list_remotes(repo)
    if args.show_urls:
        width = max((len(r.name.encode()) for r in found), default=0)
        for r in found:  # like ostree: the lines before a remote without url are printed
            print(f"{r.name:<{width}}  {_url(r)}", flush=True)
    else:
        for r in found:
            print(r.name)
    return 0


def run_gpg_import(args) -> int:
    from sysroot.sign import gpg

    sources = [_read_file(k) for k in args.keyring]
    if args.stdin:
        sources.append(sys.stdin.buffer.read())
    with open_repo(args) as repo:
        remote = remotes.load_remote(repo, args.name)
        try:
            n = gpg.import_keys(repo, remote.name, sources or None, args.key_ids)
        except SysrootError as e:
            raise SysrootError(f"GPG: {e}".replace("GPG: GPG: ", "GPG: ")) from None
    _print_imported(n, args.name)
    return 0


def _fetch_summary(args, missing: str):
    """The remote's summary, fetched and checked as its config requires."""
    from sysroot.pull import metalink, mirrorlist
    from sysroot.pull.fetch import Fetcher
    from sysroot.pull.pull import fetch_options
    from sysroot.sign.verify import verify_summary
    from sysroot.store.summary import Summary

    with open_repo(args) as repo:
        remote = remotes.load_remote(repo, args.name)
        # the options pull uses (client certificate, timeouts, size bound...), not a copy
        options = fetch_options(remote, repo=repo)
        link = remote.option("metalink") if not remote.url else None
        data: bytes | None
        if link:  # as a pull: the summary the metalink vouches for, its directory the url
            base, data = metalink.resolve(metalink.PREFIX + link, options)
            with Fetcher(base, options) as fetcher:
                sig = fetcher.get_optional("summary.sig")
        else:
            # as a pull: a mirrorlist's mirrors asked in turn for each file
            with mirrorlist.open_fetcher(_url(remote), options) as fetcher:
                sig = fetcher.get_optional("summary.sig")
                data = fetcher.get_optional("summary")
        if data is None:
            raise SysrootError(missing)
        verify_summary(repo, remote, data, sig)
    try:
        return remote, Summary.parse(data), data
    except SysrootError as e:
        raise SysrootError(f'Summary of remote "{remote.name}": {e}') from None


def run_refs(args) -> int:
    remote, summary, _ = _fetch_summary(
        args, "Remote refs not available; server has no summary file"
    )
    for ref in summary.refs:
        print(f"{remote.name}:{ref.name}")
    return 0


def run_summary(args) -> int:
    _, summary, data = _fetch_summary(args, "Remote server has no summary file")
    if args.raw:
        print(summary_raw_text(data), end="")
    else:
        print(summary_view_text(summary), end="")
    return 0


# ------------------------------------------------------------------ cookies
# ostree checks neither that the remote exists nor prints anything for list-cookies
# (its curl back end in 2022.7); sysroot refuses an unknown remote and lists the jar.


def run_add_cookie(args) -> int:
    from sysroot.store.cookies import add_cookie

    with open_repo(args) as repo:
        remotes.load_remote(repo, args.name)
        add_cookie(repo, args.name, args.domain, args.path, args.cookie_name, args.value)
    return 0


def run_delete_cookie(args) -> int:
    from sysroot.store.cookies import delete_cookie

    with open_repo(args) as repo:
        remotes.load_remote(repo, args.name)
        delete_cookie(repo, args.name, args.domain, args.path, args.cookie_name)
    return 0


def run_list_cookies(args) -> int:
    import time

    from sysroot.store.cookies import jar_path, read_jar

    with open_repo(args) as repo:
        remotes.load_remote(repo, args.name)
        for c in read_jar(jar_path(repo, args.name)):
            expires = (
                time.strftime("%Y-%m-%d %H:%M:%S +0000", time.gmtime(c.expires))
                if c.expires
                else "at the end of the session"
            )
            print(f"--\nDomain: {c.domain}\nPath: {c.path}\nName: {c.name}")
            print(f"Value: {c.value}\nExpires: {expires}")
    return 0


def run_gpg_list_keys(args) -> int:
    """The keys a remote's signatures are checked against, as ostree prints them."""
    import time

    from sysroot.sign.gpg import remote_keys, wkd_urls

    def when(t: int) -> str:
        # GLib's %c: a one-digit day is padded with U+2007 FIGURE SPACE, not a space
        lt = time.localtime(t)
        day = f"\u2007{lt.tm_mday}" if lt.tm_mday < 10 else str(lt.tm_mday)
        return time.strftime(f"%a %b {day} %H:%M:%S %Y", lt)

    with open_repo(args) as repo:
        remote = remotes.load_remote(repo, args.name)
        for key in remote_keys(repo, remote):
            print(f"Key: {key.fingerprint}\n  Created: {when(key.created)}")
            if key.expires:
                print(f"  Expires: {when(key.expires)}")
            for uid in key.uids:
                print(f"  UID: {uid}")
                urls = wkd_urls(uid)
                if urls:
                    print(f"  Advanced update URL: {urls[0]}\n  Direct update URL: {urls[1]}")
            for sub in key.subkeys:
                print(f"  Subkey: {sub.fingerprint}\n    Created: {when(sub.created)}")
                if sub.expires:
                    print(f"    Expires: {when(sub.expires)}")
    return 0
