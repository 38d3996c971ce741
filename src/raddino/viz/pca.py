"""Principal components of patch tokens as colours, background masked (the DINOv2 paper's Figure 1/9).

As in DINOv2 (Oquab et al. 2023, Section 7.3 "PCA of patch features"), a first PCA is fitted on the patch
tokens of all images jointly and its first component is thresholded to separate foreground from
background; a second PCA, fitted on the foreground patches only, gives three components shown as RGB.

Two choices the paper leaves open are made explicit here. The sign of a principal component is
arbitrary, so the side of the first component that covers more of the images' border patches is taken as
background (in a chest X-ray the border is air, collimation or text). The first component is min-max
scaled to [0, 1] over all patches, background side low, and patches scoring below ``threshold`` are
masked: ``threshold=0`` masks nothing, and raising it masks more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA

from raddino.viz.figure import Panel, save_grid, upsample
from raddino.viz.inputs import EncodedInput


@dataclass(frozen=True)
class PatchPCA:
    """Colour maps of one or more images' patch tokens.

    Attributes:
        rgb: Per image, (h, w, 3) in [0, 1]; masked patches are black.
        foreground: Per image, (h, w) bool, True where a patch is kept.
        first_component: Per image, (h, w) the first component scaled to [0, 1], background side low.
        threshold: Score below which a patch was masked (``None``: nothing masked).
    """

    rgb: list[np.ndarray]
    foreground: list[np.ndarray]
    first_component: list[np.ndarray]
    threshold: float | None

    @property
    def masked_fraction(self) -> float:
        """Fraction of all patches (all images together) that were masked."""
        kept = sum(int(mask.sum()) for mask in self.foreground)
        total = sum(mask.size for mask in self.foreground)
        return 1.0 - kept / total


def _border(shape: tuple[int, int]) -> np.ndarray:
    border = np.zeros(shape, dtype=bool)  # (h, w)
    border[0], border[-1], border[:, 0], border[:, -1] = True, True, True, True
    return border


def patch_pca(
    tokens: Sequence[torch.Tensor | np.ndarray], threshold: float | None = 0.5, seed: int = 0
) -> PatchPCA:
    """Fit the two PCAs jointly over ``tokens`` and colour each image's patches.

    Args:
        tokens: Per image, patch tokens (D, h, w); grids may differ between images, D may not.
        threshold: Mask patches whose scaled first component is below this (in [0, 1]); 0 or ``None``
            keeps every patch and colours the three first components of a PCA over all of them.
        seed: Seed of the randomised SVD sklearn uses on large inputs (results reproducible).

    Returns:
        :class:`PatchPCA`. Each RGB channel is min-max scaled over the kept patches of all images.
    """
    if not tokens:
        raise ValueError("no images to fit a PCA on")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    grids = [np.asarray(token, dtype=np.float32) for token in tokens]  # each (D, h, w)
    widths = {grid.shape[0] for grid in grids}
    if len(widths) != 1 or any(grid.ndim != 3 for grid in grids):
        raise ValueError(f"tokens must all be (D, h, w) with one D, got {[grid.shape for grid in grids]}")
    shapes = [(grid.shape[1], grid.shape[2]) for grid in grids]
    flat = np.concatenate([grid.reshape(grid.shape[0], -1).T for grid in grids])  # (N, D), N = Σ h*w
    if flat.shape[0] < 4:
        raise ValueError(f"need at least 4 patches for a 3-component PCA, got {flat.shape[0]}")
    first = PCA(n_components=1, random_state=seed).fit_transform(flat)[:, 0]  # (N,)
    border = np.concatenate([_border(shape).ravel() for shape in shapes])  # (N,)
    # The side holding most border patches is background: flip so it is low.
    if np.median(first[border]) > np.median(first):
        first = -first
    span = float(first.max() - first.min())
    score = (first - first.min()) / span if span > 0 else np.ones_like(first)  # (N,) in [0, 1]
    keep = np.ones(len(score), dtype=bool) if threshold is None else score >= threshold  # (N,)
    colours = np.zeros((len(score), 3), dtype=np.float32)  # (N, 3)
    if keep.sum() >= 3:
        components = PCA(n_components=3, random_state=seed).fit_transform(flat[keep])  # (K, 3)
        low, high = components.min(axis=0), components.max(axis=0)
        colours[keep] = (components - low) / np.where(high > low, high - low, 1.0)
    starts = np.cumsum([0] + [h * w for h, w in shapes])
    rgb, foreground, first_maps = [], [], []
    for (h, w), start, stop in zip(shapes, starts[:-1], starts[1:], strict=True):
        rgb.append(colours[start:stop].reshape(h, w, 3))
        foreground.append(keep[start:stop].reshape(h, w))
        first_maps.append(score[start:stop].reshape(h, w).astype(np.float32))
    return PatchPCA(rgb=rgb, foreground=foreground, first_component=first_maps, threshold=threshold)


def pca_figure(images: Sequence[EncodedInput], result: PatchPCA, out: str | Path, tile: int = 256) -> Path:
    """Save one column per image: the image above, its PCA colours below (nearest-upsampled patches).

    Returns:
        ``out``; ``len(images) * tile`` wide and ``2 * (tile + 22)`` high.
    """
    panels_top, panels_bottom = [], []
    for image, rgb, mask in zip(images, result.rgb, result.foreground, strict=True):
        size = image.display.shape
        colour = np.stack([upsample(rgb[..., channel], size) for channel in range(3)], axis=-1)  # (H, W, 3)
        panels_top.append(Panel(image.display, title=image.name))
        panels_bottom.append(Panel(colour, title=f"PCA, {100 * (1 - mask.mean()):.0f}% masked"))
    return save_grid([*panels_top, *panels_bottom], out, columns=len(images), tile=tile)
