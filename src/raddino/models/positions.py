"""Position embeddings resized to another patch grid, exactly as DINOv2 does.

transformers 5 resizes position embeddings to an output *size*; DINOv2 resizes by a *scale factor* of
``(n + 0.1) / 37`` (``interpolate_offset`` 0.1, facebookresearch/dino issue #8), and DINOv2's register
models resize to a size with anti-aliasing. The two rules give different features at any resolution other
than the native one (518 px for RAD-DINO); following DINOv2, the model sees at 224 px, or at
pre-training's 196 px local crops, what DINOv2 training showed it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def interpolate_position_embeddings(
    stored: torch.Tensor, rows: int, cols: int, *, offset: float, antialias: bool
) -> torch.Tensor:
    """Position embeddings for a ``rows``×``cols`` grid, (1, 1 + rows*cols, D) (DINOv2's
    ``interpolate_pos_encoding``).

    Args:
        stored: The learned table (1, 1 + N, D): the class position, then a square grid of N positions.
        rows: Patch rows of the image.
        cols: Patch columns of the image.
        offset: DINOv2's ``interpolate_offset``: > 0 resizes by the scale factor
            ``(rows + offset) / side``, 0 resizes to the size.
        antialias: Anti-alias while resizing (DINOv2's register models).

    Returns:
        ``stored`` itself when it already fits; otherwise the grid resized bicubically in float32 and
        cast back to ``stored``'s dtype.
    """
    num_positions = stored.shape[1] - 1
    if rows * cols == num_positions and rows == cols:
        return stored
    side = math.isqrt(num_positions)
    class_position = stored[:, :1].float()  # (1, 1, D)
    grid = stored[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)  # (1, D, side, side)
    if offset:
        scale = ((rows + offset) / side, (cols + offset) / side)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=antialias)
    else:
        grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", antialias=antialias)
    if tuple(grid.shape[-2:]) != (rows, cols):
        raise RuntimeError(f"position embeddings resized to {tuple(grid.shape[-2:])}, wanted {(rows, cols)}")
    grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)  # (1, rows*cols, D)
    return torch.cat([class_position, grid], dim=1).to(stored.dtype)
