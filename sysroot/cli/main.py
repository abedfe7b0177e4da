"""Entry point of the `sysroot` command: ostree's spelling over the library API.

Each module in sysroot/cli/commands/ registers its subcommands; this file only parses
global options, dispatches, and turns SysrootError into one line on stderr.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from sysroot.cli.refusals import REFUSED
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
# being run is imported, so start-up stays fast; --help and unknown names load none.
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
    "static-delta": "static_delta",
    "find-remotes": "refused",
    "create-usb": "refused",
}

# The commands as `sysroot --help` lists them, in the order the modules register them,
# with their help lines: the listing needs no command module, so `--help` imports none
# (start-up time). tests/cli/test_cli_main.py checks this against the modules' own.
_NO_COLLECTIONS = "Refused: " + REFUSED["find-remotes"]
COMMAND_HELP = (
    ("admin", "Manage deployments (like ostree admin)"),
    ("build", "Build disk images of a commit into a build directory"),
    ("checkout", "Check out a commit into a filesystem tree"),
    ("checksum", "Checksum a file or directory"),
    ("commit", "Commit a new revision"),
    ("config", "Change repo configuration settings"),
    ("diff", "Compare directory TARGETDIR against revision REV"),
    ("export", "Stream COMMIT to stdout in tar format"),
    ("fsck", "Check the repository for consistency"),
    ("init", "Initialize a new empty repository"),
    ("install", "Install a commit onto a disk, or the system files"),
    ("log", "Show log starting at commit or ref"),
    ("show", "Output a metadata object"),
    ("ls", "List file paths"),
    ("cat", "Concatenate contents of files"),
    ("osmet", "Read and write osmet files (packed disk images)"),
    ("prune", "Search for unreachable objects"),
    ("pull", "Download data from remote repository"),
    ("pull-local", "Copy data from SRC_REPO"),
    ("refs", "List refs, or create and delete them"),
    ("rev-parse", "Output the target of a rev"),
    ("find-remotes", _NO_COLLECTIONS),
    ("create-usb", _NO_COLLECTIONS),
    ("remote", "Remote commands that may involve internet access"),
    ("reset", "Reset a REF to a previous COMMIT"),
    ("gpg-sign", "Sign a commit"),
    ("sign", "Sign a commit"),
    ("static-delta", "Static delta related commands"),
    ("summary", "Manage summary metadata"),
)

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


def _top_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
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
    return parser, sub


def listing_parser() -> argparse.ArgumentParser:
    """The top parser with each command only named (COMMAND_HELP), none loaded: enough
    for `sysroot --help`, the usage, and refusing a command that does not exist."""
    parser, sub = _top_parser()
    for name, text in COMMAND_HELP:
        sub.add_parser(name, help=text)
    return parser


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with COMMAND's module loaded; every module's when COMMAND is None."""
    import sysroot.cli.commands as pkg

    parser, sub = _top_parser()
    if command in COMMAND_MODULES:
        names = [COMMAND_MODULES[command]]
    else:
        import pkgutil  # only here: a command being run does not need it

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


def permission_hint(error: OSError) -> str | None:
    """What to do about EACCES or EPERM when not root (issue 20): repositories of the
    system, sysroots, their locks and /boot belong to root, and the bare error names a
    path (`.../ostree/lock: Permission denied`) but not why."""
    if error.errno in (errno.EACCES, errno.EPERM) and os.geteuid() != 0:
        return "not running as root: run as root, or as the owner of the repository or sysroot"
    return None


def _configure_logging(verbose: bool) -> None:
    # logging is imported here, not at the top: it costs more start-up time than all
    # of --version or --help (issue 21), and only a command that runs logs anything
    import logging

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s: %(message)s"
    )


def _log_traceback() -> None:
    """The traceback of the exception being handled, for --verbose."""
    import logging

    _configure_logging(True)
    logging.exception("failed")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # -v/--verbose and --version are accepted by every ostree command, anywhere before "--"
    # (but a command of sysroot's own may define --version: `build create --version=V`)
    options = argv[: argv.index("--")] if "--" in argv else argv
    verbose = "--verbose" in options or "-v" in options
    argv = [a for a in options if a not in ("-v", "--verbose")] + argv[len(options) :]
    try:
        command = command_name(argv)
        # Without a command nothing else can own --version: print it before any parser
        # is built (start-up time; and the top parser's own --version would hide it).
        if "--version" in options and command is None:
            print(version_text())
            return 0
        # No known command: the listing serves (`--help`, the usage, an unknown name).
        parser = build_parser(command) if command in COMMAND_MODULES else listing_parser()
        if "--version" in options and "--version" not in _leaf(parser, argv)._option_string_actions:
            print(version_text())
            return 0
        args = parser.parse_args(hoist_options(parser, argv))
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        _configure_logging(verbose)
        rc = args.func(args)
        # in here, so that a reader gone early (`| head -1`) meets the handler below,
        # not the interpreter's flush at exit ("Exception ignored", exit 120)
        sys.stdout.flush()
        return 0 if rc is None else rc
    except BrokenPipeError:
        # stdout closed early (e.g. piped into head): no error, exit 0 as ostree does.
        # Before OSError, of which it is a subclass. stdout is pointed at /dev/null so
        # that the interpreter's own flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SysrootError as e:
        if verbose:
            _log_traceback()
        print(f"error: {e}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        if verbose:
            _log_traceback()
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        hint = permission_hint(e)
        if hint:
            print(f"hint: {hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
