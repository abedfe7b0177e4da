"""Fixtures the pull tests share."""

from __future__ import annotations

import pytest

from tests.pull.serve_helpers import make_served_repo


@pytest.fixture(scope="module")
def served_repo(tmp_path_factory, ostree) -> dict:
    """make_served_repo's repository (main = C1 <- C2, other = C1, a summary), made
    once per test module: its paths and checksums."""
    return make_served_repo(ostree, tmp_path_factory.mktemp("served"))
