"""ostree commands sysroot refuses (sysroot/cli/refusals.py says why): registered so
that a script using one gets that reason in one line, not an unknown command."""

from __future__ import annotations

import argparse

from sysroot.cli.main import add_repo_option
from sysroot.cli.refusals import REFUSED, refusal

COMMANDS = ("find-remotes", "create-usb")


def register(sub) -> None:
    for name in COMMANDS:
        p = sub.add_parser(name, help=f"Refused: {REFUSED[name]}")
        add_repo_option(p)
        p.add_argument("words", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=lambda args, name=name: _refuse(name))


def _refuse(name: str) -> int:
    raise refusal(name)
