"""Fixtures shared across the suite: a test-sized encoder saved like a release, and small X-ray folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# Two cores are shared by the test workers: one intra-op thread each keeps them from oversubscribing.
torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def smooth_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random, smooth 8-bit grey image (blurred noise plus a gradient): never uniform."""
    coarse = rng.random((height // 8 + 2, width // 8 + 2))
    upsampled = np.kron(coarse, np.ones((8, 8)))[:height, :width]
    gradient = np.linspace(0.0, 0.5, width)[None, :]
    picture = (upsampled * 0.5 + gradient) / 1.0
    return np.clip(picture * 255, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test-sized DINOv2 encoder saved as a transformers folder, preprocessing at its own image size."""
    from raddino.data.preprocess import PreprocessConfig
    from raddino.models import Encoder

    folder = tmp_path_factory.mktemp("tiny-encoder")
    encoder = Encoder.from_preset("test", seed=0)
    size = encoder.image_size
    encoder.save_pretrained(folder, preprocess=PreprocessConfig(shortest_edge=size, crop_size=(size, size)))
    return folder


@pytest.fixture
def xray_folder(tmp_path: Path) -> Path:
    """Five good 8-bit PNGs of different sizes in a nested folder."""
    rng = np.random.default_rng(0)
    root = tmp_path / "xrays"
    for index, (height, width) in enumerate([(64, 64), (80, 64), (64, 96), (100, 70), (72, 72)]):
        target = root / ("sub" if index % 2 else "") / f"image{index}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(smooth_image(rng, height, width)).save(target)
    return root
