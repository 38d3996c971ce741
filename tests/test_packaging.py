"""The package metadata installs without setuptools' deprecation warnings."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_license_is_an_spdx_expression_and_setuptools_reads_it_without_warnings() -> None:
    """A fresh ``pip install .`` printed "`project.license` as a TOML table is deprecated"."""
    pyprojecttoml = pytest.importorskip("setuptools.config.pyprojecttoml")
    from packaging.licenses import canonicalize_license_expression
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distribution = pyprojecttoml.apply_configuration(Distribution(), ROOT / "pyproject.toml")
    messages = [str(warning.message) for warning in caught]
    assert not [m for m in messages if "license" in m.lower()], messages
    license_expression = distribution.metadata.license_expression
    assert license_expression == canonicalize_license_expression("MIT")


def _planned_commands(target: str, venv: Path) -> str:
    """What ``make TARGET`` would run on a fresh clone (``make -n``, nothing executed)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    completed = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target, f"VENV={venv}"],
        capture_output=True, text=True, check=True,
    )
    return completed.stdout


def test_make_demo_installs_the_package_without_the_dev_extras(tmp_path: Path) -> None:
    """The README says only ``make test`` installs the dev extras; ``make demo`` installs ``.`` alone."""
    demo = _planned_commands("demo", tmp_path / "venv")
    installs = [line for line in demo.splitlines() if "pip install" in line and "--upgrade pip" not in line]
    assert installs == [f"{tmp_path / 'venv'}/bin/python -m pip install --quiet -e ."], demo
    assert "raddino demo --out demo" in demo

    test = _planned_commands("test", tmp_path / "venv")
    assert "pip install --quiet -e '.[dev]'" in test
    assert "pytest" in test
    assert "ruff check" in test
