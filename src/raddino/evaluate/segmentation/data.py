"""Images and their structure masks for segmentation, preprocessed exactly alike.

Each structure is a manifest column holding a mask PNG path per image (non-zero pixels inside). Masks go
through the image's own preprocessing geometry (resize so the shorter side matches, centre crop), with a
bilinear resize thresholded at 0.5, so mask and image pixels stay aligned. An empty cell means the
structure was not annotated for that image: it is left out of the loss and of the Dice, never taken as
"absent" (an annotated but empty mask is a real, empty target).

Augmentation (training only, optional): a small random affine transform (rotation, scale, shift) applied
to image and masks together. There is no horizontal flip by default: left and right lungs and lung zones
change meaning when mirrored; ``hflip`` is refused for such structures.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional

from raddino.data.preprocess import InferencePreprocessor, PreprocessConfig
from raddino.io.images import read_image
from raddino.io.manifest import Manifest

_SIDED = ("left", "right", "lung", "zone")


class SegmentationDataError(ValueError):
    """An image or mask cannot be used; the message names the file."""


@dataclass
class SegmentationSample:
    """One preprocessed image with its masks."""

    id: str
    path: Path
    pixels: torch.Tensor
    """(3, H, W) the encoder's input."""
    masks: torch.Tensor
    """(C, H, W) bool."""
    known: torch.Tensor
    """(C,) bool: whether each structure is annotated."""


def mask_columns(columns: Sequence[str]) -> list[str]:
    """Manifest columns that hold masks by convention (``mask_*``)."""
    return [column for column in columns if column.startswith("mask_")]


def structure_name(column: str) -> str:
    return column.removeprefix("mask_")


def check_flip(structures: Sequence[str]) -> None:
    """Refuse horizontal flips for structures whose meaning depends on the side."""
    sided = [name for name in structures if any(word in name.lower() for word in _SIDED)]
    if sided:
        raise ValueError(f"hflip would swap left and right for {sided}; keep hflip off for these structures")


class MaskPreprocessor:
    """Applies an image preprocessing's geometry to a binary mask."""

    def __init__(self, config: PreprocessConfig) -> None:
        geometry = dataclasses.replace(config, do_normalize=False, resample="bilinear")
        self.preprocess = InferencePreprocessor(geometry)

    def __call__(self, mask: np.ndarray) -> torch.Tensor:
        """(H0, W0) bool → (H, W) bool at the preprocessed image's size."""
        resized = self.preprocess.from_array(mask.astype(np.float32))[0]  # (H, W) float in [0, 1]
        return resized > 0.5


def read_mask(path: Path) -> np.ndarray:
    """A mask PNG (any bit depth) as bool: non-zero pixels are inside."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("I")) > 0
    except (OSError, ValueError) as error:
        raise SegmentationDataError(f"{path}: cannot read mask: {error}") from error


def load_sample(
    manifest: Manifest, row: Mapping[str, str], columns: Sequence[str], preprocess: PreprocessConfig
) -> SegmentationSample:
    """Read and preprocess one image and its masks; raises naming the file at fault."""
    path = manifest.resolve(row)
    image = read_image(path)
    pixels = InferencePreprocessor(preprocess)(image)  # (3, H, W)
    to_mask = MaskPreprocessor(preprocess)
    masks = torch.zeros((len(columns), *pixels.shape[-2:]), dtype=torch.bool)
    known = torch.zeros(len(columns), dtype=torch.bool)
    for index, column in enumerate(columns):
        if not row.get(column, "").strip():
            continue
        mask_path = manifest.resolve(row, column)
        mask = read_mask(mask_path)
        if mask.shape != image.pixels.shape:
            raise SegmentationDataError(
                f"{mask_path}: mask is {mask.shape[1]}×{mask.shape[0]}, its image {path} is "
                f"{image.pixels.shape[1]}×{image.pixels.shape[0]}"
            )
        masks[index] = to_mask(mask)
        known[index] = True
    return SegmentationSample(row["id"], path, pixels, masks, known)


def random_affine(
    pixels: torch.Tensor,
    masks: torch.Tensor | None,
    generator: torch.Generator,
    degrees: float = 10.0,
    scale: tuple[float, float] = (0.9, 1.1),
    shift: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The same random rotation / scale / shift applied to images and masks.

    Args:
        pixels: (B, 3, H, W) preprocessed images.
        masks: (B, C, H, W) float masks, or None.

    Returns:
        Transformed images (bilinear) and masks (nearest; None when none were given), same shapes.
    """
    batch = pixels.shape[0]
    angle = (torch.rand(batch, generator=generator) * 2 - 1) * math.radians(degrees)
    zoom = torch.empty(batch).uniform_(*scale, generator=generator)
    offset = (torch.rand(batch, 2, generator=generator) * 2 - 1) * shift * 2  # in [-1, 1] grid units
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, offset[:, 0]], 1), torch.stack([sin, cos, offset[:, 1]], 1)], 1
    )
    grid = functional.affine_grid(theta, list(pixels.shape), align_corners=False)  # (B, H, W, 2)
    # Outside the image: the normalised value of black, as the preprocessing pads.
    background = pixels.amin(dim=(2, 3), keepdim=True)
    moved = (
        functional.grid_sample(pixels - background, grid, mode="bilinear", align_corners=False) + background
    )
    if masks is None:
        return moved, None
    return moved, functional.grid_sample(masks, grid, mode="nearest", align_corners=False)
