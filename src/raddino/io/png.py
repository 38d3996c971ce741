"""``write_png``: a float image in [0, 1] → 8- or 16-bit grey PNG, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from raddino.io.atomic import atomic_path


def to_integer(pixels: np.ndarray, bits: Literal[8, 16]) -> np.ndarray:
    """Round float pixels in [0, 1] to uint8 (× 255) or uint16 (× 65535); out-of-range values are clipped."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits!r}")
    top = 255 if bits == 8 else 65535
    scaled = np.clip(np.asarray(pixels, dtype=np.float64) * top, 0, top)  # (H, W)
    return np.rint(scaled).astype(np.uint8 if bits == 8 else np.uint16)


def write_png(
    path: str | Path, pixels: np.ndarray, bits: Literal[8, 16] = 8, *, compress_level: int = 6
) -> Path:
    """Write a grey PNG atomically (a reader never sees a half-written file).

    Args:
        path: Target file; its folder is created.
        pixels: (H, W) floats in [0, 1]; NaN is refused rather than written as black.
        bits: 8 (``L``) or 16 (``I;16``) bits per pixel.
        compress_level: zlib level 0-9; 6 is Pillow's default, 1 is faster and about 10 % larger.

    Returns:
        ``path`` as a Path.
    """
    array = np.asarray(pixels)
    if array.ndim != 2:
        raise ValueError(f"{path}: write_png needs a 2-D (H, W) array, got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"{path}: pixels contain NaN")
    values = to_integer(array, bits)
    image = Image.fromarray(values)  # mode L for uint8, I;16 for uint16
    with atomic_path(path) as temporary:
        image.save(temporary, format="PNG", compress_level=compress_level)
    return Path(path)
