"""Fine-tuning augmentations on preprocessed batches: random crop, small rotation, brightness / contrast,
an optional horizontal flip (off by default: left and right matter on a chest X-ray).

Crop and rotation are one affine warp of image and masks together (the segmentation data's
:func:`~raddino.evaluate.segmentation.data.random_affine`): a crop keeping an area share ``a`` is a zoom by
``1 / sqrt(a)``. Every draw comes from the caller's generator, so a resumed run repeats them exactly.
"""

from __future__ import annotations

import math

import torch

from raddino.evaluate.segmentation.data import random_affine
from raddino.finetune.config import FinetuneAugment


def augment_batch(
    pixels: torch.Tensor,
    masks: torch.Tensor | None,
    settings: FinetuneAugment,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A randomly augmented copy of a batch.

    Args:
        pixels: (B, 3, H, W) preprocessed images.
        masks: (B, C, H, W) float 0/1 masks that follow the geometry, or None.
        settings: The ranges.
        generator: Source of every draw (CPU).

    Returns:
        Images (and masks) of the same shapes.
    """
    batch = pixels.shape[0]
    zoom = 1.0 / math.sqrt(settings.crop_area)
    shift = (1.0 - math.sqrt(settings.crop_area)) / 2  # the crop stays (mostly) inside the image
    pixels, masks = random_affine(pixels, masks, generator, settings.rotation, (1.0, zoom), shift)
    contrast = 1 + (torch.rand(batch, generator=generator) * 2 - 1) * settings.contrast  # (B,)
    brightness = (torch.rand(batch, generator=generator) * 2 - 1) * settings.brightness  # (B,)
    mean = pixels.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    spread = (pixels.amax(dim=(1, 2, 3)) - pixels.amin(dim=(1, 2, 3))).view(-1, 1, 1, 1)
    pixels = (pixels - mean) * contrast.view(-1, 1, 1, 1) + mean + brightness.view(-1, 1, 1, 1) * spread
    flip = torch.rand(batch, generator=generator) < settings.hflip  # (B,)
    if bool(flip.any()):
        pixels = torch.where(flip.view(-1, 1, 1, 1), pixels.flip(-1), pixels)
        if masks is not None:
            masks = torch.where(flip.view(-1, 1, 1, 1), masks.flip(-1), masks)
    return pixels, masks
