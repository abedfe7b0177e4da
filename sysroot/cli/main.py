"""Entry point of the `sysroot` command: ostree's spelling over the library API.

Each module in sysroot/cli/commands/ registers its subcommands; this file only parses
global options, dispatches, and turns SysrootError into one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

from sysroot.errors import SysrootError, UsageError

GLOBAL_HELP = "Manage OSTree-compatible repositories and image-based OS deployments."

# What `--version` lists under Features: only what sysroot really does (README, "Options").
FEATURES = (
    "http-pull",  # pull over http(s):// and file:// (urllib3, not libcurl or libsoup)
    "gpg",  # signatures through the gpg and gpgv programs (not gpgme)
    "sign-ed25519",  # ostree's ed25519 commit and summary signatures
    "systemd",  # staged deployments finalized by a unit, records in the journal
    "greenboot",  # admin health: greenboot-compatible boot checks
    "install-to-disk",
    "osmet",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other usage error
        raise UsageError(f"{self.prog}: {message}")


def add_repo_option(parser: argparse.ArgumentParser) -> None:
    """--repo=PATH, accepted after the subcommand too (ostree allows both places)."""
    parser.add_argument(
        "--repo",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="Path to the OSTree repository (default: $OSTREE_REPO)",
    )


# Command name -> its module in sysroot/cli/commands/. Only the module of the command
# being run is imported, so start-up stays fast; --help and unknown names load all.
COMMAND_MODULES = {
    "admin": "admin",
    "build": "build",
    "cat": "ls_cat",
    "checkout": "checkout",
    "checksum": "checksum",
    "commit": "commit",
    "config": "config",
    "diff": "diff",
    "export": "export",
    "fsck": "fsck",
    "init": "init",
    "install": "install",
    "log": "log_show",
    "osmet": "osmet",
    "ls": "ls_cat",
    "prune": "prune",
    "pull": "pull",
    "pull-local": "pull_local",
    "refs": "refs",
    "rev-parse": "refs",
    "show": "log_show",
    "summary": "summary",
    "remote": "remote",
    "reset": "reset",
    "gpg-sign": "sign",
    "sign": "sign",
    "static-delta": "refused",
    "find-remotes": "refused",
    "create-usb": "refused",
}

# Module -> modules holding more of its verbs: after the module's register() returns its
# subparsers, each of these adds its own there with register_verbs(). Wired here so that
# no command module imports another (tests/test_lint.py checks that).
NESTED_COMMAND_MODULES = {"admin": ("admin_upgrade", "health")}


def command_name(argv: list[str]) -> str | None:
    """The subcommand of argv: the first word that is neither an option nor its value."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--repo":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


# Options whose value may stand as the next word (`--repo PATH`); the rest take `=VALUE`.
_VALUE_OPTIONS = frozenset({"--repo", "--sysroot", "--os", "--stateroot"})


def _verbs(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return None


def _leaf(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The parser of the command argv names (the top one when it names none)."""
    node, verbs = parser, _verbs(parser)
    for word in argv:
        if word == "--" or verbs is None:
            break
        if word.startswith("-") or word not in verbs:
            continue
        node = verbs[word]
        verbs = _verbs(node)
    return node


def hoist_options(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """argv with the options that stand between a command group and its verb moved
    after the verb: ostree parses `admin --sysroot=PATH status` with the options of
    `status`, and installer scripts write it so; argparse would give them to `admin`.
    Options before the first word stay where they are (the global ones)."""
    out: list[str] = []
    pending: list[str] = []
    verbs = _verbs(parser)
    i = 0
    while i < len(argv) and verbs is not None:
        word = argv[i]
        if word == "--":
            break
        if word.startswith("-") and word != "-":
            taken = argv[i : i + 2] if word in _VALUE_OPTIONS else argv[i : i + 1]
            (pending if out else out).extend(taken)
            i += len(taken)
            continue
        out.append(word)
        i += 1
        sub = verbs.get(word)
        verbs = _verbs(sub) if sub is not None else None
    return out + pending + argv[i:]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="sysroot", description=GLOBAL_HELP)
    parser.add_argument(
        "--repo",
        metavar="PATH",
        default=None,
        help="Path to the OSTree repository (default: $OSTREE_REPO)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="Print debug information and tracebacks"
    )
    parser.add_argument("--version", action="store_true", help="Print version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    import sysroot.cli.commands as pkg

    if command in COMMAND_MODULES:
        names = [COMMAND_MODULES[command]]
    else:
        names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__))
    for name in names:
        verbs = importlib.import_module(f"{pkg.__name__}.{name}").register(sub)
        for nested in NESTED_COMMAND_MODULES.get(name, ()):
            importlib.import_module(f"{pkg.__name__}.{nested}").register_verbs(verbs)
    return parser


def open_repo(args):
    """The repository named by --repo or $OSTREE_REPO."""
    from sysroot.store.repo import Repo

    return Repo.open(getattr(args, "repo", None))


def version_text() -> str:
    """`--version` in the shape of `ostree --version` (scripts grep `Version:`)."""
    from sysroot import __version__

    return "\n".join(
        ["sysroot:", f" Version: '{__version__}'", " Features:", *(f"  - {f}" for f in FEATURES)]
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # -v/--verbose and --version are accepted by every ostree command, anywhere before "--"
    # (but a command of sysroot's own may define --version: `build create --version=V`)
    options = argv[: argv.index("--")] if "--" in argv else argv
    verbose = "--verbose" in options or "-v" in options
    argv = [a for a in options if a not in ("-v", "--verbose")] + argv[len(options) :]
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s: %(message)s"
    )
    try:
        command = command_name(argv)
        # Without a command nothing else can own --version: print it before any parser
        # is built (start-up time; and the top parser's own --version would hide it).
        if "--version" in options and command is None:
            print(version_text())
            return 0
        parser = build_parser(command)
        if "--version" in options and "--version" not in _leaf(parser, argv)._option_string_actions:
            print(version_text())
            return 0
        args = parser.parse_args(hoist_options(parser, argv))
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        rc = args.func(args)
        return 0 if rc is None else rc
    except SysrootError as e:
        if verbose:
            logging.exception("failed")
        print(f"error: {e}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        if verbose:
            logging.exception("failed")
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout closed early (e.g. piped into head): not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
