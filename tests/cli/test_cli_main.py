"""The CLI entry point: command discovery, lazy loading, one-line errors."""

from __future__ import annotations

import pytest

import sysroot.cli.commands as pkg
from sysroot.cli.main import COMMAND_MODULES, build_parser, command_name

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
