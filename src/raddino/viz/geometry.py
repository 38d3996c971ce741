"""Where a pixel of the original image lands after the release's preprocessing, and back.

The preprocessing (``raddino.data.preprocess``) resizes so the shorter side is ``shortest_edge`` (the longer
side floored, as transformers does), then centre-crops with top/left = ``(size - crop) // 2`` (zero padding
when the image is smaller than the crop). Pillow's resize maps pixel *centres*: continuous coordinate
``u = x + 0.5`` in the source becomes ``u * new / old`` in the resized image. Patch ``(row, col)`` of the
encoder covers crop pixels ``[row * patch, (row + 1) * patch)`` vertically, likewise horizontally.

Coordinates here are (x, y) = (column, row) in pixels of the image as read, with (0, 0) the top-left pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from raddino.data.preprocess import PreprocessConfig


class PointError(ValueError):
    """A point cannot be used: bad syntax, outside the image, or cut away by the centre crop."""


@dataclass(frozen=True)
class PreprocessGeometry:
    """The resize + centre crop that one image went through.

    Attributes:
        original_shape: (height, width) of the image as read.
        resized_shape: (height, width) after the resize.
        crop_offset: (top, left) of the crop window in the resized image; negative when the crop pads.
        crop_shape: (height, width) of the encoder's input.
        patch_size: The encoder's patch side in pixels.
    """

    original_shape: tuple[int, int]
    resized_shape: tuple[int, int]
    crop_offset: tuple[int, int]
    crop_shape: tuple[int, int]
    patch_size: int

    @classmethod
    def from_config(
        cls, original_shape: tuple[int, int], config: PreprocessConfig, patch_size: int
    ) -> PreprocessGeometry:
        """The geometry ``InferencePreprocessor(config)`` applies to an image of ``original_shape``."""
        height, width = original_shape
        if not config.do_resize:
            resized = (height, width)
        elif config.shortest_edge is None:
            assert config.resize_size is not None
            resized = config.resize_size
        else:
            # transformers' rule: the longer side is int(shortest_edge * long / short).
            short, long = min(height, width), max(height, width)
            new_long = int(config.shortest_edge * long / short)
            resized = (
                (new_long, config.shortest_edge) if width <= height else (config.shortest_edge, new_long)
            )
        if config.do_center_crop:
            crop = config.crop_size
            # Padding centres the image with (padded - size + 1) // 2 on the top/left, then the crop starts
            # at (padded - crop) // 2; both folded into one offset into the unpadded resized image.
            offsets = []
            for size, side in zip(resized, crop, strict=True):
                pad = (max(size, side) - size + 1) // 2
                offsets.append((max(size, side) - side) // 2 - pad)
            offset = (offsets[0], offsets[1])
        else:
            crop, offset = resized, (0, 0)
        return cls(
            original_shape=(height, width),
            resized_shape=(int(resized[0]), int(resized[1])),
            crop_offset=offset,
            crop_shape=(int(crop[0]), int(crop[1])),
            patch_size=patch_size,
        )

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid (h, w) of the encoder's input."""
        return self.crop_shape[0] // self.patch_size, self.crop_shape[1] // self.patch_size

    @property
    def scale(self) -> tuple[float, float]:
        """Resize factors (vertical, horizontal)."""
        return (
            self.resized_shape[0] / self.original_shape[0],
            self.resized_shape[1] / self.original_shape[1],
        )

    def to_crop(self, x: float, y: float) -> tuple[float, float]:
        """Continuous crop coordinates (x, y) of the centre of original pixel (x, y)."""
        scale_y, scale_x = self.scale
        top, left = self.crop_offset
        return (x + 0.5) * scale_x - left, (y + 0.5) * scale_y - top

    def from_crop(self, x: float, y: float) -> tuple[float, float]:
        """Original pixel coordinates (x, y) of continuous crop coordinates (x, y): inverts ``to_crop``."""
        scale_y, scale_x = self.scale
        top, left = self.crop_offset
        return (x + left) / scale_x - 0.5, (y + top) / scale_y - 0.5

    def patch_of(self, x: float, y: float, name: str = "point") -> tuple[int, int]:
        """Patch (row, col) that original pixel (x, y) falls in.

        Raises:
            PointError: the point is outside the original image, or the centre crop cut it away (the
                message names ``name`` and both sizes).
        """
        height, width = self.original_shape
        if not (0 <= x < width and 0 <= y < height):
            raise PointError(f"{name} ({x:g}, {y:g}) is outside the {width}×{height} image")
        crop_x, crop_y = self.to_crop(x, y)
        rows, cols = self.grid
        row, col = math.floor(crop_y / self.patch_size), math.floor(crop_x / self.patch_size)
        if not (0 <= row < rows and 0 <= col < cols):
            raise PointError(
                f"{name} ({x:g}, {y:g}) is cut away by the centre crop: the encoder sees the middle "
                f"{self.crop_shape[1]}×{self.crop_shape[0]} of the image resized to "
                f"{self.resized_shape[1]}×{self.resized_shape[0]}"
            )
        return row, col

    def patch_centre(self, row: int, col: int) -> tuple[float, float]:
        """Original pixel coordinates (x, y) of the centre of patch (row, col)."""
        return self.from_crop((col + 0.5) * self.patch_size, (row + 0.5) * self.patch_size)


def parse_point(text: str, name: str = "--points") -> tuple[float, float]:
    """Parse ``"x,y"`` (pixels, numbers) into (x, y).

    Raises:
        PointError: not two comma-separated finite numbers (the message names ``name`` and the text).
    """
    parts = text.split(",")
    if len(parts) != 2:
        raise PointError(f"{name} {text!r}: expected x,y (two numbers separated by a comma)")
    try:
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise PointError(f"{name} {text!r}: expected x,y (two numbers separated by a comma)") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise PointError(f"{name} {text!r}: coordinates must be finite numbers")
    return x, y
