"""ostree 2022.7's whole command line, walked from its own help: every command and
option is accepted by sysroot, or is one of the refusals sysroot/cli/refusals.py lists
(each with its reason, in the README too, and each one error line when used)."""

from __future__ import annotations

import argparse
import re
import subprocess

import pytest

from sysroot.cli.main import build_parser
from sysroot.cli.refusals import REFUSED
from tests.test_readme_commands import ROOT

GLOBAL = {"-h", "--help", "-v", "--verbose", "--version"}  # taken by main() everywhere


def _ostree_help(path: tuple[str, ...]) -> str:
    proc = subprocess.run(["ostree", *path, "--help"], capture_output=True, text=True)
    return proc.stdout + proc.stderr


def ostree_surface() -> dict[tuple[str, ...], set[str]]:
    """command path -> its options, for every command and subcommand ostree lists."""
    out: dict[tuple[str, ...], set[str]] = {}

    def walk(path: tuple[str, ...]) -> None:
        text = _ostree_help(path)
        opts: set[str] = set()
        section = re.search(r"^Application Options:\n((?:  .*\n)+)", text, re.M)
        for line in section.group(1).splitlines() if section else ():
            head = line.strip().split("  ")[0]
            opts.update(re.findall(r"(?:^|, )(-{1,2}[\w-]+)", head))
        out[path] = opts - GLOBAL
        sub = re.search(r'^Builtin (?:"[\w -]+" )?Commands:\n((?:  \S.*\n)+)', text, re.M)
        for line in sub.group(1).splitlines() if sub else ():
            walk((*path, line.split()[0]))

    walk(())
    for path in HIDDEN:
        walk(path)
    return out


# commands ostree 2022.7 leaves out of its help, which installer scripts still call
HIDDEN = [("admin", "instutil")]


def _verbs(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def our_options(path: tuple[str, ...]) -> set[str] | None:
    """The options sysroot's parser for path takes (a group's options count for its
    verbs: main() moves them after the verb), None when path is no command of ours."""
    parser = build_parser(path[0] if path else None)
    taken = set()
    for word in path:
        taken |= {o for a in parser._actions for o in a.option_strings}
        parser = _verbs(parser).get(word)
        if parser is None:
            return None
    return taken | {o for a in parser._actions for o in a.option_strings}


def _refused(path: tuple[str, ...], option: str | None = None) -> bool:
    for n in range(1, len(path) + 1):
        if " ".join(path[:n]) in REFUSED:
            return True
    return option is not None and " ".join((*path, option)) in REFUSED


def _long_name(path: tuple[str, ...], option: str) -> str:
    """-P's long name, as REFUSED spells options."""
    text = _ostree_help(path)
    m = re.search(rf"^\s+{re.escape(option)}, (--[\w-]+)", text, re.M)
    return m.group(1) if m else option


def test_every_ostree_command_and_option_is_accepted_or_refused():
    missing = []
    accepted = total = 0
    for path, options in ostree_surface().items():
        if not path:
            continue
        ours = our_options(path)
        total += 1 + len(options)
        if ours is None:
            if not _refused(path):
                missing.append(" ".join(path))
            continue
        accepted += 1
        for option in sorted(options):
            if option in ours and not _refused(path, _long_name(path, option)):
                accepted += 1
            elif not _refused(path, _long_name(path, option)):
                missing.append(f"{' '.join(path)} {option}")
    print(
        f"ostree 2022.7: {total} commands and options; sysroot accepts {accepted}, "
        f"refuses {total - accepted - len(missing)}"
    )
    assert missing == []


def test_the_readme_lists_the_refusals():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- refusals -->", 1)[1].split("<!-- end refusals -->", 1)[0]
    listed = dict(re.findall(r"^\| `([^`]+)` \| (.+?) \|$", block, re.M))
    assert listed == REFUSED


@pytest.mark.parametrize("key", sorted(REFUSED))
def test_each_refusal_is_one_line(sysroot, tmp_path, key):
    words = key.split()
    if words[-1].startswith("--"):
        *command, option = words
        args = [*command, f"{option}=x" if option not in _FLAGS else option]
    else:
        args = list(words)
    args += _ARGS.get(" ".join(words[:2]), _ARGS.get(words[0], []))
    proc = sysroot(*args, check=False, cwd=tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode != 0 and "Traceback" not in err
    assert (
        err.splitlines()[0]
        == f"error: {words[-1] if words[-1].startswith('-') else key}: {REFUSED[key]}"
    ), err


_FLAGS = {"--require-static-deltas", "--selinux-policy-from-base"}
_ARGS = {  # what each command needs besides the option to get as far as refusing it
    "admin deploy": ["--sysroot=/nonexistent", "x"],
    "admin unlock": ["--sysroot=/nonexistent"],
    "checkout": ["--repo=/nonexistent", "rev", "dest"],
    "commit": ["--repo=/nonexistent", "-b", "x", "."],
    "pull": ["--repo=/nonexistent", "origin", "main"],
    "pull-local": ["--repo=/nonexistent", "/nonexistent-src", "main"],
}
