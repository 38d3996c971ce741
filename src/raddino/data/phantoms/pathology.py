"""Drawing the findings into a lung field: effusion, opacity, nodules, pneumothorax, fibrosis.

All functions work on a ``LungSide`` (one lung of a frontal view, or the superimposed lung field of a
lateral view) and change its ``air`` / ``parenchyma`` in place or return density to add, so the same code
serves both views. Each returns the finding's mask over the lung's region, which is how the masks stay
consistent with the pixels: they come from the same functions, thresholded.
"""

from __future__ import annotations

import numpy as np

from raddino.data.phantoms.canvas import MM_PER_UNIT, Canvas, ramp, smooth_field, smoothstep
from raddino.data.phantoms.lesions import Fibrosis, Nodule, Opacity
from raddino.data.phantoms.thorax import LungSide


def lung_extent(lung: LungSide) -> tuple[float, float, float]:
    """The lung's inner and outer ``u`` and its lowest ``v`` (from its mask; fallbacks if empty)."""
    cols = np.flatnonzero(lung.mask.any(axis=0))
    rows = np.flatnonzero(lung.mask.any(axis=1))
    if cols.size == 0:
        return float(lung.u.min()), float(lung.u.max()), lung.base
    us = lung.u[0, cols]
    return float(us.min()), float(us.max()), float(lung.v[rows[-1], 0])


def apply_pneumothorax(lung: LungSide, gap: float, pixel: float) -> tuple[np.ndarray, np.ndarray]:
    """Shrink the lung by ``gap`` toward its hilum; air fills the space between it and the chest wall.

    Returns:
        The pneumothorax mask and the density of the visceral pleural line, both (h, w). The line is about
        one pixel wide at 518 px (a 0.3 mm pleura blurred by the detector), so small pneumothoraces are
        a matter of resolution, as in the paper.
    """
    shrunk = lung.level_at(gap)  # (h, w)
    inside = shrunk <= 1.0
    mask = lung.mask & ~inside & (lung.v < lung.base)
    # Soft edge one pixel wide in level units: the level's gradient converts pixels to level.
    grad_v, grad_u = np.gradient(shrunk, pixel)
    slope = np.sqrt(np.square(grad_v) + np.square(grad_u)) + 1e-6
    signed = (1.0 - shrunk) / slope  # approximate distance (body units) to the shrunk outline, + inside
    lung_tissue = ramp(signed, pixel)
    lung.parenchyma = lung.parenchyma * np.where(lung.v < lung.base, lung_tissue, 1.0)
    collapsed = lung.air * (1.0 - 0.8 * gap)  # a smaller lung holds less air per path
    # The air layer's depth grows with the gap: a small pneumothorax is a faint lucent rim, a large one
    # a black band. Either way there are no markings in it (``parenchyma`` is 0 there).
    lucency = min(0.8, 0.25 + 1.8 * gap)
    lung.air = np.where(mask, np.maximum(lung.air, lucency), collapsed).astype(np.float32)
    line = np.exp(-np.square(signed / (0.6 * pixel))) * lung.mask * (lung.v < lung.base)
    return mask, (0.07 * line).astype(np.float32)


def apply_effusion(lung: LungSide, height: float, density: float) -> tuple[np.ndarray, np.ndarray]:
    """Fill the lowest part of the pleural space with fluid, its meniscus rising toward the chest wall.

    ``height`` is the fluid's medial depth as a fraction of lung height; a subtle effusion only fills and
    blunts the costophrenic angle. Returns the fluid fraction (h, w) and the effusion mask.
    """
    inner, outer, lowest = lung_extent(lung)
    lung_height = lowest - lung.apex
    level = lowest - height * lung_height  # fluid surface at the medial side
    rise = 0.03 + 0.8 * height * lung_height
    across = np.clip((lung.u - inner) / max(outer - inner, 1e-3), 0.0, 1.0)  # (1, w)
    surface = level - rise * np.square(across)  # (1, w) meniscus, highest laterally
    fade = 0.02 + 0.2 * height * lung_height
    fluid = density * smoothstep(surface, surface + fade, lung.v) * lung.mask  # (h, w)
    lung.air = (lung.air * (1.0 - fluid)).astype(np.float32)
    mask = lung.mask & (fluid >= 0.5 * density)
    return fluid.astype(np.float32), mask


