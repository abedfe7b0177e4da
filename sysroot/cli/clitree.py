"""The command line as a tree, read from the one argparse definition: what the man
pages and the shell completions are made from, so neither can drift from the parser.

argparse keeps what is needed in attributes without a public reader (`_actions`, a
sub-parsers action's `choices` and `_choices_actions`); they are read here only.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]  # ("-v", "--verbose"); empty for a positional argument
    metavar: str | None  # the value's name; None for a flag without a value
    help: str


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]  # ("admin", "deploy"); () for sysroot itself
    summary: str  # the one line the parent lists it with
    description: str
    usage: str  # argparse's usage, without "usage: "
    options: tuple[Option, ...]
    arguments: tuple[Option, ...]
    commands: tuple[Command, ...]

    @property
    def name(self) -> str:
        return " ".join(("sysroot", *self.path))

    def walk(self) -> Iterator[Command]:
        yield self
        for c in self.commands:
            yield from c.walk()


def _metavar(action: argparse.Action) -> str | None:
    if action.nargs == 0:
        return None
    if isinstance(action.metavar, str):
        return action.metavar
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper() if action.option_strings else action.dest


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help:
        return ""
    # %(default)s and friends, as --help shows them
    return parser._get_formatter()._expand_help(action)


def command_tree(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = (), summary: str = ""
) -> Command:
    """parser and everything below it; options and commands that --help hides are left
    out (refused ones among them)."""
    options: list[Option] = []
    arguments: list[Option] = []
    commands: list[Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                if name in summaries and summaries[name] != argparse.SUPPRESS:
                    commands.append(command_tree(sub, (*path, name), summaries[name]))
            continue
        if action.help == argparse.SUPPRESS:
            continue
        entry = Option(tuple(action.option_strings), _metavar(action), _help(parser, action))
        (options if action.option_strings else arguments).append(entry)
    usage = parser.format_usage().removeprefix("usage: ").strip()
    return Command(
        path,
        summary,
        parser.description or summary,
        " ".join(usage.split()),
        tuple(options),
        tuple(arguments),
        tuple(commands),
    )
