"""CI runs what the README shows: the test command and the VM test command appear in
.ci/run verbatim, and vm-tests/README.md shows the same VM command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit  # needs neither root nor ostree nor mounts

ROOT = Path(__file__).resolve().parent.parent


def command_after(text: str, label: str) -> str:
    m = re.search(re.escape(label) + r".*?```\n(.*?)\n```", text, re.S)
    assert m, f"no command block after {label!r}"
    return m.group(1).strip()


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    tests = command_after(readme, "**Tests**")
    vm = command_after(readme, "**VM tests**")
    assert tests in ci_lines
    assert vm in ci_lines
    assert vm.endswith("vm-tests/run")
    assert command_after((ROOT / "vm-tests/README.md").read_text(), "# VM tests") == vm
