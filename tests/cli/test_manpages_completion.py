"""Man pages and shell completions are made from the one parser (sysroot/cli/clitree.py),
so they cannot drift from it: every command, verb and option is in its man page and in
both completion tables; every option has help text; the pages pass groff without a
warning and come out the same twice; bash and zsh complete commands, verbs, options and
option values (file names) as the command line stands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sysroot.cli.clitree import Command, command_tree
from sysroot.cli.completion import script
from sysroot.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tree() -> Command:
    return command_tree(build_parser(None))


def test_every_option_has_help_text(tree: Command) -> None:
    bare = [(c.name, o.flags) for c in tree.walk() for o in c.options if not o.help]
    assert bare == []


def _make_pages(dest: Path) -> dict[str, bytes]:
    subprocess.run([sys.executable, "-m", "sysroot.cli.manpage", str(dest)], check=True, cwd=ROOT)
    return {p.name: p.read_bytes() for p in sorted(dest.iterdir())}


def _render(page: Path) -> str:
    proc = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-rLL=250n", "-P-cbou", str(page)],
        capture_output=True,
        text=True,
        env=dict(os.environ, LC_ALL="C.UTF-8"),
        check=True,
    )
    assert proc.stderr == "", f"{page.name}: {proc.stderr}"
    # groff's hyphens and quotes back to ASCII, for comparing with the parser's words
    return proc.stdout.replace("\u2010", "-").replace("\u2212", "-").replace("\u2019", "'")


def test_man_pages_hold_every_command_verb_and_option(tree: Command, tmp_path: Path) -> None:
    pages = _make_pages(tmp_path)
    assert set(pages) == {"sysroot.1"} | {f"sysroot-{c.path[0]}.1" for c in tree.commands}
    top = _render(tmp_path / "sysroot.1")
    for c in tree.commands:
        assert f"\n       {c.path[0]}" in top, c.name
    for flag in ("--repo", "--verbose", "--version"):
        assert flag in top
    for c in tree.commands:
        text = " ".join(_render(tmp_path / f"sysroot-{c.path[0]}.1").split())
        for sub in c.walk():
            assert sub.name in text, sub.name
            for o in sub.options:
                if o.flags == ("-h", "--help"):
                    continue  # every page says how to ask for help once, not per verb
                for flag in o.flags:
                    assert flag in text, (sub.name, flag)
                assert " ".join(o.help.split()[:3]) in text, (sub.name, o.help)


def test_man_pages_are_reproducible(tmp_path: Path) -> None:
    assert _make_pages(tmp_path / "a") == _make_pages(tmp_path / "b")


def test_completion_tables_hold_every_verb_and_option(tree: Command) -> None:
    for shell in ("bash", "zsh"):
        text = script(shell, tree)
        for c in tree.walk():
            verbs = " ".join(sub.path[-1] for sub in c.commands)
            assert f"'{c.name}'" in text
            if verbs:
                assert f"'{verbs}'" in text, (shell, c.name)
            for o in c.options:
                for flag in o.flags:
                    assert flag in text, (shell, c.name, flag)


BASH_CASES = [
    (["sysroot", "ad"], "admin"),
    (["sysroot", "admin", "de"], "deploy"),
    (["sysroot", "admin", "deploy", "--karg-a"], "--karg-append"),
    (["sysroot", "admin", "--sysroot", "/x", "st"], "stateroot-init status"),
    # "admin" after --repo is the repository's path, not the command
    (["sysroot", "--repo", "admin", "pull-l"], "pull-local"),
    (["sysroot", "admin", "kargs", "edit-in-place", "--app"], "--append-if-missing"),
    (["sysroot", "osmet", "unpack", "--osm"], "--osmet --osmet-dir"),
    (["sysroot", "admin", "deploy", "--os", "REA"], "README.md"),  # a value: a file
    (["sysroot", "checkout", "abc", "REA"], "README.md"),  # no verbs: a file
]


@pytest.mark.parametrize("words, expected", BASH_CASES, ids=[" ".join(w) for w, _ in BASH_CASES])
def test_bash_completes(tree: Command, tmp_path: Path, words: list[str], expected: str) -> None:
    (tmp_path / "sysroot.bash").write_text(script("bash", tree))
    shell = (
        f"source {tmp_path / 'sysroot.bash'}\n"
        'COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _sysroot\n'
        'echo "${COMPREPLY[*]}"\n'
    )
    proc = subprocess.run(
        ["bash", "--norc", "-c", shell, "bash", *words],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert proc.stderr == ""
    assert sorted(proc.stdout.split()) == sorted(expected.split())


ZSH_CASES = [
    (["sysroot", ""], "sysroot"),
    (["sysroot", "admin", "de"], "sysroot admin"),
    (["sysroot", "admin", "deploy", "--k"], "sysroot admin deploy", "options"),
    (["sysroot", "--repo", "admin", ""], "sysroot"),
    (["sysroot", "admin", "deploy", "--os", ""], None),
    (["sysroot", "checkout", "x", ""], None),
]


@pytest.mark.parametrize("case", ZSH_CASES, ids=[" ".join(c[0]) for c in ZSH_CASES])
def test_zsh_completes(tree: Command, tmp_path: Path, case: tuple) -> None:
    """compadd stands in for zsh's own (which also filters by the typed prefix): the
    words offered are those of the command path the line has reached."""
    words, path, *kind = case
    (tmp_path / "_sysroot").write_text(script("zsh", tree))
    shell = (
        "compadd() { [[ $1 == -- ]] && shift; print -r -- $@; }\n"
        "_files() { print -r -- FILES; }\n"
        f"words=($@); CURRENT=$#; source {tmp_path / '_sysroot'}\n"
    )
    proc = subprocess.run(
        ["zsh", "-f", "-c", shell, "zsh", *words], capture_output=True, text=True, check=True
    )
    assert proc.stderr == ""
    if path is None:
        assert proc.stdout.split() == ["FILES"]
        return
    command = next(c for c in tree.walk() if c.name == path)
    if kind:
        offered = {f for o in command.options for f in o.flags}
        assert offered <= set(proc.stdout.split())
    else:
        assert proc.stdout.split() == [c.path[-1] for c in command.commands]
