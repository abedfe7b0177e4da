"""The licence the package declares is the one it ships: pyproject.toml says
LGPL-2.0-or-later, and LICENSE (which setuptools puts into the wheel's and sdist's
metadata by default) holds that licence's text."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_declared_licence_is_shipped() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == {"text": "LGPL-2.0-or-later"}
    head = (ROOT / "LICENSE").read_text().split()
    assert " ".join(head[:9]) == "GNU LIBRARY GENERAL PUBLIC LICENSE Version 2, June 1991"
    assert "or (at your option) any later version" in (ROOT / "LICENSE").read_text()
