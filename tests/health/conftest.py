"""A temp root with greenboot's directories, and scripts written into it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sysroot.health import HealthConfig
from tests.util.test_run_streaming import kill_left

USR_REQUIRED = "usr/lib/greenboot/check/required.d"
USR_WANTED = "usr/lib/greenboot/check/wanted.d"
ETC_REQUIRED = "etc/greenboot/check/required.d"
ETC_WANTED = "etc/greenboot/check/wanted.d"


class Root:
    def __init__(self, path: Path):
        self.path = path
        self.log = path / "ran.log"

    def __str__(self) -> str:
        return str(self.path)

    def script(self, reldir: str, name: str, body: str = "", *, mode: int = 0o644) -> Path:
        """A script that first appends its path (relative to the root) to ran.log."""
        p = self.path / reldir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f'echo "{reldir}/{name}" >> "{self.log}"\n{body}\n')
        os.chmod(p, mode)
        return p

    def ran(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def conf(self, text: str) -> None:
        p = self.path / "etc/greenboot/greenboot.conf"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


@pytest.fixture
def root(tmp_path: Path) -> Root:
    r = tmp_path / "root"
    r.mkdir()
    return Root(r)


@pytest.fixture
def config() -> HealthConfig:
    return HealthConfig(timeout=60.0, kill_grace=1.0)


@pytest.fixture
def pidfile(tmp_path: Path):
    """Where a test's script records a child's pid; its group is killed at teardown if
    it is still running (only when the code under test failed to)."""
    path = tmp_path / "child.pid"
    yield path
    kill_left(path)
