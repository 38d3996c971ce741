"""The layers contract in pyproject.toml names every room of the package, so none escapes the check.

import-linter (``make lint``) only checks the layers it is told about: a new top-level package or module
left out of ``layers`` could import anything. This test fails until it is placed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import raddino

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

PACKAGE = Path(raddino.__file__).resolve().parent
PYPROJECT = PACKAGE.parents[1] / "pyproject.toml"
NOT_LAYERS = {"__init__", "__main__"}  # the package itself and ``python -m raddino`` (the CLI's door)


def _layers_contract() -> dict:
    if not PYPROJECT.is_file():
        pytest.skip("pyproject.toml is not beside the source tree (installed package)")
    settings = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    contracts = settings["tool"]["importlinter"]["contracts"]
    layered = [contract for contract in contracts if contract["type"] == "layers"]
    assert len(layered) == 1, "expected one layers contract"
    return layered[0]


def _layer_names(contract: dict) -> list[str]:
    return [name.strip() for layer in contract["layers"] for name in re.split(r"[|:]", layer)]


def _top_level_names() -> set[str]:
    names = {path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").is_file()}
    names |= {path.stem for path in PACKAGE.glob("*.py")}
    return names - NOT_LAYERS


def test_every_top_level_package_and_module_is_a_layer():
    names = _layer_names(_layers_contract())
    assert sorted(_top_level_names() - set(names)) == []  # a room the contract does not check
    assert sorted(set(names) - _top_level_names()) == []  # a layer that no longer exists
    assert len(names) == len(set(names))  # each room in one layer only

