"""Airways and vessels: trachea and main bronchi (air columns), hila, and the lung markings.

Lung markings are what a pneumothorax is recognised by (none beyond the pleural line) and what fibrosis
coarsens, so they must exist. They are drawn as radial streaks from each hilum: the positive lobes of a
sum of a few angular waves whose phase drifts with log-radius, sharpened, fading and thinning toward the
periphery as real vessels do. That costs a handful of trigonometric passes over each lung's box.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from raddino.data.phantoms.anatomy import Anatomy, Positioning
from raddino.data.phantoms.canvas import Canvas, smoothstep
from raddino.data.phantoms.thorax import SIDE_SIGN, LungSide


def hilum_centre(lung: LungSide, anatomy: Anatomy, positioning: Positioning) -> tuple[float, float]:
    """Body (x, y) of a hilum; the left hilum sits higher than the right, as in most people."""
    sign = SIDE_SIGN[lung.side]
    height = lung.base - lung.apex
    y = lung.apex + height * (0.44 if lung.side == "right" else 0.4)
    x = positioning.rotation + sign * (anatomy.mediastinum + 0.085)
    return float(x), float(y)


def vessel_tree(
    rng: np.random.Generator,
    generations: int = 4,
    angles: tuple[float, float] = (-115.0, 100.0),
    trunks: int = 7,
) -> np.ndarray:
    """Branching vessel segments from a hilum at the origin, in lung coordinates (u outward, v down).

    Returns:
        (n, 5) array of ``u0, v0, u1, v1, calibre`` per segment; calibre 1 at the hilum, ×0.72 per
        generation (Murray's law for a symmetric split gives 2^(-1/3) ≈ 0.79; pulmonary trees taper faster).
    """
    angle = np.deg2rad(np.linspace(angles[0], angles[1], trunks) + rng.normal(0.0, 6.0, trunks))  # (n,)
    length = rng.uniform(0.08, 0.12, trunks)
    # Trunks leave from along the hilum (a few centimetres tall), not from one point.
    start = np.column_stack(
        [rng.uniform(0.0, 0.03, trunks), np.sin(angle) * 0.05 + rng.normal(0.0, 0.01, trunks)]
    )
    calibre = np.ones(trunks)
    segments = []
    for _ in range(generations + 1):
        end = start + length[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)  # (n, 2)
        segments.append(np.column_stack([start, end, calibre]))
        count = angle.size
        spread = np.deg2rad(rng.uniform(14.0, 32.0, count))
        bias = rng.normal(0.0, np.deg2rad(5.0), count)
        angle = np.concatenate([angle - spread + bias, angle + spread + bias])
        length = np.concatenate([length, length]) * rng.uniform(0.66, 0.84, 2 * count)
        start = np.concatenate([end, end])
        calibre = np.concatenate([calibre, calibre]) * 0.72
    return np.concatenate(segments)


def draw_vessels(
    rng: np.random.Generator,
    lung: LungSide,
    hilum: tuple[float, float],
    strength: float,
    angles: tuple[float, float] = (-115.0, 100.0),
    trunks: int = 7,
) -> np.ndarray:
    """Density of hilar vessels and lung markings over ``lung.region``: (h, w) float32.

    Args:
        rng: Source of the tree.
        lung: The lung field whose box is drawn on.
        hilum: Body (x, y) the trunks leave from.
        strength: Overall density of the markings.
        angles: Range of trunk directions in degrees (0: outward, 90: down).
        trunks: Number of trunks.

    The tree is sampled as points every half pixel along each segment and splatted into two images, one
    for large and one for small vessels, each blurred to its calibre (a blurred line's peak is about
    0.8 × weight / sigma, so multiplying by sigma keeps peaks proportional to calibre at every size).
    """
    hx, hy = hilum
    sign = SIDE_SIGN[lung.side]
    height, width = lung.region.shape
    x0, y0 = float(lung.region.x[0, 0]), float(lung.region.y[0, 0])
    pixel = float(lung.region.y[1, 0] - y0) if height > 1 else 1.0
    tree = vessel_tree(rng, angles=angles, trunks=trunks)  # (n, 5)
    counts = np.maximum(
        2, (np.hypot(tree[:, 2] - tree[:, 0], tree[:, 3] - tree[:, 1]) / (0.5 * pixel)).astype(int)
    )
    segment = np.repeat(np.arange(len(tree)), counts)  # (points,)
    offsets = np.arange(segment.size) - np.repeat(np.cumsum(counts) - counts, counts)
    t = offsets / (counts[segment] - 1.0)
    u = tree[segment, 0] + t * (tree[segment, 2] - tree[segment, 0])
    v = tree[segment, 1] + t * (tree[segment, 3] - tree[segment, 1])
    cols = np.rint((hx + sign * u - x0) / pixel).astype(np.int64)
    rows = np.rint((hy + v - y0) / pixel).astype(np.int64)
    keep = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    calibre = tree[segment, 4]
    markings = np.zeros((height, width), dtype=np.float32)
    # Blur widths: ~2 mm for large vessels, ~0.9 mm for small ones (one body unit = 175 mm).
    for is_large, sigma in ((True, max(0.6, 0.012 / pixel)), (False, max(0.5, 0.005 / pixel))):
        chosen = keep & ((calibre > 0.4) == is_large)
        flat = np.bincount(
            rows[chosen] * width + cols[chosen], weights=0.5 * calibre[chosen], minlength=height * width
        )
        splat = flat.reshape(height, width).astype(np.float32)
        markings += np.float32(0.75 * sigma) * ndimage.gaussian_filter(splat, sigma)
    radius = np.sqrt(np.square(sign * (lung.region.x - hx)) + np.square(lung.v - hy))  # (h, w)
    hilar_shadow = np.exp(-np.square(radius / 0.08))
    return (strength * (0.5 * markings + 0.05 * hilar_shadow)).astype(np.float32)


def draw_airways(canvas: Canvas, anatomy: Anatomy, positioning: Positioning, density: np.ndarray) -> None:
    """Subtract the trachea and main bronchi (air) from ``density`` in place."""
    midline = positioning.rotation
    carina_y = anatomy.apex_y + 0.42
    radius = 0.028
    region = canvas.region(midline - 0.3, midline + 0.3, -1.2, carina_y + 0.2)
    if region is None:
        return
    x, y = region.x, region.y
    # Trachea: a vertical air column, pushed slightly right (image left) by the aortic knob.
    centre = midline - 0.012 * smoothstep(anatomy.apex_y, anatomy.apex_y + 0.3, y)
    trachea = np.clip(1.0 - np.square((x - centre) / radius), 0.0, 1.0) * smoothstep(
        carina_y + 0.02, carina_y - 0.02, y
    )
    air = np.sqrt(trachea)
    for sign, angle in ((-1.0, 0.62), (1.0, 0.85)):  # the right main bronchus is steeper (more vertical)
        direction = np.array([sign * np.sin(angle), np.cos(angle)])
        along = (x - midline) * direction[0] + (y - carina_y) * direction[1]
        across = (x - midline) * direction[1] - (y - carina_y) * direction[0]
        length = 0.16 if sign < 0 else 0.2
        inside = np.clip(1.0 - np.square(across / (0.8 * radius)), 0.0, 1.0)
        air = np.maximum(
            air, np.sqrt(inside) * smoothstep(-0.01, 0.01, along) * smoothstep(length, length - 0.05, along)
        )
    density[region.rows, region.cols] -= (0.16 * anatomy.body_depth * air).astype(np.float32)
