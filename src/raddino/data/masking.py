"""Block-wise iBOT masks (DINOv2 ``dinov2/data/masking.py`` and ``dinov2/data/collate.py``; BEiT's rule).

A mask is grown from rectangles: each has an area drawn between ``min_num_patches`` and what is still
missing (capped at ``max_num_patches``), a log-uniform aspect ratio in ``[min_aspect, 1 / min_aspect]``, and
is kept only when it adds new patches without overshooting, so a mask never holds more patches than
asked. For a batch, DINOv2 masks the first ``B × mask_sample_probability`` images with ratios spread over
``[0.1, 0.5]`` and leaves the rest unmasked (``ibot.mask_ratio_min_max``, ``ibot.mask_sample_probability``).

Every draw uses the numpy generator it is given, one per sample, so a sample's mask is the same whichever
process or batch slice computes it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

# BEiT / DINOv2: up to 10 rectangle proposals before giving up on one growth step.
_ATTEMPTS = 10


class BlockMaskGenerator:
    """Draws (h, w) boolean block masks over a patch grid.

    Args:
        grid: Patch grid (h, w), e.g. (37, 37) for 518 px and patch 14.
        max_num_patches: Largest rectangle in patches; DINOv2 uses half the grid (the default here).
        min_num_patches: Smallest rectangle in patches (DINOv2: 4).
        min_aspect: Smallest aspect ratio of a rectangle (DINOv2: 0.3).
        max_aspect: Largest aspect ratio; ``1 / min_aspect`` when None.
    """

    def __init__(
        self,
        grid: tuple[int, int],
        max_num_patches: float | None = None,
        min_num_patches: int = 4,
        min_aspect: float = 0.3,
        max_aspect: float | None = None,
    ) -> None:
        height, width = int(grid[0]), int(grid[1])
        if height < 1 or width < 1:
            raise ValueError(f"grid must be positive, got {grid}")
        if min_aspect <= 0:
            raise ValueError(f"min_aspect must be positive, got {min_aspect}")
        self.height, self.width = height, width
        self.num_patches = height * width
        self.max_num_patches = 0.5 * self.num_patches if max_num_patches is None else float(max_num_patches)
        self.min_num_patches = min_num_patches
        max_aspect = max_aspect if max_aspect is not None else 1.0 / min_aspect
        self.log_aspect_range = (math.log(min_aspect), math.log(max_aspect))

    @property
    def grid(self) -> tuple[int, int]:
        """The patch grid (h, w)."""
        return self.height, self.width

    def _add_block(self, mask: np.ndarray, max_mask_patches: float, rng: np.random.Generator) -> int:
        """Try to add one rectangle of new patches; the number added (0 when every proposal failed)."""
        for _ in range(_ATTEMPTS):
            # Python's random.uniform as DINOv2: the bounds may be reversed near the end of a mask.
            target_area = self.min_num_patches + (max_mask_patches - self.min_num_patches) * rng.random()
            aspect = math.exp(rng.uniform(*self.log_aspect_range))
            block_h = round(math.sqrt(target_area * aspect))
            block_w = round(math.sqrt(target_area / aspect))
            # Strictly smaller than the grid, as DINOv2: a block never spans a whole side.
            if 0 < block_h < self.height and 0 < block_w < self.width:
                top = int(rng.integers(0, self.height - block_h + 1))
                left = int(rng.integers(0, self.width - block_w + 1))
                window = mask[top : top + block_h, left : left + block_w]  # (block_h, block_w) view
                new_patches = block_h * block_w - int(window.sum())
                if 0 < new_patches <= max_mask_patches:
                    window[...] = True
                    return new_patches
        return 0

    def __call__(self, num_masking_patches: int, rng: np.random.Generator) -> np.ndarray:
        """A mask with at most ``num_masking_patches`` patches (usually exactly, sometimes a few fewer).

        Args:
            num_masking_patches: Patches to mask; 0 gives an empty mask.
            rng: The generator every draw comes from.

        Returns:
            (h, w) bool array, True where a patch is masked.
        """
        mask = np.zeros((self.height, self.width), dtype=bool)  # (h, w)
        count = 0
        while count < num_masking_patches:
            remaining = min(num_masking_patches - count, self.max_num_patches)
            added = self._add_block(mask, remaining, rng)
            if added == 0:
                break
            count += added
        return mask


def sample_batch_masks(
    batch_size: int,
    grid: tuple[int, int],
    mask_ratio_min_max: tuple[float, float] = (0.1, 0.5),
    mask_sample_probability: float = 0.5,
    rngs: Sequence[np.random.Generator] | None = None,
    generator: BlockMaskGenerator | None = None,
) -> torch.Tensor:
    """iBOT masks for a batch of global crops, by DINOv2's collate rule.

    The first ``round(batch_size × mask_sample_probability)`` samples are masked (DINOv2 truncates with
    ``int``; the two agree whenever the product is whole, e.g. an even batch at 0.5); sample ``i`` of those
    ``n`` gets ratio ``U(r_i, r_{i+1})`` with ``r = linspace(min, max, n + 1)``, so the ratios spread evenly
    over the range, and ``int(h·w × ratio)`` patches. The rest get empty masks. Unlike DINOv2, masks are
    not shuffled: sample ``i`` always draws from ``rngs[i]``.

    Args:
        batch_size: Number of samples (global crops) to mask.
        grid: Patch grid (h, w).
        mask_ratio_min_max: Range of per-image mask ratios (DINOv2: 0.1, 0.5).
        mask_sample_probability: Fraction of samples masked (DINOv2: 0.5).
        rngs: One generator per sample; fresh unseeded ones when None (not reproducible).
        generator: The block generator; DINOv2's defaults for ``grid`` when None.

    Returns:
        (batch_size, h·w) bool tensor, True where a patch is masked (row-major patch order).

    Raises:
        ValueError: a ratio or probability outside [0, 1], or ``len(rngs) != batch_size``.
    """
    low, high = mask_ratio_min_max
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"mask_ratio_min_max must satisfy 0 <= min <= max <= 1, got {mask_ratio_min_max}")
    if not 0.0 <= mask_sample_probability <= 1.0:
        raise ValueError(f"mask_sample_probability must be in [0, 1], got {mask_sample_probability}")
    if rngs is None:
        rngs = [np.random.default_rng() for _ in range(batch_size)]
    if len(rngs) != batch_size:
        raise ValueError(f"need one generator per sample: got {len(rngs)} for batch_size {batch_size}")
    generator = generator or BlockMaskGenerator(grid)
    if generator.grid != (int(grid[0]), int(grid[1])):
        raise ValueError(f"generator grid {generator.grid} does not match grid {tuple(grid)}")
    num_patches = generator.num_patches
    n_masked = round(batch_size * mask_sample_probability)
    bounds = np.linspace(low, high, n_masked + 1)
    masks = np.zeros((batch_size, num_patches), dtype=bool)  # (B, h·w)
    for index in range(n_masked):
        ratio = rngs[index].uniform(bounds[index], bounds[index + 1])
        masks[index] = generator(int(num_patches * ratio), rngs[index]).reshape(-1)
    return torch.from_numpy(masks)