def apply_opacity(
    rng: np.random.Generator, lung: LungSide, opacity: Opacity
) -> tuple[np.ndarray, np.ndarray]:
    """An irregular patch of airspace opacity: air replaced by fluid or cells, markings blurred out.

    Returns the opacity fraction (h, w) and its mask.
    """
    cx, cy = lung.point(opacity.v, opacity.u)
    x = lung.region.x
    distance = np.sqrt(np.square(x - cx) + np.square(lung.v - cy)) / opacity.radius  # (h, w)
    texture = smooth_field(rng, lung.region, cells_per_unit=12.0)
    # The texture roughens the margins but never the centre, so every opacity has a core.
    blob = np.exp(-np.square(distance)) * (1.0 + 0.7 * texture * (1.0 - np.exp(-4.0 * np.square(distance))))
    # Ill-defined, patchy margins: a wide transition around a textured envelope.
    fraction = opacity.strength * smoothstep(0.15, 0.8, blob) * lung.parenchyma
    lung.air = (lung.air * (1.0 - fraction)).astype(np.float32)
    mask = lung.mask & (fraction >= 0.5 * opacity.strength)
    return fraction.astype(np.float32), mask


def draw_nodule(canvas: Canvas, lung: LungSide, nodule: Nodule, density: np.ndarray) -> np.ndarray:
    """Add a round solid nodule; returns its full-size mask."""
    cx, cy = lung.point(nodule.v, nodule.u)
    radius = nodule.diameter_mm / 2.0 / MM_PER_UNIT
    mask = np.zeros((canvas.size, canvas.size), dtype=bool)
    region = canvas.region(cx - radius, cx + radius, cy - radius, cy + radius)
    if region is None:
        return mask
    r2 = (np.square(region.x - cx) + np.square(region.y - cy)) / radius**2
    # Density ∝ path length through a sphere; the peak grows with size (a 7 mm nodule is faint).
    peak = nodule.density * (0.04 + 4.0 * radius)
    sphere = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    density[region.rows, region.cols] += (peak * sphere).astype(np.float32)
    mask[region.rows, region.cols] = r2 <= 1.0
    return mask


def fibrosis_density(rng: np.random.Generator, lung: LungSide, fibrosis: Fibrosis) -> np.ndarray:
    """Reticular opacities, basal and subpleural (the UIP pattern): a net of thin lines, (h, w).

    The net is the zero set of a smooth random field (its level lines form closed cells), sharpened
    into lines; the cell size shrinks with ``cells_per_unit`` (finer = subtler).
    """
    _, _, lowest = lung_extent(lung)
    lung_height = lowest - lung.apex
    field = smooth_field(rng, lung.region, cells_per_unit=fibrosis.cells_per_unit)
    # Coarse (obvious) reticulation has thicker lines: the sharpening scales with the cell size.
    lines = np.exp(-np.square(field / (0.3 if fibrosis.severity == "subtle" else 0.45)))
    top = lowest - fibrosis.extent * lung_height
    basal = smoothstep(top, top + 0.35 * fibrosis.extent * lung_height, lung.v)  # (h, 1)
    peripheral = smoothstep(0.15, 0.75, lung.level)  # the outline function is ~1 at the pleura
    weight = basal * (0.35 + 0.65 * peripheral) * lung.parenchyma
    lung.air = (lung.air * (1.0 - 0.35 * fibrosis.strength * weight)).astype(np.float32)
    return (0.25 * fibrosis.strength * lines * weight).astype(np.float32)
