"""The drawing surface: a pixel grid in normalised body coordinates, and the cheap primitives on it.

Coordinates: ``x`` runs from -1 (image left) to 1 (image right) and ``y`` from -1 (top) to 1 (bottom) at
positioning scale 1; one unit is ``MM_PER_UNIT`` millimetres. Shapes are analytic functions evaluated on
broadcast 1-D coordinate vectors (rows ``(h, 1)`` × columns ``(1, w)``) over the bounding box of each
structure only, so a 518 px phantom costs tens of milliseconds. Smooth random textures come from
Gaussian-kernel interpolation of a coarse random grid written as two small matrix products, which is
resolution independent: the same phantom rendered at 128 and 518 px shows the same texture.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

# A 2-unit-wide field of view spans 350 mm, the width of a 35 × 43 cm radiographic cassette.
MM_PER_UNIT = 175.0


@dataclass(frozen=True)
class Region:
    """A rectangular window of the canvas with its coordinates.

    Attributes:
        rows: Slice of image rows.
        cols: Slice of image columns.
        y: Row coordinates, shape (h, 1).
        x: Column coordinates, shape (1, w).
    """

    rows: slice
    cols: slice
    y: np.ndarray
    x: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y.shape[0], self.x.shape[1])


class Canvas:
    """A square pixel grid of side ``size`` seen through a positioning transform.

    Args:
        size: Side in pixels.
        scale: Magnification of the body in the image (> 1: the body fills more of the frame).
        shift_x: Horizontal position of the body's midline in image units.
        shift_y: Vertical shift of the body in image units.
    """

    def __init__(self, size: int, scale: float = 1.0, shift_x: float = 0.0, shift_y: float = 0.0) -> None:
        self.size = size
        centres = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0  # (S,)
        self.xs = ((centres - shift_x) / scale).astype(np.float32)  # (S,) body x of each column
        self.ys = ((centres - shift_y) / scale).astype(np.float32)  # (S,) body y of each row
        self.pixel = float(2.0 / size / scale)  # one pixel in body units
        self._scale, self._shift_x, self._shift_y = scale, shift_x, shift_y

    def full(self) -> Region:
        """The whole canvas."""
        return Region(slice(0, self.size), slice(0, self.size), self.ys[:, None], self.xs[None, :])

    def _index(self, value: float, shift: float) -> float:
        return ((value * self._scale + shift) + 1.0) * self.size / 2.0

    def region(self, x0: float, x1: float, y0: float, y1: float) -> Region | None:
        """The pixels whose body coordinates lie in ``[x0, x1] × [y0, y1]`` (plus one pixel), or None."""
        c0 = max(0, int(np.floor(self._index(min(x0, x1), self._shift_x))) - 1)
        c1 = min(self.size, int(np.ceil(self._index(max(x0, x1), self._shift_x))) + 1)
        r0 = max(0, int(np.floor(self._index(min(y0, y1), self._shift_y))) - 1)
        r1 = min(self.size, int(np.ceil(self._index(max(y0, y1), self._shift_y))) + 1)
        if c1 <= c0 or r1 <= r0:
            return None
        return Region(slice(r0, r1), slice(c0, c1), self.ys[r0:r1, None], self.xs[None, c0:c1])

    def to_pixels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (row, column) pixel indices of body coordinates."""
        return self._index_array(y, self._shift_y), self._index_array(x, self._shift_x)

    def _index_array(self, value: np.ndarray, shift: float) -> np.ndarray:
        return (np.asarray(value) * self._scale + shift + 1.0) * self.size / 2.0 - 0.5


def ramp(signed_distance: np.ndarray, width: float) -> np.ndarray:
    """0 outside, 1 inside, linear across ``width`` centred on the boundary (anti-aliased edge)."""
    return np.clip(0.5 + signed_distance / width, 0.0, 1.0)


