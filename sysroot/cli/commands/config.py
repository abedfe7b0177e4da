"""sysroot config: get, set and unset repository config keys, like ostree config.

`SECTION.KEY` splits at the first dot (so `remote "origin".url` works); --group names
the group explicitly for group names that contain dots. Writes replace the config
atomically and keep every other line, comment and group order.
"""

from __future__ import annotations

from sysroot.cli.main import add_repo_option, open_repo
from sysroot.errors import NotFoundError, UsageError

_USAGE = "config [--group=GROUP] (get KEY|set KEY VALUE|unset KEY)"


def register(sub) -> None:
    p = sub.add_parser(
        "config",
        help="Change repo configuration settings",
        usage=f"%(prog)s {_USAGE.removeprefix('config ')}",
    )
    add_repo_option(p)
    p.add_argument("--group", metavar="GROUP", help="Group name")
    p.add_argument("operation", nargs="?", metavar="OPERATION", help="get, set or unset")
    p.add_argument("args", nargs="*", metavar="ARG")
    p.set_defaults(func=run)


def _check_group(group: str) -> None:
    if not group or any(c in group for c in "[]\n\r") or not group.isprintable():
        raise UsageError(f"Invalid group name “{group}”")


def _check_key(key: str) -> None:
    if not key or any(c in key for c in "=[]\n\r") or key != key.strip() or not key.isprintable():
        raise UsageError(f"Invalid key name “{key}”")


def _split(args, op: str) -> tuple[str, str, list[str]]:
    """(group, key, remaining args) with ostree's messages for missing pieces."""
    rest = list(args.args)
    if args.group is not None:
        if not rest:
            raise UsageError(
                "GROUP name, KEY and VALUE must be specified"
                if op == "set"
                else "Group name and key must be specified"
            )
        return args.group, rest[0], rest[1:]
    if not rest:
        raise UsageError(
            "KEY and VALUE must be specified" if op == "set" else "KEY must be specified"
        )
    group, dot, key = rest[0].partition(".")
    if not dot:
        raise UsageError('Key must be of the form "sectionname.keyname"')
    return group, key, rest[1:]


def run(args) -> int:
    op = args.operation
    if op is None:
        raise UsageError(f"OPERATION must be specified; usage: {_USAGE}")
    if op not in ("get", "set", "unset"):
        raise UsageError(f"Unknown operation {op}")
    group, key, rest = _split(args, op)
    wanted = 1 if op == "set" else 0
    if len(rest) < wanted:
        raise UsageError(
            "GROUP name, KEY and VALUE must be specified"
            if args.group is not None
            else "KEY and VALUE must be specified"
        )
    if len(rest) > wanted:
        raise UsageError(f"Too many arguments given; usage: {_USAGE}")
    with open_repo(args) as repo:
        config = repo.config
        if op == "get":
            if not config.has_group(group):
                raise NotFoundError(f"Key file does not have group “{group}”")
            value = config.get(group, key)
            if value is None:
                raise NotFoundError(f"Key file does not have key “{key}” in group “{group}”")
            print(value)
        elif op == "set":
            _check_group(group)
            _check_key(key)
            config.set(group, key, rest[0])
            repo.write_config()
        elif config.remove_key(group, key):  # unset: a missing key is not an error
            repo.write_config()
    return 0
