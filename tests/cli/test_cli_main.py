"""The CLI entry point: command discovery, lazy loading, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import sysroot.cli.commands as pkg
from sysroot.cli.main import COMMAND_MODULES, build_parser, command_name, listing_parser

pytestmark = pytest.mark.unit  # needs neither root nor ostree nor mounts


def _registered(names):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices)


def test_every_registered_command_is_in_the_lazy_table():
    # A command missing from the table would still work but load every module.
    assert _registered(None) == set(COMMAND_MODULES)


def test_lazy_table_points_at_the_module_that_registers_the_command():
    for name, module in COMMAND_MODULES.items():
        parser = build_parser(name)
        sub = next(a for a in parser._actions if a.dest == "command")
        assert name in sub.choices, (name, module, pkg.__name__)


def test_command_name_skips_global_options():
    assert command_name(["--repo", "r", "commit", "-b", "x"]) == "commit"
    assert command_name(["--repo=r", "-v", "log", "main"]) == "log"
    assert command_name(["--version"]) is None


def test_unknown_command_is_one_line_usage_error(sysroot):
    proc = sysroot("no-such-command", check=False)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("error:") and "Traceback" not in err


def test_the_listing_is_what_the_modules_register():
    """`sysroot --help` comes from COMMAND_HELP without loading a command module: it
    must read exactly as the help the modules themselves give (names, order, lines)."""
    assert listing_parser().format_help() == build_parser().format_help()


# Run main(ARGV) in a fresh interpreter and print the modules it loaded.
_LOADED = """
import contextlib, io, json, sys
from sysroot.cli.main import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
print(json.dumps(sorted(sys.modules)))
"""
# What start-up must not pay for when no command runs (issue 21): the HTTP and crypto
# libraries, udev, the heavy library packages, and any command module.
_HEAVY = (
    "urllib3",
    "cryptography",
    "pyudev",
    "systemd",
    "sysroot.pull",
    "sysroot.install",
    "sysroot.osmet",
    "sysroot.deploy",
    "sysroot.sign",
    "sysroot.store",
    "sysroot.health",
    "sysroot.cli.commands",
)


def _loaded(argv: list[str], heavy: tuple[str, ...]) -> list[str]:
    """The modules of `heavy` (or under them) that main(argv) loads."""
    proc = subprocess.run(
        [sys.executable, "-c", _LOADED, *argv], capture_output=True, check=True, timeout=60
    )
    return [
        m for m in json.loads(proc.stdout) if any(m == h or m.startswith(h + ".") for h in heavy)
    ]


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["-h"], [], ["no-such-command"]])
def test_version_and_help_load_no_command_and_no_heavy_library(argv):
    assert _loaded(argv, _HEAVY) == []


# `admin status` reads the state: deploy/state.py and the boot-loader back ends, the
# repository for the commits' versions. Not the deploy writers, nor the health checks
# (the `admin health` verbs register with admin), nor what pulls or installs.
_NOT_FOR_STATUS = (
    "urllib3",
    "cryptography",
    "pyudev",
    "sysroot.pull",
    "sysroot.install",
    "sysroot.osmet",
    "sysroot.sign",
    "sysroot.health",
    "sysroot.deploy.admin",
    "sysroot.deploy.deploy",
)


@pytest.mark.parametrize("argv", [["admin", "--help"], ["admin", "status", "--sysroot=/none"]])
def test_admin_status_loads_only_what_reading_needs(argv):
    assert _loaded(argv, _NOT_FOR_STATUS) == []