def smoothstep(edge0: float | np.ndarray, edge1: float | np.ndarray, value: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at ``edge0`` to 1 at ``edge1`` (either order)."""
    t = np.clip((value - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@lru_cache(maxsize=64)
def _kernel_weights(coords: bytes, n_nodes: int, low: float, high: float) -> np.ndarray:
    """Row-normalised Gaussian weights of each coordinate on ``n_nodes`` evenly spaced nodes: (len, n)."""
    values = np.frombuffer(coords, dtype=np.float32)
    nodes = np.linspace(low, high, n_nodes, dtype=np.float32)
    spacing = (high - low) / (n_nodes - 1)
    # sigma = 0.6 node spacings: smooth (no visible grid) yet keeps most of the grid's variance.
    weights = np.exp(-0.5 * ((values[:, None] - nodes[None, :]) / (0.6 * spacing)) ** 2)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def smooth_field(
    rng: np.random.Generator, region: Region, cells_per_unit: float, extent: float = 1.25
) -> np.ndarray:
    """A smooth zero-mean, unit-variance random field over ``region``: (h, w) float32.

    Args:
        rng: Source of the coarse grid.
        region: Where to evaluate it.
        cells_per_unit: Grid nodes per body unit; features are about ``1 / cells_per_unit`` units wide.
        extent: The grid covers ``[-extent, extent]`` in both axes.
    """
    n_nodes = max(3, round(2 * extent * cells_per_unit) + 1)
    grid = rng.standard_normal((n_nodes, n_nodes), dtype=np.float32)  # (ny, nx)
    rows = _kernel_weights(np.ascontiguousarray(region.y[:, 0]).tobytes(), n_nodes, -extent, extent)
    cols = _kernel_weights(np.ascontiguousarray(region.x[0, :]).tobytes(), n_nodes, -extent, extent)
    field = rows @ grid @ cols.T  # (h, ny) @ (ny, nx) @ (nx, w) -> (h, w)
    # Interpolation shrinks the variance by a constant that depends only on the kernel; undo it.
    return field * np.float32(2.2)


def polyline_distance(
    canvas: Canvas, points_x: np.ndarray, points_y: np.ndarray, margin: float
) -> tuple[Region, np.ndarray] | None:
    """Distance (body units) from each pixel near a curve to the curve, via a Euclidean distance transform.

    Args:
        canvas: The canvas.
        points_x: Body x of points along the curve, densely sampled (spacing below a pixel).
        points_y: Body y of the same points.
        margin: How far from the curve distances are needed; the region is the curve's box grown by it.

    Returns:
        The region and its (h, w) distances, or None when the curve lies off the canvas.
    """
    region = canvas.region(
        float(points_x.min()) - margin,
        float(points_x.max()) + margin,
        float(points_y.min()) - margin,
        float(points_y.max()) + margin,
    )
    if region is None:
        return None
    rows, cols = canvas.to_pixels(points_x, points_y)
    rows = np.rint(rows).astype(np.int64) - region.rows.start
    cols = np.rint(cols).astype(np.int64) - region.cols.start
    height, width = region.shape
    keep = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    if not keep.any():
        return None
    on_curve = np.zeros((height, width), dtype=bool)
    on_curve[rows[keep], cols[keep]] = True
    distance = ndimage.distance_transform_edt(~on_curve)  # (h, w) in pixels
    return region, (distance * canvas.pixel).astype(np.float32)


def bezier(control: np.ndarray, n_points: int) -> np.ndarray:
    """Points on the Bézier curve with control points ``control`` (k, 2): (n_points, 2)."""
    t = np.linspace(0.0, 1.0, n_points)[:, None]  # (n, 1)
    points = control.astype(np.float64)
    # De Casteljau: repeated linear interpolation between neighbouring control points.
    stack = np.broadcast_to(points, (n_points, *points.shape)).copy()  # (n, k, 2)
    for _ in range(len(points) - 1):
        stack = (1 - t[:, :, None]) * stack[:, :-1] + t[:, :, None] * stack[:, 1:]
    return stack[:, 0, :]
