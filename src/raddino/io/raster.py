"""PNG, JPEG and TIFF through Pillow, into one grey float image.

Rules: 8-bit and 16-bit grey rasters are divided by their dtype maximum (255, 65535), so an 8-bit image
comes back exactly (``round(pixels * 255)``) and a dark image stays dark; colour, palette and alpha images
become grey with Pillow's ITU-R 601-2 luma (``L = 0.299 R + 0.587 G + 0.114 B``, which leaves R = G = B
images unchanged) and alpha is ignored; 32-bit integer and float rasters have no fixed range and are
min-max scaled. Multi-page TIFFs follow the DICOM rule: ``frame`` picks the page, 0 by default.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from raddino.io.errors import ImageReadError
from raddino.io.record import ImageFormat, ReadRecord, Scaling, XrayImage, check_dimensions, scale_to_unit

# Pillow's plugin names for each format decided by magic bytes (MPO is a JPEG with extra pictures).
PIL_FORMATS: dict[str, list[str]] = {"png": ["PNG"], "jpeg": ["JPEG", "MPO"], "tiff": ["TIFF"]}
_GREY_16 = ("I;16", "I;16L", "I;16B", "I;16N")
_LUMA_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "LA", "La", "CMYK", "YCbCr", "LAB", "HSV")
_PIL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _own_size_check() -> Iterator[None]:
    """Open with Pillow's decompression-bomb check off: raddino checks the size itself, against a limit the
    caller can raise per call, and gives one clear error instead of Pillow's warning or exception."""
    with _PIL_LIMIT_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _grey_values(image: Image.Image, fmt: ImageFormat) -> tuple[np.ndarray, int, Scaling, list[str]]:
    """Pixel values of a loaded Pillow image as a 2-D array, with bits, scaling and the steps taken."""
    mode = image.mode
    if mode == "L":
        return np.asarray(image), 8, "dtype", []
    if mode in _GREY_16:
        return np.asarray(image).astype(np.uint16, copy=False), 16, "dtype", []
    if mode == "1":
        return np.asarray(image).astype(np.uint8), 1, "dtype", []
    if mode == "I":
        values = np.asarray(image)
        # PNG holds at most 16 bits per sample; older Pillow versions open 16-bit PNGs as mode "I".
        if fmt == "png" and values.min() >= 0 and values.max() <= 65535:
            return values.astype(np.uint16), 16, "dtype", []
        return values, 32, "minmax", []
    if mode == "F":
        return np.asarray(image), 32, "minmax", []
    if mode in _LUMA_MODES:
        return np.asarray(image.convert("L")), 8, "dtype", [f"grey:luma from {mode}"]
    raise ValueError(f"unsupported Pillow mode {mode!r}")


def read_raster(
    path: str | Path, fmt: ImageFormat, *, frame: int, min_side: int, max_pixels: int | None
) -> XrayImage:
    """Read a PNG, JPEG or TIFF file whose format was decided by its content.

    Raises:
        ImageReadError: unreadable, truncated, too small, too large, uniform, or ``frame`` out of range.
    """
    try:
        with _own_size_check():
            image = Image.open(path, formats=PIL_FORMATS[fmt])
    except UnidentifiedImageError as error:
        raise ImageReadError(path, f"starts like a {fmt.upper()} file but Pillow cannot parse it") from error
    except Exception as error:  # any parser failure is this file's problem, not the run's
        raise ImageReadError(
            path, f"corrupt {fmt.upper()} header: {type(error).__name__}: {error}"
        ) from error
    with image:
        n_frames = int(getattr(image, "n_frames", 1))
        if not 0 <= frame < n_frames:
            raise ImageReadError(path, f"frame {frame} requested but the file has {n_frames} frame(s)")
        steps = [f"decode:{fmt}"]
        try:
            if frame:
                image.seek(frame)
                steps.append(f"frame:{frame}")
            width, height = image.size
            check_dimensions(path, height, width, min_side=min_side, max_pixels=max_pixels)
            mode, bands = image.mode, len(image.getbands())
            image.load()
            values, bits, scaling, grey_steps = _grey_values(image, fmt)
        except ImageReadError:
            raise
        except Exception as error:  # truncated streams raise OSError, SyntaxError, zlib errors...
            raise ImageReadError(
                path, f"truncated or corrupt {fmt.upper()} data: {type(error).__name__}: {error}"
            ) from error
    original_shape = (height, width) if bands == 1 else (height, width, bands)
    pixels, low, high = scale_to_unit(values, path=path, scaling=scaling, bits=bits)
    steps += [*grey_steps, f"scale:{scaling}"]
    record = ReadRecord(
        path=str(path),
        format=fmt,
        bits=bits,
        scaling=scaling,
        original_shape=original_shape,
        original_min=low,
        original_max=high,
        n_frames=n_frames,
        frame=frame,
        steps=tuple(steps),
        source_mode=mode,
    )
    return XrayImage(pixels=pixels, record=record)
