"""Last-layer CLS self-attention per head and their mean, over the image (the paper's Figure A.2).

Following DINO's ``visualize_attention.py``, each head's map is row 0 of the block's softmaxed attention
(what the CLS token attends to) restricted to the patch columns: the CLS→CLS column (and register
columns, for register models) is dropped. Unlike DINO, which shows the raw restricted row, the maps here are
renormalised so that each sums to 1 over the h×w patches: heads then share a scale and the mean of the heads
is a distribution too. The maps are upsampled to the preprocessed image (nearest, one value per patch) and
overlaid on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from raddino.io.atomic import atomic_open
from raddino.models import Encoder
from raddino.viz.figure import Panel, save_grid, upsample
from raddino.viz.inputs import EncodedInput


@dataclass(frozen=True)
class AttentionMaps:
    """CLS→patch attention of one image.

    Attributes:
        heads: (heads, h, w) per-head maps, each summing to 1 over the patches.
        mean: (h, w) mean over heads (sums to 1).
        cls_self: (heads,) the attention CLS paid to itself before it was dropped (how much mass the
            renormalisation redistributed).
        layer: Block the maps come from (0-based).
        upsampled: (heads + 1, H, W) maps at the input's pixel size, heads then mean; each pixel carries
            its patch's value.
    """

    heads: np.ndarray
    mean: np.ndarray
    cls_self: np.ndarray
    layer: int
    upsampled: np.ndarray


@torch.no_grad()
def cls_attention(encoder: Encoder, pixels: torch.Tensor, layer: int = -1) -> AttentionMaps:
    """CLS→patch attention maps of one preprocessed image.

    Args:
        encoder: The encoder (eval mode).
        pixels: One preprocessed image, (3, H, W).
        layer: Block to read, negatives from the end (-1: the last block, as in the paper).

    Returns:
        :class:`AttentionMaps` with the CLS and register columns dropped and each map renormalised.
    """
    if pixels.ndim != 3:
        raise ValueError(f"pixels must be one (3, H, W) image, got {tuple(pixels.shape)}")
    rows, cols = pixels.shape[1] // encoder.patch_size, pixels.shape[2] // encoder.patch_size
    device = next(encoder.parameters()).device
    attention = encoder.attention_maps(pixels[None].to(device), layer=layer)  # (1, nh, T, T)
    cls_row = attention[0, :, 0].double().cpu()  # (nh, T): what CLS attends to
    first_patch = 1 + encoder.num_register_tokens
    patches = cls_row[:, first_patch:]  # (nh, h*w)
    heads = patches / patches.sum(dim=-1, keepdim=True)  # (nh, h*w), each sums to 1
    heads_grid = heads.reshape(-1, rows, cols).numpy()  # (nh, h, w)
    mean = heads_grid.mean(axis=0)  # (h, w)
    size = (int(pixels.shape[1]), int(pixels.shape[2]))
    upsampled = np.stack([upsample(grid, size) for grid in [*heads_grid, mean]])  # (nh + 1, H, W)
    return AttentionMaps(
        heads=heads_grid,
        mean=mean,
        cls_self=cls_row[:, 0].numpy(),
        layer=layer % encoder.num_layers,
        upsampled=upsampled,
    )


def attention_figure(
    image: EncodedInput,
    maps: AttentionMaps,
    out: str | Path,
    tile: int = 256,
    columns: int | None = None,
) -> Path:
    """Save the image, each head's map and the mean map as one PNG grid.

    Each overlay is scaled to its own maximum (heads differ in how peaked they are).

    Args:
        image: The image the maps belong to.
        maps: From :func:`cls_attention`.
        out: Output ``.png``.
        tile: Panel side in pixels.
        columns: Panels per row (default: all in one row up to 5, else 5 per row).

    Returns:
        ``out``; ``columns * tile`` wide, ``rows * (tile + 22)`` high for heads + 2 panels.
    """
    panels = [Panel(image.display, title=image.name)]
    for head, upsampled in enumerate(maps.upsampled[:-1]):
        panels.append(Panel(image.display, title=f"head {head}", heatmap=upsampled))
    panels.append(Panel(image.display, title=f"mean of {len(maps.heads)} heads", heatmap=maps.upsampled[-1]))
    return save_grid(panels, out, columns=columns or min(len(panels), 5), tile=tile)


def save_attention_arrays(maps: AttentionMaps, out: str | Path) -> Path:
    """Write the patch-grid maps as one ``.npy`` of (heads + 1, h, w): the heads, then their mean."""
    out = Path(out)
    with atomic_open(out, "wb", encoding=None) as handle:
        np.save(handle, np.concatenate([maps.heads, maps.mean[None]]).astype(np.float32))
    return out
