"""Fixtures for the image readers: DICOM files shipped inside pydicom, and small synthetic images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

# pydicom downloads some test files on demand; only the ones inside the installed package may be used.
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


@pytest.fixture
def pydicom_file() -> Callable[[str], Path]:
    """Path of a DICOM that ships inside pydicom; fails (never downloads) when it is not in the package."""

    def find(name: str) -> Path:
        local = PYDICOM_FILES / name
        assert local.is_file(), f"{name} is not shipped inside pydicom; using it would trigger a download"
        found = get_testdata_file(name)
        assert found is not None
        assert Path(found).resolve() == local.resolve()
        return local

    return find


@pytest.fixture
def ramp16() -> np.ndarray:
    """A 40×48 uint16 image covering 0..4000 in a smooth, non-uniform pattern (12 bits used)."""
    rows = np.linspace(0, 1, 40)[:, None]
    columns = np.linspace(0, 1, 48)[None, :]
    return np.round(4000 * (0.6 * rows + 0.4 * columns**2)).astype(np.uint16)


@pytest.fixture
def noise8() -> np.ndarray:
    """A 36×52 uint8 image using the full 0..255 range."""
    values = np.random.default_rng(0).integers(0, 256, size=(36, 52), dtype=np.uint8)
    values[0, 0], values[0, 1] = 0, 255
    return values
