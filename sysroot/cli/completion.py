"""Shell completion from the parser: bash and zsh scripts that know every command,
verb and option (`python3 -m sysroot.cli.completion bash|zsh`, run at build time).

Both scripts carry one table, "command path (`sysroot admin`) -> words": the verbs
and options at that point of the command line. The path is found by walking the words
typed so far, taking each that names a command below the path reached; a word after
an option that takes a value is that value, not a command. Where a path has no verbs
left, a word that is no option completes as a file name.
"""

from __future__ import annotations

import sys

from sysroot.cli.clitree import Command, command_tree

_GLOBAL = ("-v", "--verbose", "--version", "-h", "--help")


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def _table(top: Command) -> list[tuple[str, str, str, str]]:
    """(path, verbs, options, options taking a value) for every command."""
    rows = []
    for c in top.walk():
        flags = sorted({f for o in c.options for f in o.flags} | set(_GLOBAL))
        valued = sorted({f for o in c.options if o.metavar for f in o.flags})
        verbs = [sub.path[-1] for sub in c.commands]
        rows.append((c.name, " ".join(verbs), " ".join(flags), " ".join(valued)))
    return rows


_BASH = """\
# bash completion for sysroot; made by sysroot.cli.completion from its parser
declare -gA _sysroot_verbs=(
@VERBS@)
declare -gA _sysroot_options=(
@OPTIONS@)
declare -gA _sysroot_valued=(
@VALUED@)

_sysroot() {
    local cur=${COMP_WORDS[COMP_CWORD]} path=sysroot word prev="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ $word != -* && " ${_sysroot_valued[$path]} " != *" $prev "* &&
              " ${_sysroot_verbs[$path]} " == *" $word "* ]]; then
            path="$path $word"
        fi
        prev=$word
    done
    if [[ " ${_sysroot_valued[$path]} " == *" $prev "* && -n $prev ]]; then
        COMPREPLY=($(compgen -f -- "$cur"))
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "${_sysroot_options[$path]}" -- "$cur"))
    elif [[ -n ${_sysroot_verbs[$path]} ]]; then
        COMPREPLY=($(compgen -W "${_sysroot_verbs[$path]}" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}
complete -o filenames -F _sysroot sysroot
"""

_ZSH = """\
#compdef sysroot
# zsh completion for sysroot; made by sysroot.cli.completion from its parser
typeset -gA _sysroot_verbs _sysroot_options _sysroot_valued
_sysroot_verbs=(
@VERBS@)
_sysroot_options=(
@OPTIONS@)
_sysroot_valued=(
@VALUED@)

_sysroot() {
    local path=sysroot word prev="" i
    for ((i = 2; i < CURRENT; i++)); do
        word=${words[i]}
        if [[ $word != -* && " ${_sysroot_valued[$path]} " != *" $prev "* &&
              " ${_sysroot_verbs[$path]} " == *" $word "* ]]; then
            path="$path $word"
        fi
        prev=$word
    done
    if [[ -n $prev && " ${_sysroot_valued[$path]} " == *" $prev "* ]]; then
        _files
    elif [[ ${words[CURRENT]} == -* ]]; then
        compadd -- ${=_sysroot_options[$path]}
    elif [[ -n ${_sysroot_verbs[$path]} ]]; then
        compadd -- ${=_sysroot_verbs[$path]}
    else
        _files
    fi
}

_sysroot "$@"
"""


def script(shell: str, top: Command) -> str:
    rows = _table(top)

    def entries(column: int) -> str:
        if shell == "bash":
            return "".join(f"    [{_quote(r[0])}]={_quote(r[column])}\n" for r in rows)
        return "".join(f"    {_quote(r[0])} {_quote(r[column])}\n" for r in rows)

    template = {"bash": _BASH, "zsh": _ZSH}[shell]
    return (
        template.replace("@VERBS@", entries(1))
        .replace("@OPTIONS@", entries(2))
        .replace("@VALUED@", entries(3))
    )


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("bash", "zsh"):
        print("usage: python3 -m sysroot.cli.completion bash|zsh", file=sys.stderr)
        return 2
    from sysroot.cli.main import build_parser

    sys.stdout.write(script(argv[0], command_tree(build_parser(None))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
