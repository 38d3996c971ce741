"""Bones of the frontal view: 10 ribs per side (with masks), clavicles, spine, humeral heads.

Each rib is drawn as it projects on a PA film: a posterior arc leaving the spine, rising a little and
curving down to the lateral chest wall, then a fainter anterior segment running down and medially to the
costochondral junction (cartilage is invisible unless calcified). A rib's cross-section is a cylinder with
a denser cortex, so its bands have bright margins. Rib 1 hugs the apex; rib 10 runs behind the dome.
"""

from __future__ import annotations

import numpy as np

from raddino.data.phantoms.anatomy import Anatomy, Positioning
from raddino.data.phantoms.canvas import Canvas, Region, smoothstep
from raddino.data.phantoms.thorax import SIDE_SIGN

SPINE_HALF_WIDTH = 0.065


def _band(distance: np.ndarray, half_width: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Density profile (cylinder + denser cortex) and hard mask of a band at perpendicular ``distance``."""
    q = np.abs(distance) / half_width
    solid = np.sqrt(np.clip(1.0 - np.square(q), 0.0, 1.0))
    cortex = np.square(np.clip(1.0 - np.square((q - 0.85) * 5.0), 0.0, 1.0))  # a bump 0.2 wide at q = 0.85
    return 0.4 * solid + 0.6 * cortex, q <= 1.0


def _curve_band(
    region: Region, sign: float, centre: np.ndarray, slope: np.ndarray, half_width: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A band around the curve ``v = centre(u)`` with the given slope dv/du (perpendicular thickness)."""
    distance = (region.y - centre) / np.sqrt(1.0 + np.square(slope))
    return _band(distance, half_width)


def _column_band(
    canvas: Canvas, cols: np.ndarray, centre: np.ndarray, slope: np.ndarray, half_width: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A curved band evaluated only on the few rows around its centre line in each column.

    Args:
        canvas: The canvas.
        cols: Image columns the band crosses, (w,).
        centre: Body y of the centre line in those columns, (w,).
        slope: dy/dx of the centre line, (w,).
        half_width: Half the band's perpendicular thickness.

    Returns:
        Row indices (K, w), the density profile (K, w) and the mask (K, w); each column's rows are
        distinct, so ``array[rows, cols] += profile`` is exact.
    """
    stretch = np.sqrt(1.0 + np.square(slope))  # (w,)
    reach = half_width * np.minimum(stretch, 4.0) / canvas.pixel + 2.0  # rows either side, (w,)
    count = min(canvas.size, int(np.ceil(2.0 * reach.max())) + 1)
    centre_rows, _ = canvas.to_pixels(np.zeros_like(centre), centre)
    first = np.clip(np.rint(centre_rows - count / 2.0).astype(np.int64), 0, canvas.size - count)  # (w,)
    rows = first[None, :] + np.arange(count)[:, None]  # (K, w)
    distance = (canvas.ys[rows] - centre[None, :]) / stretch[None, :]
    profile, mask = _band(distance, half_width)
    return rows, profile, mask


def rib_levels(anatomy: Anatomy, positioning: Positioning) -> np.ndarray:
    """Height at which each posterior rib (1..10) leaves the spine, per side: (2, 10)."""
    levels = []
    for index in range(2):
        base = anatomy.base_y[index] + positioning.inspiration - anatomy.volume_loss
        top = anatomy.apex_y - 0.07
        bottom = top + (base + 0.1 - top) * anatomy.rib_spacing
        steps = 1.0 + 0.045 * np.arange(9)  # lower intercostal spaces are wider
        offsets = np.concatenate([[0.0], np.cumsum(steps)]) / np.sum(steps)
        levels.append(top + (bottom - top) * offsets)
    return np.asarray(levels)


def draw_ribs(
    canvas: Canvas,
    anatomy: Anatomy,
    positioning: Positioning,
    density: np.ndarray,
    masks: dict[str, np.ndarray],
) -> None:
    """Add 20 ribs to ``density`` and write ``rib_L1`` … ``rib_R10`` into ``masks`` (full-size bool)."""
    size = canvas.size
    width = anatomy.thorax_half_width
    levels = rib_levels(anatomy, positioning)
    strength = 0.2 * anatomy.bone_density
    for index, side in enumerate(("right", "left")):
        sign = SIDE_SIGN[side]
        letter = "R" if side == "right" else "L"
        for number in range(10):
            mask = np.zeros((size, size), dtype=bool)
            masks[f"rib_{letter}{number + 1}"] = mask
            head_v = float(levels[index, number])
            half_width = 0.5 * anatomy.rib_width * (0.7 + 0.04 * number)
            start_u = SPINE_HALF_WIDTH * 0.9
            # The rib reaches the chest wall; the upper ribs are shorter and curve tighter round the apex.
            reach = width * (0.55 + 0.45 * np.sqrt(min(1.0, 0.3 + 0.18 * number))) + 0.02
            peak_u = start_u + (reach - start_u) * (0.22 + 0.02 * number)
            rise = 0.03 + 0.003 * number
            curvature = rise / (start_u - peak_u) ** 2
            lateral_v = head_v - rise + curvature * (reach - peak_u) ** 2
            front_u = reach * (0.35 + 0.02 * number)
            front_v = lateral_v + 0.16 + 0.012 * number
            # Posterior arc: a parabola from the spine, peaking near the spine, down to the chest wall.
            cols = _columns(canvas, sign, start_u, reach)
            if cols.size:
                u = sign * canvas.xs[cols]
                rows, profile, band = _column_band(
                    canvas,
                    cols,
                    head_v - rise + curvature * np.square(u - peak_u),
                    2 * curvature * (u - peak_u),
                    half_width,
                )
                density[rows, cols[None, :]] += (strength * profile).astype(np.float32)
                mask[rows, cols[None, :]] |= band
            # Anterior segment: from the lateral end, down and medially, fading into invisible cartilage.
            cols = _columns(canvas, sign, front_u, reach + 0.5 * half_width)
            if cols.size:
                u = sign * canvas.xs[cols]
                t = np.clip((reach - u) / (reach - front_u), 0.0, 1.0)
                drop = front_v - lateral_v
                centre = lateral_v + drop * (1.6 * t - 0.6 * np.square(t))
                slope = -drop * (1.6 - 1.2 * t) / (reach - front_u)
                rows, profile, band = _column_band(canvas, cols, centre, slope, half_width * 1.15)
                fade = smoothstep(front_u, front_u + 0.12, u)
                density[rows, cols[None, :]] += (0.5 * strength * profile * fade[None, :]).astype(np.float32)
                mask[rows, cols[None, :]] |= band
                if anatomy.cartilage_calcification > 0 and number >= 3:
                    fleck = np.exp(-np.square((u - front_u + 0.03) / 0.03))[None, :] * profile
                    density[rows, cols[None, :]] += (0.1 * anatomy.cartilage_calcification * fleck).astype(
                        np.float32
                    )


def _columns(canvas: Canvas, sign: float, inner_u: float, outer_u: float) -> np.ndarray:
    """Image columns whose body ``u = sign · x`` lies in ``[inner_u, outer_u]``."""
    u = sign * canvas.xs
    return np.flatnonzero((u >= inner_u) & (u <= outer_u))


def draw_clavicles(canvas: Canvas, anatomy: Anatomy, positioning: Positioning, density: np.ndarray) -> None:
    """Add both clavicles: S-shaped, from the sternoclavicular joints up and out to the acromion."""
    strength = 0.2 * anatomy.bone_density
    midline = positioning.rotation
    lift = -0.08 if positioning.inspiration < -0.03 else 0.0  # an AP (lordotic) projection raises them
    for sign in (-1.0, 1.0):
        start_u, end_u = 0.05, anatomy.thorax_half_width + 0.16
        start_v = anatomy.clavicle_y + lift
        rise = 0.22
        region = canvas.region(
            midline + sign * start_u, midline + sign * (end_u + 0.05), start_v - rise - 0.08, start_v + 0.08
        )
        if region is None:
            continue
        u = sign * (region.x - midline)
        t = np.clip((u - start_u) / (end_u - start_u), 0.0, 1.0)
        centre = start_v - rise * t + 0.03 * np.sin(2 * np.pi * t)
        slope = (-rise + 0.06 * np.pi * np.cos(2 * np.pi * t)) / (end_u - start_u)
        profile, _ = _curve_band(region, sign, centre, slope, 0.05 - 0.018 * t)
        inside = smoothstep(start_u - 0.01, start_u + 0.03, u) * smoothstep(end_u + 0.03, end_u - 0.02, u)
        density[region.rows, region.cols] += (strength * profile * inside).astype(np.float32)


def draw_spine(canvas: Canvas, anatomy: Anatomy, positioning: Positioning, density: np.ndarray) -> None:
    """Add the thoracic spine: vertebral bodies with endplates, pedicles, spinous processes."""
    midline = positioning.rotation
    region = canvas.region(midline - SPINE_HALF_WIDTH * 1.3, midline + SPINE_HALF_WIDTH * 1.3, -1.2, 1.2)
    if region is None:
        return
    x = region.x - midline  # (1, w)
    period = 0.105 * anatomy.rib_spacing  # a vertebra plus its disc is about 18 mm
    phase = np.mod(region.y - anatomy.apex_y + 0.04, period) / period  # (h, 1) 0..1 within a level
    body = np.sqrt(np.clip(1.0 - np.square(x / SPINE_HALF_WIDTH), 0.0, 1.0))
    disc = (
        1.0
        - 0.45 * np.exp(-np.square((phase - 0.05) / 0.06))
        - 0.45 * np.exp(-np.square((phase - 1.05) / 0.06))
    )
    pedicles = np.exp(-np.square((np.abs(x) - 0.042) / 0.011) - np.square((phase - 0.35) / 0.12))
    spinous = np.exp(-np.square(x / 0.01) - np.square((phase - 0.6) / 0.15))
    spine = 0.6 * body * disc + 0.5 * pedicles + 0.35 * spinous
    density[region.rows, region.cols] += (0.22 * anatomy.bone_density * spine).astype(np.float32)
