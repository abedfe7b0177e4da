"""Man pages from the parser: sysroot(1), and sysroot-COMMAND(1) for each command with
its verbs as sections. Run at build time (`python3 -m sysroot.cli.manpage DIR`); the
output depends on nothing but the parser and the version, so builds are reproducible.
"""

from __future__ import annotations

import os
import sys

from sysroot import __version__
from sysroot.cli.clitree import Command, Option, command_tree
from sysroot.util import fsutil

_SEE_ALSO = "ostree(1), ostree-admin(1)"


def _text(text: str) -> str:
    """text as roff: backslashes and hyphens escaped, no line taken for a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(
        "\\&" + line if line.startswith((".", "'")) else line for line in text.splitlines()
    )


def _option(opt: Option) -> str:
    flags = (
        ", ".join(f"\\fB{_text(f)}\\fR" for f in opt.flags) or f"\\fI{_text(opt.metavar or '')}\\fR"
    )
    if opt.flags and opt.metavar:
        flags += f" \\fI{_text(opt.metavar)}\\fR"
    return f".TP\n{flags}\n{_text(opt.help)}"


def _options(options: tuple[Option, ...]) -> list[str]:
    return [_option(o) for o in options if o.flags != ("-h", "--help")]


def _arguments(arguments: tuple[Option, ...]) -> list[str]:
    """The positional arguments that say more than their name (the rest are in the
    synopsis)."""
    return [_option(a) for a in arguments if a.help]


def _verb_section(verb: Command, level: str) -> list[str]:
    out = [f'.{level} "{_text(verb.name)}"', _text(verb.description), ".PP", _text(verb.usage)]
    out += _arguments(verb.arguments)
    out += _options(verb.options)
    for sub in verb.commands:
        out += _verb_section(sub, "SS")
    return out


def page(command: Command) -> str:
    """The man page of command (sysroot itself, or one of its commands)."""
    title = "-".join(("sysroot", *command.path))
    lines = [
        f'.TH "{title.upper()}" "1" "" "sysroot {__version__}" "User Commands"',
        ".nh",  # option names are not to be hyphenated
        ".ad l",
        ".SH NAME",
        f"{_text(title)} \\- {_text(command.summary or command.description)}",
        ".SH SYNOPSIS",
        _text(command.usage),
        ".SH DESCRIPTION",
        _text(command.description),
    ]
    if _arguments(command.arguments):
        lines += [".SH ARGUMENTS", *_arguments(command.arguments)]
    if _options(command.options):
        lines += [".SH OPTIONS", *_options(command.options)]
    if command.commands:
        lines.append(".SH COMMANDS")
        if command.path:  # a command's verbs, in full
            for verb in command.commands:
                lines += _verb_section(verb, "SS")
        else:  # sysroot(1) lists the commands; each has its own page
            for c in command.commands:
                lines += [".TP", f"\\fB{_text(c.path[-1])}\\fR", _text(c.summary)]
    also = (
        [f"sysroot-{c.path[-1]}(1)" for c in command.commands]
        if not command.path
        else ["sysroot(1)"]
    )
    lines += [".SH SEE ALSO", _text(", ".join([*also, _SEE_ALSO]))]
    return "\n".join(lines) + "\n"


def pages(top: Command) -> dict[str, str]:
    """File name -> page: sysroot.1 and sysroot-COMMAND.1 for each command."""
    out = {"sysroot.1": page(top)}
    for c in top.commands:
        out[f"sysroot-{c.path[-1]}.1"] = page(c)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m sysroot.cli.manpage DIR", file=sys.stderr)
        return 2
    from sysroot.cli.main import build_parser

    os.makedirs(argv[0], exist_ok=True)
    for name, text in pages(command_tree(build_parser(None))).items():
        fsutil.atomic_write(os.path.join(argv[0], name), text.encode(), mode=0o644)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
