"""What a reader returns: the float image, the record of how it was made, and the checks all readers share."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from raddino.io.errors import ImageReadError

ImageFormat = Literal["dicom", "png", "jpeg", "tiff"]
Scaling = Literal["dtype", "minmax"]

# Below 16 px a file is an icon, a thumbnail or a header with wrong dimensions, not a radiograph: the
# encoder's patches alone are 14 px and the release's inputs are 518 px, so such a file can only add noise.
MIN_SIDE = 16

# Name of the environment variable that overrides the decompression-bomb limit in every process (worker
# processes inherit it, unlike a module global set in the parent).
MAX_PIXELS_ENV = "RADDINO_MAX_IMAGE_PIXELS"


@dataclass(frozen=True)
class ReadRecord:
    """How a file became pixels; small, picklable, and free of patient data (no DICOM header values).

    Attributes:
        path: The file read.
        format: Decided by the file's content (magic bytes), not its extension.
        bits: Bits per sample of the source (BitsStored for DICOM; 1, 8, 16 or 32 for rasters).
        scaling: ``"dtype"``: 8/16-bit rasters divided by 255 or 65535; ``"minmax"``: the smallest value
            maps to 0 and the largest to 1 (DICOM, after modality LUT / VOI / MONOCHROME1 inversion, the
            release's rule for training data; also 32-bit and float rasters, which have no fixed range).
        original_shape: Shape of the decoded frame before conversion to grey, e.g. ``(H, W, 3)`` for RGB.
        original_min: Smallest value the scaling saw (after the LUTs for DICOM).
        original_max: Largest value the scaling saw.
        inverted: ``True`` when MONOCHROME1 was inverted so that bone is bright.
        voi_applied: ``True`` when a VOI LUT or window centre/width was applied.
        n_frames: Frames (DICOM) or pages (TIFF) in the file.
        frame: The frame that was read.
        steps: What was done, in order, e.g. ``("modality_lut", "voi:window", "invert", "minmax")``.
        source_mode: PIL mode (``"I;16"``, ``"RGB"``) or DICOM photometric interpretation.
    """

    path: str
    format: ImageFormat
    bits: int
    scaling: Scaling
    original_shape: tuple[int, ...]
    original_min: float
    original_max: float
    inverted: bool = False
    voi_applied: bool = False
    n_frames: int = 1
    frame: int = 0
    steps: tuple[str, ...] = ()
    source_mode: str = ""


@dataclass(frozen=True)
class XrayImage:
    """A grey image in [0, 1] plus the record of how it was read.

    Attributes:
        pixels: float32 array of shape (H, W), values in [0, 1].
        record: How the pixels were made.
    """

    pixels: np.ndarray
    record: ReadRecord

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def resolve_max_pixels(max_pixels: int | None) -> int | None:
    """The decompression-bomb limit in pixels per frame; ``None`` means no limit.

    An explicit ``max_pixels`` wins (``0`` disables the check); otherwise the ``RADDINO_MAX_IMAGE_PIXELS``
    environment variable (``0`` or ``none`` disables it); otherwise Pillow's own limit,
    ``PIL.Image.MAX_IMAGE_PIXELS`` (89,478,485 by default, about 9459², well above any detector).
    """
    if max_pixels is not None:
        return max_pixels if max_pixels > 0 else None
    configured = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if configured:
        if configured.lower() == "none":
            return None
        try:
            value = int(float(configured))
        except ValueError as error:
            raise ValueError(f"{MAX_PIXELS_ENV}={configured!r} is not a number of pixels") from error
        return value if value > 0 else None
    return Image.MAX_IMAGE_PIXELS


def check_dimensions(
    path: str | Path, height: int, width: int, *, min_side: int, max_pixels: int | None
) -> None:
    """Refuse images too small to be radiographs or too large to decode safely, before decoding them."""
    if min(height, width) < min_side:
        raise ImageReadError(
            path,
            f"image is {width}×{height} px; each side must be at least {min_side} px "
            "(smaller files are icons, thumbnails or broken headers, not radiographs)",
        )
    if max_pixels is not None and height * width > max_pixels:
        raise ImageReadError(
            path,
            f"image is {width}×{height} = {height * width:,} pixels, over the decompression-bomb limit of "
            f"{max_pixels:,}; if the file is genuine, raise the limit with read_image(..., max_pixels=N) "
            f"or the {MAX_PIXELS_ENV} environment variable",
        )


def scale_to_unit(
    values: np.ndarray, *, path: str | Path, scaling: Scaling, bits: int
) -> tuple[np.ndarray, float, float]:
    """Map source values to float32 in [0, 1]; returns ``(pixels, original_min, original_max)``.

    Raises:
        ImageReadError: the image is uniform (min-max scaling would divide by zero, and a constant image
            carries nothing to learn from), or holds NaN / infinity.
    """
    low, high = float(values.min()), float(values.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ImageReadError(path, "pixel values include NaN or infinity")
    if low == high:
        raise ImageReadError(path, f"uniform image (every pixel is {low:g}); nothing to scale")
    if scaling == "dtype":
        # Division (not multiplication by 1/255) keeps round(pixels * 255) == source exactly.
        pixels = values.astype(np.float32) / np.float32(2**bits - 1)
    else:
        pixels = (values.astype(np.float32) - np.float32(low)) / np.float32(high - low)
        np.clip(pixels, 0.0, 1.0, out=pixels)  # float32 rounding can step a hair past 1
    return pixels, low, high
