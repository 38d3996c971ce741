"""Grids of image panels with heatmap overlays and markers, saved as PNGs of an exact pixel size.

Matplotlib's object API (``Figure`` + Agg canvas, no ``pyplot``) keeps no global state, so figures can be
drawn from notebooks, tests and worker threads alike. A grid of ``rows × columns`` panels is exactly
``columns * tile`` pixels wide and ``rows * (tile + title_height)`` high (no tight bounding box).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from raddino.io.atomic import atomic_path

DPI = 100


@dataclass(frozen=True)
class Marker:
    """A point drawn on a panel, in the panel image's pixel coordinates (x = column, y = row)."""

    x: float
    y: float
    color: str = "cyan"
    shape: str = "o"
    label: str | None = None


@dataclass(frozen=True)
class Panel:
    """One tile of a grid.

    Attributes:
        image: (H, W) grey or (H, W, 3) RGB in [0, 1].
        title: Text above the tile.
        heatmap: Optional (H, W) values drawn over ``image`` with a colour map.
        heat_range: (low, high) of the colour map; ``None`` uses the heatmap's own range.
        alpha: Opacity of the heatmap.
        markers: Points to draw.
    """

    image: np.ndarray
    title: str = ""
    heatmap: np.ndarray | None = None
    heat_range: tuple[float, float] | None = None
    alpha: float = 0.55
    markers: Sequence[Marker] = field(default_factory=tuple)


def upsample(grid_map: np.ndarray, size: tuple[int, int], mode: str = "nearest") -> np.ndarray:
    """Resize a patch-grid map (h, w) to pixels (H, W); nearest keeps one value per patch, as DINO's
    attention figures do (``visualize_attention.py``)."""
    values = torch.from_numpy(np.ascontiguousarray(grid_map, dtype=np.float32))[None, None]  # (1, 1, h, w)
    resized = F.interpolate(values, size=size, mode=mode)  # (1, 1, H, W)
    return resized[0, 0].numpy()


def save_grid(
    panels: Sequence[Panel],
    out: str | Path,
    columns: int,
    tile: int = 256,
    title_height: int = 22,
    colormap: str = "inferno",
) -> Path:
    """Draw ``panels`` left to right, top to bottom, and write a PNG atomically.

    Args:
        panels: The tiles.
        out: Output ``.png``; its folder is created.
        columns: Tiles per row.
        tile: Side of each square tile in pixels.
        title_height: Pixels above each tile for its title.
        colormap: Matplotlib colour map for heatmaps.

    Returns:
        ``out`` as a Path; the image is ``columns * tile`` × ``rows * (tile + title_height)`` pixels.
    """
    if not panels:
        raise ValueError("no panels to draw")
    if columns < 1 or tile < 16:
        raise ValueError(f"columns must be ≥ 1 and tile ≥ 16 px, got {columns} and {tile}")
    rows = math.ceil(len(panels) / columns)
    width, height = columns * tile, rows * (tile + title_height)
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="black")
    FigureCanvasAgg(figure)
    font_size = min(9.0, max(6.0, tile / 28))  # titles fit their tile down to ~150 px
    for index, panel in enumerate(panels):
        row, col = divmod(index, columns)
        bottom = height - (row + 1) * (tile + title_height)
        axes = figure.add_axes((col * tile / width, bottom / height, tile / width, tile / height))
        axes.set_axis_off()
        image = np.asarray(panel.image)
        axes.imshow(
            image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest"
        )
        if panel.heatmap is not None:
            low, high = panel.heat_range or (float(np.min(panel.heatmap)), float(np.max(panel.heatmap)))
            axes.imshow(
                panel.heatmap, cmap=colormap, vmin=low, vmax=high, alpha=panel.alpha, interpolation="nearest"
            )
        for marker in panel.markers:
            axes.plot(
                [marker.x],
                [marker.y],
                marker.shape,
                markersize=9,
                markerfacecolor="none",
                markeredgecolor=marker.color,
                markeredgewidth=2,
            )
            if marker.label:
                axes.annotate(
                    marker.label,
                    (marker.x, marker.y),
                    xytext=(6, 6),
                    textcoords="offset pixels",
                    color=marker.color,
                    fontsize=8,
                )
        axes.set_xlim(-0.5, image.shape[1] - 0.5)
        axes.set_ylim(image.shape[0] - 0.5, -0.5)
        if panel.title:
            figure.text(
                (col + 0.5) * tile / width,
                (bottom + tile + title_height / 2) / height,
                panel.title,
                ha="center",
                va="center",
                color="white",
                fontsize=font_size,
            )
    out = Path(out)
    with atomic_path(out) as temporary:
        figure.savefig(temporary, format="png", dpi=DPI, facecolor="black")
    return out
