"""Phantom images and test-sized encoders for the figure tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raddino.data.phantoms import make_phantom
from raddino.data.preprocess import PreprocessConfig
from raddino.io.png import write_png
from raddino.models import Encoder


@pytest.fixture(scope="session")
def phantom_112() -> np.ndarray:
    """A frontal phantom, float (112, 112) in [0, 1]."""
    return make_phantom(seed=1, size=112).image


@pytest.fixture(scope="session")
def test_encoder() -> Encoder:
    """The 2-block, 2-head, 32-wide ``test`` preset at random init (patch 14)."""
    return Encoder.from_preset("test", seed=0).eval()


@pytest.fixture(scope="session")
def preprocess_112() -> PreprocessConfig:
    """Shorter side to 112 px, centre crop 112×112: an 8×8 patch grid."""
    return PreprocessConfig(shortest_edge=112, crop_size=(112, 112))


@pytest.fixture(scope="session")
def phantom_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two 8-bit phantom PNGs, 112×112 and 96×128 (H×W)."""
    folder = tmp_path_factory.mktemp("viz-phantoms")
    first = write_png(folder / "phantom1.png", make_phantom(seed=1, size=112).image)
    wide = np.zeros((96, 128), dtype=np.float32)
    wide[:, 16:112] = make_phantom(seed=2, size=96).image
    second = write_png(folder / "phantom2.png", wide)
    return [first, second]
